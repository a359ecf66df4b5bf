#!/usr/bin/env python3
"""dumpfilter-triage throughput (dumps per minute, 1 and 2 Dask workers)
next to what ``crash`` takes for the same banner (``sys``) per dump.

Corpora:

* synthetic: tests/fleetcorpus.py's dumps (six panic stacks x 6 seeds, each as
  ELF, -c/-l/-z kdump at -d 31, flattened and a --split pair, plus three bad
  files), built in a temporary directory;
* real: the captures in the test cache (~/.cache/dumpfilter/vmcores, made by
  the tests): the raw kdump vmcore, makedumpfile's -d 31 zlib and lzo files,
  QEMU's ELF and flattened kdump-zlib dumps.

Each triage run starts from an empty --out (so every dump is triaged) and is
timed from the command's start to its end, cluster start-up included.
crash runs once per real dump (after a warm-up run), serially, with the -dbg
vmlinux the tests cache:

    python3 bench/bench_triage.py [--seeds 6] [--vmlinux PATH] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
CACHE = Path(os.environ.get("DUMPFILTER_CACHE") or Path.home() / ".cache" / "dumpfilter")
VMCORES = CACHE / "vmcores"
REAL = ["kdump-6.1-512M.vmcore", "kdump-6.1-512M.d31-zlib.kdump", "kdump-6.1-512M.d31-lzo.kdump",
        "qemu-6.1-512M.elf", "qemu-6.1-512M.kdump-zlib-flat"]
DEFAULT_VMLINUX = CACHE / "dbg" / "usr/lib/debug/boot/vmlinux-6.1.0-56-amd64"


def triage(paths, out: Path, workers: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "dumpfilter.fleet", *map(str, paths), "--out", str(out),
                        "--workers", str(workers), "--no-progress"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"dumpfilter-triage failed: {r.stderr.strip()[-800:]}")
    recs = [json.loads(x) for x in (out / "dumps.jsonl").read_text().splitlines()]
    status = {}
    for rec in recs:
        status[rec["status"]] = status.get(rec["status"], 0) + 1
    task = statistics.median(rec["timings"].get("task", 0) for rec in recs)
    return {"dumps": len(recs), "wall": wall, "per_min": 60 * len(recs) / wall, "status": status,
            "task_median": task}


def crash_sys(vmlinux: Path, dump: Path) -> float:
    env = dict(os.environ, TZ="UTC", PAGER="cat", TERM=os.environ.get("TERM") or "dumb")
    t0 = time.perf_counter()
    r = subprocess.run(["crash", "-s", str(vmlinux), str(dump)], input="set scroll off\nsys\nquit\n",
                       capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    if r.returncode != 0 or "PANIC:" not in r.stdout:
        raise SystemExit(f"crash failed on {dump}: {r.stdout[-500:]}")
    return dt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=6, help="synthetic dumps per stack and container")
    p.add_argument("--vmlinux", type=Path, default=DEFAULT_VMLINUX)
    p.add_argument("--keep", type=Path, help="build the synthetic corpus here and keep it")
    a = p.parse_args()
    import fleetcorpus

    print(f"# {platform.node()} {platform.machine()} {os.cpu_count()} cpus, python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-triage-"))
    try:
        root = a.keep or tmp / "corpus"
        if not (root / "bad").is_dir():
            t0 = time.perf_counter()
            fleetcorpus.build(root, a.seeds)
            print(f"# synthetic corpus built in {time.perf_counter() - t0:.1f} s")
        real = [VMCORES / n for n in REAL if (VMCORES / n).is_file()]
        corpora = {"synthetic": [root]}
        if real:
            corpora["real"] = real
        print(f"{'corpus':10} {'workers':>7} {'dumps':>6} {'wall s':>8} {'dumps/min':>10} "
              f"{'task s (median)':>15}  status")
        results = {}
        for name, paths in corpora.items():
            for workers in (1, 2):
                res = triage(paths, tmp / f"out-{name}-{workers}", workers)
                results[(name, workers)] = res
                print(f"{name:10} {workers:>7} {res['dumps']:>6} {res['wall']:>8.1f} {res['per_min']:>10.1f} "
                      f"{res['task_median']:>15.3f}  {res['status']}")
        if real and shutil.which("crash") and a.vmlinux.is_file():
            print(f"\n{'real dump':40} {'crash sys s':>11}")
            times = []
            for dump in real:
                crash_sys(a.vmlinux, dump)  # warm-up: page cache
                dt = crash_sys(a.vmlinux, dump)
                times.append(dt)
                print(f"{dump.name:40} {dt:>11.2f}")
            per = statistics.mean(times)
            r1 = results[("real", 1)]
            print(f"\ncrash: {per:.2f} s per dump ({60 / per:.1f} dumps/min, one process);"
                  f" dumpfilter-triage on the same dumps: {r1['per_min']:.1f} dumps/min with 1 worker, "
                  f"{results[('real', 2)]['per_min']:.1f} with 2 (start-up included)")
        else:
            print("# crash or the -dbg vmlinux missing: no crash timings")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
