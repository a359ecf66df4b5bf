"""Synthetic x86_64 Linux vmcores with a known truth table (an independent test oracle).

Pure Python, no dependency on the rest of dumpfilter, deterministic for a given
seed.  Typical use::

    from dumpfilter.testing.synthetic import build_vmcore, ImageSpec, expected_bitmap2

    info = build_vmcore("/tmp/x.vmcore", ImageSpec(profile="6.1", mem_mib=64, seed=1))
    info.vmcoreinfo                    # the VMCOREINFO note text
    info.page_class[pfn]               # truth: class the page was built as (see truth.CLASS_NAMES)
    info.zero[pfn], info.in_dump[pfn]  # content all zero? stored in the dump?
    expected_bitmap2(info, 31)         # makedumpfile -d 31 2nd bitmap (kdump format)
    expected_counts(info, 31)          # makedumpfile's "Excluded pages" counters

Public API
----------
``build_vmcore(path, spec=None, **overrides) -> ImageInfo``
    Build a vmcore as described by :class:`ImageSpec` (keyword overrides allowed).
``build_sample(path, profile="6.1", mem_mib=64, seed=0, **spec_fields) -> ImageInfo``
    The demo image (contiguous RAM above 1 MiB, kexec-style ELF).
``ImageSpec``
    profile ("6.1", "6.9", "6.10", "6.12", "7.1"), seed, mem_mib or ram_ranges,
    crashkernel, five_level, direct_map_page ("1G"/"2M"), vmemmap_page
    ("2M"/"4K"), sme_mask, kaslr, sparsemem_extreme, mem_section_size, nr_cpus,
    ELF quirks (elf_vaddrs, kernel_alias_load, phdrs_after_shdrs, bad_ehsize,
    misalign, short_last_load_pages), straddle_buddy, crashtime, crash (a
    name in ``crashes.CRASHES`` or a ``crashes.CrashSpec``: tasks, a panic
    task and its stack, see ``tasks.py``).
``ImageInfo``
    Addresses used (page_offset_base, vmemmap_base, kernel_vaddr/paddr,
    phys_base, kaslr_offset, symbols), RAM ranges, written PT_LOADs, present
    sections, max_pfn, per-pfn ``page_class``/``zero``/``in_dump`` bytearrays,
    ``folios`` and ``buddy_blocks`` lists, and helpers ``page_bytes(pfn)``,
    ``read_phys``, ``virt_to_phys`` (from the builder's own mapping record),
    ``struct_page(pfn)``, ``expected_bitmap2``, ``expected_counts``,
    ``class_counts``, ``describe()``.
``expected_bitmap2(image, dump_level, kdump_format=True) -> bytes``
``expected_counts(image, dump_level) -> dict``
    makedumpfile's rules applied to the truth table (not to struct page bytes).

With ``crash`` set, the image also carries what ``dumpfilter-report`` reads:
kallsyms and BTF, a structured printk ring, tasks with per-cpu runqueues, a
loaded module, ORC tables and a panic stack that they unwind
(``ImageInfo.crash`` holds the expected panic task and frames). Without it,
none of these are written (and their VMCOREINFO keys are not exported).
Not modelled: zone free lists (``nr_zones`` is 0, so a free-list walker finds
nothing; use buddy detection).
"""

from .crashes import CRASHES, CrashSpec
from .kernel import ImageInfo, ImageSpec, build_sample, build_vmcore
from .profiles import PROFILES, Profile, get_profile
from .truth import CLASS_NAMES, class_counts, expected_bitmap2, expected_counts

__all__ = [
    "ImageInfo", "ImageSpec", "build_sample", "build_vmcore", "PROFILES", "Profile", "get_profile",
    "CLASS_NAMES", "class_counts", "expected_bitmap2", "expected_counts", "CRASHES", "CrashSpec",
]
