"""Kernel log: the lockless ring of the real dumps must reproduce
makedumpfile --dump-dmesg (reference/dmesg.txt) byte for byte; the
structured (3.5-5.9) and legacy (<3.5) formats and the lockless edge cases
are checked on small synthetic memories."""
from __future__ import annotations

import struct

import pytest

from dumpfilter.errors import CorruptDumpError, FaultError, VmcoreInfoError
from dumpfilter.report.printk import PrintkRecord, format_makedumpfile, read_printk
from dumpfilter.vmcoreinfo import VmcoreInfo

from fakememory import FakeMemory


# --------------------------------------------------------------------------- formatting

def test_format_basic_and_continuation():
    rec = PrintkRecord(0, 14_050_077_372, b"line one\nline two")
    assert format_makedumpfile(rec) == b"[   14.050077] line one\n               line two\n"


def test_format_escapes_like_signed_char():
    rec = PrintkRecord(0, 1_000, b"a\x01b\xc3\xa9\tz")
    assert format_makedumpfile(rec) == b"[    0.000001] a\\x01b\\xffffffc3\\xffffffa9\tz\n"


def test_format_caller_column():
    rec = PrintkRecord(0, 5 * 10**9, b"hi\nthere", caller_id=0x80000001)
    out = format_makedumpfile(rec, show_caller=True)
    assert out == b"[    5.000000] [      C1] hi\n                          there\n"
    rec2 = PrintkRecord(0, 5 * 10**9, b"x", caller_id=123)
    assert format_makedumpfile(rec2, show_caller=True) == b"[    5.000000] [    T123] x\n"


def test_large_timestamp_widens():
    rec = PrintkRecord(0, 123456 * 10**9 + 999_999_999, b"x")
    assert format_makedumpfile(rec) == b"[123456.999999] x\n"


# --------------------------------------------------------------------------- structured

LOG_BUF_PTR = 0xFFFFFFFF82000000
LOG_BUF_LEN = 0xFFFFFFFF82000010
FIRST_IDX = 0xFFFFFFFF82000020
NEXT_IDX = 0xFFFFFFFF82000030
BUF = 0xFFFF888000100000


def _structured_vmcoreinfo(caller: bool, name="printk_log"):
    lines = [
        "OSRELEASE=5.4.0", "PAGESIZE=4096",
        f"SYMBOL(log_buf)={LOG_BUF_PTR:x}", f"SYMBOL(log_buf_len)={LOG_BUF_LEN:x}",
        f"SYMBOL(log_first_idx)={FIRST_IDX:x}", f"SYMBOL(log_next_idx)={NEXT_IDX:x}",
        f"SIZE({name})={24 if caller else 16}",
        f"OFFSET({name}.ts_nsec)=0", f"OFFSET({name}.len)=8",
        f"OFFSET({name}.text_len)=10", f"OFFSET({name}.dict_len)=12",
    ]
    if caller:
        lines.append(f"OFFSET({name}.caller_id)=16")
    return VmcoreInfo.parse(("\n".join(lines) + "\n").encode())


def _record(ts, text, level=6, caller=None, dict_=b""):
    hdr = 24 if caller is not None else 16
    ln = hdr + len(text) + len(dict_)
    ln = (ln + 7) & ~7
    head = struct.pack("<QHHHBB", ts, ln, len(text), len(dict_), 0, (level << 5) | 2)
    if caller is not None:
        head += struct.pack("<I", caller) + b"\0" * 4
    return (head + text + dict_).ljust(ln, b"\0")


def _structured_mem(records_layout, size, first, nxt):
    buf = bytearray(size)
    for off, rec in records_layout:
        buf[off:off + len(rec)] = rec
    mem = FakeMemory()
    mem.add(LOG_BUF_PTR, struct.pack("<Q", BUF))
    mem.add(LOG_BUF_LEN, struct.pack("<i", size))
    mem.add(FIRST_IDX, struct.pack("<I", first))
    mem.add(NEXT_IDX, struct.pack("<I", nxt))
    mem.add(BUF, bytes(buf))
    return mem


@pytest.mark.parametrize("name", ["printk_log", "log"])
def test_structured_in_order(name):
    r1 = _record(1_500_000, b"first", level=3)
    r2 = _record(2_000_000_000, b"second\nmulti", dict_=b"SUBSYSTEM=pci")
    mem = _structured_mem([(0, r1), (len(r1), r2)], 4096, 0, len(r1) + len(r2))
    log = read_printk(mem, _structured_vmcoreinfo(False, name))
    assert log.format == "structured"
    assert [r.text for r in log.records] == [b"first", b"second\nmulti"]
    assert log.records[0].level == 3
    assert log.dump_dmesg() == (b"[    0.001500] first\n"
                                b"[    2.000000] second\n"
                                b"               multi\n")


