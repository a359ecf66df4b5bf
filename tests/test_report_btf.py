"""BTF parsing: a synthetic blob with every kind, corruption handling, and
the real kernel's BTF checked against every SIZE()/OFFSET() the dump's
VMCOREINFO exports (independent, compiler-computed values)."""
from __future__ import annotations

import struct
import time

import pytest

from dumpfilter.report import btf as B
from dumpfilter.report.btf import Btf, BtfError, BtfLookupError


class Builder:
    def __init__(self):
        self.strings = bytearray(b"\0")
        self.types = bytearray()
        self.n = 0

    def s(self, text):
        if not text:
            return 0
        off = len(self.strings)
        self.strings += text.encode() + b"\0"
        return off

    def add(self, name, kind, vlen=0, st=0, trailer=b"", kflag=0):
        self.types += struct.pack("<III", self.s(name), (kflag << 31) | (kind << 24) | vlen, st)
        self.types += trailer
        self.n += 1
        return self.n

    def blob(self, magic=0xEB9F, version=1):
        hdr = struct.pack("<HBBIIIII", magic, version, 0, 24, 0, len(self.types),
                          len(self.types), len(self.strings))
        return hdr + bytes(self.types) + bytes(self.strings)


def _sample():
    b = Builder()
    t_int = b.add("int", B.KIND_INT, st=4, trailer=struct.pack("<I", (1 << 24) | 32))  # 1
    t_uint = b.add("unsigned int", B.KIND_INT, st=4, trailer=struct.pack("<I", 32))  # 2
    t_long = b.add("long unsigned int", B.KIND_INT, st=8, trailer=struct.pack("<I", 64))  # 3
    t_char = b.add("char", B.KIND_INT, st=1, trailer=struct.pack("<I", (2 << 24) | 8))  # 4
    t_fwd = b.add("node", B.KIND_FWD)  # 5: forward declaration
    t_node = 6
    t_ptr = b.add("", B.KIND_PTR, st=t_node)  # 6 -> fixed below? keep simple
    assert t_ptr == 6
    # 7: struct list_head { struct list_head *next, *prev; }
    t_lh_ptr = b.add("", B.KIND_PTR, st=8)  # 7
    t_lh = b.add("list_head", B.KIND_STRUCT, vlen=2, st=16,
                 trailer=struct.pack("<III", b.s("next"), t_lh_ptr, 0)
                 + struct.pack("<III", b.s("prev"), t_lh_ptr, 64))  # 8
    t_arr = b.add("", B.KIND_ARRAY, trailer=struct.pack("<III", t_char, t_int, 16))  # 9
    t_td = b.add("u32", B.KIND_TYPEDEF, st=t_uint)  # 10
    t_const = b.add("", B.KIND_CONST, st=t_td)  # 11
    t_vol = b.add("", B.KIND_VOLATILE, st=t_const)  # 12
    # 13: anonymous union { u32 a; long b; }
    t_anon = b.add("", B.KIND_UNION, vlen=2, st=8,
                   trailer=struct.pack("<III", b.s("ua"), t_td, 0)
                   + struct.pack("<III", b.s("ub"), t_long, 0))
    # 14: struct task (kind_flag: bitfields)
    members = [
        ("state", t_vol, 0, 0),
        ("flag_a", t_uint, 1, 32),
        ("flag_b", t_uint, 3, 33),
        ("", t_anon, 0, 64),
        ("tasks", t_lh, 0, 128),
        ("comm", t_arr, 0, 256),
        ("parent", t_ptr, 0, 384),
    ]
    tr = b"".join(struct.pack("<III", b.s(n), t, (bs << 24) | off) for n, t, bs, off in members)
    t_task = b.add("task", B.KIND_STRUCT, vlen=len(members), st=56, trailer=tr, kflag=1)
    b.types[12 * 5 + 4 * 4 + 8: 12 * 5 + 4 * 4 + 12] = struct.pack("<I", t_task)  # PTR 6 -> task
    enum = b.add("color", B.KIND_ENUM, vlen=2, st=4,
                 trailer=struct.pack("<Ii", b.s("RED"), 0) + struct.pack("<Ii", b.s("BLUE"), -1),
                 kflag=1)
    e64 = b.add("big", B.KIND_ENUM64, vlen=1, st=8,
                trailer=struct.pack("<III", b.s("HUGE"), 1, 2))
    proto = b.add("", B.KIND_FUNC_PROTO, vlen=1, st=t_int,
                  trailer=struct.pack("<II", b.s("x"), t_int))
    b.add("myfunc", B.KIND_FUNC, vlen=1, st=proto)
    var = b.add("myvar", B.KIND_VAR, st=t_task, trailer=struct.pack("<I", 1))
    b.add(".data", B.KIND_DATASEC, vlen=1, st=56, trailer=struct.pack("<III", var, 0, 56))
    b.add("double", B.KIND_FLOAT, st=8)
    b.add("tag", B.KIND_DECL_TAG, st=t_task, trailer=struct.pack("<i", -1))
    b.add("user", B.KIND_TYPE_TAG, st=t_int)
    b.add("", B.KIND_RESTRICT, st=t_ptr)
    return b, dict(task=t_task, enum=enum, e64=e64, fwd=t_fwd)


