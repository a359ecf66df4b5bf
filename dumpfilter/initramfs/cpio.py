"""The newc ("070701") cpio format that Linux unpacks as an initramfs.

Only what an initramfs needs: directories, regular files and symlinks, no
hard links. ``NewcWriter`` writes an archive the kernel can take on its own or
after any other (compressed or not) initramfs: the trailer is followed by zero
padding to a 4-byte boundary, which is where the kernel looks for the next
archive. ``read_newc`` parses archives back (also several concatenated ones,
gzip-compressed members included) for tests and ``--list``.
"""
from __future__ import annotations

import gzip
import io
import stat
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator, List

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
HEADER_LEN = 110


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


@dataclass
class Entry:
    name: str          # archive path, no leading "/"
    mode: int          # st_mode including the file type bits
    data: bytes = b""  # file contents, or the symlink target
    mtime: int = 0
    uid: int = 0
    gid: int = 0
    ino: int = 0
    nlink: int = 1

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)


class NewcWriter:
    """Write newc entries to a binary stream; ``close()`` writes the trailer."""

    def __init__(self, fh: BinaryIO, mtime: int = 0):
        self.fh = fh
        self.mtime = mtime
        self.pos = 0
        self._ino = 0x2000  # arbitrary, unique per entry
        self.closed = False

    def _write(self, b: bytes) -> None:
        self.fh.write(b)
        self.pos += len(b)

    def _entry(self, name: str, mode: int, data: bytes, nlink: int = 1) -> None:
        if self.closed:
            raise ValueError("archive already closed")
        name = name.lstrip("/")
        if not name or name.startswith("../") or "/../" in name:
            raise ValueError(f"bad archive path {name!r}")
        self._ino += 1
        nameb = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, nlink, self.mtime, len(data), 0, 0, 0, 0, len(nameb), 0)
        hdr = MAGIC + b"".join(b"%08X" % f for f in fields)
        assert len(hdr) == HEADER_LEN
        self._write(hdr + nameb + b"\0" * _pad4(HEADER_LEN + len(nameb)))
        if data:
            self._write(data + b"\0" * _pad4(len(data)))

    def add_dir(self, name: str, perm: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | perm, b"", nlink=2)

    def add_file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def add_symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def close(self) -> None:
        if self.closed:
            return
        self._entry_trailer()
        self.closed = True

    def _entry_trailer(self) -> None:
        nameb = TRAILER.encode() + b"\0"
        fields = (0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, len(nameb), 0)
        hdr = MAGIC + b"".join(b"%08X" % f for f in fields)
        self._write(hdr + nameb + b"\0" * _pad4(HEADER_LEN + len(nameb)))
        # The kernel expects the next archive at a 4-byte boundary; the header
        # and name padding above already leave us aligned.
        self._write(b"\0" * _pad4(self.pos))


def _parse_one(buf: memoryview, pos: int, out: List[Entry]) -> int:
    """Parse one uncompressed archive starting at ``pos``; return the position after its trailer."""
    while True:
        hdr = bytes(buf[pos:pos + HEADER_LEN])
        if len(hdr) < HEADER_LEN or hdr[:6] != MAGIC:
            raise ValueError(f"bad newc header at offset {pos}: {hdr[:6]!r}")
        f = [int(hdr[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        ino, mode, uid, gid, nlink, mtime, size = f[:7]
        namesize = f[11]
        npos = pos + HEADER_LEN
        name = bytes(buf[npos:npos + namesize - 1]).decode()
        dpos = npos + namesize + _pad4(HEADER_LEN + namesize)
        data = bytes(buf[dpos:dpos + size])
        if len(data) != size:
            raise ValueError(f"truncated archive: {name} needs {size} bytes")
        pos = dpos + size + _pad4(size)
        if name == TRAILER:
            return pos
        out.append(Entry(name, mode, data, mtime, uid, gid, ino, nlink))


def read_newc(data: bytes) -> List[Entry]:
    """All entries of a (possibly concatenated, possibly gzip-compressed) newc initramfs.

    Zero padding between archives is skipped as the kernel does; later entries
    for the same path come after earlier ones in the list (the kernel lets the
    later one win).
    """
    out: List[Entry] = []
    buf = memoryview(data)
    pos = 0
    while pos < len(buf):
        if buf[pos] == 0:
            pos += 1
            continue
        if bytes(buf[pos:pos + 6]) == MAGIC:
            if pos % 4:
                raise ValueError(f"archive at offset {pos} is not 4-byte aligned")
            pos = _parse_one(buf, pos, out)
        elif bytes(buf[pos:pos + 2]) == b"\x1f\x8b":
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            plain = d.decompress(bytes(buf[pos:]))
            consumed = len(buf) - pos - len(d.unused_data)
            out.extend(read_newc(plain))
            pos += consumed
        else:
            raise ValueError(f"unknown data at offset {pos}: {bytes(buf[pos:pos + 8])!r}")
    return out


def unpack(entries: List[Entry], root: str) -> None:
    """Unpack entries into directory ``root`` (as the kernel would, later entries win)."""
    import os

    for e in entries:
        path = os.path.join(root, e.name)
        if e.is_dir:
            os.makedirs(path, exist_ok=True)
            os.chmod(path, stat.S_IMODE(e.mode))
            continue
        if os.path.islink(path) or os.path.lexists(path) and not os.path.isdir(path):
            os.unlink(path)
        if e.is_symlink:
            os.symlink(e.data.decode(), path)
        elif e.is_file:
            with open(path, "wb") as fh:
                fh.write(e.data)
            os.chmod(path, stat.S_IMODE(e.mode))


def concat(parts: List[bytes]) -> bytes:
    """Concatenate initramfs images, padding each to a 4-byte boundary."""
    b = io.BytesIO()
    for p in parts:
        b.write(p)
        b.write(b"\0" * _pad4(b.tell()))
    return b.getvalue()


def gzip_bytes(data: bytes, level: int = 9) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)


def iter_sizes(entries: List[Entry]) -> Iterator[tuple]:
    for e in entries:
        yield e.name, e.mode, len(e.data)
