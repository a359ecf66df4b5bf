"""The positional-read interface the kdump reader needs, for a regular
file; ``open_preadable`` picks ``FlattenedFile`` for a flattened stream."""
from __future__ import annotations

import os
from typing import Protocol, Union

from dumpfilter.readers.flattened import FlattenedFile, is_flattened


class Preadable(Protocol):
    """What the reader needs from its input: positional reads of the
    (logical) file. ``pread`` returns fewer bytes only at the end."""

    name: str
    size: int

    def pread(self, offset: int, size: int) -> bytes: ...

    def close(self) -> None: ...


class PlainFile:
    """A regular file behind the ``Preadable`` interface."""

    def __init__(self, path: Union[str, "os.PathLike[str]"]):
        self.name = os.fspath(path)
        self._fd = os.open(self.name, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size

    def pread(self, offset: int, size: int) -> bytes:
        size = min(size, self.size - offset)  # also keeps offset + size < 2**63
        if size <= 0 or offset < 0:
            return b""
        data = os.pread(self._fd, size, offset)
        if len(data) == size or not data:
            return data
        parts = [data]  # a short read before EOF: keep going
        got = len(data)
        while got < size:
            more = os.pread(self._fd, size - got, offset + got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_preadable(path: Union[str, "os.PathLike[str]"]) -> Preadable:
    """A ``FlattenedFile`` if ``path`` is a flattened stream, else a
    ``PlainFile``."""
    f = PlainFile(path)
    try:
        flat = is_flattened(f.pread(0, 16))
    except BaseException:
        f.close()
        raise
    if not flat:
        return f
    f.close()
    return FlattenedFile(path)