def test_every_kind_parses():
    b, ids = _sample()
    btf = Btf(b.blob())
    assert len(btf) == b.n
    assert {btf.kind_name(i) for i in range(1, b.n + 1)} >= set(B.KIND_NAMES.values()) - {"UNKN"}
    assert btf.find_struct("task") == ids["task"]
    assert btf.sizeof("task") == 56
    lay = btf.struct_layout("task")
    assert lay["flag_b"].bit_offset == 33 and lay["flag_b"].bitfield_size == 3
    assert lay["ua"].offset == 8 and lay["ub"].size == 8  # through the anonymous union
    assert btf.member_offset("task", "tasks.prev") == 24
    assert btf.member("task", "comm[3]").offset == 35
    assert btf.member("task", "comm").size == 16
    assert btf.member("task", "state").size == 4  # through volatile/const/typedef
    assert btf.enum_values("color") == {"RED": 0, "BLUE": -1}
    assert btf.enum_values("big") == {"HUGE": 1 | 2 << 32}
    assert btf.type_name(btf.member("task", "parent").type_id) == "struct task *"
    assert btf.find("node") == ids["fwd"]


def test_lookup_errors_are_clear():
    b, _ = _sample()
    btf = Btf(b.blob())
    with pytest.raises(BtfLookupError, match="no member 'nope'"):
        btf.member_offset("task", "nope")
    with pytest.raises(BtfLookupError, match="no struct"):
        btf.member_offset("nothere", "x")
    with pytest.raises(BtfLookupError):
        btf.member("task", "comm[99]")
    assert not btf.has_member("task", "tasks.next.bogus")


@pytest.mark.parametrize("mutate,match", [
    (lambda blob: blob[:10], "shorter than its header"),
    (lambda blob: b"\x00\x00" + blob[2:], "magic"),
    (lambda blob: blob[:2] + b"\x02" + blob[3:], "version"),
    (lambda blob: blob[:-40], "exceed"),
    (lambda blob: blob[:-1] + b"x", "NUL"),
])
def test_corrupt_header(mutate, match):
    b, _ = _sample()
    with pytest.raises(BtfError, match=match):
        Btf(mutate(b.blob()))


def test_corrupt_types_never_indexerror():
    b, _ = _sample()
    good = b.blob()
    # Flip every byte of the type section in turn (to a few values): the
    # parser and a full walk either succeed or raise BtfError.
    for pos in range(24, 24 + len(b.types), 3):
        for val in (0x00, 0x7F, 0xFF):
            blob = bytearray(good)
            blob[pos] = val
            try:
                btf = Btf(bytes(blob))
                for tid in range(1, len(btf) + 1):
                    btf.name(tid)
                    if btf.kind(tid) in (B.KIND_STRUCT, B.KIND_UNION):
                        btf.members(tid)
                    if btf.kind(tid) in (B.KIND_ENUM, B.KIND_ENUM64):
                        btf.enum_values(tid)
                btf.struct_layout("task") if btf.find("task") else None
            except BtfError:
                pass


def test_unknown_kind():
    b = Builder()
    b.add("x", 31)
    with pytest.raises(BtfError, match="unknown kind"):
        Btf(b.blob())


def test_dangling_reference():
    b = Builder()
    b.add("", B.KIND_PTR, st=99)
    with pytest.raises(BtfError, match="beyond the last type"):
        Btf(b.blob())


# --------------------------------------------------------------------------- real dumps

@pytest.fixture(scope="module")
def ctx(report_ctx):
    return report_ctx


@pytest.mark.realdump
def test_real_btf_loads_fast(ctx):
    ctx.kallsyms
    t = time.perf_counter()
    btf = ctx.btf
    assert time.perf_counter() - t < 2.0
    assert len(btf) > 10_000
    assert btf.sizeof("task_struct") > 1000


@pytest.mark.realdump
def test_real_btf_agrees_with_vmcoreinfo(ctx):
    """Every OFFSET(struct.member) and SIZE(struct) the kernel exported."""
    btf = ctx.btf
    checked = 0
    for key, off in ctx.info.offsets.items():
        st, member = key.split(".", 1)
        if not btf.has_struct(st):
            continue
        assert btf.member_offset(st, member) == off, key
        checked += 1
    for st, size in ctx.info.sizes.items():
        if btf.has_struct(st):
            assert btf.sizeof(st) == size, st
            checked += 1
    assert checked >= 60


@pytest.mark.realdump
def test_real_task_struct_paths(ctx):
    btf = ctx.btf
    assert btf.member_offset("task_struct", "tasks.next") == btf.member_offset("task_struct", "tasks")
    assert btf.member_offset("task_struct", "tasks.prev") == btf.member_offset("task_struct", "tasks") + 8
    assert btf.member("task_struct", "comm").size == 16
    lay = btf.struct_layout("task_struct")
    assert any(m.bitfield_size for m in lay.values())  # sched_reset_on_fork etc.
