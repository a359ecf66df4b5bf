"""Task list and panic task from BTF layouts, compared with the drgn
ground truth (groundtruth.json) on the raw dump and the -d 31 output."""
from __future__ import annotations

import pytest

from dumpfilter.formats.elfnotes import decode_prstatus_x86_64, prstatus_notes
from dumpfilter.report.tasks import TaskReader, state_letter


def test_state_letters():
    assert state_letter(0, 0) == "R"
    assert state_letter(1, 0) == "S"
    assert state_letter(2, 0) == "D"
    assert state_letter(0x402, 0) == "I"  # TASK_IDLE
    assert state_letter(0x1000, 0) == "D"  # TASK_RTLOCK_WAIT
    assert state_letter(0x80 | 0, 0x20) == "Z"  # TASK_DEAD + EXIT_ZOMBIE
    assert state_letter(0, 0x10) == "X"
    assert state_letter(0x40, 0) == "P"
    assert state_letter(0x8, 0) == "t"


@pytest.fixture(scope="module")
def ctx(report_ctx):
    return report_ctx


@pytest.fixture(scope="module")
def walked(ctx):
    reader = TaskReader(ctx)
    return reader, reader.walk()


def _key(t):
    return (t["pid"], t["tgid"], t["ppid"], t["comm"], t["state"], t["cpu"],
            t["running_on_cpu"], bool(t.get("idle", False)))


@pytest.mark.realdump
def test_tasks_equal_groundtruth(walked, groundtruth):
    _reader, tl = walked
    assert tl.errors == []
    mine = {t.address: (t.pid, t.tgid, t.ppid, t.comm, t.state, t.cpu, t.running_on_cpu, t.idle)
            for t in tl.tasks}
    ref = {int(t["task"], 16): _key(t) for t in groundtruth["tasks"]}
    assert mine == ref
    assert len(tl) == groundtruth["nr_threads_incl_idle"]
    assert len([t for t in tl.tasks if not t.idle]) == groundtruth["nr_tasks_pid_hash"]


@pytest.mark.realdump
def test_cpu_masks(walked, groundtruth):
    reader, _tl = walked
    assert reader.cpumask("__cpu_online_mask") == groundtruth["online_cpus"]


@pytest.mark.realdump
def test_panic_task(walked, groundtruth, ctx):
    reader, tl = walked
    assert reader.panic_cpu() == groundtruth["panic_cpu"]
    pt = reader.panic_task(tl)
    ref = groundtruth["panic_task"]
    assert pt.cpu == ref["cpu"]
    assert pt.task.address == int(ref["task"], 16)
    assert pt.task.pid == ref["pid"] and pt.task.comm == ref["comm"]
    assert pt.percpu_current == pt.task.address
    assert pt.warnings == []
    # cross-check with the note of the panic CPU
    notes = prstatus_notes(ctx.source.notes)
    idx = groundtruth["panic_cpu_regs"]["note_index"]
    assert pt.prstatus_pid == decode_prstatus_x86_64(notes[idx], idx).pid == ref["pid"]


@pytest.mark.realdump
def test_unreadable_task_is_reported_not_raised(ctx):
    """A task whose memory is missing is listed in errors, the walk goes on."""
    from dumpfilter.errors import FaultError

    reader = TaskReader(ctx)
    victim = reader.walk().tasks[5].address

    class Holey:
        def __init__(self, mem):
            self.mem = mem

        def read(self, vaddr, n):
            if victim <= vaddr < victim + 64:
                raise FaultError("page excluded (test)", vaddr)
            return self.mem.read(vaddr, n)

    real = ctx.mem
    ctx.mem = Holey(real)
    try:
        tl = TaskReader(ctx).walk()
    finally:
        ctx.mem = real
    assert victim not in tl.by_address()
    assert any(f"{victim:#x}" in e and "not in the dump" in e for e in tl.errors)
