"""The dumped kernel's symbol table, decoded from its kallsyms tables.

Reads (all addresses from VMCOREINFO, exported since Linux 6.0 by commits
5fd8fea935a1 "vmcoreinfo: include kallsyms symbols" and f09bddbd8661
"vmcoreinfo: add kallsyms_num_syms symbol"):

* ``SYMBOL(kallsyms_num_syms)``: number of symbols (u32; ``unsigned long``
  on older kernels, whose low half is the same value on little endian).
* ``SYMBOL(kallsyms_names)``: per symbol a token count (one byte; if bit 7 is
  set a second byte extends it, ``(b0 & 0x7f) | (b1 << 7)``, commit
  73bbb94466fd "kallsyms: support "big" kernel symbols", 6.1) followed by
  that many token indices.
* ``SYMBOL(kallsyms_token_index)`` (256 x u16) into
  ``SYMBOL(kallsyms_token_table)`` (NUL-terminated token strings). The first
  decoded character is the ``nm`` type letter.
* addresses, whichever the kernel has:
  ``SYMBOL(kallsyms_addresses)`` (absolute ``unsigned long``);
  ``SYMBOL(kallsyms_offsets)`` + ``SYMBOL(kallsyms_relative_base)``
  (base-relative s32; with CONFIG_KALLSYMS_ABSOLUTE_PERCPU a non-negative
  value is absolute and a negative one means ``base - 1 - value``);
  ``SYMBOL(kallsyms_offsets)`` alone (place-relative: each s32 is relative
  to its own address, after the kernel dropped kallsyms_relative_base).
  The interpretation is chosen by checking ``_stext`` against
  ``SYMBOL(_stext)``, never by kernel version.

The old one-byte length form cannot be told apart from the two-byte form by
any exported symbol; the two-byte reading is used throughout because on the
older kernels a length byte >= 0x80 would mean a name of >= 128 tokens,
which KSYM_NAME_LEN (128) excluded.

Tables are read in a handful of large reads; decoding ~150k symbols takes
well under half a second.
"""
from __future__ import annotations

import array
import bisect
import struct
import sys
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from dumpfilter.errors import CorruptDumpError, FaultError, VmcoreInfoError
from dumpfilter.report.context import read_described

_U64_MAX = (1 << 64) - 1
#: An address this far past a symbol is not considered inside it (the gap
#: before per-cpu / after the last symbol would otherwise swallow everything).
MAX_SYMBOL_SIZE = 0x100000
#: Read the names table in pieces of this size when its end is unknown.
_CHUNK = 1 << 20
#: Sanity limits, so a corrupt count fails clearly instead of reading GBs.
_MAX_SYMS = 4_000_000
_MAX_NAMES_BYTES = 64 << 20


@dataclass(frozen=True)
class Symbol:
    name: str
    address: int
    type: str  # nm letter: T t D d B b R r A W V ...
    size: int  # distance to the next higher address (0 for the last one)


class KallsymsError(CorruptDumpError):
    """The kallsyms tables in the dump are inconsistent."""


class KallsymsTable:
    """Symbol table: ``address(name)``, ``lookup(addr)`` -> (name, offset).

    Symbols are kept in the kernel's table order (sorted by address);
    aliases at one address resolve to the first one, like the kernel's
    ``get_symbol_pos``.
    """

    def __init__(self, names: Sequence[str], types: Sequence[str], addresses: Sequence[int],
                 encoding: str = "?"):
        if not (len(names) == len(types) == len(addresses)):
            raise ValueError("names, types and addresses differ in length")
        self.names: List[str] = list(names)
        self.types: List[str] = list(types)
        self.encoding = encoding
        n = len(self.names)
        addrs = list(addresses)
        order = list(range(n))
        if any(addrs[i] > addrs[i + 1] for i in range(n - 1)):
            order.sort(key=addrs.__getitem__)  # stable: aliases keep table order
        self._order = order
        self.addresses = addrs
        # Distinct sorted addresses, each with the first symbol index there.
        uniq: List[int] = []
        first: List[int] = []
        last = None
        for i in order:
            a = addrs[i]
            if a != last:
                uniq.append(a)
                first.append(i)
                last = a
        self._uniq = uniq
        self._first = first
        by_name: Dict[str, int] = {}
        for i, nm in enumerate(self.names):
            j = by_name.get(nm)
            # Prefer a global (upper case) symbol over a local one of the
            # same name; otherwise the first one in table order.
            if j is None or (self.types[i].isupper() and not self.types[j].isupper()):
                by_name[nm] = i
        self._by_name = by_name

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def address(self, name: str) -> Optional[int]:
        """Address of ``name`` (a global symbol preferred), or None."""
        i = self._by_name.get(name)
        return None if i is None else self.addresses[i]

    def require(self, name: str) -> int:
        a = self.address(name)
        if a is None:
            raise VmcoreInfoError(f"symbol {name!r} is not in the dump's kallsyms")
        return a

    def type_of(self, name: str) -> Optional[str]:
        i = self._by_name.get(name)
        return None if i is None else self.types[i]

    def all_addresses(self, name: str) -> List[int]:
        return [self.addresses[i] for i, nm in enumerate(self.names) if nm == name]

    def symbol(self, name: str) -> Optional[Symbol]:
        i = self._by_name.get(name)
        return None if i is None else self._symbol(i)

    def _symbol(self, i: int) -> Symbol:
        a = self.addresses[i]
        k = bisect.bisect_right(self._uniq, a)
        size = self._uniq[k] - a if k < len(self._uniq) else 0
        return Symbol(self.names[i], a, self.types[i], size)

    def lookup(self, address: int) -> Optional[Tuple[str, int]]:
        """(name, offset) of the symbol containing ``address``, or None when
        it is below the first symbol or implausibly far past one."""
        k = bisect.bisect_right(self._uniq, address) - 1
        if k < 0:
            return None
        off = address - self._uniq[k]
        nxt = self._uniq[k + 1] if k + 1 < len(self._uniq) else None
        if nxt is None and off > MAX_SYMBOL_SIZE:
            return None
        if nxt is not None and nxt - self._uniq[k] > MAX_SYMBOL_SIZE and off > MAX_SYMBOL_SIZE:
            return None
        return self.names[self._first[k]], off

    def lookup_symbol(self, address: int) -> Optional[Symbol]:
        """Like ``lookup`` but the whole ``Symbol``."""
        k = bisect.bisect_right(self._uniq, address) - 1
        if k < 0 or self.lookup(address) is None:
            return None
        return self._symbol(self._first[k])

    def format_address(self, address: int) -> str:
        """``name+0xoff`` (``name`` when the offset is 0), else hex."""
        hit = self.lookup(address)
        if hit is None:
            return f"{address:#x}"
        name, off = hit
        return f"{name}+{off:#x}" if off else name

    def __iter__(self) -> Iterator[Symbol]:
        for i in self._order:
            yield self._symbol(i)


