"""Crash scenarios a synthetic kernel can carry: the panic task, its stack
(function names, innermost first, as crash's ``bt`` prints them) and the
kernel log lines of the panic.

A frame ``"func [mod]"`` is in the code of loaded module ``mod``. Frames
whose function is an entry point that saves a ``struct pt_regs``
(:func:`is_regs_frame`) end the stack (entered from user mode) when they
are last, and otherwise hold the registers of the interrupted function,
which is the next frame. A stack whose last frame is ``ret_from_fork``
ends there (the kernel thread's first frame).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

_SYSCALL = ["do_syscall_64", "entry_SYSCALL_64_after_hwframe"]
_PANIC = ["__crash_kexec", "panic"]
_OOPS_PF = _PANIC + ["oops_end", "page_fault_oops", "exc_page_fault", "asm_exc_page_fault"]
_OOPS_UD = _PANIC + ["oops_end", "do_trap", "do_error_trap", "exc_invalid_op", "asm_exc_invalid_op"]
_OOPS_GP = _PANIC + ["oops_end", "die_addr", "exc_general_protection", "asm_exc_general_protection"]


@dataclass(frozen=True)
class CrashSpec:
    """One panic: who, where (stack) and what the log says."""

    name: str
    frames: Tuple[str, ...]
    comm: str
    pid: int
    cpu: int = 0
    log: Tuple[Tuple[int, str], ...] = ()  # (level, text) after the boot lines
    modules: Tuple[str, ...] = ("synth_drv",)
    #: extra tasks (pid, comm) besides idle, init, kthreadd and the panic task
    others: Tuple[Tuple[int, str], ...] = ((10, "ksoftirqd/0"), (42, "kworker/0:1"),
                                           (301, "systemd-journal"), (530, "sshd"))

    def frame_names(self) -> List[str]:
        """Function names as the report prints them (module tag dropped)."""
        return [f.split(" [", 1)[0] for f in self.frames]

    def frame_modules(self) -> Dict[str, str]:
        return {f.split(" [", 1)[0]: f.split(" [", 1)[1].rstrip("]") for f in self.frames if " [" in f}


CRASHES: Dict[str, CrashSpec] = {c.name: c for c in (
    CrashSpec("sysrq", tuple(_PANIC + ["sysrq_handle_crash", "__handle_sysrq", "write_sysrq_trigger",
                                       "proc_reg_write", "vfs_write", "ksys_write"] + _SYSCALL),
              "bash", 812, 0,
              ((6, "sysrq: Trigger a crash"),
               (0, "Kernel panic - not syncing: sysrq triggered crash"))),
    CrashSpec("ext4-null", tuple(_OOPS_PF + ["ext4_readdir", "iterate_dir", "__x64_sys_getdents64"]
                                 + _SYSCALL),
              "find", 1377, 1,
              ((1, "BUG: kernel NULL pointer dereference, address: 0000000000000010"),
               (1, "Oops: 0000 [#1] PREEMPT SMP NOPTI"),
               (0, "Kernel panic - not syncing: Fatal exception"))),
    CrashSpec("list-corruption", tuple(_OOPS_UD + ["__list_del_entry_valid", "release_pages",
                                                   "shrink_page_list", "shrink_inactive_list",
                                                   "kswapd", "kthread", "ret_from_fork"]),
              "kswapd0", 61, 0,
              ((3, "list_del corruption. next->prev should be ffff888004a1b0c8"),
               (4, "kernel BUG at lib/list_debug.c:62!"),
               (0, "Kernel panic - not syncing: Fatal exception"))),
    CrashSpec("module-null", tuple(_OOPS_PF + ["synth_drv_ioctl [synth_drv]", "__x64_sys_ioctl"]
                                   + _SYSCALL),
              "synthctl", 2048, 1,
              ((1, "BUG: kernel NULL pointer dereference, address: 0000000000000000"),
               (0, "Kernel panic - not syncing: Fatal exception"))),
    CrashSpec("softlockup", tuple(_PANIC + ["watchdog_timer_fn", "__hrtimer_run_queues",
                                            "hrtimer_interrupt", "__sysvec_apic_timer_interrupt",
                                            "sysvec_apic_timer_interrupt",
                                            "asm_sysvec_apic_timer_interrupt",
                                            "native_queued_spin_lock_slowpath", "_raw_spin_lock",
                                            "dput", "__fput", "task_work_run",
                                            "syscall_exit_to_user_mode"] + _SYSCALL),
              "cc1", 4242, 0,
              ((0, "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [cc1:4242]"),
               (0, "Kernel panic - not syncing: softlockup: hung tasks"))),
    CrashSpec("gpf-net", tuple(_OOPS_GP + ["skb_release_data", "napi_consume_skb", "net_rx_action",
                                           "__do_softirq", "run_ksoftirqd", "smpboot_thread_fn",
                                           "kthread", "ret_from_fork"]),
              "ksoftirqd/1", 18, 1,
              ((4, "general protection fault, probably for non-canonical address "
                   "0xdead000000000122: 0000 [#1] PREEMPT SMP NOPTI"),
               (0, "Kernel panic - not syncing: Fatal exception in interrupt"))),
)}


def is_regs_frame(func: str) -> bool:
    """Entry code that saves a full pt_regs (ORC type REGS)."""
    return func.startswith(("asm_exc_", "asm_sysvec_", "asm_common_interrupt")) \
        or func == "entry_SYSCALL_64_after_hwframe"


def is_end_frame(func: str) -> bool:
    return func == "ret_from_fork"


def get_crash(name_or_spec) -> Optional[CrashSpec]:
    if name_or_spec is None or isinstance(name_or_spec, CrashSpec):
        return name_or_spec
    try:
        return CRASHES[name_or_spec]
    except KeyError:
        raise ValueError(f"unknown crash {name_or_spec!r}; known: {', '.join(CRASHES)}") from None
