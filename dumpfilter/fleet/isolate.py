"""Running one dump's triage so that a crash or a hang costs only that dump.

The work runs in a child forked from the worker process (the modules are
already imported: no interpreter start-up), and its result comes back
through a pipe. The child is killed when it runs past the timeout; a child
that dies (a segfault in a C library, the OOM killer) or times out is tried
once more, and then the dump gets an error record saying what happened. The
worker process itself never runs the dump code, so it survives both.

POSIX only (``os.fork``); with ``isolate=False`` the work runs in the
calling thread (no timeout), e.g. where fork is not available.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import time
import warnings
from typing import Any, Callable, Optional, Tuple

ATTEMPTS = 2


def _child(fn: Callable, args: tuple, wfd: int) -> None:
    import faulthandler

    faulthandler.disable()  # a crash here is reported by the parent, once
    status = 0
    try:
        try:
            data = pickle.dumps(("ok", fn(*args)))
        except BaseException as e:  # noqa: B902 - reported to the parent
            from dumpfilter.fleet.record import error_message

            data = pickle.dumps(("raised", error_message(e)))
        view = memoryview(data)
        while view:
            view = view[os.write(wfd, view):]
    except BaseException:  # noqa: B902
        status = 1
    finally:
        os._exit(status)


def run_forked(fn: Callable, args: tuple, timeout: Optional[float]) -> Tuple[str, Any]:
    """("ok", result), ("raised", message), ("timeout", seconds) or
    ("died", description)."""
    rfd, wfd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads: we only compute
        pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _child(fn, args, wfd)
    os.close(wfd)
    chunks = []
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([rfd], [], [], left)
            if not ready:
                continue
            b = os.read(rfd, 1 << 20)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(rfd)
        if timed_out:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return "timeout", timeout
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return "died", f"killed by {signal.Signals(sig).name}" + (
            " (out of memory?)" if sig == signal.SIGKILL else "")
    if not chunks:
        return "died", f"exited with status {os.WEXITSTATUS(status)} without a result"
    return pickle.loads(b"".join(chunks))


def run_isolated(fn: Callable, args: tuple, timeout: Optional[float], isolate: bool = True,
                 attempts: int = ATTEMPTS) -> Tuple[str, Any, int]:
    """Like :func:`run_forked`, retrying a timeout or a death once; also
    returns the number of attempts made."""
    if not isolate:
        return ("ok", fn(*args), 1)
    for n in range(1, attempts + 1):
        kind, value = run_forked(fn, args, timeout)
        if kind in ("ok", "raised"):
            return kind, value, n
    return kind, value, attempts
