"""The new sections on a real Linux 6.12 dump (crash 8.0.2 cannot open one):
Debian's 6.12 kernel idling under QEMU, dumped with dump-guest-memory
(tests/snapshot612.py, ~1 minute of QEMU, cached). Every value is checked
against drgn reading the same dump with Debian's -dbg vmlinux (DWARF types,
its own unwinder, its own helpers)."""
from __future__ import annotations

import io
import json
import stat

import pytest

from dumpfilter.report import cli

import snapshot612

pytestmark = pytest.mark.realdump


@pytest.fixture(scope="module")
def dump():
    try:
        return snapshot612.snapshot()
    except snapshot612.Unavailable as e:
        pytest.skip(f"no 6.12 dump: {e}")


@pytest.fixture(scope="module")
def prog(dump):
    drgn = pytest.importorskip("drgn")
    try:
        vmlinux = snapshot612.debug_vmlinux()
    except snapshot612.Unavailable as e:
        pytest.skip(f"no 6.12 debug vmlinux: {e}")
    p = drgn.Program()
    p.set_core_dump(str(dump))
    p.load_debug_info([str(vmlinux)])
    return p


@pytest.fixture(scope="module")
def rep(dump):
    buf = io.StringIO()
    rc = cli.run(["--json", "--bt-all", "--foreach-bt", "--kmem", "--runq", "--mount",
                  "--files", "1", "--net", str(dump)], stdout=buf)
    assert rc in (cli.EXIT_OK, cli.EXIT_PARTIAL)
    return json.loads(buf.getvalue())


def _no_errors(sec):
    assert not sec.get("error") and not sec.get("errors"), sec


def _trace(prog, task):
    """(pc, name) of drgn's kernel frames (user-mode frames past the entry
    registers are not part of crash's bt), inlined ones folded into their
    caller; the name is the ELF symbol (kallsyms names labels such as
    common_startup_64 that DWARF calls secondary_startup_64), else DWARF's."""
    out = []
    for f in prog.stack_trace(task):
        if f.is_inline or f.pc < 1 << 63:
            continue
        try:
            name = prog.symbol(f.pc).name
        except LookupError:
            name = f.name
        out.append((f.pc, name))
    return out


def _ours(bt):
    return [(int(f["pc"], 16), f["symbol"]) for f in bt["frames"]]


def _same_stack(prog, bt, want):
    """Our frames are drgn's: same pcs; the same function, or a kallsyms
    label inside drgn's function before the pc (entry_SYSCALL_64_after_hwframe
    in entry_SYSCALL_64). drgn goes on past the user-mode entry registers,
    where crash's bt (and ours) stops."""
    ours = _ours(bt)
    if len(want) > len(ours):
        last = bt["frames"][-1]["regs"]
        assert last and int(last["cs"], 16) & 3 == 3, (ours, want)
        want = want[:len(ours)]
    assert [pc for pc, _ in ours] == [pc for pc, _ in want]
    for (pc, name), (_, dname) in zip(ours, want):
        if name != dname:
            label, func = prog.symbol(name), prog.symbol(dname)
            assert func.address <= label.address <= pc, (name, dname)


def test_release_is_612(rep):
    assert rep["sys"]["values"]["RELEASE"].startswith("6.12.")


def test_bt_all_equals_drgn(rep, prog):
    from drgn.helpers.linux.cpumask import for_each_online_cpu
    from drgn.helpers.linux.sched import cpu_curr

    sec = rep["bt_all"]
    _no_errors(sec)
    want = {cpu: cpu_curr(prog, cpu) for cpu in for_each_online_cpu(prog)}
    assert [b["cpu"] for b in sec["tasks"]] == sorted(want)
    for b in sec["tasks"]:
        task = want[b["cpu"]]
        assert int(b["task"], 16) == task.value_() and b["pid"] == task.pid.value_()
        _same_stack(prog, b, _trace(prog, task))


def test_foreach_bt_equals_drgn(rep, prog):
    from drgn.helpers.linux.pid import for_each_task

    sec = rep["foreach_bt"]
    _no_errors(sec)
    ours = {int(b["task"], 16): b for b in sec["tasks"]}
    tasks = list(for_each_task(prog))
    assert len(tasks) > 30 and {t.value_() for t in tasks} <= set(ours)
    for t in tasks:
        _same_stack(prog, ours[t.value_()], _trace(prog, t))


