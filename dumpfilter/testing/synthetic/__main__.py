"""``python -m dumpfilter.testing.synthetic OUT.vmcore [--profile 6.1] [--seed N] [--mem-mib 64]``

Writes a synthetic x86_64 vmcore and prints what it contains.
"""

from __future__ import annotations

import argparse
import sys
import time

from . import PROFILES, ImageSpec, build_vmcore
from .elfcore import file_size_on_disk


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dumpfilter.testing.synthetic",
                                 description="Write a synthetic x86_64 kdump vmcore with a known truth table.")
    ap.add_argument("out", help="output vmcore path")
    ap.add_argument("--profile", default="6.1", choices=sorted(PROFILES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mem-mib", type=int, default=64)
    ap.add_argument("--crashkernel-mib", type=int, default=0,
                    help="leave this much RAM (at 2/3 of memory) out of the dump")
    ap.add_argument("--five-level", action="store_true")
    ap.add_argument("--direct-map-page", choices=("1G", "2M"), default="1G")
    ap.add_argument("--vmemmap-page", choices=("2M", "4K"), default="2M")
    ap.add_argument("--sme-mask", type=lambda s: int(s, 0), default=0)
    ap.add_argument("--no-kaslr", action="store_true")
    ap.add_argument("--qemu", action="store_true",
                    help="QEMU-style ELF: p_vaddr 0, no kernel alias PT_LOAD, phdrs after shdrs, "
                         "unaligned data")
    ap.add_argument("--vmcoreinfo", action="store_true", help="also print the VMCOREINFO text")
    a = ap.parse_args(argv)

    ck = None
    if a.crashkernel_mib:
        start = (a.mem_mib * 2 // 3) // 2 * 2 << 20
        ck = (start, a.crashkernel_mib << 20)
    spec = ImageSpec(profile=a.profile, seed=a.seed, mem_mib=a.mem_mib, crashkernel=ck,
                     five_level=a.five_level, direct_map_page=a.direct_map_page,
                     vmemmap_page=a.vmemmap_page, sme_mask=a.sme_mask, kaslr=not a.no_kaslr)
    if a.qemu:
        spec.elf_vaddrs = False
        spec.kernel_alias_load = False
        spec.phdrs_after_shdrs = True
        spec.misalign = 0x520
    t0 = time.perf_counter()
    info = build_vmcore(a.out, spec)
    dt = time.perf_counter() - t0
    print(f"wrote {a.out}: {info.loads[-1].offset + info.loads[-1].file_bytes} bytes "
          f"({file_size_on_disk(a.out)} allocated) in {dt:.2f} s")
    print(info.describe())
    if a.vmcoreinfo:
        print(info.vmcoreinfo, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
