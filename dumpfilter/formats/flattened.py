"""makedumpfile's flattened stream (``-F``), makedumpfile-reference.md §2:
the one description its reader, its writer and ``-R`` share."""
from __future__ import annotations

import struct
from typing import Optional, Tuple

from dumpfilter.errors import CorruptDumpError, NotAVmcoreError, TruncatedDumpError

#: A flattened stream starts with a FLAT_HEADER_SIZE-byte header: the
#: signature NUL-padded to FLAT_SIGNATURE_FIELD bytes, then ``type`` and
#: ``version`` as one FLAT_RECORD (big-endian int64 pair).
FLAT_SIGNATURE = b"makedumpfile"
FLAT_SIGNATURE_FIELD = 16
FLAT_HEADER_SIZE = 4096
FLAT_TYPE = 1
FLAT_VERSION = 1
#: Each record: big-endian ``{int64 offset; int64 size}``, then ``size``
#: bytes that belong at ``offset`` of the rebuilt file.
FLAT_RECORD = struct.Struct(">qq")
#: The record ``(offset, size)`` that ends the stream.
FLAT_END = (-1, -1)


def flat_header() -> bytes:
    """The FLAT_HEADER_SIZE-byte start header of a flattened stream."""
    head = bytearray(FLAT_HEADER_SIZE)
    head[: len(FLAT_SIGNATURE)] = FLAT_SIGNATURE
    FLAT_RECORD.pack_into(head, FLAT_SIGNATURE_FIELD, FLAT_TYPE, FLAT_VERSION)
    return bytes(head)

#: Record offsets and ends must stay below this.
MAX_OFFSET = 1 << 63


def is_flattened(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) carries the flattened
    signature (``makedumpfile`` followed by a NUL, as crash compares it)."""
    return head[: len(FLAT_SIGNATURE) + 1] == FLAT_SIGNATURE + b"\0"


def check_flat_header(head: bytes, name: str) -> None:
    """Validate the 4096-byte flattened start header; raise one clear error."""
    if not is_flattened(head):
        raise NotAVmcoreError(f"{name}: no 'makedumpfile' flattened signature")
    if len(head) < FLAT_HEADER_SIZE:
        raise TruncatedDumpError(
            f"{name}: flattened header is {len(head)} bytes, expected {FLAT_HEADER_SIZE}"
        )
    ftype, fversion = FLAT_RECORD.unpack_from(head, FLAT_SIGNATURE_FIELD)
    if ftype != FLAT_TYPE:
        raise CorruptDumpError(f"{name}: flattened header type {ftype}, expected {FLAT_TYPE}")
    if fversion != FLAT_VERSION:
        raise CorruptDumpError(
            f"{name}: flattened header version {fversion}, expected {FLAT_VERSION}"
        )


def record_header(raw: bytes, name: str, pos: int) -> Optional[Tuple[int, int]]:
    """``(offset, size)`` of the record header ``raw`` read at stream
    position ``pos``; None for the end marker. Raises for a header cut short
    or invalid."""
    if len(raw) == 0:
        raise TruncatedDumpError(
            f"{name}: flattened stream ends at {pos} without the end marker (-1, -1)"
        )
    if len(raw) < FLAT_RECORD.size:
        raise TruncatedDumpError(
            f"{name}: flattened record header at {pos} cut short ({len(raw)} of"
            f" {FLAT_RECORD.size} bytes)"
        )
    offset, size = FLAT_RECORD.unpack(raw)
    if (offset, size) == FLAT_END:
        return None
    if offset < 0 or size < 0:
        raise CorruptDumpError(
            f"{name}: flattened record at file offset {pos} has offset {offset}, size {size}"
            " (only the end marker (-1, -1) may be negative)"
        )
    if offset + size > MAX_OFFSET:
        raise CorruptDumpError(
            f"{name}: flattened record at file offset {pos} ends at {offset + size},"
            " beyond 2**63"
        )
    return offset, size
