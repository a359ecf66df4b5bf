"""Pure-Python LZO1X block decoder, for tests only.

Slow on purpose: it follows the bitstream one field at a time so that it can
serve as an independent check of the C decoder (csrc/lzo1x.c). It accepts
exactly the blocks liblzo2's ``lzo1x_decompress_safe`` accepts: the end
marker is the 0001 form with H == 0 and a zero distance field, and it must
be the last byte sequence of the input.
"""
from __future__ import annotations


class LzoRefError(ValueError):
    """Malformed block (``kind`` is "input", "lookbehind" or "output")."""

    def __init__(self, kind: str, msg: str):
        super().__init__(f"{kind}: {msg}")
        self.kind = kind


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise LzoRefError("input", f"block ends at {self.pos}")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise LzoRefError("input", f"{n} literals past the end at {self.pos}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def length(self, small: int, width: int) -> int:
        """A length field of ``width`` bits already read as ``small``; 0
        means (2**width - 1) plus a zero-run extension."""
        if small:
            return small
        total = (1 << width) - 1
        while True:
            b = self.byte()
            if b:
                return total + b
            total += 255


def decompress(block: bytes, max_out: int) -> bytes:
    """Decode ``block``; raise :class:`LzoRefError` if it is malformed or
    decodes to more than ``max_out`` bytes."""
    rd = _Reader(bytes(block))
    out = bytearray()

    def literals(n: int) -> None:
        if len(out) + n > max_out:
            raise LzoRefError("output", f"{len(out) + n} > {max_out}")
        out.extend(rd.take(n))

    def copy(distance: int, n: int) -> None:
        if distance < 1 or distance > len(out):
            raise LzoRefError("lookbehind", f"distance {distance} at {len(out)}")
        if len(out) + n > max_out:
            raise LzoRefError("output", f"{len(out) + n} > {max_out}")
        start = len(out) - distance
        for k in range(n):
            out.append(out[start + k])

    # "after" = literals copied by the previous instruction: 0, 1..3, or 4
    # meaning "a run of four or more".
    after = 0
    if block and block[0] >= 18:
        n = rd.byte() - 17
        literals(n)
        after = min(n, 4)

    while True:
        op = rd.byte()
        top = op >> 4
        if top == 0:
            if after == 0:
                literals(rd.length(op, 4) + 3)
                after = 4
                continue
            low = rd.byte()
            if after == 4:
                copy(2049 + (op >> 2) + low * 4, 3)
            else:
                copy(1 + (op >> 2) + low * 4, 2)
            trailing = op & 3
        elif top == 1:
            n = rd.length(op & 7, 3) + 2
            lo, hi = rd.byte(), rd.byte()
            field = (lo >> 2) | (hi << 6)
            far = ((op >> 3) & 1) * 16384 + field
            if far == 0:
                if rd.pos != len(rd.data):
                    raise LzoRefError("input", f"{len(rd.data) - rd.pos} bytes after the end marker")
                return bytes(out)
            copy(16384 + far, n)
            trailing = lo & 3
        elif top < 4:
            n = rd.length(op & 31, 5) + 2
            lo, hi = rd.byte(), rd.byte()
            copy(1 + ((lo >> 2) | (hi << 6)), n)
            trailing = lo & 3
        else:
            n = (op >> 5) + 1
            low = rd.byte()
            copy(1 + ((op >> 2) & 7) + low * 8, n)
            trailing = op & 3
        if trailing:
            literals(trailing)
        after = trailing
