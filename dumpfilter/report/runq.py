"""``--runq``: each online CPU's run queue, as crash's ``runq`` prints it.

Reads, per CPU in ``__cpu_online_mask`` (``tasks.TaskReader`` gives the
per-cpu ``runqueues`` address and ``rq.curr``):

* the RT queue: ``rq.rt.active`` (``struct rt_prio_array``), its
  ``queue[]`` of list_heads, one per priority, linking
  ``sched_rt_entity.run_list`` (``task_struct.rt``); an entity with
  ``my_q`` (group scheduling) stands for that ``rt_rq``'s own array;
* the CFS queue: ``rq.cfs.tasks_timeline`` (``rb_root_cached``: ``rb_root``
  and ``rb_leftmost``), walked in order; each node is a
  ``sched_entity.run_node`` inside ``task_struct.se``, or, when the entity
  has ``my_q`` (a task group), that group's ``cfs_rq`` — whose own tree is
  walked in place, as crash does; the group running now is
  ``cfs_rq.curr->my_q``;
* each task's ``prio``, ``pid`` and ``comm`` (``tasks.Task``).

Output lines are crash's: ``CPU n RUNQUEUE: rq``, ``CURRENT: PID: ...``,
``RT PRIO_ARRAY: addr`` then ``[prio] PID: ...`` or ``[no tasks queued]``,
``CFS RB_ROOT: addr`` and its tasks.
"""
from __future__ import annotations

from typing import Dict, List

from dumpfilter.errors import DumpFilterError, FaultError
from dumpfilter.report.rbtree import rb_inorder

_MAX_NODES = 1 << 16


class _Runq:
    def __init__(self, ctx, tasks):
        from dumpfilter.report.tasks import TaskReader

        self.ctx = ctx
        self.tr = TaskReader(ctx)
        t = ctx.btf
        m = t.member_offset
        self.by_addr = tasks.by_address()
        self.rq_rt = m("rq", "rt")
        self.rq_cfs = m("rq", "cfs")
        self.rt_active = m("rt_rq", "active")
        self.prio_queue = t.member("rt_prio_array", "queue")
        self.lh = 16
        self.task_rt = m("task_struct", "rt")
        self.rt_run_list = m("sched_rt_entity", "run_list")
        self.rt_my_q = m("sched_rt_entity", "my_q") if t.has_member("sched_rt_entity", "my_q") else None
        self.timeline = m("cfs_rq", "tasks_timeline")
        self.leftmost = (m("cfs_rq", "tasks_timeline.rb_leftmost")
                         if t.has_member("cfs_rq", "tasks_timeline.rb_leftmost") else None)
        self.cfs_curr = m("cfs_rq", "curr")
        self.task_se = m("task_struct", "se")
        self.run_node = m("sched_entity", "run_node")
        self.se_my_q = m("sched_entity", "my_q") if t.has_member("sched_entity", "my_q") else None
        self.prio = m("task_struct", "prio")

    def task_entry(self, addr: int, prio: int) -> Dict:
        t = self.by_addr.get(addr)
        if t is None:
            t = self.tr.read_task(addr)
        return {"prio": prio, "pid": t.pid, "task": f"{addr:x}", "comm": t.comm}

    def rt_array(self, arr: int, out: List[Dict]) -> None:
        n = self.prio_queue.size // self.lh
        raw = self.ctx.read(arr + self.prio_queue.offset, n * self.lh)
        for i in range(n):
            head = arr + self.prio_queue.offset + i * self.lh
            node = int.from_bytes(raw[i * self.lh:i * self.lh + 8], "little")
            seen = 0
            while node != head:
                seen += 1
                if seen > _MAX_NODES:
                    raise DumpFilterError(f"RT queue {head:#x} loops")
                ent = node - self.rt_run_list
                my_q = self.ctx.u64(ent + self.rt_my_q) if self.rt_my_q is not None else 0
                if my_q:
                    self.rt_array(my_q + self.rt_active, out)
                else:
                    out.append(self.task_entry(ent - self.task_rt, i))
                node = self.ctx.u64(node)

    def cfs(self, cfs_rq: int, out: List[Dict]) -> None:
        if self.se_my_q is not None:
            curr = self.ctx.u64(cfs_rq + self.cfs_curr)
            if curr:
                my_q = self.ctx.u64(curr + self.se_my_q)
                if my_q:
                    self.cfs(my_q, out)
        if self.leftmost is not None and not self.ctx.u64(cfs_rq + self.leftmost):
            return
        for node in rb_inorder(self.ctx, cfs_rq + self.timeline):
            se = node - self.run_node
            my_q = self.ctx.u64(se + self.se_my_q) if self.se_my_q is not None else 0
            if my_q:
                self.cfs(my_q, out)
                continue
            task = se - self.task_se
            out.append(self.task_entry(task, self.ctx.s32(task + self.prio)))


def read_runq(ctx, tasks) -> Dict:
    r = _Runq(ctx, tasks)
    cpus = r.tr.cpumask("__cpu_online_mask")
    out, errors = [], []
    for cpu in cpus:
        rq = r.tr.rq(cpu)
        ent: Dict = {"cpu": cpu, "rq": f"{rq:x}", "rt_array": f"{rq + r.rq_rt + r.rt_active:x}",
                     "cfs_root": f"{rq + r.rq_cfs + r.timeline:x}", "rt": [], "cfs": []}
        try:
            cur = r.tr.rq_curr(cpu)
            ent["current"] = r.task_entry(cur, 0)
            del ent["current"]["prio"]
            r.rt_array(rq + r.rq_rt + r.rt_active, ent["rt"])
            r.cfs(rq + r.rq_cfs, ent["cfs"])
        except FaultError as e:
            errors.append(f"CPU {cpu}: run queue not in the dump ({e.message})")
        out.append(ent)
    return {"cpus": out, "errors": errors}


def _entry(e: Dict) -> str:
    return 'PID: %-5d  TASK: %s  COMMAND: "%s"' % (e["pid"], e["task"], e["comm"])


def runq_lines(rq: Dict) -> List[str]:
    if rq.get("error"):
        return [f"runq: {rq['error']}"]
    out: List[str] = []
    for k, c in enumerate(rq["cpus"]):
        if k:
            out.append("")
        out.append(f"CPU {c['cpu']} RUNQUEUE: {c['rq']}")
        cur = c.get("current")
        out.append("  CURRENT: " + (_entry(cur) if cur else "(unreadable)"))
        out.append(f"  RT PRIO_ARRAY: {c['rt_array']}")
        out.extend("     [%3d] %s" % (e["prio"], _entry(e)) for e in c["rt"])
        if not c["rt"]:
            out.append("     [no tasks queued]")
        out.append(f"  CFS RB_ROOT: {c['cfs_root']}")
        out.extend("     [%3d] %s" % (e["prio"], _entry(e)) for e in c["cfs"])
        if not c["cfs"]:
            out.append("     [no tasks queued]")
    out.extend(f"runq: {e}" for e in rq["errors"])
    return out


__all__ = ["read_runq", "runq_lines"]
