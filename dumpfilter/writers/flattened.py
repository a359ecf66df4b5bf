"""makedumpfile's flattened stream (``-F``) as a ``Sink``.

Every ``pwrite(data, offset)`` becomes one or more records: a 16-byte
big-endian ``{int64 offset; int64 size}`` header followed by the bytes
(makedumpfile-reference.md §2). The 4096-byte start header is written when
the sink is created; the end marker ``(-1, -1)`` only by ``finish()``, i.e.
on success, so a stream cut short never rebuilds into a complete-looking
file. ``pread`` returns None: the filter keeps its 2nd bitmap elsewhere.
"""
from __future__ import annotations

import os

from dumpfilter.formats.flattened import FLAT_END, FLAT_RECORD, flat_header
from dumpfilter.writers.sink import Sink

#: Largest payload of one record.
MAX_RECORD = 1 << 20
#: Bytes buffered before a write(2) to the output.
_BUFFER = 1 << 20


class FlatSink(Sink):
    """Writes a flattened stream to a file descriptor (usually stdout)."""

    def __init__(self, fd: int, max_record: int = MAX_RECORD):
        self.fd = fd
        self.max_record = max_record
        self._buf = bytearray()
        self.bytes_written = 0
        self.finished = False
        self._emit(flat_header())

    def _emit(self, data) -> None:
        self._buf += data
        if len(self._buf) >= _BUFFER:
            self._drain()

    def _drain(self) -> None:
        view = memoryview(self._buf)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.bytes_written += n
        view.release()
        self._buf = bytearray()

    def pwrite(self, data, offset: int) -> None:
        view = memoryview(data).cast("B")
        while view:
            chunk = view[: self.max_record]
            self._emit(FLAT_RECORD.pack(offset, len(chunk)))
            self._emit(chunk)
            offset += len(chunk)
            view = view[len(chunk):]

    def flush(self) -> None:
        self._drain()

    def finish(self) -> None:
        """Append the end marker; call only after a successful run."""
        self._emit(FLAT_RECORD.pack(*FLAT_END))
        self._drain()
        self.finished = True
