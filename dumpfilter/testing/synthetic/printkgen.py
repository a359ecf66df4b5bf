"""A structured printk ring (``struct printk_log`` records, the log format of
Linux 3.5 .. 5.9) for synthetic kernels: each record is a 16-byte header
(u64 ``ts_nsec``, u16 ``len``, u16 ``text_len``, u16 ``dict_len``, u8
facility, u8 ``flags:5 level:3``) followed by the text, padded to 8 bytes.
Described to readers by the VMCOREINFO lines of :func:`vmcoreinfo_lines`.
"""
from __future__ import annotations

import struct
from typing import List, Sequence, Tuple

HEADER = 16
LOG_NEWLINE = 2


def ring(records: Sequence[Tuple[int, int, str]], size: int) -> Tuple[bytes, int]:
    """(buffer of ``size`` bytes, index of the next record) for
    ``records`` = (ts_nsec, level, text), oldest first, not wrapped."""
    buf = bytearray()
    for ts, level, text in records:
        data = text.encode("utf-8")
        n = HEADER + len(data)
        n += -n % 8
        buf += struct.pack("<QHHHBB", ts, n, len(data), 0, 0, (level << 5) | LOG_NEWLINE)
        buf += data + bytes(n - HEADER - len(data))
    if len(buf) + HEADER > size:
        raise ValueError("printk ring too small for the records")
    return bytes(buf) + bytes(size - len(buf)), len(buf)


def vmcoreinfo_lines(symbols) -> List[str]:
    """``symbols``: addresses of log_buf (the pointer), log_buf_len,
    log_first_idx, log_next_idx."""
    out = [f"SYMBOL({n})={symbols[n]:x}" for n in ("log_buf", "log_buf_len", "log_first_idx",
                                                    "log_next_idx")]
    return out + ["SIZE(printk_log)=16", "OFFSET(printk_log.ts_nsec)=0", "OFFSET(printk_log.len)=8",
                  "OFFSET(printk_log.text_len)=10", "OFFSET(printk_log.dict_len)=12"]
