""".ci/run: exists, runs the test command README.md documents, and fails on pytest's exit 5.

The behavioural checks run the real script with stub commands first on PATH
(apt-get, python3, ... that only record their arguments), so nothing is installed.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CI_RUN = REPO / ".ci" / "run"
README = REPO / "README.md"


def readme_test_command() -> str:
    if not README.is_file():
        pytest.skip("README.md does not exist yet (the lead writes it)")
    text = README.read_text()
    blocks = re.findall(r"^(```|~~~)[^\n]*\n(.*?)^\1", text, re.S | re.M)
    cmds = []
    for _fence, body in blocks:
        for line in body.splitlines():
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:].strip()
            if re.search(r"(^|\s|-m\s)pytest(\s|$)", line) and not line.startswith("#"):
                cmds.append(line)
    assert cmds, "README.md has no fenced line that runs pytest"
    return cmds[0]


def test_ci_run_exists_and_is_executable():
    assert CI_RUN.is_file()
    assert os.access(CI_RUN, os.X_OK)
    text = CI_RUN.read_text()
    assert text.startswith("#!/usr/bin/env bash") or text.startswith("#!/bin/bash")
    assert "set -euo pipefail" in text
    r = subprocess.run(["bash", "-n", str(CI_RUN)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_ci_run_uses_readme_test_command():
    cmd = readme_test_command()
    lines = [l.strip() for l in CI_RUN.read_text().splitlines()]
    assert any(l == cmd or l.startswith(cmd + " ||") for l in lines), \
        f"README's test command {cmd!r} is not run verbatim by .ci/run"


STUB = """#!/bin/bash
printf '%s\\0' "$(basename "$0")" "$@" >> "$STUB_LOG"
printf '\\n' >> "$STUB_LOG"
if [ "$(basename "$0")" = python3 ] && [ "${1:-}" = -m ] && [ "${2:-}" = pytest ]; then
    exit "$STUB_PYTEST_RC"
fi
exit 0
"""


def _run_ci_with_stubs(tmp_path: Path, pytest_rc: int):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name in ("apt-get", "sudo", "python3", "crash", "makedumpfile", "zstd"):
        p = bindir / name
        p.write_text(STUB)
        p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    log = tmp_path / f"log{pytest_rc}"
    log.write_bytes(b"")
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CI": "true",
        "STUB_LOG": str(log),
        "STUB_PYTEST_RC": str(pytest_rc),
        "CI_SANITIZE_CMD": "python3 sanitize-stub",
        "CI_VENV": str(tmp_path / "venv"),
    }
    r = subprocess.run(["bash", str(CI_RUN)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=120)
    calls = [rec.split(b"\0") for rec in log.read_bytes().split(b"\0\n") if rec]
    calls = [[c.decode() for c in call] for call in calls]
    return r, calls


@pytest.mark.parametrize("pytest_rc,ci_ok", [(0, True), (1, False), (5, False)])
def test_ci_run_exit_status(tmp_path, pytest_rc, ci_ok):
    r, calls = _run_ci_with_stubs(tmp_path, pytest_rc)
    assert (r.returncode == 0) == ci_ok, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    pytest_calls = [c for c in calls if c[:3] == ["python3", "-m", "pytest"]]
    assert len(pytest_calls) == 1, calls
    assert any(c[0] == "apt-get" and "update" in c for c in calls)
    installs = [c for c in calls if c[0] == "apt-get" and "install" in c]
    assert installs and {"makedumpfile", "crash", "python3-libkdumpfile", "zstd", "gcc"} <= set(installs[0])
    pips = [c for c in calls if c[:4] == ["python3", "-m", "pip", "install"] and "-e" in c]
    assert pips
    # installed into a fresh virtual environment (an undeclared dependency fails CI)
    venvs = [c for c in calls if c[:3] == ["python3", "-m", "venv"]]
    assert venvs and calls.index(venvs[0]) < calls.index(pips[0])
    extras = [a for a in pips[0] if a.startswith(".[")]
    # the test extra, and the fleet extra (Dask) so that dumpfilter-triage's tests run
    assert extras and {"test", "fleet"} <= set(extras[0][2:-1].split(",")), pips[0]
    assert calls.index(pips[0]) < calls.index(pytest_calls[0])
    # the sanitizer job runs (here its stub), after the install
    assert ["python3", "sanitize-stub"] in calls
    assert "bash .ci/sanitize" in CI_RUN.read_text()
    if README.is_file():
        assert pytest_calls[0] == shlex.split(readme_test_command()), pytest_calls[0]
