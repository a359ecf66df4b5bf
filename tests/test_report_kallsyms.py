"""kallsyms decoding: synthetic tables for every address encoding, and the
real dumps checked against groundtruth.json, crash's bt/ps output and the
call trace in dmesg.txt."""
from __future__ import annotations

import re
import struct
import time

import pytest

from dumpfilter.errors import FaultError, VmcoreInfoError
from dumpfilter.report.kallsyms import KallsymsError, KallsymsTable, load_kallsyms
from dumpfilter.vmcoreinfo import VmcoreInfo

from fakememory import FakeMemory


# --------------------------------------------------------------------------- fake memory


def _tables(symbols, long_first=False):
    """Build kallsyms_names / token tables for [(type+name)] with one
    token per character (token i = chr(i) for printable i, token 1 = "_s")."""
    tokens = [b"?"] * 256
    for i in range(0x20, 0x7F):
        tokens[i] = bytes([i])
    tokens[1] = b"_s"
    table = b""
    index = []
    for t in tokens:
        index.append(len(table))
        table += t + b"\0"
    names = b""
    for full in symbols:
        enc = full.encode().replace(b"_s", b"\x01")
        n = len(enc)
        if n >= 128:
            names += bytes([0x80 | (n & 0x7F), n >> 7])
        else:
            names += bytes([n])
        names += enc
    return names, table, struct.pack("<256H", *index)


NAMES_AT = 0xFFFFFFFF81800000
TABLE_AT = 0xFFFFFFFF81900000
INDEX_AT = 0xFFFFFFFF81910000
NUM_AT = 0xFFFFFFFF817FFFF8
OFFS_AT = 0xFFFFFFFF81700000
BASE_AT = 0xFFFFFFFF817FFFF0
STEXT = 0xFFFFFFFF81000000


def _build(symbols, addresses, encoding):
    names, table, index = _tables(symbols)
    mem = FakeMemory()
    mem.add(NAMES_AT, names)
    mem.add(TABLE_AT, table + b"\0" * 256)
    mem.add(INDEX_AT, index)
    mem.add(NUM_AT, struct.pack("<Q", len(symbols)))
    vi = [f"SYMBOL(kallsyms_names)={NAMES_AT:x}", f"SYMBOL(kallsyms_token_table)={TABLE_AT:x}",
          f"SYMBOL(kallsyms_token_index)={INDEX_AT:x}", f"SYMBOL(kallsyms_num_syms)={NUM_AT:x}",
          f"SYMBOL(_stext)={STEXT:x}"]
    base = 0xFFFFFFFF81000000
    if encoding == "absolute":
        mem.add(OFFS_AT, struct.pack("<%dQ" % len(addresses), *addresses))
        vi.append(f"SYMBOL(kallsyms_addresses)={OFFS_AT:x}")
    else:
        if encoding == "base-relative":
            vals = [a - base for a in addresses]
        elif encoding == "absolute-percpu":
            vals = [a if a < 1 << 31 else base - 1 - a for a in addresses]
        else:  # place-relative
            vals = [a - (OFFS_AT + 4 * i) for i, a in enumerate(addresses)]
        mem.add(OFFS_AT, struct.pack("<%di" % len(vals), *vals))
        vi.append(f"SYMBOL(kallsyms_offsets)={OFFS_AT:x}")
        if encoding != "place-relative":
            mem.add(BASE_AT, struct.pack("<Q", base))
            vi.append(f"SYMBOL(kallsyms_relative_base)={BASE_AT:x}")
    return mem, VmcoreInfo.parse("\n".join(vi).encode() + b"\n")


LONG = "t" + "a_very_long_rust_symbol_" * 7  # > 127 tokens: two-byte length


@pytest.mark.parametrize("encoding", ["absolute", "base-relative", "absolute-percpu", "place-relative"])
def test_synthetic_encodings(encoding):
    syms = ["T_stext", "tlocal_func", "Dsome_data", LONG, "b_sbss_thing"]
    addrs = [STEXT, STEXT + 0x40, STEXT + 0x1000, STEXT + 0x1100, STEXT + 0x2000]
    if encoding == "absolute-percpu":
        syms = ["Afixed_percpu_data", "Acurrent_task"] + syms
        addrs = [0, 0x1FB80] + addrs
    mem, info = _build(syms, addrs, encoding)
    ks = load_kallsyms(mem, info)
    assert ks.encoding == encoding
    assert len(ks) == len(syms)
    assert ks.address("_stext") == STEXT
    assert ks.address(LONG[1:]) == STEXT + 0x1100
    assert ks.type_of("some_data") == "D"
    assert ks.address("_sbss_thing") == STEXT + 0x2000  # "_s" token expanded
    assert ks.lookup(STEXT + 0x44) == ("local_func", 4)
    assert ks.lookup(STEXT - 1) in (None, ("current_task", STEXT - 1 - 0x1FB80)) or encoding == "absolute-percpu"
    assert ks.symbol("local_func").size == 0x1000 - 0x40
    assert ks.format_address(STEXT + 0x1000) == "some_data"