# --------------------------------------------------------------------------- decoding

def _read(mem, vaddr: int, size: int, what: str) -> bytes:
    return read_described(mem, vaddr, size, what)


def _read_token_table(mem, table_addr: int, index: Sequence[int]) -> List[bytes]:
    span = max(index) + 256
    blob = _read(mem, table_addr, span, "kallsyms_token_table")
    # Tokens are short; if the last one is not terminated inside the span,
    # read a bit more.
    tokens: List[bytes] = []
    for off in index:
        end = blob.find(b"\0", off)
        while end < 0:
            if len(blob) > span + 65536:
                raise KallsymsError("kallsyms_token_table: unterminated token")
            blob += _read(mem, table_addr + len(blob), 4096, "kallsyms_token_table")
            end = blob.find(b"\0", off)
        tokens.append(blob[off:end])
    return tokens


def _read_partial(mem, vaddr: int, size: int) -> bytes:
    """Up to ``size`` bytes at ``vaddr``: all of them in one read when
    possible, else page by page up to the first unreadable page."""
    try:
        return mem.read(vaddr, size)
    except FaultError:
        pass
    out = bytearray()
    pos = vaddr
    end = vaddr + size
    while pos < end:
        step = min(end, (pos | 0xFFF) + 1) - pos
        try:
            out += mem.read(pos, step)
        except FaultError:
            # The page may be only partly described (fake readers): try
            # smaller pieces before giving up.
            got = False
            for piece in (256, 16, 1):
                if step > piece:
                    try:
                        out += mem.read(pos, piece)
                        step = piece
                        got = True
                        break
                    except FaultError:
                        continue
            if not got:
                break
        pos += step
    return bytes(out)


def _scan_names(mem, names_addr: int, num: int,
                hint_end: Optional[int]) -> Tuple[bytes, List[int], List[int]]:
    """Read kallsyms_names; return (blob, token-byte start of each symbol,
    token count of each symbol)."""
    size = hint_end - names_addr if hint_end is not None else _CHUNK
    blob = _read_partial(mem, names_addr, size)
    starts: List[int] = []
    lengths: List[int] = []
    pos = 0
    n = len(blob)

    def need(upto: int) -> None:
        nonlocal blob, n
        while upto > n:
            if n >= _MAX_NAMES_BYTES:
                raise KallsymsError("kallsyms_names: table larger than 64 MiB; corrupt count?")
            more = _read_partial(mem, names_addr + n, max(_CHUNK, upto - n))
            if not more:
                raise FaultError(f"cannot read kallsyms_names: byte {n} of the table "
                                 f"is not in the dump", names_addr + n)
            blob += more
            n = len(blob)

    for k in range(num):
        need(pos + 1)
        b0 = blob[pos]
        if b0 & 0x80:
            need(pos + 2)
            length = (b0 & 0x7F) | (blob[pos + 1] << 7)
            pos += 2
        else:
            length = b0
            pos += 1
        if length == 0:
            raise KallsymsError(f"kallsyms_names: zero length for symbol #{k}")
        need(pos + length)
        starts.append(pos)
        lengths.append(length)
        pos += length
    return blob, starts, lengths


