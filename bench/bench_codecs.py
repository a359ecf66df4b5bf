#!/usr/bin/env python3
"""Per-page encoders on a dump's real kept pages: bytes and CPU time of each
candidate relative to zlib level 1 (makedumpfile -c).

The pages are those ``-d 31`` keeps, zero pages left out (they share one
block), up to ``--pages``; each encoder compresses all of them one page at a
time through the same C batch path the filter uses, on one thread (CPU time,
best of ``--rounds``). Used to choose the default zlib encoder and zstd level.

    python3 bench/bench_codecs.py [--pages 20000] [--rounds 3] VMCORE...
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dumpfilter._core import check, ffi, lib  # noqa: E402
from dumpfilter.codecs import native  # noqa: E402
from dumpfilter.codecs.encoders import LzoPages, NativePages  # noqa: E402
from dumpfilter.filter.job import FilterOptions, plan  # noqa: E402
from dumpfilter.filter.pages import find_zero_pages, select_pages  # noqa: E402
from dumpfilter.filter.scan import TempBitmaps, scan  # noqa: E402
from dumpfilter.formats.bitmap import bit_slice  # noqa: E402
from dumpfilter.readers import open_dump  # noqa: E402


def kept_pages(path: str, limit: int) -> bytes:
    """Up to ``limit`` non-zero pages -d 31 keeps, spread over the dump."""
    out = bytearray()
    with open_dump(path) as src:
        p = plan(src, FilterOptions(31))
        store = TempBitmaps(src.max_pfn)
        res = scan(p, store.put)
        step = max(1, res.dumpable // limit)
        seen = 0
        for start, n in res.cycles:
            bm = store.bitmap2(start, (n + 7) // 8)
            for pfn, k, view in src.page_windows(start, n):
                mask = bit_slice(bm, pfn - start, k)
                zero, _ = find_zero_pages(view, k, src.page_size, mask)
                idx, cnt = select_pages(mask, zero, k)
                for j in range(cnt):
                    if seen % step == 0 and len(out) < limit * src.page_size:
                        i = idx[j]
                        out += view[i * src.page_size:(i + 1) * src.page_size]
                    seen += 1
                view.release()
        store.close()
    return bytes(out)


def candidates():
    yield "lzo", LzoPages()
    yield "zlib-1", NativePages(lambda: native.zlib_compressor(1), "zlib 1")
    for lvl in (1, 2, 3, 4, 6):
        yield f"libdeflate-{lvl}", NativePages(lambda lvl=lvl: native.libdeflate_compressor(lvl), "")
    for lvl in (1, 2, 3, 4, 5, 6):
        yield f"zstd-{lvl}", NativePages(lambda lvl=lvl: native.zstd_compressor(lvl), "")


def measure(enc, pages: bytes, ps: int, rounds: int):
    n = len(pages) // ps
    idx = ffi.NULL
    sizes = ffi.new("uint32_t[]", n)
    best = None
    for _ in range(rounds):
        t = time.process_time()
        data = enc.compress(memoryview(pages), idx, n, sizes)
        dt = time.process_time() - t
        best = dt if best is None else min(best, dt)
    return len(data), best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vmcores", nargs="+")
    ap.add_argument("--pages", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    check(lib.DF_OK, "")
    for path in args.vmcores:
        pages = kept_pages(path, args.pages)
        ps = 4096
        print(f"# {path}: {len(pages) // ps} non-zero kept pages (-d 31), one thread, "
              f"CPU time best of {args.rounds}")
        rows = [(name, *measure(enc, pages, ps, args.rounds)) for name, enc in candidates()]
        base = next(r for r in rows if r[0] == "zlib-1")
        print(f"{'encoder':<14} {'bytes':>12} {'CPU s':>8} {'bytes/zlib-1':>13} {'time/zlib-1':>12} {'MB/s':>8}")
        for name, size, dt in rows:
            print(f"{name:<14} {size:12,d} {dt:8.3f} {size / base[1]:13.3f} {dt / base[2]:12.2f} "
                  f"{len(pages) / dt / 1e6:8.0f}")


if __name__ == "__main__":
    main()