def test_structured_wrap_marker_and_caller():
    size = 256
    late = _record(9_000_000_000, b"old-at-end", caller=0x80000001)
    wrap_at = 160
    early = _record(10_000_000_000, b"new-at-start", caller=42)
    buf = [(wrap_at - len(late), late), (0, early)]
    # a zero-length header at wrap_at is the wrap marker (left as zeros)
    mem = _structured_mem(buf, size, wrap_at - len(late), len(early))
    log = read_printk(mem, _structured_vmcoreinfo(True))
    assert [r.text for r in log.records] == [b"old-at-end", b"new-at-start"]
    assert [r.caller for r in log.records] == ["C1", "T42"]
    assert log.dump_dmesg() == (b"[    9.000000] [      C1] old-at-end\n"
                                b"[   10.000000] [     T42] new-at-start\n")


def test_structured_cycle_is_an_error():
    r1 = _record(1, b"a")
    # record points back to itself: len field of 0 at index 0 = wrap to 0
    bad = bytearray(r1)
    mem = _structured_mem([(0, bytes(bad))], 64, 0, 40)
    with pytest.raises(CorruptDumpError):
        read_printk(mem, _structured_vmcoreinfo(False))


def test_structured_missing_buffer_is_fault():
    mem = _structured_mem([], 4096, 0, 0)
    del mem.segments[BUF]
    with pytest.raises(FaultError, match="log_buf"):
        read_printk(mem, _structured_vmcoreinfo(False))


# --------------------------------------------------------------------------- legacy

LOG_END = 0xFFFFFFFF82000040


def _legacy(data, log_end, size):
    mem = FakeMemory()
    mem.add(LOG_BUF_PTR, struct.pack("<Q", BUF))
    mem.add(LOG_BUF_LEN, struct.pack("<i", size))
    mem.add(LOG_END, struct.pack("<I", log_end))
    mem.add(BUF, data.ljust(size, b"\0"))
    info = VmcoreInfo.parse((f"OSRELEASE=2.6.32\nSYMBOL(log_buf)={LOG_BUF_PTR:x}\n"
                             f"SYMBOL(log_buf_len)={LOG_BUF_LEN:x}\n"
                             f"SYMBOL(log_end)={LOG_END:x}\n").encode())
    return mem, info


def test_legacy_not_wrapped():
    text = b"<6>[    0.000000] Linux version 2.6.32\n<4>hello\n"
    mem, info = _legacy(text, len(text), 64)
    log = read_printk(mem, info)
    assert log.format == "legacy"
    assert log.dump_dmesg() == text
    assert [r.level for r in log.records] == [6, 4]
    assert log.records[0].ts_nsec == 0 and log.records[0].text == b"Linux version 2.6.32"
    assert log.lines()[1] == "hello"


def test_legacy_wrapped():
    size = 32
    logical = b"<6>AAAA\n<6>BBBBBBBB\n<6>CCCCCCCCCC\n"  # 35 bytes written in total
    end = len(logical)
    ring = bytearray(size)
    for i, b in enumerate(logical):
        ring[i % size] = b
    mem, info = _legacy(bytes(ring), end, size)
    assert read_printk(mem, info).dump_dmesg() == logical[end - size:]


def test_no_log_described():
    with pytest.raises(VmcoreInfoError):
        read_printk(FakeMemory(), VmcoreInfo.parse(b"OSRELEASE=6.1\n"))


# --------------------------------------------------------------------------- lockless synthetic

PRB_PTR = 0xFFFFFFFF83000000
PRB = 0xFFFFFFFF83000100
DESCS = 0xFFFFFFFF83001000
INFOS = 0xFFFFFFFF83002000
DATA = 0xFFFFFFFF83010000

