"""``python3 -m dumpfilter.initramfs [OUT.cpio] [--codecs lzo,zlib] [--root PREFIX] [--list] [--gzip]``"""
from __future__ import annotations

import argparse
import os
import sys

from dumpfilter.initramfs.payload import DEFAULT_LIBDIR, build, makedumpfile_footprint
from dumpfilter.initramfs.record import CODEC_FLAGS, DEFAULT_CODECS


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m dumpfilter.initramfs",
        description="Write a newc cpio archive (rooted at /) that runs dumpfilter in a kdump "
                    "capture kernel: append it to the capture initramfs.")
    ap.add_argument("out", nargs="?", help="output archive (- for stdout)")
    ap.add_argument("--codecs", default=",".join(DEFAULT_CODECS),
                    help="codecs the collector may use, comma separated, from "
                         f"{','.join(CODEC_FLAGS)} (default: %(default)s); decides which "
                         "codec modules and libraries are included")
    ap.add_argument("--root", default="/",
                    help="install prefix inside the archive (default /: host paths; any other "
                         "prefix needs /bin/sh in the capture initramfs)")
    ap.add_argument("--libdir", default=DEFAULT_LIBDIR,
                    help="where modules outside the stdlib go (default %(default)s)")
    ap.add_argument("--sample", action="append", default=[],
                    help="also record collector runs on this vmcore (the built-in synthetic "
                         "sample is always used)")
    ap.add_argument("--gzip", action="store_true", help="gzip the archive (the kernel unpacks it)")
    ap.add_argument("--no-strip", action="store_true", help="keep shared objects unstripped")
    ap.add_argument("--optimize", type=int, choices=(0, 1, 2), default=0,
                    help="bytecode optimization level of the package's modules (default 0)")
    ap.add_argument("--stdlib-optimize", type=int, choices=(0, 1, 2), default=2,
                    help="bytecode optimization level of the stdlib modules (default 2)")
    ap.add_argument("--no-zip", action="store_true",
                    help="stdlib modules as files instead of the deflated lib/pythonXY.zip")
    ap.add_argument("--list", action="store_true", help="print the files with their sizes")
    ap.add_argument("-q", "--quiet", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each recorded run")
    a = ap.parse_args(argv)
    codecs = [c.strip() for c in a.codecs.split(",") if c.strip()]
    bad = [c for c in codecs if c not in CODEC_FLAGS]
    if bad or not codecs:
        ap.error(f"--codecs: unknown codec {', '.join(bad) or '(none given)'}")
    if not a.root.startswith("/"):
        ap.error("--root must be an absolute path")
    if a.out is None and not a.list:
        ap.error("give OUT.cpio or --list")

    pl = build(codecs=codecs, root=a.root, libdir=a.libdir, samples=a.sample,
               strip=not a.no_strip, optimize=a.optimize, stdlib_optimize=a.stdlib_optimize,
               stdlib_zip=not a.no_zip, verbose=a.verbose)
    if a.list:
        for name, kind, data, perm in pl.entries():
            if kind == "file":
                print(f"{len(data):>10,}  /{name}")
            elif kind == "symlink":
                print(f"{'':>10}  /{name} -> {data.decode()}")
    data = None
    if a.out:
        data = pl.cpio_bytes(gzip=a.gzip)
        if a.out == "-":
            sys.stdout.buffer.write(data)
        else:
            tmp = a.out + ".tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, a.out)
    if not a.quiet:
        err = sys.stderr
        kinds = pl.by_kind()
        print(f"payload: {len(pl.files())} files, {pl.unpacked_bytes():,} bytes unpacked "
              f"({_mb(pl.unpacked_bytes())}; {_mb(pl.ram_bytes())} in 4 KiB pages)", file=err)
        print("  " + ", ".join(f"{k} {_mb(v)}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])),
              file=err)
        if data is not None and a.out != "-":
            print(f"  archive {a.out}: {len(data):,} bytes{' (gzip)' if a.gzip else ''}", file=err)
        mdf = makedumpfile_footprint()
        if mdf:
            print(f"makedumpfile: binary {mdf[0]:,} + libraries {mdf[1]:,} = {mdf[0] + mdf[1]:,} bytes "
                  f"({_mb(mdf[0] + mdf[1])})", file=err)
        for n in pl.notes:
            print("note: " + n, file=err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
