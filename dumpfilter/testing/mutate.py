"""Field-targeted mutations of dump files (bytes in, bytes out), for the
malformed-input corpus (tests/test_malformed_corpus.py) and the fuzz
harness (tools/fuzz.py).

Each function changes one structure the readers parse and leaves the rest
of the file as it was:

* ELF: ``elf_set_phdr`` (one program header field), ``elf_set_vmcoreinfo``
  (VMCOREINFO lines replaced, added or removed: the whole note blob is
  rewritten at the end of the file and the first PT_NOTE pointed at it,
  so PT_LOAD offsets do not move);
* kdump-compressed: ``kdump_set_header`` / ``kdump_set_sub`` (one field of
  ``struct disk_dump_header`` / ``kdump_sub_header``), ``kdump_set_desc``
  (one field of a page descriptor);
* flattened: ``flat_records`` and ``flat_set_record``;
* anything: ``truncate`` and ``flip_bit``.

Pure Python on the formats' declared layouts; no reader is used, so a
mutation never depends on the code it is meant to test.
"""
from __future__ import annotations

import struct
from typing import Dict, List, Optional, Tuple

from dumpfilter.formats.elf import EHDR, PHDR, PT_NOTE
from dumpfilter.formats.flattened import FLAT_HEADER_SIZE, FLAT_RECORD
from dumpfilter.formats.kdump import DISK_HEADER, PAGE_DESC, SUB_HEADER, SUB_HEADER_FIELDS

PHDR_FIELDS = ("p_type", "p_flags", "p_offset", "p_vaddr", "p_paddr", "p_filesz", "p_memsz",
               "p_align")
DISK_HEADER_FIELDS = ("signature", "header_version", "utsname", "timestamp_sec",
                      "timestamp_usec", "status", "block_size", "sub_hdr_size", "bitmap_blocks",
                      "max_mapnr", "total_ram_blocks", "device_blocks", "written_blocks",
                      "current_cpu", "nr_cpus")
_U64 = (1 << 64) - 1


def truncate(data: bytes, size: int) -> bytes:
    return bytes(data[:size])


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit >> 3] ^= 1 << (bit & 7)
    return bytes(out)


# ----------------------------------------------------------------------- ELF

def elf_phdrs(data: bytes) -> List[Tuple[int, Tuple[int, ...]]]:
    """``[(file offset of the header, fields)]`` in PHDR_FIELDS order."""
    e = EHDR.unpack_from(data, 0)
    phoff, phnum = e[5], e[10]
    return [(phoff + i * PHDR.size, PHDR.unpack_from(data, phoff + i * PHDR.size))
            for i in range(phnum)]


def elf_set_phdr(data: bytes, index: int, field: str, value: int) -> bytes:
    pos, fields = elf_phdrs(data)[index]
    vals = list(fields)
    vals[PHDR_FIELDS.index(field)] = value & (_U64 if field not in ("p_type", "p_flags")
                                              else 0xFFFFFFFF)
    out = bytearray(data)
    PHDR.pack_into(out, pos, *vals)
    return bytes(out)


def _notes(blob: bytes) -> List[Tuple[bytes, int, bytes]]:
    out, off = [], 0
    while off + 12 <= len(blob):
        namesz, descsz, ntype = struct.unpack_from("<III", blob, off)
        if namesz == descsz == ntype == 0:
            break
        name = blob[off + 12:off + 12 + namesz]
        d = off + 12 + ((namesz + 3) & ~3)
        out.append((name, ntype, blob[d:d + descsz]))
        off = d + ((descsz + 3) & ~3)
    return out


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def vmcoreinfo_edit(text: bytes, edits: Dict[str, Optional[str]]) -> bytes:
    """``KEY=value`` lines: each key in ``edits`` gets the new value (None:
    the line is removed); keys not present are appended."""
    lines, seen = [], set()
    for line in text.split(b"\0", 1)[0].decode("ascii", "replace").splitlines():
        key = line.split("=", 1)[0]
        if key in edits:
            seen.add(key)
            if edits[key] is not None:
                lines.append(f"{key}={edits[key]}")
        else:
            lines.append(line)
    lines += [f"{k}={v}" for k, v in edits.items() if k not in seen and v is not None]
    return ("\n".join(lines) + "\n").encode()


