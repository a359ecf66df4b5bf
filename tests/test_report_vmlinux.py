"""--vmlinux: symbols from the vmlinux .symtab (KASLR-relocated), types from
its .BTF or DWARF, module symbols in bt, and the "pass --vmlinux" messages
for dumps without kallsyms/BTF.

Oracles: the report of the same dump from its own kallsyms/BTF (itself
checked against crash's reference), the dump's kallsyms for the relocated
.symtab, and for DWARF a C program compiled alongside that prints
offsetof/sizeof and bitfield positions."""
from __future__ import annotations

import io
import json
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dumpfilter.errors import DumpFilterError, VmcoreInfoError
from dumpfilter.report import cli
from dumpfilter.report.backtrace import backtrace, format_backtrace
from dumpfilter.report.context import NEED_VMLINUX, ReportContext, open_source
from dumpfilter.report.kallsyms import KallsymsTable
from dumpfilter.report.modules import ModuleSymbols
from dumpfilter.report.render import render_text
from dumpfilter.vmcoreinfo import VmcoreInfo

from fakememory import FakeMemory

SECTIONS = {"sys", "ps", "bt"}


def _strip_kallsyms(raw: bytes) -> VmcoreInfo:
    """VMCOREINFO as a pre-6.0 kernel writes it: no SYMBOL(kallsyms_*)."""
    return VmcoreInfo.parse(b"\n".join(ln for ln in raw.split(b"\n")
                                       if not ln.startswith(b"SYMBOL(kallsyms_")))


class NoDumpBtf(ReportContext):
    """A dump whose kernel was built without CONFIG_DEBUG_INFO_BTF."""

    def _dump_btf(self):
        raise VmcoreInfoError("kallsyms has no __start_BTF/__stop_BTF (test)")


def _report(ctx, path):
    rep = cli.collect(ctx, [str(path)], SECTIONS, None, "UTC")
    return rep, render_text(rep, SECTIONS)


# --------------------------------------------------------------------------- real dump

@pytest.fixture(scope="module")
def normal_report(kdump_vmcore):
    with ReportContext.open(str(kdump_vmcore)) as ctx:
        return _report(ctx, kdump_vmcore)


@pytest.fixture(scope="module")
def vmlinux_report(kdump_vmcore, report_vmlinux):
    src = open_source(str(kdump_vmcore))
    t = time.perf_counter()
    ctx = NoDumpBtf(src, info=_strip_kallsyms(src.vmcoreinfo_raw), vmlinux=report_vmlinux)
    try:
        rep, text = _report(ctx, kdump_vmcore)
    finally:
        ctx.close()
    return rep, text, time.perf_counter() - t


@pytest.mark.realdump
def test_vmlinux_report_equals_dump_report(normal_report, vmlinux_report, report_vmlinux):
    rep, text, elapsed = vmlinux_report
    assert rep["debuginfo"]["symbols"] == "vmlinux .symtab"
    assert rep["debuginfo"]["types"] == "vmlinux .BTF"
    assert normal_report[0]["debuginfo"]["symbols"] == "dump kallsyms"
    assert rep["errors"] == [] and normal_report[0]["errors"] == []
    assert text == normal_report[1]  # banner, FILTERED, bt and ps, line for line
    # .symtab + .BTF of the 630 MB vmlinux: well under a few seconds.
    t = report_vmlinux.timings
    assert t["symtab"] + t["symbols"] + t["btf"] < 5.0, t
    assert elapsed < 30


@pytest.mark.realdump
def test_vmlinux_banner_equals_crash(vmlinux_report, reference_dir):
    crash = (reference_dir / "crash-vmcore.txt").read_text().splitlines()
    ours = vmlinux_report[1].splitlines()
    for label in ("CPUS", "UPTIME", "LOAD AVERAGE", "MACHINE", "MEMORY", "PANIC"):
        want = next(ln for ln in crash if ln.startswith(f"{label:>12}: "))
        assert want in ours
    bt_head = next(ln for ln in crash if ln.startswith("PID: "))
    assert bt_head in ours


@pytest.mark.realdump
def test_symtab_agrees_with_dump_kallsyms(report_raw_ctx, report_vmlinux):
    ks = report_raw_ctx.kallsyms
    vt = report_vmlinux.symbols(report_raw_ctx.info)
    assert vt.address("_stext") == report_raw_ctx.info.symbol("_stext")
    wrong = [s.name for s in ks if vt.address(s.name) != ks.address(s.name)]
    assert wrong == []
    # Aliases are ordered like kallsyms: nearly every address gets the
    # same name (the rest are symbols kallsyms leaves out).
    text = [s for s in ks if s.type in "tT"]
    same = sum(vt.lookup(s.address) == ks.lookup(s.address) for s in text)
    assert same >= len(text) - 10


