"""makedumpfile's *flattened* format (``-F``), read in place and rebuilt.

A flattened stream is a 4096-byte header (``"makedumpfile"`` NUL-padded to
16 bytes, then big-endian int64 ``type`` = 1 and ``version`` = 1), followed by
records ``{int64 offset; int64 size}`` (big-endian) + ``size`` bytes that the
writer would otherwise have written at ``offset`` of a seekable file, ended by
the record ``(-1, -1)``. Records come in any order and may overlap (a later
record wins, e.g. a rewritten sub header).

``FlattenedFile`` scans the records once and keeps a sorted, non-overlapping
index of ``(logical offset, length, file offset)`` segments in compact arrays
(24 bytes per segment, no Python object per record), then answers
``pread(offset, size)`` over the *logical* file: bytes never written read as
zeros, like the holes of the file ``makedumpfile -R`` would produce.

``rebuild`` is ``makedumpfile -R``: copy every record to its offset in a
regular file and require the exact terminator.
"""
from __future__ import annotations

import os
from array import array
from bisect import bisect_right
from typing import BinaryIO, Optional, Tuple, Union

from dumpfilter.errors import CorruptDumpError, NotAVmcoreError, TruncatedDumpError
from dumpfilter.kdumpformat import (
    FLAT_END,
    FLAT_HEADER_SIZE,
    FLAT_RECORD,
    FLAT_SIGNATURE,
    FLAT_SIGNATURE_FIELD,
    FLAT_TYPE,
    FLAT_VERSION,
)

_MAX_OFFSET = 1 << 63
_COPY_CHUNK = 1 << 20

PathOrStream = Union[str, "os.PathLike[str]", BinaryIO]


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


def _record_header(raw: bytes, name: str, pos: int) -> Optional[Tuple[int, int]]:
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
    if offset + size > _MAX_OFFSET:
        raise CorruptDumpError(
            f"{name}: flattened record at file offset {pos} ends at {offset + size},"
            " beyond 2**63"
        )
    return offset, size


