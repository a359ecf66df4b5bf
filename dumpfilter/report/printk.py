"""The kernel log (printk buffer) read from a dump with VMCOREINFO only.

Three formats, chosen by which VMCOREINFO symbols exist (never by version):

* lockless ring (Linux >= 5.10, commit 896fbe20b4e2 "printk: use the
  lockless ringbuffer"): ``SYMBOL(prb)`` (address of the pointer),
  ``SIZE/OFFSET`` of ``printk_ringbuffer``, ``prb_desc_ring``, ``prb_desc``,
  ``prb_data_blk_lpos``, ``printk_info``, ``prb_data_ring``,
  ``atomic_long_t``. Records from ``tail_id`` to ``head_id`` inclusive;
  only committed/finalized descriptors; text block skips the leading ID word
  and restarts at 0 when it wraps.
* structured ``printk_log`` ring (3.5 .. 5.9; the struct is called ``log``
  before 3.11): ``SYMBOL(log_buf)`` (pointer), ``SYMBOL(log_buf_len)``,
  ``SYMBOL(log_first_idx)``, ``SYMBOL(log_next_idx)``, ``SIZE(printk_log)``,
  ``OFFSET(printk_log.ts_nsec|len|text_len|dict_len|caller_id)``.
* legacy character ring (< 3.5): ``SYMBOL(log_buf)``, ``SYMBOL(log_end)``,
  ``SYMBOL(log_buf_len)``.

``dump_dmesg()`` renders what ``makedumpfile --dump-dmesg`` writes:
``[%5llu.%06lu] `` timestamps, a caller id column ``[%8s] `` (``T<pid>`` /
``C<cpu>``) only for the structured format when the kernel exports
``OFFSET(printk_log.caller_id)`` (makedumpfile never prints it for the
lockless ring), newlines inside a record followed by an indent to the text
column, bytes that are neither printable nor space as ``\\xNN`` — with C's
signed ``char``, so a byte >= 0x80 comes out as ``\\xffffffNN`` exactly like
makedumpfile on x86 — and data-less records skipped. The legacy ring is
written verbatim.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import List, Optional

from dumpfilter.errors import CorruptDumpError, VmcoreInfoError
from dumpfilter.report.context import read_described

# Descriptor state bits (two top bits of state_var).
_SV_BITS = 64
_FLAGS_SHIFT = _SV_BITS - 2
_ID_MASK = (1 << _FLAGS_SHIFT) - 1
_DESC_COMMITTED = 1
_DESC_FINALIZED = 2
_CALLER_CPU = 0x80000000
#: Records flags (``printk_info.flags`` / ``printk_log.flags``).
LOG_NEWLINE = 2
LOG_CONT = 8

#: Refuse buffers larger than this (a corrupt size_bits / log_buf_len).
_MAX_RING_BYTES = 1 << 30
_MAX_DESCS = 1 << 24


@dataclass(frozen=True)
class PrintkRecord:
    """One log record. ``level``/``facility``/``flags`` are None when the
    format does not carry them; ``caller_id`` is None when not recorded."""

    seq: Optional[int]
    ts_nsec: int
    text: bytes
    level: Optional[int] = None
    facility: Optional[int] = None
    flags: Optional[int] = None
    caller_id: Optional[int] = None
    dataless: bool = False

    @property
    def caller(self) -> Optional[str]:
        """``T<pid>`` or ``C<cpu>`` from ``caller_id``."""
        if self.caller_id is None:
            return None
        if self.caller_id & _CALLER_CPU:
            return f"C{self.caller_id & ~_CALLER_CPU & 0xFFFFFFFF}"
        return f"T{self.caller_id}"

    def text_str(self) -> str:
        return self.text.decode("utf-8", "replace")


@dataclass
class PrintkLog:
    """The decoded log. ``format`` is "lockless", "structured" or
    "legacy"; ``raw`` holds the legacy ring's text (logical order)."""

    format: str
    records: List[PrintkRecord]
    show_caller: bool = False
    raw: Optional[bytes] = None

    def dump_dmesg(self) -> bytes:
        """Exactly what ``makedumpfile --dump-dmesg`` writes."""
        if self.format == "legacy":
            return self.raw or b""
        out: List[bytes] = []
        for rec in self.records:
            if rec.dataless:
                continue
            out.append(format_makedumpfile(rec, self.show_caller and rec.caller_id is not None))
        return b"".join(out)

    def lines(self) -> List[str]:
        """The text of every record split into lines (no timestamps), in
        log order; what crash's panic-message scan looks at."""
        if self.format == "legacy":
            text = (self.raw or b"").decode("latin-1")
            return [_LEGACY_PREFIX.sub("", ln) for ln in text.split("\n")]
        result: List[str] = []
        for rec in self.records:
            result.extend(rec.text.decode("latin-1").split("\n"))
        return result