@pytest.mark.realdump
def test_wrong_vmlinux_is_refused(report_raw_ctx, report_vmlinux):
    from dumpfilter.report.vmlinux import VmlinuxError

    raw = report_raw_ctx.info.raw
    moved = raw.replace(b"KERNELOFFSET=", b"KERNELOFFSET=1")
    with pytest.raises(VmlinuxError, match="_stext"):
        report_vmlinux.symbols(VmcoreInfo.parse(moved))
    bid = report_raw_ctx.info.build_id
    other = raw.replace(bid.encode(), (("0" if bid[0] != "0" else "1") + bid[1:]).encode())
    with pytest.raises(VmlinuxError, match="build-id"):
        report_vmlinux.symbols(VmcoreInfo.parse(other))


def _run(args):
    buf = io.StringIO()
    rc = cli.run([*map(str, args)], stdout=buf)
    return rc, buf.getvalue()


@pytest.mark.realdump
def test_cli_vmlinux_flags(kdump_vmcore, debug_vmlinux, normal_report):
    rc, out = _run(["--json", "--vmlinux", debug_vmlinux, kdump_vmcore])
    rep = json.loads(out)
    assert rc == cli.EXIT_OK
    assert rep["debuginfo"]["symbols"] == "dump kallsyms"  # the dump comes first
    assert rep["kernel"]["text"] == str(debug_vmlinux)
    rc, out = _run(["--json", "--utc", "--prefer-vmlinux", "--vmlinux", debug_vmlinux,
                    kdump_vmcore])
    rep = json.loads(out)
    assert rc == cli.EXIT_OK
    assert (rep["debuginfo"]["symbols"], rep["debuginfo"]["types"]) == \
        ("vmlinux .symtab", "vmlinux .BTF")
    assert rep["sys"]["values"] == normal_report[0]["sys"]["values"]
    assert rep["ps"]["rows"] == normal_report[0]["ps"]["rows"]


def test_cli_vmlinux_usage_errors(tmp_path):
    with pytest.raises(DumpFilterError, match="--prefer-vmlinux needs"):
        cli.run(["--prefer-vmlinux", str(tmp_path / "x")], stdout=io.StringIO())
    with pytest.raises(DumpFilterError, match="no such file"):
        cli.run(["--vmlinux", str(tmp_path / "none"), str(tmp_path / "x")], stdout=io.StringIO())


# --------------------------------------------------------------------------- no kallsyms/BTF

@pytest.fixture(scope="module")
def synthetic_dump(tmp_path_factory):
    from dumpfilter.testing.synthetic.kernel import build_sample

    path = tmp_path_factory.mktemp("syn") / "syn.vmcore"
    build_sample(str(path))
    return path


