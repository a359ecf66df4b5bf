"""The dumped kernel's memory model: virtual -> physical translation and
where each pfn's ``struct page`` lives (``sparsemem``). Shared by the filter
and the report; chosen from the dump, never from the host."""
from __future__ import annotations

from dumpfilter.vmcoreinfo import VmcoreInfo


def kernel_memory(source, info: VmcoreInfo):
    """A reader of the dumped kernel's virtual memory, or None when
    VMCOREINFO does not name a page-table root. The architecture comes
    from the dump (ELF ``e_machine``, the kdump header's machine, else
    VMCOREINFO), never from the host."""
    from dumpfilter.memory.arm64 import is_arm64

    if is_arm64(info, source.e_machine):
        if info.symbol("swapper_pg_dir") is None:
            return None
        from dumpfilter.memory.arm64 import Arm64Memory

        return Arm64Memory(source, info)
    from dumpfilter.memory.x86_64 import X86_64Memory

    if info.symbol("init_top_pgt") is None and info.symbol("init_level4_pgt") is None \
            and info.symbol("swapper_pg_dir") is None:
        return None
    return X86_64Memory(source, info)


def phys_base(info: VmcoreInfo, source=None) -> int:
    """The kernel's ``phys_base`` (recorded in kdump headers)."""
    from dumpfilter.memory.arm64 import arm64_phys_base, is_arm64

    if is_arm64(info, None if source is None else source.e_machine):
        return arm64_phys_base(info)
    from dumpfilter.memory.x86_64 import kernel_phys_base

    return kernel_phys_base(info, source)


__all__ = ["kernel_memory", "phys_base"]
