"""Crash signatures: the same bug gets the same signature on another kernel
build or KASLR slide.

The signature is the first 16 hex digits of the SHA-256 of the top
``TOP_FRAMES`` function names of the panic stack (innermost first) after:

* the generic frames are dropped wherever they are — the panic and kexec
  path (``panic``, ``__crash_kexec``, ``crash_setup_regs``...), the oops
  and trap plumbing (``oops_end``, ``die``, ``__die_body``, ``do_trap``,
  ``page_fault_oops``...) and exception/interrupt entry code (``asm_exc_*``,
  ``exc_*``, ``asm_sysvec_*``, ``sysvec_*``, ``__sysvec_*``,
  ``entry_SYSCALL_64*``, ``do_syscall_64``...);
* frames that are not a symbol (a bare hex address) are dropped;
* compiler suffixes are removed (``.cold``, ``.isra.0``, ``.constprop.0``,
  ``.part.0``, ``.llvm.123``), so are offsets (``+0x1f/0x40``) and module
  tags; addresses never enter the hash.
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterable, List, Optional

TOP_FRAMES = 5

GENERIC = frozenset((
    "panic", "vpanic", "__crash_kexec", "crash_kexec", "crash_setup_regs", "machine_crash_shutdown",
    "machine_kexec",
    "native_machine_crash_shutdown", "oops_end", "die", "__die", "__die_body", "die_addr",
    "do_trap", "do_error_trap", "handle_bug", "page_fault_oops", "kernelmode_fixup_or_oops",
    "no_context", "__bad_area_nosemaphore", "bad_area_nosemaphore", "do_user_addr_fault",
    "do_kern_addr_fault", "handle_page_fault", "fixup_exception", "error_entry", "do_syscall_64",
    "syscall_exit_to_user_mode", "exit_to_user_mode_prepare", "irq_exit_rcu",
    "bad_area", "__bad_area", "spurious_kernel_fault", "report_bug", "__warn", "warn_slowpath_fmt",
    "dump_stack", "dump_stack_lvl", "show_stack", "show_trace_log_lvl",
))
GENERIC_PREFIXES = ("asm_exc_", "exc_", "asm_sysvec_", "sysvec_", "__sysvec_", "entry_SYSCALL_64",
                    "asm_common_interrupt", "common_interrupt", "entry_INT80", "ret_from_fork",
                    "asm_", "native_machine_")

_SUFFIX = re.compile(r"(\.(cold|isra|constprop|part|llvm|lto_priv)(\.\d+)?)+$")
_HEX = re.compile(r"^(0x)?[0-9a-f]+$")


def normalize(symbol: str) -> Optional[str]:
    """Function name of a frame symbol, or None when it is no symbol."""
    name = symbol.strip().split(" ", 1)[0].split("+", 1)[0]
    if not name or _HEX.match(name):
        return None
    prev = None
    while prev != name:
        prev, name = name, _SUFFIX.sub("", name)
    return name


def is_generic(name: str) -> bool:
    return name in GENERIC or name.startswith(GENERIC_PREFIXES)


def signature_frames(frames: Iterable[str], top: int = TOP_FRAMES) -> List[str]:
    """The frames the signature hashes."""
    out = []
    for f in frames:
        name = normalize(f)
        if name is None or is_generic(name):
            continue
        out.append(name)
        if len(out) == top:
            break
    return out


def signature(frames: Iterable[str], top: int = TOP_FRAMES) -> Optional[str]:
    """16 hex digits, or None when no frame is left."""
    kept = signature_frames(frames, top)
    if not kept:
        return None
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()[:16]
