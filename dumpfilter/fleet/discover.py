"""Finding the dumps: files and directories (searched recursively) turned
into work items, one per dump; the pieces of a ``--split`` dump are one item.

Split pieces are recognised by their kdump sub header (``split`` flag, the
``[start_pfn, end_pfn)`` each holds) and grouped with the other pieces of the
same dump: the same disk header (signature, version, utsname, timestamp,
block size, ``max_mapnr``...), the same ELF notes and dump level. A group
whose pieces do not cover ``[0, max_mapnr)`` exactly is still one item; its
``note`` says what is missing. Every other file — a dump, a file that is
not a dump, one that cannot be read — is an item of its own: the worker
turns it into a record (an error record if need be).

Reads: 16 bytes of each file, and the kdump headers of kdump files.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class FileId:
    """What a record is keyed by: a dump is done again when any changes."""

    path: str
    size: int
    mtime_ns: int

    def as_list(self) -> list:
        return [self.path, self.size, self.mtime_ns]


@dataclass
class Item:
    """One dump to triage: one file, or the pieces of a split dump (in pfn order)."""

    files: List[FileId]
    note: Optional[str] = None
    stat_error: Optional[str] = None

    @property
    def path(self) -> str:
        return self.files[0].path

    @property
    def paths(self) -> List[str]:
        return [f.path for f in self.files]

    @property
    def key(self) -> str:
        return item_key([f.as_list() for f in self.files])


def item_key(files: Sequence[Sequence]) -> str:
    """Stable key of (path, size, mtime_ns) triples."""
    text = "\n".join(f"{p}\0{s}\0{m}" for p, s, m in files)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _walk(paths: Iterable[str], skip: Sequence[str]) -> Tuple[List[str], List[Tuple[str, str]]]:
    """Regular files under ``paths`` (sorted, deduplicated), and the
    (path, error) of those that cannot be listed or are not files."""
    skip_real = {os.path.realpath(s) for s in skip if s}
    files: List[str] = []
    bad: List[Tuple[str, str]] = []

    def onerror(e: OSError) -> None:
        bad.append((e.filename, e.strerror or str(e)))

    for top in paths:
        top = os.path.abspath(top)
        if os.path.isdir(top):
            for root, dirs, names in os.walk(top, onerror=onerror):
                dirs[:] = sorted(d for d in dirs
                                 if os.path.realpath(os.path.join(root, d)) not in skip_real)
                files.extend(os.path.join(root, n) for n in sorted(names))
        elif os.path.lexists(top):
            files.append(top)
        else:
            bad.append((top, "No such file or directory"))
    seen = set()
    out = []
    for f in files:
        if f not in seen:
            seen.add(f)
            out.append(f)
    return out, bad


def _split_piece(path: str):
    """(group key, start_pfn, end_pfn, max_pfn) of a split piece, else None."""
    from dumpfilter.errors import DumpFilterError
    from dumpfilter.formats.kdump import DISK_HEADER, DISKDUMP_SIGNATURE, KDUMP_SIGNATURE
    from dumpfilter.readers.kdump import KdumpSource

    try:
        with open(path, "rb") as f:
            if f.read(8) not in (KDUMP_SIGNATURE, DISKDUMP_SIGNATURE):
                return None
        src = KdumpSource(path)
    except (OSError, DumpFilterError):
        return None  # the worker reports why
    try:
        if not src.split:
            return None
        h = hashlib.sha256(src.file.pread(0, DISK_HEADER.size))
        h.update(bytes(src.notes))
        h.update(b"%d/%d/%d" % (src.max_pfn, src.page_size, src.sub_header.dump_level))
        return h.hexdigest(), src.start_pfn, src.end_pfn, src.max_pfn
    finally:
        src.close()


def discover(paths: Iterable[str], skip: Sequence[str] = ()) -> List[Item]:
    """Work items for ``paths``, in path order; ``skip``: directories not
    to enter (the output directories)."""
    files, bad = _walk(paths, skip)
    items: List[Item] = []
    groups: Dict[str, List[Tuple[int, int, int, FileId]]] = {}
    first_at: Dict[str, int] = {}
    for path in files:
        try:
            st = os.stat(path)
        except OSError as e:
            items.append(Item([FileId(path, 0, 0)], stat_error=e.strerror or str(e)))
            continue
        fid = FileId(path, st.st_size, st.st_mtime_ns)
        piece = _split_piece(path) if os.path.isfile(path) else None
        if piece is None:
            items.append(Item([fid]))
            continue
        key, lo, hi, max_pfn = piece
        if key not in groups:
            groups[key] = []
            first_at[key] = len(items)
            items.append(None)  # placeholder: the group goes where its first piece was
        groups[key].append((lo, hi, max_pfn, fid))
    for key, pieces in groups.items():
        pieces.sort(key=lambda p: (p[0], p[1], p[3].path))
        items[first_at[key]] = Item([p[3] for p in pieces], note=_coverage(pieces))
    items.extend(Item([FileId(p, 0, 0)], stat_error=err) for p, err in bad)
    return items


def _coverage(pieces) -> Optional[str]:
    pos = 0
    for lo, hi, max_pfn, fid in pieces:
        if lo > pos:
            return f"split set incomplete: no piece holds pfns [{pos:#x}, {lo:#x})"
        if lo < pos:
            return f"split set overlaps at pfn {lo:#x} ({fid.path})"
        pos = hi
    if pos != pieces[0][2]:
        return f"split set incomplete: no piece holds pfns [{pos:#x}, {pieces[0][2]:#x})"
    return None
