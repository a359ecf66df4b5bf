"""``python -m dumpfilter.demo``: the main job on a built-in sample.

Builds a synthetic but consistent x86_64 vmcore (Linux 6.1 layout, 64 MiB
of RAM with every page class), filters it with ``-c -d 31`` exactly as a kdump
capture kernel would run dumpfilter, prints makedumpfile's page-count report,
and reads the result back to check every kept page.
"""
from __future__ import annotations

import os
import sys
import tempfile

from dumpfilter.cli import main as dumpfilter_main


def main(argv=None) -> int:
    from dumpfilter.readers import open_dump
    from dumpfilter.testing.synthetic import build_sample, expected_bitmap2

    keep = argv and "--keep" in argv
    tmp = tempfile.mkdtemp(prefix="dumpfilter-demo-")
    vmcore = os.path.join(tmp, "sample.vmcore")
    out = os.path.join(tmp, "sample.kdump")
    info = build_sample(vmcore, profile="6.1", mem_mib=64, seed=0)
    print(f"built {vmcore}: {info.max_pfn} pfns, Linux 6.1 layout (synthetic)")
    cmd = ["-c", "-d", "31", "--message-level", "23", vmcore, out]
    print("$ dumpfilter " + " ".join(cmd), flush=True)
    rc = dumpfilter_main(cmd)
    if rc != 0:
        return rc
    want = expected_bitmap2(info, 31)
    checked = 0
    with open_dump(out) as src:
        for pfn in range(info.max_pfn):
            if want[pfn >> 3] >> (pfn & 7) & 1:
                if src.read_phys(pfn * src.page_size, src.page_size) != info.page_bytes(pfn):
                    print(f"MISMATCH at pfn {pfn:#x}", file=sys.stderr)
                    return 1
                checked += 1
    print(f"{out}: {os.path.getsize(out):,} bytes from a {os.path.getsize(vmcore):,}-byte vmcore; "
          f"{checked} kept pages read back and verified")
    if keep:
        print(f"files kept in {tmp}")
    else:
        os.unlink(vmcore)
        os.unlink(out)
        os.rmdir(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
