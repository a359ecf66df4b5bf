"""``makedumpfile -R``: a flattened stream (makedumpfile-reference.md §2)
turned back into a regular file, every record copied to its offset, the
exact end marker required."""
from __future__ import annotations

import os
from typing import BinaryIO, Union

from dumpfilter.errors import TruncatedDumpError
from dumpfilter.formats.flattened import FLAT_HEADER_SIZE, FLAT_RECORD, check_flat_header, record_header

_COPY_CHUNK = 1 << 20

PathOrStream = Union[str, "os.PathLike[str]", BinaryIO]


def _read_full(stream: BinaryIO, size: int) -> bytes:
    parts = []
    while size > 0:
        chunk = stream.read(size)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def rebuild(stream_in: PathOrStream, out: Union[int, str, "os.PathLike[str]"]) -> int:
    """``makedumpfile -R``: turn a flattened stream (a path or a binary
    stream such as standard input) into a regular file: ``out`` is an open
    file descriptor, or a path (created 0600 or truncated). Returns the
    size of the result."""
    if isinstance(stream_in, (str, bytes, os.PathLike)):
        with open(stream_in, "rb") as fh:
            return rebuild(fh, out)
    if not isinstance(out, int):
        fd = os.open(os.fspath(out), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            return rebuild(stream_in, fd)
        finally:
            os.close(fd)
    name = stream_in.name if isinstance(getattr(stream_in, "name", None), str) else "<stream>"
    check_flat_header(_read_full(stream_in, FLAT_HEADER_SIZE), name)
    pos = FLAT_HEADER_SIZE
    fd = out
    end = 0
    while True:
        record = record_header(_read_full(stream_in, FLAT_RECORD.size), name, pos)
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
    return end