def _decode_names(blob: bytes, starts: List[int], lengths: List[int],
                  tokens: List[bytes]) -> Tuple[List[str], List[str]]:
    tok = tokens.__getitem__
    join = b"".join
    texts = [join(map(tok, blob[s:s + ln])) for s, ln in zip(starts, lengths)]
    big = b"\n".join(texts).decode("latin-1").split("\n")
    if len(big) != len(texts):  # a name containing a newline: corrupt
        raise KallsymsError("kallsyms_names: symbol name contains a newline")
    types = [t[:1] for t in big]
    names = [t[1:] for t in big]
    return names, types


def _read_int(mem, addr: int, fmt: str, what: str) -> int:
    size = struct.calcsize(fmt)
    return struct.unpack(fmt, _read(mem, addr, size, what))[0]


def _decode_addresses(mem, info, num: int, names: List[str]) -> Tuple[List[int], str]:
    """Addresses in table order and the name of the encoding used."""
    stext = info.symbol("_stext")
    try:
        stext_idx = names.index("_stext")
    except ValueError:
        stext_idx = None
    absolute = info.symbol("kallsyms_addresses")
    offsets_addr = info.symbol("kallsyms_offsets")
    if absolute is not None and offsets_addr is None:
        raw = _read(mem, absolute, 8 * num, "kallsyms_addresses")
        return list(array_of("Q", raw)), "absolute"
    if offsets_addr is None:
        raise VmcoreInfoError(
            "VMCOREINFO has neither SYMBOL(kallsyms_offsets) nor SYMBOL(kallsyms_addresses)")
    offs = array_of("i", _read(mem, offsets_addr, 4 * num, "kallsyms_offsets"))
    candidates = []
    base_addr = info.symbol("kallsyms_relative_base")
    if base_addr is not None:
        base = _read_int(mem, base_addr, "<Q", "kallsyms_relative_base")
        candidates.append(("base-relative", lambda: [(base + (o & 0xFFFFFFFF)) & _U64_MAX
                                                     for o in offs]))
        candidates.append(("absolute-percpu", lambda: [o if o >= 0 else (base - 1 - o) & _U64_MAX
                                                       for o in offs]))
    # Place-relative: the kernel dropped kallsyms_relative_base and stores
    # each entry relative to its own location.
    candidates.append(("place-relative", lambda: [(offsets_addr + 4 * i + o) & _U64_MAX
                                                  for i, o in enumerate(offs)]))
    if stext is None or stext_idx is None:
        # Cannot verify; take the first (most common) interpretation.
        name, make = candidates[0]
        return make(), name
    for name, make in candidates:
        if name == "base-relative":
            val = (base + (offs[stext_idx] & 0xFFFFFFFF)) & _U64_MAX
        elif name == "absolute-percpu":
            o = offs[stext_idx]
            val = o if o >= 0 else (base - 1 - o) & _U64_MAX
        else:
            val = (offsets_addr + 4 * stext_idx + offs[stext_idx]) & _U64_MAX
        if val == stext:
            return make(), name
    raise KallsymsError(
        f"kallsyms: no address encoding gives _stext = {stext:#x} (tried "
        + ", ".join(n for n, _ in candidates) + ")")


def array_of(code: str, raw: bytes) -> array.array:
    a = array.array(code)
    a.frombytes(raw[: len(raw) - len(raw) % a.itemsize])
    if sys.byteorder != "little":
        a.byteswap()
    return a


def load_kallsyms(mem, info) -> KallsymsTable:
    """Decode the kernel's kallsyms through ``mem`` (anything with
    ``read(vaddr, n)``) using the addresses in ``info`` (VmcoreInfo).

    Raises VmcoreInfoError when the kallsyms symbols are not exported,
    FaultError when a table is not in the dump, KallsymsError when the
    tables are inconsistent."""
    need = ("kallsyms_num_syms", "kallsyms_names", "kallsyms_token_table",
            "kallsyms_token_index")
    missing = [n for n in need if info.symbol(n) is None]
    if missing:
        raise VmcoreInfoError(
            "VMCOREINFO lacks " + ", ".join(f"SYMBOL({n})" for n in missing)
            + " (exported since Linux 6.0): no symbol table")
    num = _read_int(mem, info.symbol("kallsyms_num_syms"), "<I", "kallsyms_num_syms")
    if not 0 < num <= _MAX_SYMS:
        raise KallsymsError(f"kallsyms_num_syms = {num}: implausible")
    index = list(array_of("H", _read(mem, info.symbol("kallsyms_token_index"), 512,
                                     "kallsyms_token_index")))
    tokens = _read_token_table(mem, info.symbol("kallsyms_token_table"), index)
    names_addr = info.symbol("kallsyms_names")
    # The linker places kallsyms_markers and then kallsyms_token_table
    # after kallsyms_names: if so, that bounds the names table.
    hint = info.symbol("kallsyms_token_table")
    if hint is not None and not names_addr < hint <= names_addr + _MAX_NAMES_BYTES:
        hint = None
    blob, starts, lengths = _scan_names(mem, names_addr, num, hint)
    names, types = _decode_names(blob, starts, lengths, tokens)
    addresses, encoding = _decode_addresses(mem, info, num, names)
    return KallsymsTable(names, types, addresses, encoding)
