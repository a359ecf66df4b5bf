"""Progress and timing messages: makedumpfile's progress lines when stderr
is not a terminal, a bar when it is, STEP timings with --show-stats."""
import re

import pytest

from dumpfilter.cli import Messages
from dumpfilter.testing.synthetic import build_sample

from clitools import run_cli

LINE = re.compile(r"^(?P<step>.{50}): \[(?P<pct>[ \d]{3}\.\d) %\] [/|\\-]  ")


def test_plain_progress_lines_follow_makedumpfile(capsys):
    m = Messages(1, tty=False)
    m.progress("Copying data", 0, 1000)
    m.progress("Copying data", 1000, 1000)
    err = capsys.readouterr().err
    parts = [p for p in err.replace("\n", "\r").split("\r") if p]
    assert [LINE.match(p).group("pct") for p in parts] == ["  0.0", "100.0"]
    assert err.endswith("\n")


def test_terminal_gets_a_tqdm_bar(capsys):
    pytest.importorskip("tqdm")
    m = Messages(1, tty=True)
    m.progress("Copying data", 0, 10)
    m.progress("Copying data", 10, 10)
    err = capsys.readouterr().err
    assert re.search(r"Copying data: 100%\|.+\| 10\.0/10\.0", err), err
    assert "[100.0 %]" not in err


def test_terminal_without_tqdm_gets_the_plain_lines(capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *a, **k):
        if name == "tqdm":
            raise ImportError("no tqdm")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    m = Messages(1, tty=True)
    m.progress("Copying data", 0, 10)
    m.progress("Copying data", 10, 10)
    err = capsys.readouterr().err
    assert [LINE.match(p).group("pct") for p in err.replace("\n", "\r").split("\r") if p] == \
        ["  0.0", "100.0"]


def test_show_stats_times_each_step(tmp_path):
    vmcore = tmp_path / "s.vmcore"
    build_sample(str(vmcore), mem_mib=32, seed=2)
    r = run_cli("-c", "-d", "31", "--message-level", "0", "--show-stats", vmcore, tmp_path / "o")
    steps = re.findall(r"^STEP \[(.+?)\] : (\d+\.\d{6}) seconds$", r.stdout, re.M)
    assert [s for s, _ in steps] == ["Excluding unnecessary pages", "Copying data"]
    assert "Original pages" in r.stdout  # makedumpfile: report messages on stdout
    # Message level 0 prints no progress lines.
    assert "%]" not in r.stderr
