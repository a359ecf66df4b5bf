"""Exit codes and the one error-to-exit map of both tools.

``run_main`` runs a tool's body and turns whatever escapes it into one
``PROG: message`` line on stderr and an exit status:

====  ==========================================================
0     done (``dumpfilter-report``: the report is complete)
1     failed: bad usage, a bad or unreadable dump, an I/O error, an
      internal error (a traceback only with ``-D``)
3     ``dumpfilter-report`` only: printed, but some section is partial
130   interrupted (SIGINT, Ctrl-C)
143   terminated (SIGTERM); 129 for SIGHUP
====  ==========================================================

A closed standard output (``dumpfilter-report ... | head -1``, ``dumpfilter
-h | head``) ends quietly with 0; ``dumpfilter -F`` whose reader goes away
fails with 1 and says so, since the stream is then incomplete.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
from typing import Callable

from dumpfilter.errors import DumpFilterError, UsageError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_PARTIAL = 3
EXIT_SIGINT = 128 + signal.SIGINT


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind (cleaning up outputs) and exit
    ``128 + signum``."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, _frame):
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C does (Python raises
    KeyboardInterrupt for SIGINT by itself)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, _terminate)
        except (OSError, ValueError):  # not the main thread
            pass


def _silence_stdout() -> None:
    """After EPIPE on stdout: point fd 1 at /dev/null so that the
    interpreter's final flush does not complain again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass


def _say(prog: str, text: str) -> None:
    try:
        sys.stderr.write(f"{prog}: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def run_main(prog: str, body: Callable[[], int], debug: Callable[[], bool] = lambda: False,
             quiet_broken_pipe: Callable[[], bool] = lambda: True) -> int:
    """``body()``'s exit status, or the status of what it raised."""
    install_signal_handlers()
    try:
        return body()
    except UsageError as e:
        _say(prog, f"{e} (try '{prog} -h')")
        return EXIT_FAILED
    except DumpFilterError as e:
        _say(prog, str(e))
        return e.exit_code
    except BrokenPipeError:
        _silence_stdout()
        if quiet_broken_pipe():
            return EXIT_OK
        _say(prog, "standard output closed (broken pipe): the output is incomplete")
        return EXIT_FAILED
    except OSError as e:
        if e.errno == errno.EPIPE:
            _silence_stdout()
        where = f"{e.filename}: " if e.filename else ""
        _say(prog, f"{where}{e.strerror or e}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _say(prog, "interrupted")
        return EXIT_SIGINT
    except Terminated as t:
        _say(prog, f"terminated by {signal.Signals(t.signum).name}")
        return 128 + t.signum
    except MemoryError:
        _say(prog, "out of memory")
        return EXIT_FAILED
    except Exception as e:  # a bug: still one line, unless debugging
        if debug():
            import traceback

            traceback.print_exc()
        _say(prog, f"internal error: {type(e).__name__}: {e}"
                   + ("" if debug() else " (run with -D for a traceback)"))
        return EXIT_FAILED
