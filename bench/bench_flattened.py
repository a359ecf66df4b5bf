"""Opening a flattened stream: time against the number of records (issue 9).

``python3 bench/bench_flattened.py [N ...]`` writes synthetic makedumpfile-like
``-F`` streams (small data records interleaved with descriptor records far
below them, a header rewritten at the end) into a temporary directory and
prints the time ``FlattenedFile`` takes to index each. Default: 250 k, 500 k,
1 M and 2 M records.
"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from test_flattened_index import _makedumpfile_like  # noqa: E402

from dumpfilter.readers.flattened import FlattenedFile  # noqa: E402


def main(argv):
    sizes = [int(a) for a in argv] or [250_000, 500_000, 1_000_000, 2_000_000]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = os.path.join(tmp, f"s{n}")
            with open(path, "wb") as f:
                f.write(_makedumpfile_like(n))
            t0 = time.perf_counter()
            with FlattenedFile(path) as ff:
                segs = ff.nsegments
            dt = time.perf_counter() - t0
            print(f"{n:>9} records  {os.path.getsize(path) / 1e6:8.1f} MB  {dt:7.2f} s  "
                  f"{dt / n * 1e6:5.2f} us/record  {segs} segments", flush=True)
            os.unlink(path)


if __name__ == "__main__":
    main(sys.argv[1:])
