#!/usr/bin/env python3
"""Make a real kdump capture (the unfiltered ELF /proc/vmcore) for benchmarks.

    bench/make_capture.py --mem 4G --workload busy [OUT]

Boots Debian's 6.1 kernel under QEMU (TCG) with the harness of tests/vmtest: the first
kernel arms ``kexec -p``, runs the workload (``idle``: little more than a booted system;
``busy``: half of RAM anonymous memory, a quarter page cache of ext4 files, 1/16 tmpfs,
stale data in free pages; ``test``: the VM test's smaller mix) and crashes with sysrq-c;
the capture kernel copies /proc/vmcore byte for byte (``dd``) onto a raw virtio disk,
which becomes OUT (holes punched where it is zero). OUT defaults to
``$DUMPFILTER_CACHE/captures/kdump-6.1-<mem>-<workload>.vmcore`` and gets a JSON
description beside it (OUT.json): kernel, guest, workload, sizes, sha256, timings and,
with ``--stats``, the pages ``dumpfilter -l -d 31`` keeps.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from vmtest import harness  # noqa: E402


def parse_size_mib(s: str) -> int:
    m = re.fullmatch(r"(\d+)([MG]?)", s.strip().upper().removesuffix("IB").removesuffix("B"))
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {s!r} (e.g. 4G, 1024M)")
    n = int(m.group(1))
    return n * 1024 if m.group(2) == "G" else n


def label(mib: int) -> str:
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def popcount(b: bytes) -> int:
    return int.from_bytes(b, "little").bit_count() if b else 0


def d31_stats(vmcore: Path) -> dict:
    """Pages in the dump and pages `dumpfilter -l -d 31` keeps (from its two bitmaps)."""
    with tempfile.TemporaryDirectory(prefix="make-capture-", dir=vmcore.parent) as d:
        out = Path(d) / "d31.kdump"
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "dumpfilter", "-l", "-d", "31", str(vmcore),
                            str(out)], capture_output=True, text=True, cwd=REPO,
                           env=dict(os.environ, PYTHONPATH=str(REPO)))
        wall = time.monotonic() - t0
        if r.returncode != 0:
            return {"error": r.stderr.strip()[-500:]}
        h = harness.kdump_header(out)
        half = h["bitmap_blocks"] * h["block_size"] // 2
        with open(out, "rb") as fh:
            fh.seek((1 + h["sub_hdr_size"]) * h["block_size"])
            b1 = fh.read(half)
            b2 = fh.read(half)
        in_dump, kept = popcount(b1), popcount(b2)
        return {"pages_in_dump": in_dump, "pages_kept_d31": kept,
                "kept_percent_d31": round(100.0 * kept / in_dump, 2) if in_dump else None,
                "d31_lzo_bytes": out.stat().st_size, "host_wall_s_d31_lzo": round(wall, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", help="output vmcore (default: the captures cache)")
    ap.add_argument("--mem", type=parse_size_mib, default=4096, help="guest RAM (default 4G)")
    ap.add_argument("--workload", choices=sorted(harness.WORKLOADS), default="busy")
    ap.add_argument("--crashkernel", default="256M")
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=0,
                    help="QEMU timeout in seconds (default: 600 + 0.2 s per MiB)")
    ap.add_argument("--stats", action="store_true",
                    help="also run dumpfilter -l -d 31 once and record the kept-page share")
    ap.add_argument("--keep-workdir", action="store_true")
    a = ap.parse_args(argv)

    name = f"kdump-6.1-{label(a.mem)}-{a.workload}.vmcore"
    out = Path(a.out) if a.out else harness.cache_root() / "captures" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    need = (a.mem + 512) * 2**20 + (a.mem // 4 + 512) * 2**20
    free = shutil.disk_usage(out.parent).free
    if free < need:
        print(f"not enough space in {out.parent}: {free / 2**30:.1f} GiB free, "
              f"{need / 2**30:.1f} GiB needed", file=sys.stderr)
        return 1
    cfg = harness.VMConfig(name=name, mem_mib=a.mem, crashkernel=a.crashkernel,
                           workload=a.workload, action="copy", smp=a.smp,
                           timeout=a.timeout or 600 + 0.2 * a.mem)
    workdir = Path(tempfile.mkdtemp(prefix="make-capture-", dir=out.parent))
    try:
        res = harness.run_vm(cfg, workdir, raw_disk=part,
                             log=lambda m: print(m, file=sys.stderr, flush=True))
        serial = Path(res.serial).read_text(errors="replace") if res.serial else ""
        if not res.ok or res.runs.get("copy", {}).get("rc") != "0":
            print(f"capture failed: {res.error or res.runs}\n{serial[-3000:]}", file=sys.stderr)
            return 1
        size = int(res.info["vmcore_bytes"])
        with open(part, "r+b") as fh:
            fh.truncate(size)
            fh.seek(0)
            if fh.read(4) != b"\x7fELF":
                print("the raw disk does not start with an ELF header", file=sys.stderr)
                return 1
        if shutil.which("fallocate"):
            subprocess.run(["fallocate", "--dig-holes", str(part)], check=False)
        ready = re.search(r"vmtest: workload ready: ([^\n]*)", serial)
        desc = {
            "file": out.name,
            "format": "ELF64 core: /proc/vmcore of a kdump capture kernel, copied with dd, unfiltered",
            "kernel": {"package": harness.KPKG, "version": harness.KPKG_VERSION,
                       "release": harness.KVER,
                       "debug_vmlinux": f"{harness.KPKG}-dbg {harness.KPKG_VERSION}: "
                                        f"/usr/lib/debug/boot/vmlinux-{harness.KVER}"},
            "guest": {"qemu": "qemu-system-x86_64 -accel tcg", "mem_mib": a.mem, "smp": a.smp,
                      "crashkernel": a.crashkernel,
                      "capture_cmdline": (Path(res.outdir) / "cmdline.txt").read_text().strip()
                      if (Path(res.outdir) / "cmdline.txt").exists() else None},
            "workload": {"name": a.workload, "mib": cfg.sizes(), "anon_kind": cfg.anonkind,
                         "first_kernel_meminfo_at_crash": ready.group(1).strip() if ready else None,
                         "crash": "echo c > /proc/sysrq-trigger from PID 1"},
            "bytes": size,
            "allocated_bytes": os.stat(part).st_blocks * 512,
            "sha256": sha256(part),
            "copy_in_guest": res.runs.get("copy"),
            "capture_kernel": {"memtotal_kb": int(res.info.get("memtotal_kb", 0))},
            "host_wall_s": round(res.host_wall_s, 1),
            "made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "made_by": "bench/make_capture.py",
        }
        os.replace(part, out)
        if a.stats:
            desc["filter_d31"] = d31_stats(out)
        tmp = out.with_name(out.name + ".json.tmp")
        tmp.write_text(json.dumps(desc, indent=1) + "\n")
        os.replace(tmp, out.with_name(out.name + ".json"))
        print(json.dumps(desc, indent=1))
        return 0
    finally:
        if part.exists():
            part.unlink()
        if not a.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