def test_no_btf_dump_says_pass_vmlinux(synthetic_dump):
    r = subprocess.run([sys.executable, "-m", "dumpfilter.report", "--ps", "--bt", "--mod",
                        str(synthetic_dump)], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == cli.EXIT_PARTIAL
    assert "Traceback" not in r.stderr
    out = r.stdout.splitlines()
    for prefix in ("bt: ", "ps: ", "mod: "):
        line = next(ln for ln in out if ln.startswith(prefix))
        assert "no BTF or kallsyms in this dump" in line and line.endswith(NEED_VMLINUX)
    partial = [ln for ln in r.stderr.splitlines() if ln.startswith("dumpfilter-report: partial: ")]
    for sec in ("tasks", "bt", "mod"):
        assert any(ln.startswith(f"dumpfilter-report: partial: {sec}: ") and NEED_VMLINUX in ln
                   for ln in partial), sec


def test_no_btf_dump_banner(synthetic_dump):
    r = subprocess.run([sys.executable, "-m", "dumpfilter.report", str(synthetic_dump)],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == cli.EXIT_PARTIAL
    b = {m.group(1): m.group(2) for ln in r.stdout.splitlines()
         for m in [re.match(r"^\s*([A-Z][A-Z ]*): (.*)$", ln)] if m}
    for label in ("TASKS", "UPTIME", "LOAD AVERAGE", "MEMORY", "PID"):
        assert b[label].startswith("(unavailable: ") and f"{NEED_VMLINUX})" in b[label], label
    assert "no BTF or kallsyms in this dump" in b["TASKS"]
    assert b["RELEASE"] and "unavailable" not in b["RELEASE"]  # VMCOREINFO alone still works
    assert f"TASKS: task list: no BTF or kallsyms in this dump" in r.stderr


# --------------------------------------------------------------------------- DWARF

C_TYPES = r"""
#include <stddef.h>
struct list_head { struct list_head *next, *prev; };
struct thread_info { unsigned long flags; unsigned long syscall_work; unsigned int status; unsigned int cpu; };
struct signal_struct { int nr_threads; struct list_head thread_head; };
typedef struct { int counter; } atomic_t;
struct orc_entry { signed short sp_offset; signed short bp_offset;
                   unsigned sp_reg:4; unsigned bp_reg:4; unsigned type:3; unsigned signal:1; } __attribute__((packed));
enum { MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES, NR_MM_COUNTERS };
struct mm_rss_stat { long count[NR_MM_COUNTERS]; };
struct task_struct {
    struct thread_info thread_info;
    unsigned int __state;
    void *stack;
    atomic_t usage;
    char pad0[37];
    struct list_head tasks;
    union { unsigned long anon_u; struct { int anon_a; short anon_b; }; };
    int exit_state;
    int pid, tgid;
    struct task_struct *real_parent;
    struct list_head thread_node;
    struct mm_rss_stat rss_stat;
    char comm[16];
    struct signal_struct *signal;
    int grid[3][5];
    unsigned int flag_a:3, flag_b:9, flag_c:1;
};
struct rq { int nr_running; struct task_struct *curr, *idle; };
"""

#: (struct, member path, C expression of the member) for the oracle.
MEMBERS = [
    ("list_head", "next", "next"), ("list_head", "prev", "prev"),
    ("task_struct", "thread_info.cpu", "thread_info.cpu"), ("task_struct", "__state", "__state"),
    ("task_struct", "tasks", "tasks"), ("task_struct", "tasks.prev", "tasks.prev"),
    ("task_struct", "anon_b", "anon_b"), ("task_struct", "anon_u", "anon_u"),
    ("task_struct", "pid", "pid"), ("task_struct", "tgid", "tgid"),
    ("task_struct", "real_parent", "real_parent"), ("task_struct", "thread_node", "thread_node"),
    ("task_struct", "rss_stat.count", "rss_stat.count"),
    ("task_struct", "rss_stat.count[2]", "rss_stat.count[2]"),
    ("task_struct", "comm", "comm"), ("task_struct", "signal", "signal"),
    ("task_struct", "grid[2][3]", "grid[2][3]"), ("task_struct", "grid[1]", "grid[1]"),
    ("task_struct", "exit_state", "exit_state"), ("task_struct", "usage.counter", "usage.counter"),
    ("signal_struct", "thread_head", "thread_head"), ("rq", "curr", "curr"), ("rq", "idle", "idle"),
]
BITFIELDS = [("orc_entry", "sp_reg"), ("orc_entry", "bp_reg"), ("orc_entry", "type"),
             ("orc_entry", "signal"), ("task_struct", "flag_a"), ("task_struct", "flag_b"),
             ("task_struct", "flag_c")]
SIZES = ["list_head", "thread_info", "task_struct", "orc_entry", "rq", "signal_struct"]


def _oracle_source() -> str:
    lines = [C_TYPES, "#include <stdio.h>", "#include <string.h>", "int main(void) {"]
    for s in SIZES:
        lines.append(f'printf("size {s} %zu\\n", sizeof(struct {s}));')
    for s, path, expr in MEMBERS:
        lines.append(f'printf("member {s} {path} %zu %zu\\n", offsetof(struct {s}, {expr}), '
                     f"sizeof(((struct {s} *)0)->{expr}));")
    for s, f in BITFIELDS:
        # Set the field to all ones in a zeroed struct: its bits are the set ones.
        lines.append(f"{{ struct {s} v; unsigned char b[sizeof v]; int i, lo = -1, n = 0;"
                     f" memset(&v, 0, sizeof v); v.{f} = -1; memcpy(b, &v, sizeof v);"
                     f" for (i = 0; i < (int)(8 * sizeof v); i++) if (b[i / 8] >> (i % 8) & 1)"
                     f" {{ if (lo < 0) lo = i; n++; }}"
                     f' printf("bits {s} {f} %d %d\\n", lo, n); }}')
    lines.append('printf("enum MM_ANONPAGES %d\\n", MM_ANONPAGES);')
    lines.append('printf("enum NR_MM_COUNTERS %d\\n", NR_MM_COUNTERS);')
    lines.append("return 0; }")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not installed: cannot build the DWARF test objects")
    d = tmp_path_factory.mktemp("dwarf")
    (d / "oracle.c").write_text(_oracle_source())
    subprocess.run([gcc, "-O0", "-o", str(d / "oracle"), str(d / "oracle.c")], check=True,
                   capture_output=True)
    out = subprocess.run([str(d / "oracle")], check=True, capture_output=True, text=True).stdout
    want = {"size": {}, "member": {}, "bits": {}, "enum": {}}
    for ln in out.splitlines():
        kind, *rest = ln.split()
        if kind == "size":
            want["size"][rest[0]] = int(rest[1])
        elif kind == "member":
            want["member"][(rest[0], rest[1])] = (int(rest[2]), int(rest[3]))
        elif kind == "bits":
            want["bits"][(rest[0], rest[1])] = (int(rest[2]), int(rest[3]))
        else:
            want["enum"][rest[0]] = int(rest[1])
    return d, want


@pytest.fixture(scope="module", params=["-gdwarf-5", "-gdwarf-4", "-gdwarf-2 -gstrict-dwarf"])
def dwarf_obj(oracle, request):
    pytest.importorskip("elftools", reason="pyelftools not installed: DWARF types unavailable")
    d, _want = oracle
    src = d / "types.c"
    src.write_text(C_TYPES + "struct task_struct *use_task; struct rq *use_rq;"
                   " struct orc_entry use_orc; struct mm_rss_stat use_rss;\n")
    obj = d / ("types" + re.sub(r"\W+", "_", request.param) + ".o")
    subprocess.run(["gcc", *request.param.split(), "-c", "-o", str(obj), str(src)], check=True,
                   capture_output=True)
    return obj


def test_dwarf_layouts_equal_c_oracle(oracle, dwarf_obj):
    from dumpfilter.report.dwarf import DwarfTypes

    _d, want = oracle
    types = DwarfTypes(str(dwarf_obj))
    try:
        for s, size in want["size"].items():
            assert types.sizeof(s) == size, s
            assert types.has_struct(s)
        for (s, path), (off, size) in want["member"].items():
            m = types.member(s, path)
            assert (m.offset, m.size) == (off, size), (s, path)
            assert types.has_member(s, path)
        for (s, f), (lo, n) in want["bits"].items():
            m = types.member(s, f)
            assert (m.bit_offset, m.bitfield_size) == (lo, n), (s, f)
            by_name = {x.name: x for x in types.members(s)}
            assert (by_name[f].bit_offset, by_name[f].bitfield_size) == (lo, n)
        for name, v in want["enum"].items():
            assert types.enumerator(name) == v
        assert not types.has_struct("no_such_struct")
        assert not types.has_member("task_struct", "no_such_member")
        assert types.enumerator("NO_SUCH_ENUMERATOR") is None
    finally:
        types.close()


def test_dwarf_feeds_task_and_orc_layouts(oracle, dwarf_obj):
    """tasks.py and backtrace.py use the DWARF source unchanged."""
    from dumpfilter.report.dwarf import DwarfTypes
    from dumpfilter.report.tasks import _Layout

    _d, want = oracle
    types = DwarfTypes(str(dwarf_obj))
    try:
        lay = _Layout(types)
        m = want["member"]
        assert lay.task_size == want["size"]["task_struct"]
        assert (lay.tasks, lay.pid, lay.tgid, lay.comm, lay.real_parent) == tuple(
            m[("task_struct", k)][0] for k in ("tasks", "pid", "tgid", "comm", "real_parent"))
        assert lay.comm_len == 16 and lay.cpu == m[("task_struct", "thread_info.cpu")][0]
        assert lay.state == m[("task_struct", "__state")][0] and lay.state_size == 4
        assert lay.thread_mode == "thread_head"
        assert lay.thread_head == m[("signal_struct", "thread_head")][0]
        assert (lay.rq_curr, lay.rq_idle) == (m[("rq", "curr")][0], m[("rq", "idle")][0])
    finally:
        types.close()


def test_vmlinux_without_btf_uses_dwarf(dwarf_obj):
    from dumpfilter.report.vmlinux import Vmlinux

    v = Vmlinux(str(dwarf_obj))
    try:
        assert not v.has_btf and v.has_dwarf
        types, desc = v.types()
        assert desc == "vmlinux DWARF"
        assert types.has_struct("task_struct")
    finally:
        v.close()


def test_dwarf_without_pyelftools_says_so(monkeypatch, tmp_path):
    from dumpfilter.report.dwarf import DwarfError, DwarfTypes

    monkeypatch.setitem(sys.modules, "elftools.elf.elffile", None)
    with pytest.raises(DwarfError, match="pip install pyelftools"):
        DwarfTypes(str(tmp_path / "whatever"))


# --------------------------------------------------------------------------- module symbols

MOD_BASE = 0xFFFFFFFFC0200000


def test_module_symbols_lookup():
    ms = ModuleSymbols([("alpha", MOD_BASE, 0x2000, [("a_init", MOD_BASE), ("a_work", MOD_BASE + 0x400),
                                                      ("elsewhere", 0x1234)]),
                        ("beta", MOD_BASE + 0x10000, 0x1000, [("b_fn", MOD_BASE + 0x10010)])])
    assert ms.lookup(MOD_BASE + 0x410) == ("a_work", 0x10, "alpha")
    assert ms.lookup(MOD_BASE + 0x3FF) == ("a_init", 0x3FF, "alpha")
    assert ms.lookup(MOD_BASE + 0x2000) is None  # past alpha's text
    assert ms.lookup(MOD_BASE + 0x10008) is None and ms.module_at(MOD_BASE + 0x10008) == "beta"
    assert ms.lookup(MOD_BASE + 0x10011) == ("b_fn", 1, "beta")


class _FakeCtx:
    """Just what backtrace() needs: memory, kernel symbols without ORC
    tables, module symbols."""

    symbolize = ReportContext.symbolize

    def __init__(self, mem, ks, mods):
        self.mem, self.kallsyms, self.module_symbols = mem, ks, mods
        self.btf = None

    def read(self, a, n):
        return self.mem.read(a, n)

    def u64(self, a):
        return struct.unpack("<Q", self.read(a, 8))[0]


def test_bt_names_module_frames_like_crash():
    """A stack with a return address into module code and one into the
    kernel: the module frame reads ``func at addr [module]`` (crash's x86_64
    bt format), the kernel frame has no suffix."""
    ktext = 0xFFFFFFFF81000000
    ks = KallsymsTable(["_stext", "kernel_caller", "_etext"], ["T", "T", "T"],
                       [ktext, ktext + 0x100, ktext + 0x1000])
    mods = ModuleSymbols([("mymod", MOD_BASE, 0x1000, [("mod_worker", MOD_BASE + 0x80),
                                                        ("mod_leaf", MOD_BASE + 0x200)])])
    mem = FakeMemory()
    call = b"\x90\x90\xe8\x00\x00\x00\x00"  # ... call rel32; the return address follows
    mod_ret, k_ret = MOD_BASE + 0x80 + 0x27, ktext + 0x100 + 0x19
    mem.add(mod_ret - 7, call)
    mem.add(k_ret - 7, call)
    rsp = 0xFFFFC90000013F00
    stack = bytearray(0x100)
    struct.pack_into("<Q", stack, 0x10, mod_ret)
    struct.pack_into("<Q", stack, 0x38, 0xDEAD)  # not an address
    struct.pack_into("<Q", stack, 0x40, k_ret)
    mem.add(rsp, stack)
    ctx = _FakeCtx(mem, ks, mods)
    bt = backtrace(ctx, 7, 0xFFFF888000001000, 0, "worker", {"rip": MOD_BASE + 0x205,
                                                              "rsp": rsp, "rbp": 0})
    lines = format_backtrace(bt)
    assert lines[1] == f" #0 [{rsp:016x}] mod_leaf at {MOD_BASE + 0x205:x} [mymod]"
    assert lines[2] == f" #1 [{rsp + 0x10:016x}] mod_worker at {mod_ret:x} [mymod]"
    assert lines[3] == f" #2 [{rsp + 0x40:016x}] kernel_caller at {k_ret:x}"
    assert [f.module for f in bt.frames] == ["mymod", "mymod", None]


@pytest.mark.realdump
def test_real_module_symbols(report_raw_ctx):
    ctx = report_raw_ctx
    from dumpfilter.report.modules import read_modules

    mods = read_modules(ctx, with_symbols=True)["modules"]
    ms = ctx.module_symbols
    assert ms is not None and len(ms) == len(mods)
    m = next(m for m in mods if m["symbols"])
    base, size = int(m["base"], 16), m["size"]
    name, addr = next((n, a) for n, a in sorted(m["symbols"], key=lambda x: x[1])
                      if base <= a < base + size and not n.startswith("_note"))
    got = ctx.symbolize(addr + 1)
    assert got[1] == m["name"]
    assert got[0].endswith("+0x1")
    assert ctx.symbolize(ctx.kallsyms.require("panic") + 4) == ("panic+0x4", None)
