"""Is ``--vmlinux`` the dump's kernel build? crash refuses a vmlinux whose
``linux_banner`` differs from the dump's; so does the report, unless
``--force``.

Compared, in this order, whatever both sides have:

* the GNU build-id: the vmlinux's NT_GNU_BUILD_ID note and VMCOREINFO
  ``BUILD-ID`` (written since Linux 5.9 on kernels with a build-id);
* ``linux_banner`` (``Linux version <release> (<builder>) #<n> ...``): the
  string in the vmlinux's ``.rodata`` (its ``.symtab`` address) and the one
  in the dump's memory (the address from VMCOREINFO or the dump's kallsyms).

Neither available on one side means nothing to compare: accepted, and
said in the debug-info notes.
"""
from __future__ import annotations

from typing import Optional

from dumpfilter.errors import DumpFilterError, FaultError


class VmlinuxMismatchError(DumpFilterError):
    """The --vmlinux is another kernel build than the dump's."""


def _dump_banner(ctx) -> Optional[str]:
    addr = ctx.symbol("linux_banner")
    if addr is None:
        return None
    try:
        return ctx.read(addr, 512).split(b"\0", 1)[0].decode("latin-1")
    except FaultError:
        return None


def mismatch(ctx, vmlinux) -> Optional[str]:
    """Why ``vmlinux`` is not the dump's build, or None when it is (or
    nothing can be compared)."""
    bid, dump_bid = vmlinux.build_id(), ctx.info.build_id
    if bid and dump_bid:
        if bid.lower() != dump_bid.lower():
            return f"build-id {bid}, the dump's kernel has {dump_bid}"
        return None
    ours = vmlinux.banner()
    theirs = _dump_banner(ctx)
    if ours and theirs and ours.rstrip("\n") != theirs.rstrip("\n"):
        return f"linux_banner {ours.strip()!r}, the dump's is {theirs.strip()!r}"
    return None


def check_vmlinux(ctx, force: bool) -> None:
    """Raise VmlinuxMismatchError (one line) for a vmlinux of another
    build; with ``force``, note it in ``ctx.debuginfo`` instead."""
    vm = ctx.vmlinux
    if vm is None:
        return
    why = mismatch(ctx, vm)
    if why is None:
        return
    if not force:
        raise VmlinuxMismatchError(f"{vm.path} is not the dump's kernel build ({why}); "
                                   "use --force to read it anyway")
    ctx.debuginfo["notes"].append(f"--force: {vm.path} is another build ({why})")


__all__ = ["VmlinuxMismatchError", "check_vmlinux", "mismatch"]