def test_wrong_stext_is_reported():
    mem, info = _build(["T_stext", "tfoo"], [STEXT, STEXT + 16], "base-relative")
    bad = VmcoreInfo.parse(info.raw.replace(f"{STEXT:x}".encode(), b"ffffffff82000000"))
    with pytest.raises(KallsymsError, match="_stext"):
        load_kallsyms(mem, bad)


def test_missing_vmcoreinfo_symbols():
    with pytest.raises(VmcoreInfoError, match="kallsyms_names"):
        load_kallsyms(FakeMemory(), VmcoreInfo.parse(b"OSRELEASE=5.4.0\n"))


def test_unreadable_table_names_the_table():
    mem, info = _build(["T_stext"], [STEXT], "base-relative")
    del mem.segments[NAMES_AT]
    with pytest.raises(FaultError, match="kallsyms_names"):
        load_kallsyms(mem, info)


def test_corrupt_count():
    mem, info = _build(["T_stext"], [STEXT], "base-relative")
    mem.add(NUM_AT, struct.pack("<Q", 0xFFFFFFF))
    with pytest.raises(KallsymsError):
        load_kallsyms(mem, info)


def test_aliases_resolve_to_first():
    ks = KallsymsTable(["a", "b", "c"], ["T", "T", "t"], [0x1000, 0x1000, 0x1010])
    assert ks.lookup(0x1004) == ("a", 4)
    assert ks.lookup(0x1010) == ("c", 0)
    assert ks.lookup(0xFFF) is None


# --------------------------------------------------------------------------- real dumps

@pytest.fixture(scope="module")
def ctx(report_ctx):
    return report_ctx


@pytest.mark.realdump
def test_kallsyms_fast_and_complete(ctx):
    t = time.perf_counter()
    ctx._kallsyms = None
    ks = ctx.kallsyms
    elapsed = time.perf_counter() - t
    assert len(ks) > 50_000
    assert elapsed < 1.0, f"kallsyms took {elapsed:.2f}s"
    assert ks.address("_stext") == ctx.info.symbol("_stext")
    assert ks.address("init_uts_ns") == ctx.info.symbol("init_uts_ns")


@pytest.mark.realdump
def test_init_task_matches_groundtruth(ctx, groundtruth):
    idle0 = [t for t in groundtruth["tasks"] if t.get("idle") and t["cpu"] == 0][0]
    assert ctx.kallsyms.address("init_task") == int(idle0["task"], 16)
    assert ctx.kallsyms.lookup(int(idle0["task"], 16)) == ("init_task", 0)


@pytest.mark.realdump
def test_crash_bt_symbols(ctx, reference_dir):
    text = (reference_dir / "crash-vmcore.txt").read_text()
    frames = re.findall(r"^\s*#\d+ \[[0-9a-f]+\] (\S+) at ([0-9a-f]+)$", text, re.M)
    assert len(frames) >= 10
    for func, addr in frames:
        hit = ctx.kallsyms.lookup(int(addr, 16))
        assert hit is not None and hit[0] == func, (func, addr, hit)


@pytest.mark.realdump
def test_dmesg_call_trace_offsets_and_sizes(ctx, reference_dir):
    """Every ``func+0xoff/0xsize`` the kernel printed agrees with our table."""
    text = (reference_dir / "dmesg.txt").read_text()
    found = re.findall(r"\] \s*(?:\? )?([A-Za-z_][\w.]*)\+0x([0-9a-f]+)/0x([0-9a-f]+)\s*$", text, re.M)
    assert len(found) >= 5
    for func, off, size in found:
        sym = ctx.kallsyms.symbol(func)
        assert sym is not None, func
        assert sym.size == int(size, 16), func
        assert ctx.kallsyms.lookup(sym.address + int(off, 16)) == (func, int(off, 16))


@pytest.mark.realdump
def test_groundtruth_panic_stack_pcs(ctx, groundtruth):
    for name, pc in zip(groundtruth["panic_stack"], groundtruth["panic_stack_pc"]):
        pcv = int(pc, 16)
        if pcv < 1 << 63:
            continue  # user-space pc
        hit = ctx.kallsyms.lookup(pcv)
        assert hit is not None
        # drgn names inlined frames too; the containing symbol is the
        # outermost function at that pc, and at least one of the frames
        # sharing this pc must name it.
        same_pc = [n for n, p in zip(groundtruth["panic_stack"], groundtruth["panic_stack_pc"]) if p == pc]
        # kallsyms also has local labels/parts that DWARF folds into the
        # function: foo.cold, entry_SYSCALL_64_after_hwframe.
        assert any(hit[0].startswith(n) for n in same_pc), (name, pc, hit)


@pytest.mark.realdump
def test_ps_task_addresses(ctx, reference_dir):
    text = (reference_dir / "crash-vmcore.txt").read_text()
    m = re.search(r"^\s+0\s+0\s+0\s+([0-9a-f]{16})\s+RU.*\[swapper/0\]$", text, re.M)
    assert m
    assert ctx.kallsyms.lookup(int(m.group(1), 16)) == ("init_task", 0)