def elf_set_vmcoreinfo(data: bytes, edits: Dict[str, Optional[str]]) -> bytes:
    """The ELF with its VMCOREINFO note edited (see ``vmcoreinfo_edit``)."""
    phdrs = elf_phdrs(data)
    notes = []
    for _, f in phdrs:
        if f[0] == PT_NOTE:
            notes += _notes(data[f[2]:f[2] + f[5]])
    blob = b"".join(_note(n, t, vmcoreinfo_edit(d, edits) if n.rstrip(b"\0") == b"VMCOREINFO"
                          else d) for n, t, d in notes)
    out = bytearray(data)
    out += bytes(-len(out) % 8)
    where = len(out)
    out += blob
    first = True
    for pos, f in phdrs:
        if f[0] != PT_NOTE:
            continue
        vals = list(f)
        vals[2], vals[5], vals[6] = (where, len(blob), len(blob)) if first else (where, 0, 0)
        PHDR.pack_into(out, pos, *vals)
        first = False
    return bytes(out)


# --------------------------------------------------------------------- kdump

def kdump_block_size(data: bytes) -> int:
    return DISK_HEADER.unpack_from(data, 0)[DISK_HEADER_FIELDS.index("block_size")]


def kdump_set_header(data: bytes, field: str, value) -> bytes:
    vals = list(DISK_HEADER.unpack_from(data, 0))
    vals[DISK_HEADER_FIELDS.index(field)] = value
    out = bytearray(data)
    DISK_HEADER.pack_into(out, 0, *vals)
    return bytes(out)


def kdump_set_sub(data: bytes, field: str, value: int) -> bytes:
    at = kdump_block_size(data)
    vals = list(SUB_HEADER.unpack_from(data, at))
    vals[SUB_HEADER_FIELDS.index(field)] = value
    out = bytearray(data)
    SUB_HEADER.pack_into(out, at, *vals)
    return bytes(out)


def kdump_desc_offset(data: bytes) -> int:
    """File offset of the first page descriptor."""
    h = DISK_HEADER.unpack_from(data, 0)
    bs = h[DISK_HEADER_FIELDS.index("block_size")]
    return bs * (1 + h[DISK_HEADER_FIELDS.index("sub_hdr_size")]
                 + h[DISK_HEADER_FIELDS.index("bitmap_blocks")])


def kdump_set_desc(data: bytes, index: int, field: str, value: int) -> bytes:
    pos = kdump_desc_offset(data) + index * PAGE_DESC.size
    vals = list(PAGE_DESC.unpack_from(data, pos))
    vals[("offset", "size", "flags", "page_flags").index(field)] = value
    out = bytearray(data)
    PAGE_DESC.pack_into(out, pos, *vals)
    return bytes(out)


# ----------------------------------------------------------------- flattened

def flat_records(data: bytes) -> List[Tuple[int, int, int]]:
    """``[(stream position of the record header, offset, size)]``, up to
    the end marker (or the end of the data)."""
    out, pos = [], FLAT_HEADER_SIZE
    while pos + FLAT_RECORD.size <= len(data):
        offset, size = FLAT_RECORD.unpack_from(data, pos)
        if offset < 0 or size < 0:
            break
        out.append((pos, offset, size))
        pos += FLAT_RECORD.size + size
    return out


def flat_set_record(data: bytes, index: int, offset: Optional[int] = None,
                    size: Optional[int] = None) -> bytes:
    pos, o, s = flat_records(data)[index]
    out = bytearray(data)
    FLAT_RECORD.pack_into(out, pos, o if offset is None else offset, s if size is None else size)
    return bytes(out)


def flat_inner_offset(data: bytes, logical: int) -> Optional[int]:
    """Stream position of the byte at ``logical`` offset of the inner file
    (the last record that holds it), or None."""
    found = None
    for pos, o, s in flat_records(data):
        if o <= logical < o + s:
            found = pos + FLAT_RECORD.size + logical - o
    return found
