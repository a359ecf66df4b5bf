#!/usr/bin/env python3
"""dumpfilter vs makedumpfile, side by side in one run.

Runs both tools alternately on the same input, dump level and codec, for
several rounds, each under ``/usr/bin/time -v``; prints the median wall time,
output bytes and peak RSS of each, and the ratios ours/theirs, with the
machine it ran on. makedumpfile 1.7.2 from Debian has no snappy/zstd, so our
``-p``/``-z`` are compared with its ``-c``.

    python3 bench/bench_filter.py [--rounds 5] [--level 31] [--cold]
        [--threads default,1] [--startup] VMCORE...

``--cold`` drops the page cache before every run (needs root); otherwise the
input is read once first so both tools see it in the page cache.
``--threads`` runs dumpfilter with each ``--num-threads`` value given
("default": every CPU), each against the same makedumpfile runs.
``--startup`` also times the interpreter and a collector run's imports.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

PAIRS = [("-c", "-c"), ("-l", "-l"), ("-p", "-c"), ("-z", "-c")]


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{platform.node()}: {model}, {os.cpu_count()} CPUs "
            f"({len(os.sched_getaffinity(0))} usable), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def timed(argv, out) -> dict:
    if out is not None and os.path.exists(out):
        os.unlink(out)
    r = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", r.stderr)
    h, m, s = wall.groups()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    return {"wall": int(h or 0) * 3600 + int(m) * 60 + float(s), "rss_kib": rss,
            "bytes": os.path.getsize(out) if out is not None else 0}


def drop_caches() -> None:
    subprocess.run(["sync"])
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def startup(rounds: int) -> None:
    """Interpreter start-up and a collector run's imports, alone: a run
    that only checks its command line (everything a -l run imports up to
    opening the dump), next to ``python3 -c pass``."""
    def wall(argv):
        return statistics.median(timed(argv, None)["wall"] for _ in range(rounds))

    bare = wall([sys.executable, "-c", "pass"])
    check = wall([sys.executable, "-m", "dumpfilter", "--check-params", "-l", "-d", "31",
                  "/proc/vmcore", "x"])
    print(f"# start-up: python3 -c pass {bare:.3f} s; dumpfilter --check-params -l -d 31 "
          f"{check:.3f} s (imports {check - bare:.3f} s)")


def bench(vmcore: str, args, mdf: str, tmp: str) -> None:
    print(f"# input: {vmcore} ({os.path.getsize(vmcore):,} bytes), -d {args.level}, "
          f"{args.rounds} rounds, {'cold (page cache dropped)' if args.cold else 'warm page cache'}")
    if not args.cold:
        with open(vmcore, "rb") as f:
            while f.read(1 << 24):
                pass
    wanted = args.codecs.split(",")
    threads = args.threads.split(",")
    print(f"{'codec':<10} {'tool':<18} {'wall s':>8} {'out bytes':>12} {'RSS MiB':>8}   "
          f"{'wall':>6} {'size':>6} {'RSS':>6}  (ratios ours/theirs)")
    for ours_opt, their_opt in PAIRS:
        if ours_opt not in wanted:
            continue
        runs = {t: [] for t in threads}
        theirs = []
        for _ in range(args.rounds):
            # alternate, same conditions
            for t in threads:
                if args.cold:
                    drop_caches()
                out = os.path.join(tmp, "ours")
                extra = [] if t == "default" else ["--num-threads", t]
                argv = ([sys.executable, "-m", "dumpfilter", *args.extra.split(), *extra, ours_opt,
                         "-d", str(args.level), "--message-level", "0", vmcore, out])
                runs[t].append(timed(argv, out))
            if args.cold:
                drop_caches()
            out = os.path.join(tmp, "theirs")
            theirs.append(timed([mdf, their_opt, "-d", str(args.level), "--message-level", "0",
                                 vmcore, out], out))

        def med(rs):
            return {k: statistics.median(r[k] for r in rs) for k in ("wall", "rss_kib", "bytes")}

        t = med(theirs)
        for th in threads:
            o = med(runs[th])
            label = f"{ours_opt}/{their_opt}"
            print(f"{label:<10} {'dumpfilter ' + ('' if th == 'default' else th + 'T'):<18} "
                  f"{o['wall']:8.2f} {o['bytes']:12,.0f} {o['rss_kib']/1024:8.1f}   "
                  f"{o['wall']/t['wall']:6.2f} {o['bytes']/t['bytes']:6.3f} "
                  f"{o['rss_kib']/t['rss_kib']:6.2f}")
        print(f"{'':<10} {'makedumpfile':<18} {t['wall']:8.2f} {t['bytes']:12,.0f} "
              f"{t['rss_kib']/1024:8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vmcores", nargs="+")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--level", type=int, default=31)
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--codecs", default="-c,-l,-p,-z")
    ap.add_argument("--threads", default="default",
                    help="comma list of --num-threads values to run ('default': every CPU)")
    ap.add_argument("--startup", action="store_true")
    ap.add_argument("--extra", default="", help="extra dumpfilter options, e.g. '--zlib-encoder zlib'")
    args = ap.parse_args()
    mdf = shutil.which("makedumpfile")
    if not mdf:
        sys.exit("makedumpfile not found (apt-get install makedumpfile)")
    print(f"# machine: {machine()}")
    with open("/proc/loadavg") as f:
        print(f"# load average before: {f.read().split()[0]}")
    # Measure dumpfilter as pip installs it: with compiled bytecode (this
    # matters when PYTHONDONTWRITEBYTECODE is set in the environment).
    import compileall
    import dumpfilter

    compileall.compile_dir(os.path.dirname(dumpfilter.__file__), quiet=1)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    if args.startup:
        startup(args.rounds)
    tmp = tempfile.mkdtemp(prefix="dumpfilter-bench-")
    try:
        for vmcore in args.vmcores:
            bench(vmcore, args, mdf, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
