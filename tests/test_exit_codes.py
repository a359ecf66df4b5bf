"""One error-to-exit-code map for both tools (dumpfilter.exits): SIGINT
130, SIGTERM 143, a reader that goes away is not an error for the report,
an internal error is one line (a traceback only with -D)."""
import os
import signal
import subprocess
import sys
import time

import pytest

TOOLS = {
    "dumpfilter": [sys.executable, "-m", "dumpfilter", "-c", "-d", "31"],
    "dumpfilter-report": [sys.executable, "-m", "dumpfilter.report"],
}


def _blocked_on_fifo(cmd, fifo, extra=()):
    """Start ``cmd`` reading ``fifo`` (open() blocks until a writer
    comes), wait until it sits in that open."""
    p = subprocess.Popen([*cmd, str(fifo), *extra], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{p.pid}/wchan") as f:
                if f.read() in ("wait_for_partner", "fifo_open"):
                    return p
        except OSError:
            pass
        time.sleep(0.02)
    p.kill()
    raise AssertionError("the tool never blocked on the FIFO")


@pytest.mark.parametrize("tool", sorted(TOOLS))
@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"),
                                           (signal.SIGTERM, 143, "SIGTERM")])
def test_signals_exit_128_plus_signum(tool, sig, code, word, tmp_path):
    fifo = tmp_path / "vmcore"
    os.mkfifo(fifo)
    extra = [str(tmp_path / "out")] if tool == "dumpfilter" else []
    p = _blocked_on_fifo(TOOLS[tool], fifo, extra)
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert p.returncode == code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{tool}: ") and word in lines[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.realdump
def test_report_into_a_closed_pipe_exits_0_quietly(kdump_vmcore):
    """``dumpfilter-report DUMP | head -1``: the reader goes away; the
    report stops without a word and exits 0."""
    r, w = os.pipe()
    os.close(r)  # nobody will read: the first write gets EPIPE
    p = subprocess.run([*TOOLS["dumpfilter-report"], "--log", str(kdump_vmcore)], stdout=w,
                       stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, timeout=120)
    os.close(w)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""


@pytest.mark.realdump
def test_report_head_1_in_a_shell_pipeline(kdump_vmcore):
    r = subprocess.run(["bash", "-c", 'set -o pipefail; "$@" | head -1', "sh",
                        *TOOLS["dumpfilter-report"], "--log", str(kdump_vmcore)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 1 and "Broken pipe" not in r.stderr
    assert r.stderr == ""


@pytest.mark.realdump
def test_flattened_stream_into_a_closed_pipe_fails_with_one_line(kdump_vmcore):
    """-F whose reader goes away: the stream is incomplete, so exit 1."""
    r, w = os.pipe()
    os.close(r)
    p = subprocess.run([sys.executable, "-m", "dumpfilter", "-F", "-l", "-d", "31",
                        str(kdump_vmcore)], stdout=w, stderr=subprocess.PIPE, text=True,
                       stdin=subprocess.DEVNULL, timeout=120)
    os.close(w)
    assert p.returncode == 1
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("dumpfilter: ")]
    assert len(lines) == 1 and "broken pipe" in lines[0].lower(), p.stderr
    assert "Traceback" not in p.stderr


def test_internal_error_is_one_line_unless_debugging(monkeypatch, capsys, tmp_path):
    from dumpfilter import cli
    import dumpfilter.readers

    def bug(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(dumpfilter.readers, "open_dump", bug)
    args = ["-c", "-d", "31", str(tmp_path / "in"), str(tmp_path / "out")]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "dumpfilter: internal error: ZeroDivisionError: a bug (run with -D for a traceback)"]
    assert cli.main(["-D", *args]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1] == \
        "dumpfilter: internal error: ZeroDivisionError: a bug"