def test_kmem_equals_drgn(rep, prog):
    from drgn.helpers.linux.list import list_for_each_entry

    sec = rep["kmem"]
    _no_errors(sec)
    v = sec["values"]

    def node_stat(name):
        return prog["vm_node_stat"][prog[name].value_()].counter.value_()

    free = 0
    pgdat = prog["node_data"][0]
    for zone in pgdat.node_zones:
        if zone.present_pages:
            free += zone.vm_stat[prog["NR_FREE_PAGES"].value_()].counter.value_()
    buffers = sum(i.i_data.nrpages.value_() for i in list_for_each_entry(
        "struct inode", prog["blockdev_superblock"].s_inodes.address_of_(), "i_sb_list"))
    total = prog["_totalram_pages"].counter.value_()
    assert v["TOTAL MEM"] == total and v["FREE"] == free and v["USED"] == total - free
    assert v["BUFFERS"] == buffers
    assert v["CACHED"] == node_stat("NR_FILE_PAGES") - node_stat("NR_SWAPCACHE") - buffers
    assert v["SLAB"] == node_stat("NR_SLAB_RECLAIMABLE_B") + node_stat("NR_SLAB_UNRECLAIMABLE_B")
    assert v["COMMIT LIMIT"] == total * prog["sysctl_overcommit_ratio"].value_() // 100
    assert v["COMMITTED"] == max(0, prog["vm_committed_as"].count.value_())
    assert v["TOTAL SWAP"] == v["SWAP USED"] == v["TOTAL HUGE"] == 0
    assert prog["nr_swapfiles"].value_() == 0
    assert prog["hstates"][0].nr_huge_pages.value_() == 0


def test_runq_equals_drgn(rep, prog):
    from drgn import container_of
    from drgn.helpers.linux.rbtree import rbtree_inorder_for_each_entry
    from drgn.helpers.linux.sched import cpu_rq

    sec = rep["runq"]
    _no_errors(sec)
    for c in sec["cpus"]:
        rq = cpu_rq(prog, c["cpu"])
        assert int(c["rq"], 16) == rq.value_()
        assert int(c["rt_array"], 16) == rq.rt.active.address_of_().value_()
        assert int(c["cfs_root"], 16) == rq.cfs.tasks_timeline.address_of_().value_()
        assert c["current"]["pid"] == rq.curr.pid.value_()
        assert c["current"]["comm"] == rq.curr.comm.string_().decode()
        assert len(c["rt"]) == rq.rt.rt_nr_running.value_()
        queued = [se.value_() for se in rbtree_inorder_for_each_entry(
            "struct sched_entity", rq.cfs.tasks_timeline.rb_root.address_of_(), "run_node")]
        assert [int(e["task"], 16) for e in c["cfs"]] == \
            [container_of(prog.object("struct sched_entity", address=se), "struct task_struct",
                          "se").value_() for se in queued]


def test_mount_equals_drgn(rep, prog):
    from drgn.helpers.linux.fs import for_each_mount, mount_dst, mount_fstype, mount_src

    sec = rep["mount"]
    _no_errors(sec)
    want = [(f"{m.value_():x}", f"{m.mnt.mnt_sb.value_():x}", mount_fstype(m).decode(),
             mount_src(m).decode(), mount_dst(m).decode()) for m in for_each_mount(prog)]
    got = [(r["mount"], r["superblock"], r["type"], r["devname"], r["dirname"])
           for r in sec["mounts"]]
    assert got == want and ("tmpfs", "run", "/run") in {w[2:] for w in want}


def test_files_equal_drgn(rep, prog):
    from drgn.helpers.linux.fs import d_path, for_each_file
    from drgn.helpers.linux.pid import find_task

    sec = rep["files"]
    _no_errors(sec)
    task = find_task(prog, 1)
    kinds = {stat.S_IFREG: "REG ", stat.S_IFDIR: "DIR ", stat.S_IFCHR: "CHR ",
             stat.S_IFLNK: "LNK ", stat.S_IFBLK: "BLK ", stat.S_IFSOCK: "SOCK", stat.S_IFIFO: "FIFO"}
    want = []
    for fd, f in for_each_file(task):
        inode = f.f_path.dentry.d_inode
        want.append((fd, f"{f.value_():x}", f"{inode.value_():x}",
                     kinds[stat.S_IFMT(inode.i_mode.value_())], d_path(f.f_path).decode()))
    got = [(x["fd"], x["file"], x["inode"], x["type"], x["path"]) for x in sec["files"]]
    assert got == want and (3, "/tmp/held") in {(w[0], w[4]) for w in want}
    assert sec["root"] == d_path(task.fs.root).decode() == "/"


def test_net_equals_drgn(rep, prog):
    import socket

    from drgn.helpers.linux.net import for_each_netdev

    sec = rep["net"]
    _no_errors(sec)
    want = []
    for dev in for_each_netdev(prog):
        addrs = []
        ind = dev.ip_ptr
        ifa = ind.ifa_list if ind else None
        while ifa:
            addrs.append(socket.inet_ntoa(ifa.ifa_address.value_().to_bytes(4, "little")))
            ifa = ifa.ifa_next
        want.append((f"{dev.value_():x}", dev.name.string_().decode(), addrs))
    got = [(d["net_device"], d["name"], d["ipv4"]) for d in sec["devices"]]
    assert got == want and ("lo", ["127.0.0.1"]) in [(w[1], w[2]) for w in want]