class FlattenedFile:
    """Random access to the logical file inside a flattened stream.

    Implements the small "pread" interface the kdump reader uses:
    ``pread(offset, size) -> bytes`` (short only at the logical end),
    ``size`` (logical size: end of the furthest record), ``name``,
    ``close()``.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"]):
        self.name = os.fspath(path)
        self._fd = os.open(self.name, os.O_RDONLY)
        try:
            self.file_size = os.fstat(self._fd).st_size
            check_flat_header(os.pread(self._fd, FLAT_HEADER_SIZE, 0), self.name)
            # Sorted, non-overlapping segments: logical start/end, file offset.
            self._lo = array("q")
            self._hi = array("q")
            self._fo = array("q")
            self.nrecords = 0
            self._scan()
            self.size = self._hi[-1] if len(self._hi) else 0
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise

    # ----------------------------------------------------------------- index

    def _scan(self) -> None:
        pos, fsize, name = FLAT_HEADER_SIZE, self.file_size, self.name
        while True:
            record = _record_header(os.pread(self._fd, FLAT_RECORD.size, pos), name, pos)
            if record is None:
                return
            offset, size = record
            data = pos + FLAT_RECORD.size
            if data + size > fsize:
                raise TruncatedDumpError(
                    f"{name}: flattened record at {pos} ({size} bytes for offset {offset})"
                    f" runs past the end of the stream ({fsize} bytes)"
                )
            if size:
                self._add(offset, offset + size, data)
            self.nrecords += 1
            pos = data + size

    def _add(self, lo: int, hi: int, fo: int) -> None:
        los, his, fos = self._lo, self._hi, self._fo
        n = len(los)
        if n == 0 or lo >= his[-1]:
            # Fast path (the usual case): beyond everything so far.
            if n and lo == his[-1] and fo == fos[-1] + (his[-1] - los[-1]):
                his[-1] = hi  # contiguous in both spaces: merge
            else:
                los.append(lo)
                his.append(hi)
                fos.append(fo)
            return
        # The new record overlaps or precedes existing segments: it wins.
        i = bisect_right(los, lo) - 1
        if i >= 0 and his[i] > lo:
            # Segment i starts before lo and reaches into [lo, hi).
            if his[i] > hi:  # it also extends past hi: split off the tail
                tail = hi - los[i]
                los.insert(i + 1, hi)
                his.insert(i + 1, his[i])
                fos.insert(i + 1, fos[i] + tail)
            his[i] = lo
            if his[i] == los[i]:
                del los[i], his[i], fos[i]
                i -= 1
        j = i + 1
        k = j
        while k < len(los) and his[k] <= hi:
            k += 1  # fully covered segments
        del los[j:k], his[j:k], fos[j:k]
        if j < len(los) and los[j] < hi:  # partially covered: cut its head
            cut = hi - los[j]
            los[j] = hi
            fos[j] += cut
        los.insert(j, lo)
        his.insert(j, hi)
        fos.insert(j, fo)

    @property
    def nsegments(self) -> int:
        """Number of segments in the index (<= number of records)."""
        return len(self._lo)

    # ------------------------------------------------------------------ read

    def pread(self, offset: int, size: int) -> bytes:
        """Logical bytes ``[offset, offset+size)``; holes read as zeros, the
        result is short only past the logical end."""
        if offset < 0 or size < 0:
            raise ValueError(f"pread({offset}, {size})")
        end = min(offset + size, self.size)
        if end <= offset:
            return b""
        los, his, fos = self._lo, self._hi, self._fo
        i = bisect_right(los, offset) - 1
        if i >= 0 and his[i] >= end:  # fast path: one segment
            return self._read_exact(fos[i] + offset - los[i], end - offset)
        out = bytearray(end - offset)
        i = max(i, 0)
        while i < len(los) and los[i] < end:
            a, b = max(los[i], offset), min(his[i], end)
            if a < b:
                out[a - offset : b - offset] = self._read_exact(fos[i] + a - los[i], b - a)
            i += 1
        return bytes(out)

    def _read_exact(self, pos: int, size: int) -> bytes:
        data = os.pread(self._fd, size, pos)
        if len(data) != size:  # the stream shrank under us
            raise TruncatedDumpError(
                f"{self.name}: flattened stream cut short at {pos + len(data)}"
            )
        return data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "FlattenedFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------- -R


def _read_full(stream: BinaryIO, size: int) -> bytes:
    parts = []
    while size > 0:
        chunk = stream.read(size)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def rebuild(stream_in: PathOrStream, out_path: Union[str, "os.PathLike[str]"]) -> int:
    """``makedumpfile -R``: turn a flattened stream (a path or a binary
    stream such as ``sys.stdin.buffer``) into a regular file at
    ``out_path`` (created or truncated). Returns the size of the result."""
    if isinstance(stream_in, (str, bytes, os.PathLike)):
        with open(stream_in, "rb") as fh:
            return rebuild(fh, out_path)
    name = getattr(stream_in, "name", "<stream>")
    name = name if isinstance(name, str) else "<stream>"
    check_flat_header(_read_full(stream_in, FLAT_HEADER_SIZE), name)
    pos = FLAT_HEADER_SIZE
    fd = os.open(os.fspath(out_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        end = 0
        while True:
            record = _record_header(_read_full(stream_in, FLAT_RECORD.size), name, pos)
            if record is None:
                break
            offset, size = record
            pos += FLAT_RECORD.size
            done = 0
            while done < size:
                chunk = _read_full(stream_in, min(_COPY_CHUNK, size - done))
                if not chunk:
                    raise TruncatedDumpError(
                        f"{name}: flattened record for offset {offset} cut short"
                        f" after {done} of {size} bytes"
                    )
                mv = memoryview(chunk)
                while mv:
                    w = os.pwrite(fd, mv, offset + done)
                    mv = mv[w:]
                    done += w
            pos += size
            end = max(end, offset + size)
        os.ftruncate(fd, end)
    finally:
        os.close(fd)
    return end
