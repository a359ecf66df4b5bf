"""Where a writer's bytes go: a *sink* takes ``pwrite(data, offset)``, so
one writer produces a regular file or a flattened stream (``FlatSink``).

A sink that can read back what was written says so with ``readable``; the
filter job then keeps the 2nd bitmap in the output itself instead of a
temporary file.
"""
from __future__ import annotations

import errno
import os
from typing import Optional


class Sink:
    """The sink interface."""

    #: ``pread`` returns what was written (a regular file); False for
    #: streams.
    readable: bool = False

    def pwrite(self, data, offset: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def pread(self, size: int, offset: int) -> bytes:
        raise NotImplementedError(f"{type(self).__name__} cannot be read back")

    def flush(self) -> None:
        pass


class FileSink(Sink):
    """A regular file opened by the caller. ``limit`` (bytes, ``-L``) makes
    a write past it fail as if the disk were full."""

    readable = True

    def __init__(self, fd: int, limit: Optional[int] = None):
        self.fd = fd
        self.bytes_written = 0
        self.limit = limit

    def pwrite(self, data, offset: int) -> None:
        view = memoryview(data)
        if self.limit is not None and offset + len(view) > self.limit:
            room = max(0, self.limit - offset)
            if room:
                self.pwrite(view[:room], offset)
            raise OSError(errno.ENOSPC, f"output size limit of {self.limit} bytes (-L) reached")
        while view:
            n = os.pwrite(self.fd, view, offset)
            view = view[n:]
            offset += n
            self.bytes_written += n

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self.fd, size, offset)


class NullSink(Sink):
    """``--dry-run``: every write is counted and dropped."""

    def __init__(self):
        self.bytes_written = 0

    def pwrite(self, data, offset: int) -> None:
        self.bytes_written += memoryview(data).nbytes