# --------------------------------------------------------------------------- formatting

_PLAIN = re.compile(rb"[\x20-\x7e\t\v\f\r]*\Z")
_ESCAPE = re.compile(rb"[^\x20-\x7e\t\n\v\f\r]")


def _escape_byte(m: "re.Match[bytes]") -> bytes:
    b = m.group(0)[0]
    # makedumpfile: sprintf("\\x%02x", *p) with a signed char argument.
    val = b if b < 0x80 else (b - 0x100) & 0xFFFFFFFF
    return b"\\x%02x" % val


def format_makedumpfile(rec: PrintkRecord, show_caller: bool = False) -> bytes:
    """One record as makedumpfile's dump_record / dump_log_entry write it."""
    secs, rem = divmod(rec.ts_nsec, 1_000_000_000)
    prefix = b"[%5d.%06d] " % (secs, rem // 1000)
    if show_caller:
        cid = rec.caller_id or 0
        tag = ("C%u" if cid & _CALLER_CPU else "T%u") % (cid & ~_CALLER_CPU & 0xFFFFFFFF)
        prefix += b"[%8s] " % tag.encode()
    text = rec.text
    if not _PLAIN.match(text):
        text = _ESCAPE.sub(_escape_byte, text)
        if b"\n" in text:
            text = text.replace(b"\n", b"\n" + b" " * len(prefix))
    return prefix + text + b"\n"


# --------------------------------------------------------------------------- reading

def _read(mem, vaddr: int, size: int, what: str) -> bytes:
    return read_described(mem, vaddr, size, what, "printk: ")


def _u(buf: bytes, off: int, size: int) -> int:
    return int.from_bytes(buf[off:off + size], "little")


def read_printk(mem, info, partial: bool = False) -> PrintkLog:
    """Read the log through ``mem`` (``read(vaddr, n)``) per ``info``
    (VmcoreInfo). ``partial`` (``--partial-dmesg``): only the records
    after the last ``dmesg -c`` (``clear_seq`` / ``clear_idx``; the whole
    log when the kernel does not export them). Raises VmcoreInfoError if no
    known log format is described, FaultError if the buffer is not in the
    dump."""
    if info.symbol("prb") is not None:
        return read_lockless(mem, info, partial)
    if info.symbol("log_buf") is not None:
        if info.symbol("log_end") is not None:
            return read_legacy(mem, info)
        return read_structured(mem, info, partial)
    raise VmcoreInfoError("VMCOREINFO describes no printk buffer (no SYMBOL(prb) or SYMBOL(log_buf))")


def _clear_seq(mem, info) -> Optional[int]:
    """The sequence number ``dmesg -c`` last cleared to: ``clear_seq``, a
    ``latched_seq`` since Linux 5.13 (the latch's low bit picks ``val[]``)."""
    addr = info.symbol("clear_seq")
    if addr is None:
        return None
    seq = _u(_read(mem, addr, 8, "clear_seq"), 0, 8)
    if info.size("latched_seq") is not None:
        val = addr + info.require_offset("latched_seq.val") + (seq & 1) * 8
        seq = _u(_read(mem, val, 8, "clear_seq.val"), 0, 8)
    return seq


def read_lockless(mem, info, partial: bool = False) -> PrintkLog:
    off = info.require_offset
    size = info.require_size
    prb_ptr = _u(_read(mem, info.require_symbol("prb"), 8, "prb"), 0, 8)
    prb = _read(mem, prb_ptr, size("printk_ringbuffer"), "printk_ringbuffer")
    dr = off("printk_ringbuffer.desc_ring")
    count_bits = _u(prb, dr + off("prb_desc_ring.count_bits"), 4)
    if count_bits > 24:
        raise CorruptDumpError(f"printk: desc_ring.count_bits = {count_bits}: implausible")
    count = 1 << count_bits
    counter = info.offset("atomic_long_t.counter") or 0
    descs_addr = _u(prb, dr + off("prb_desc_ring.descs"), 8)
    infos_addr = _u(prb, dr + off("prb_desc_ring.infos"), 8)
    head_id = _u(prb, dr + off("prb_desc_ring.head_id") + counter, 8)
    tail_id = _u(prb, dr + off("prb_desc_ring.tail_id") + counter, 8)
    desc_size = size("prb_desc")
    info_size = size("printk_info")
    descs = _read(mem, descs_addr, count * desc_size, "prb desc_ring.descs")
    infos = _read(mem, infos_addr, count * info_size, "prb desc_ring.infos")

    tr = off("printk_ringbuffer.text_data_ring")
    size_bits = _u(prb, tr + off("prb_data_ring.size_bits"), 4)
    if size_bits > 30:
        raise CorruptDumpError(f"printk: text_data_ring.size_bits = {size_bits}: implausible")
    data_size = 1 << size_bits
    data_addr = _u(prb, tr + off("prb_data_ring.data"), 8)
    data = _read(mem, data_addr, data_size, "prb text_data_ring.data")

    o_state = off("prb_desc.state_var") + counter
    o_lpos = off("prb_desc.text_blk_lpos")
    o_begin = o_lpos + off("prb_data_blk_lpos.begin")
    o_next = o_lpos + off("prb_data_blk_lpos.next")
    o_seq = off("printk_info.seq")
    o_ts = off("printk_info.ts_nsec")
    o_tlen = off("printk_info.text_len")
    o_caller = info.offset("printk_info.caller_id")
    # facility (u8) and flags:5/level:3 follow text_len (u16); not exported.
    o_fac = o_tlen + 2
    o_lvl = o_tlen + 3

    records: List[PrintkRecord] = []
    ids = []
    i = tail_id & _ID_MASK
    head = head_id & _ID_MASK
    steps = 0
    while i != head:
        ids.append(i)
        i = (i + 1) & _ID_MASK
        steps += 1
        if steps > count:
            raise CorruptDumpError(
                f"printk: tail_id {tail_id:#x} .. head_id {head_id:#x} spans more than "
                f"{count} descriptors")
    ids.append(head)
    for rid in ids:
        d = (rid % count) * desc_size
        sv = _u(descs, d + o_state, 8)
        if sv & _ID_MASK != rid or (sv >> _FLAGS_SHIFT) & 3 not in (_DESC_COMMITTED, _DESC_FINALIZED):
            continue
        inf = (rid % count) * info_size
        seq = _u(infos, inf + o_seq, 8)
        ts = _u(infos, inf + o_ts, 8)
        text_len = _u(infos, inf + o_tlen, 2)
        fac = infos[inf + o_fac]
        lvl_byte = infos[inf + o_lvl]
        caller = _u(infos, inf + o_caller, 4) if o_caller is not None else None
        begin = _u(descs, d + o_begin, 8) % data_size
        nxt = _u(descs, d + o_next, 8) % data_size
        if begin == nxt:
            records.append(PrintkRecord(seq, ts, b"", lvl_byte >> 5, fac, lvl_byte & 0x1F,
                                        caller, dataless=True))
            continue
        if begin > nxt:
            begin = 0
        begin += 8  # the block starts with its descriptor id
        if nxt < begin:
            text = b""
        else:
            text = data[begin:begin + min(text_len, nxt - begin)]
        records.append(PrintkRecord(seq, ts, text, lvl_byte >> 5, fac, lvl_byte & 0x1F, caller))
    if partial:
        clear = _clear_seq(mem, info)
        if clear is not None:
            records = [r for r in records if r.seq >= clear]
    return PrintkLog("lockless", records, show_caller=False)


def _struct_name(info) -> str:
    if info.size("printk_log") is not None:
        return "printk_log"
    if info.size("log") is not None:
        return "log"  # before 3.11 (and RHEL 7)
    raise VmcoreInfoError("VMCOREINFO lacks SIZE(printk_log) (or SIZE(log)) for the structured log")


def read_structured(mem, info, partial: bool = False) -> PrintkLog:
    st = _struct_name(info)
    hdr = info.require_size(st)
    o_ts = info.require_offset(f"{st}.ts_nsec")
    o_len = info.require_offset(f"{st}.len")
    o_tlen = info.require_offset(f"{st}.text_len")
    o_dlen = info.offset(f"{st}.dict_len")
    o_caller = info.offset(f"{st}.caller_id")
    # facility u8 and flags:5/level:3 follow dict_len (u16).
    o_lvl = (o_dlen + 3) if o_dlen is not None else None

    log_buf = _u(_read(mem, info.require_symbol("log_buf"), 8, "log_buf"), 0, 8)
    buf_len = struct.unpack("<i", _read(mem, info.require_symbol("log_buf_len"), 4, "log_buf_len"))[0]
    if not 0 < buf_len <= _MAX_RING_BYTES:
        raise CorruptDumpError(f"printk: log_buf_len = {buf_len}: implausible")
    first_sym = "log_first_idx"
    if partial and info.symbol("clear_idx") is not None:
        first_sym = "clear_idx"
    first = _u(_read(mem, info.require_symbol(first_sym), 4, first_sym), 0, 4)
    nxt = _u(_read(mem, info.require_symbol("log_next_idx"), 4, "log_next_idx"), 0, 4)
    buf = _read(mem, log_buf, buf_len, "log_buf")

    def rec_len(idx: int) -> int:
        if idx + hdr > buf_len:
            raise CorruptDumpError(f"printk: record index {idx:#x} outside log_buf ({buf_len} bytes)")
        return _u(buf, idx + o_len, 2)

    records: List[PrintkRecord] = []
    idx = first
    seen = set()
    while idx != nxt:
        if idx in seen:
            raise CorruptDumpError(f"printk: cycle in log_buf at index {idx:#x}")
        seen.add(idx)
        ln = rec_len(idx)
        if ln == 0:  # wrap marker: the record is at the start of the buffer
            rec_at = 0
            ln = rec_len(0)
            if ln == 0:
                raise CorruptDumpError("printk: zero-length record at the start of log_buf")
            step_to = ln
        else:
            rec_at = idx
            step_to = idx + ln
        tlen = _u(buf, rec_at + o_tlen, 2)
        text = buf[rec_at + hdr:rec_at + hdr + tlen]
        lvl_byte = buf[rec_at + o_lvl] if o_lvl is not None else None
        records.append(PrintkRecord(
            None, _u(buf, rec_at + o_ts, 8), text,
            level=None if lvl_byte is None else lvl_byte >> 5,
            facility=None if o_lvl is None else buf[rec_at + o_lvl - 1],
            flags=None if lvl_byte is None else lvl_byte & 0x1F,
            caller_id=_u(buf, rec_at + o_caller, 4) if o_caller is not None else None))
        if step_to > buf_len - hdr and step_to != nxt:
            raise CorruptDumpError(f"printk: next record index {step_to:#x} outside log_buf")
        idx = step_to
    return PrintkLog("structured", records, show_caller=o_caller is not None)


_LEGACY_PREFIX = re.compile(r"^<\d+>")
_LEGACY_TS = re.compile(rb"^\[\s*(\d+)\.(\d{6})\] ")


def read_legacy(mem, info) -> PrintkLog:
    log_buf = _u(_read(mem, info.require_symbol("log_buf"), 8, "log_buf"), 0, 8)
    buf_len = struct.unpack("<i", _read(mem, info.require_symbol("log_buf_len"), 4, "log_buf_len"))[0]
    if not 0 < buf_len <= _MAX_RING_BYTES:
        raise CorruptDumpError(f"printk: log_buf_len = {buf_len}: implausible")
    # ``unsigned`` since 2.6.25 (``unsigned long`` before: same low half).
    log_end = _u(_read(mem, info.require_symbol("log_end"), 4, "log_end"), 0, 4)
    if log_end < buf_len:
        raw = _read(mem, log_buf, log_end, "log_buf")
    else:
        index = log_end & (buf_len - 1)
        raw = (_read(mem, log_buf + index, buf_len - index, "log_buf")
               + _read(mem, log_buf, index, "log_buf"))
    records: List[PrintkRecord] = []
    for line in raw.split(b"\n"):
        if not line:
            continue
        level = None
        m = re.match(rb"^<(\d+)>", line)
        if m:
            level = int(m.group(1)) & 7
            line = line[m.end():]
        ts = 0
        t = _LEGACY_TS.match(line)
        if t:
            ts = int(t.group(1)) * 1_000_000_000 + int(t.group(2)) * 1000
            line = line[t.end():]
        records.append(PrintkRecord(None, ts, line, level=level))
    return PrintkLog("legacy", records, raw=raw)
