"""kallsyms tables for a synthetic kernel, in the layout the kernel's
scripts/kallsyms emits (what ``dumpfilter.report.kallsyms`` decodes):

* ``kallsyms_num_syms`` (u32);
* ``kallsyms_names``: per symbol a token count byte and token indices;
  here every token is one character (token ``i`` is ``chr(i)``), so a
  name's tokens are its bytes, the ``nm`` type letter first;
* ``kallsyms_token_table`` (NUL-terminated tokens) and
  ``kallsyms_token_index`` (256 x u16 offsets into it);
* ``kallsyms_offsets`` (s32, base-relative: address = ``kallsyms_relative_base``
  + the unsigned offset, CONFIG_KALLSYMS_BASE_RELATIVE without
  ABSOLUTE_PERCPU) and ``kallsyms_relative_base`` (u64).

:func:`kallsyms_blobs` returns each table's bytes; the caller places them
and exports their addresses as VMCOREINFO ``SYMBOL(kallsyms_*)`` lines.
"""
from __future__ import annotations

import struct
from typing import Dict, List, Tuple

TABLES = ("kallsyms_num_syms", "kallsyms_names", "kallsyms_token_table",
          "kallsyms_token_index", "kallsyms_offsets", "kallsyms_relative_base")


def kallsyms_blobs(symbols: List[Tuple[str, str, int]], base: int) -> Dict[str, bytes]:
    """``symbols``: (name, nm type letter, address), any order; ``base``:
    the relative base (at or below every address)."""
    syms = sorted(symbols, key=lambda s: (s[2], s[0]))
    names = bytearray()
    for name, letter, _ in syms:
        text = (letter + name).encode("ascii")
        if not 0 < len(text) < 0x80:
            raise ValueError(f"kallsyms: bad symbol name {name!r}")
        names += bytes([len(text)]) + text
    table = bytearray()
    index = []
    for i in range(256):
        index.append(len(table))
        table += (bytes([i]) if i else b"") + b"\0"
    offsets = []
    for name, _, addr in syms:
        off = addr - base
        if not 0 <= off < 1 << 32:
            raise ValueError(f"kallsyms: {name} at {addr:#x} is outside base {base:#x} + 4 GiB")
        offsets.append(off)
    return {
        "kallsyms_num_syms": struct.pack("<I", len(syms)),
        "kallsyms_names": bytes(names),
        "kallsyms_token_table": bytes(table),
        "kallsyms_token_index": struct.pack("<256H", *index),
        "kallsyms_offsets": struct.pack("<%dI" % len(offsets), *offsets),
        "kallsyms_relative_base": struct.pack("<Q", base),
    }