LOCKLESS_VI = f"""OSRELEASE=6.1.0
SYMBOL(prb)={PRB_PTR:x}
SIZE(printk_ringbuffer)=88
OFFSET(printk_ringbuffer.desc_ring)=0
OFFSET(printk_ringbuffer.text_data_ring)=48
SIZE(prb_desc_ring)=48
OFFSET(prb_desc_ring.count_bits)=0
OFFSET(prb_desc_ring.descs)=8
OFFSET(prb_desc_ring.infos)=16
OFFSET(prb_desc_ring.head_id)=24
OFFSET(prb_desc_ring.tail_id)=32
SIZE(prb_desc)=24
OFFSET(prb_desc.state_var)=0
OFFSET(prb_desc.text_blk_lpos)=8
SIZE(prb_data_blk_lpos)=16
OFFSET(prb_data_blk_lpos.begin)=0
OFFSET(prb_data_blk_lpos.next)=8
SIZE(printk_info)=88
OFFSET(printk_info.seq)=0
OFFSET(printk_info.ts_nsec)=8
OFFSET(printk_info.text_len)=16
OFFSET(printk_info.caller_id)=20
SIZE(prb_data_ring)=32
OFFSET(prb_data_ring.size_bits)=0
OFFSET(prb_data_ring.data)=8
OFFSET(atomic_long_t.counter)=0
"""


def test_lockless_wrap_states_and_dataless():
    count_bits, size_bits = 2, 6  # 4 descriptors, 64-byte text ring
    size = 1 << size_bits
    data = bytearray(size)
    descs = bytearray(4 * 24)
    infos = bytearray(4 * 88)

    def put(rid, state, begin, nxt, text, ts, level=4):
        d = (rid % 4) * 24
        struct.pack_into("<QQQ", descs, d, (state << 62) | rid, begin, nxt)
        i = (rid % 4) * 88
        struct.pack_into("<QQHBBI", infos, i, rid, ts, len(text), 0, level << 5, 7)

    # id 5: block wraps: begins near the end, text stored at 0 after the id word
    put(5, 2, 3 * size + 56, 4 * size + 8 + 6, b"wraps!", 1_000_000_000)
    data[8:14] = b"wraps!"
    # id 6: finalized, normal
    put(6, 2, 4 * size + 16, 4 * size + 40, b"normal", 2_000_000_000)
    data[24:30] = b"normal"
    # id 7: reserved (still being written): skipped
    put(7, 0, 4 * size + 40, 4 * size + 56, b"xx", 3_000_000_000)
    # id 8 (head): data-less (begin == next): skipped by makedumpfile
    put(8, 1, 1, 1, b"", 4_000_000_000)
    prb = bytearray(88)
    struct.pack_into("<IxxxxQQQQ", prb, 0, count_bits, DESCS, INFOS, 8, 5)
    struct.pack_into("<IxxxxQ", prb, 48, size_bits, DATA)
    mem = FakeMemory()
    mem.add(PRB_PTR, struct.pack("<Q", PRB))
    mem.add(PRB, bytes(prb))
    mem.add(DESCS, bytes(descs))
    mem.add(INFOS, bytes(infos))
    mem.add(DATA, bytes(data))
    log = read_printk(mem, VmcoreInfo.parse(LOCKLESS_VI.encode()))
    assert log.format == "lockless"
    assert [r.text for r in log.records] == [b"wraps!", b"normal", b""]
    assert log.records[2].dataless
    assert log.records[0].caller == "T7" and log.records[0].level == 4
    assert log.dump_dmesg() == b"[    1.000000] wraps!\n[    2.000000] normal\n"


# --------------------------------------------------------------------------- real dumps

@pytest.fixture(scope="module")
def ctx(report_ctx):
    return report_ctx


@pytest.mark.realdump
def test_dmesg_matches_makedumpfile(ctx, reference_dir):
    expected = (reference_dir / "dmesg.txt").read_bytes()
    got = read_printk(ctx.mem, ctx.info).dump_dmesg()
    if got != expected:
        for i, (a, b) in enumerate(zip(got.split(b"\n"), expected.split(b"\n"))):
            assert a == b, f"line {i + 1} differs"
    assert got == expected


@pytest.mark.realdump
def test_records_have_panic_line(ctx, reference_dir):
    log = read_printk(ctx.mem, ctx.info)
    expected_lines = (reference_dir / "dmesg.txt").read_text().splitlines()
    panic = [ln for ln in expected_lines if "Kernel panic - " in ln][0]
    ts_text, text = panic.split("] ", 1)
    recs = [r for r in log.records if r.text.decode() == text]
    assert len(recs) == 1
    secs, usecs = ts_text.strip("[ ").split(".")
    assert recs[0].ts_nsec // 1000 == int(secs) * 10**6 + int(usecs)
    assert recs[0].level is not None and 0 <= recs[0].level <= 7
    assert recs[0].caller is not None
