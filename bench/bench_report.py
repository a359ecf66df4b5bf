#!/usr/bin/env python3
"""dumpfilter-report (default banner) vs crash's ``sys``, side by side.

For each dump, runs ``dumpfilter-report --utc DUMP`` and, when the debug
vmlinux is there, ``crash -s VMLINUX DUMP`` with ``sys`` piped in, alternately
for several rounds (both read the dump from the page cache after a warm-up
run); prints the median wall time of each and the ratio crash/ours.

    python3 bench/bench_report.py [--rounds 5] [--vmlinux PATH] [DUMP ...]

Without DUMPs: the raw 512 MiB kdump vmcore and makedumpfile's -d 31 zlib
file from the test cache (~/.cache/dumpfilter/vmcores).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("DUMPFILTER_CACHE") or Path.home() / ".cache" / "dumpfilter")
DEFAULT_DUMPS = [CACHE / "vmcores" / "kdump-6.1-512M.vmcore",
                 CACHE / "vmcores" / "kdump-6.1-512M.d31-zlib.kdump"]
DEFAULT_VMLINUX = CACHE / "dbg" / "usr/lib/debug/boot/vmlinux-6.1.0-56-amd64"


def ours_cmd(dump: Path):
    exe = shutil.which("dumpfilter-report")
    base = [exe] if exe else [sys.executable, "-m", "dumpfilter.report"]
    return base + ["--utc", str(dump)], None


def crash_cmd(vmlinux: Path, dump: Path):
    return ["crash", "-s", str(vmlinux), str(dump)], "set scroll off\nsys\nquit\n"


def timed(argv, stdin_text) -> float:
    env = dict(os.environ, TZ="UTC", PAGER="cat", TERM=os.environ.get("TERM") or "dumb")
    t0 = time.perf_counter()
    r = subprocess.run(argv, input=stdin_text, capture_output=True, text=True, env=env,
                       stdin=None if stdin_text is not None else subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    if r.returncode not in (0, 3):
        raise SystemExit(f"{argv[0]} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return dt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--vmlinux", type=Path, default=DEFAULT_VMLINUX)
    p.add_argument("dumps", nargs="*", type=Path)
    a = p.parse_args()
    dumps = a.dumps or [d for d in DEFAULT_DUMPS if d.is_file()]
    if not dumps:
        raise SystemExit("no dumps given and none in the test cache (run the tests first)")
    have_crash = shutil.which("crash") is not None and a.vmlinux.is_file()
    print(f"# {platform.node()} {platform.machine()} {os.cpu_count()} cpus, python "
          f"{platform.python_version()}, rounds={a.rounds}")
    if not have_crash:
        print(f"# crash or {a.vmlinux} missing: timing dumpfilter-report only")
    print(f"{'dump':40} {'ours s':>8} {'crash s':>8} {'crash/ours':>10}")
    for dump in dumps:
        cmds = {"ours": ours_cmd(dump)}
        if have_crash:
            cmds["crash"] = crash_cmd(a.vmlinux, dump)
        for argv, stdin_text in cmds.values():  # warm-up: page cache, pyc files
            timed(argv, stdin_text)
        times = {k: [] for k in cmds}
        for _ in range(a.rounds):
            for k, (argv, stdin_text) in cmds.items():
                times[k].append(timed(argv, stdin_text))
        ours = statistics.median(times["ours"])
        if have_crash:
            crash = statistics.median(times["crash"])
            print(f"{dump.name:40} {ours:8.3f} {crash:8.3f} {crash / ours:10.2f}")
        else:
            print(f"{dump.name:40} {ours:8.3f} {'-':>8} {'-':>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
