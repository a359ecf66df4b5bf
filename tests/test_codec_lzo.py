"""LZO1X-1 (makedumpfile -l) codec: our C implementation (csrc/lzo1x.c via
dumpfilter.codecs.lzo) against itself, against the independent pure-Python decoder
(dumpfilter.testing.pyref_lzo), against the real liblzo2 (ctypes), and on real pages
of the 6.1 vmcore and of makedumpfile's own -l output.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dumpfilter import codecs as compress
from dumpfilter.codecs import lzo
from dumpfilter.testing import pyref_lzo as _pyref_lzo
from dumpfilter._core import ffi, lib
from dumpfilter.errors import CodecError, CorruptDumpError

PAGE = 4096

# --------------------------------------------------------------------------- liblzo2

# lzoconf.h of LZO 2.10: LZO_VERSION, and lzo_init() expands to
# __lzo_init_v2(LZO_VERSION, sizeof(short), sizeof(int), sizeof(long),
# sizeof(lzo_uint32_t), sizeof(lzo_uint), lzo_sizeof_dict_t (= sizeof(lzo_bytep)),
# sizeof(char *), sizeof(lzo_voidp), sizeof(lzo_callback_t)).
LZO_VERSION = 0x20A0
LZO_E_OK = 0
# LZO1X_1_MEM_COMPRESS = 16384 * lzo_sizeof_dict_t;
# LZO1X_999_MEM_COMPRESS = 14 * 16384 * sizeof(short).
LZO1X_1_MEM = 16384 * ctypes.sizeof(ctypes.c_void_p)
LZO1X_999_MEM = 14 * 16384 * ctypes.sizeof(ctypes.c_short)


class _LzoCallback(ctypes.Structure):
    # struct lzo_callback_t: nalloc, nfree, nprogress (function pointers),
    # user1 (lzo_voidp), user2, user3 (lzo_xint = lzo_uint = size_t here).
    _fields_ = [
        ("nalloc", ctypes.c_void_p),
        ("nfree", ctypes.c_void_p),
        ("nprogress", ctypes.c_void_p),
        ("user1", ctypes.c_void_p),
        ("user2", ctypes.c_size_t),
        ("user3", ctypes.c_size_t),
    ]


class LibLzo2:
    """The few liblzo2 entry points the tests need."""

    def __init__(self):
        try:
            so = ctypes.CDLL("liblzo2.so.2")
        except OSError:
            name = ctypes.util.find_library("lzo2")
            if name is None:
                raise
            so = ctypes.CDLL(name)
        # getattr: a literal so.__lzo_init_v2 would be name-mangled here.
        init = getattr(so, "__lzo_init_v2")
        init.argtypes = [ctypes.c_uint] + [ctypes.c_int] * 9
        init.restype = ctypes.c_int
        sizes = [
            ctypes.sizeof(ctypes.c_short),
            ctypes.sizeof(ctypes.c_int),
            ctypes.sizeof(ctypes.c_long),
            ctypes.sizeof(ctypes.c_uint32),
            ctypes.sizeof(ctypes.c_size_t),
            ctypes.sizeof(ctypes.c_void_p),
            ctypes.sizeof(ctypes.c_char_p),
            ctypes.sizeof(ctypes.c_void_p),
            ctypes.sizeof(_LzoCallback),
        ]
        rc = init(LZO_VERSION, *sizes)
        if rc != LZO_E_OK:
            raise OSError(f"__lzo_init_v2 failed with {rc}")
        sig = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p,
               ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p]
        for fn in ("lzo1x_1_compress", "lzo1x_999_compress", "lzo1x_decompress_safe"):
            getattr(so, fn).argtypes = sig
            getattr(so, fn).restype = ctypes.c_int
        self.so = so
        self.wrk1 = ctypes.create_string_buffer(LZO1X_1_MEM)
        self.wrk999 = ctypes.create_string_buffer(LZO1X_999_MEM)

    def _compress(self, fn, wrk, data: bytes) -> bytes:
        out = ctypes.create_string_buffer(len(data) + len(data) // 16 + 64 + 3)
        n = ctypes.c_size_t(len(out))
        rc = fn(bytes(data), len(data), out, ctypes.byref(n), wrk)
        assert rc == LZO_E_OK, rc
        return out.raw[: n.value]

    def compress(self, data: bytes) -> bytes:
        return self._compress(self.so.lzo1x_1_compress, self.wrk1, data)

    def compress_999(self, data: bytes) -> bytes:
        return self._compress(self.so.lzo1x_999_compress, self.wrk999, data)

    def decompress(self, data: bytes, max_out: int):
        """(rc, output). The input is padded so that even a reader that
        peeks past in_len stays inside our buffer; in_len is exact."""
        src = bytes(data) + bytes(64)
        out = ctypes.create_string_buffer(max_out + 64)
        n = ctypes.c_size_t(max_out)
        rc = self.so.lzo1x_decompress_safe(src, len(data), out, ctypes.byref(n), None)
        return rc, out.raw[: n.value]


_liblzo2 = None
_liblzo2_error = None


def _load_liblzo2():
    global _liblzo2, _liblzo2_error
    if _liblzo2 is None and _liblzo2_error is None:
        try:
            _liblzo2 = LibLzo2()
        except (OSError, AttributeError) as e:
            _liblzo2_error = f"liblzo2 not loadable ({e}); install Debian package liblzo2-2"
    return _liblzo2


@pytest.fixture(scope="module")
def liblzo2() -> LibLzo2:
    lz = _load_liblzo2()
    if lz is None:
        pytest.skip(_liblzo2_error)
    return lz


# --------------------------------------------------------------------------- data

def _memory_like(rnd: random.Random, size: int) -> bytes:
    """Typical memory content: zero runs, repeated structs, text, pointers,
    random bytes, in random-sized pieces."""
    out = bytearray()
    words = [b"task_struct", b"kworker/", b"swapper", b"ext4", b"\x00\x00", b"inode", b"0x"]
    while len(out) < size:
        kind = rnd.randrange(6)
        n = rnd.choice([1, 3, 7, 16, 64, 100, 300, 1000, 4096])
        if kind == 0:
            out += bytes(n)
        elif kind == 1:
            s = bytes(rnd.getrandbits(8) for _ in range(64))
            for _ in range(max(1, n // 64)):
                # a struct array: same layout, a few fields change
                t = bytearray(s)
                t[rnd.randrange(64)] = rnd.getrandbits(8)
                out += t
        elif kind == 2:
            out += b" ".join(rnd.choice(words) for _ in range(max(1, n // 6)))
        elif kind == 3:
            base = 0xFFFF888000000000 + rnd.getrandbits(24) * 64
            for _ in range(max(1, n // 8)):
                out += struct.pack("<Q", base + rnd.randrange(64) * 64)
        elif kind == 4:
            out += rnd.randbytes(n) if hasattr(rnd, "randbytes") else bytes(
                rnd.getrandbits(8) for _ in range(n))
        else:
            # copy of something seen before, near or far
            if out:
                start = rnd.randrange(len(out))
                out += out[start:start + n]
    return bytes(out[:size])


@st.composite
def memory_blobs(draw, max_size=70000):
    size = draw(st.one_of(st.integers(0, 64), st.integers(0, max_size),
                          st.sampled_from([PAGE, 2 * PAGE, 49151, 49152, 49153, 65535, 65536,
                                           65537, max_size])))
    seed = draw(st.integers(0, 2**32 - 1))
    return _memory_like(random.Random(seed), size)


@st.composite
def pages(draw):
    return _memory_like(random.Random(draw(st.integers(0, 2**32 - 1))), PAGE)


any_data = st.one_of(st.binary(max_size=300), memory_blobs())


def c_decompress_status(data: bytes, max_out: int):
    """(status, output) straight from the C decoder, with the output length
    checked against the buffer it was given."""
    src = ffi.from_buffer(data)
    out = ffi.new("uint8_t[]", max_out + 16)
    n = ffi.new("size_t *", 0xDEAD)
    st_ = lib.df_lzo1x_decompress_safe(src, len(data), out, max_out, n)
    if st_ != lib.DF_OK:
        return st_, None
    assert n[0] <= max_out
    # the decoder never writes past max_out
    assert bytes(ffi.buffer(out + max_out, 16)) == bytes(16)
    return st_, bytes(ffi.buffer(out, n[0]))


def ref_decompress(data: bytes, max_out: int):
    try:
        return _pyref_lzo.decompress(data, max_out)
    except _pyref_lzo.LzoRefError:
        return None


# --------------------------------------------------------------------------- 1. roundtrip

@settings(max_examples=150, deadline=None)
@given(any_data)
def test_roundtrip(data):
    c = lzo.compress(data)
    assert len(c) <= lzo.worst_size(len(data))
    assert lzo.decompress(c, len(data)) == data
    # more room than needed changes nothing
    assert lzo.decompress(c, len(data) + 100) == data


@settings(max_examples=100, deadline=None)
@given(pages())
def test_roundtrip_pages(page):
    c = lzo.compress(page)
    assert lzo.decompress(c, PAGE) == page
    # the codec entry point dumpfilter's writers/readers use
    codec = compress.CODECS["lzo"]
    assert compress.decompress_page(codec.flag, lzo.compress(page), PAGE) == page


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 17, 18, 19, 20, 21, 22, 238, 239, 240, 255,
                                  256, 273, 274, 1000, PAGE, 49152, 65536, 70000])
@pytest.mark.parametrize("kind", ["zero", "random", "text", "period3"])
def test_roundtrip_edges(size, kind):
    rnd = random.Random(size)
    data = {
        "zero": bytes(size),
        "random": bytes(rnd.getrandbits(8) for _ in range(size)),
        "text": (b"the quick brown fox jumps over the lazy dog " * (size // 44 + 1))[:size],
        "period3": (b"abc" * (size // 3 + 1))[:size],
    }[kind]
    c = lzo.compress(data)
    assert lzo.decompress(c, size) == data
    assert _pyref_lzo.decompress(c, size) == data
    # classic LZO1X, never the kernel's LZO-RLE header (first byte 17 and
    # a version byte); only the empty block starts with the end marker.
    if size:
        assert c[0] != 17
    assert c[-3:] == b"\x11\x00\x00"


def test_compress_pages_batch_matches_single():
    rnd = random.Random(7)
    buf = bytearray(b"".join(_memory_like(rnd, PAGE) for _ in range(12)))
    buf[5 * PAGE:6 * PAGE] = bytes(PAGE)
    got = lzo.compress_pages(buf, PAGE, 12)
    assert got == [lzo.compress(bytes(buf[i * PAGE:(i + 1) * PAGE])) for i in range(12)]
    # from_buffer reads a memoryview slice in place
    assert lzo.compress_pages(memoryview(buf)[PAGE:], PAGE, 3) == got[1:4]
    with pytest.raises(ValueError):
        lzo.compress_pages(buf, PAGE, 13)


def test_compress_is_deterministic_and_independent_of_workmem():
    data = _memory_like(random.Random(3), 20000)
    want = lzo.compress(data)
    src = ffi.from_buffer(data)
    for fill in (0x00, 0xFF, 0x5A):
        wrk = ffi.new("uint8_t[]", [fill] * lib.DF_LZO1X_1_WORKMEM_SIZE)
        cap = lib.df_lzo1x_worst_size(len(data))
        out = ffi.new("uint8_t[]", cap)
        n = ffi.new("size_t *")
        assert lib.df_lzo1x_1_compress(src, len(data), out, cap, wrk, len(wrk), n) == lib.DF_OK
        assert bytes(ffi.buffer(out, n[0])) == want


@settings(max_examples=60, deadline=None)
@given(memory_blobs(max_size=9000), st.data())
def test_compress_small_dst_overflows(data, draw):
    """Every dst_cap below the needed size gives DF_ERR_OVERFLOW; exactly
    the needed size gives the same block."""
    want = lzo.compress(data)
    cap = draw.draw(st.integers(0, len(want)))
    src = ffi.from_buffer(data)
    wrk = ffi.new("uint8_t[]", lib.DF_LZO1X_1_WORKMEM_SIZE)
    out = ffi.new("uint8_t[]", cap + 16)
    n = ffi.new("size_t *")
    status = lib.df_lzo1x_1_compress(src, len(data), out, cap, wrk, len(wrk), n)
    if cap < len(want):
        assert status == lib.DF_ERR_OVERFLOW
    else:
        assert status == lib.DF_OK and bytes(ffi.buffer(out, n[0])) == want
    assert bytes(ffi.buffer(out + cap, 16)) == bytes(16)


def test_decompress_errors_map_to_exceptions():
    data = _memory_like(random.Random(11), 3000)
    c = lzo.compress(data)
    with pytest.raises(CodecError):  # output does not fit
        lzo.decompress(c, len(data) - 1)
    with pytest.raises(CorruptDumpError):  # trailing garbage
        lzo.decompress(c + b"\x00", len(data))
    with pytest.raises(CorruptDumpError):  # missing end marker
        lzo.decompress(c[:-3], len(data))
    with pytest.raises(CorruptDumpError):  # empty input
        lzo.decompress(b"", 10)
    # compress.decompress_page turns any failure into CodecError
    with pytest.raises(CodecError):
        compress.decompress_page(compress.FLAG_LZO, c[:-1], len(data))


# --------------------------------------------------------------------------- 2. C == Python

@settings(max_examples=60, deadline=None)
@given(any_data)
def test_c_matches_python_reference_on_our_output(data):
    data = data[:12000]  # the Python decoder is slow
    c = lzo.compress(data)
    assert _pyref_lzo.decompress(c, len(data)) == data == lzo.decompress(c, len(data))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=any_data)
def test_c_matches_python_reference_on_liblzo2_output(liblzo2, data):
    data = data[:12000]
    for block in (liblzo2.compress(data), liblzo2.compress_999(data)):
        assert _pyref_lzo.decompress(block, len(data)) == data
        assert lzo.decompress(block, len(data)) == data


# --------------------------------------------------------------------------- 3. liblzo2

def test_liblzo2_loads_and_reports_version(liblzo2):
    liblzo2.so.lzo_version.restype = ctypes.c_uint
    assert liblzo2.so.lzo_version() >= 0x2000


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=any_data)
def test_liblzo2_decodes_our_output(liblzo2, data):
    c = lzo.compress(data)
    rc, out = liblzo2.decompress(c, len(data))
    assert rc == LZO_E_OK and out == data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=any_data)
def test_we_decode_liblzo2_output(liblzo2, data):
    # lzo1x_1 is what makedumpfile writes; lzo1x_999 also uses the 2- and
    # 3-byte match forms our compressor never emits.
    for block in (liblzo2.compress(data), liblzo2.compress_999(data)):
        assert lzo.decompress(block, len(data)) == data


def test_empty_block_is_liblzo2s(liblzo2):
    assert lzo.compress(b"") == liblzo2.compress(b"")
    assert lzo.decompress(liblzo2.compress(b""), 0) == b""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(pages(), min_size=4, max_size=4))
def test_size_close_to_liblzo2_on_synthetic_pages(liblzo2, data):
    ours = sum(len(lzo.compress(p)) for p in data)
    theirs = sum(len(liblzo2.compress(p)) for p in data)
    assert ours <= theirs * 1.15 + 64


# --------------------------------------------------------------------------- 4. robustness

@st.composite
def mutated_blocks(draw):
    """A valid block (ours or liblzo2's) with bit flips, byte overwrites,
    truncation, extension or splicing; or plain random bytes."""
    data = draw(st.one_of(st.binary(max_size=200), memory_blobs(max_size=6000)))
    how = draw(st.sampled_from(["ours", "lib", "lib999", "random"]))
    lz = _load_liblzo2()
    if how == "random":
        first = draw(st.integers(0, 255))
        return bytes([first]) + draw(st.binary(max_size=400)), draw(st.integers(0, 3000))
    if how == "ours" or lz is None:
        block = bytearray(lzo.compress(data))
    elif how == "lib":
        block = bytearray(lz.compress(data))
    else:
        block = bytearray(lz.compress_999(data))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "add", "dup"]))
        if op == "flip" and block:
            i = draw(st.integers(0, len(block) - 1))
            block[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and block:
            block[draw(st.integers(0, len(block) - 1))] = draw(st.sampled_from([0, 1, 3, 16, 17, 18, 32,
                                                                                 64, 255]))
        elif op == "cut":
            block = block[:draw(st.integers(0, len(block)))]
        elif op == "add":
            block += draw(st.binary(min_size=1, max_size=8))
        elif op == "dup" and block:
            i = draw(st.integers(0, len(block) - 1))
            block[i:i] = block[i:i + draw(st.integers(1, 16))]
    max_out = draw(st.one_of(st.just(len(data)), st.integers(0, 2 * len(data) + 20)))
    return bytes(block), max_out


@settings(max_examples=1500, deadline=None)
@given(mutated_blocks())
def test_decoder_never_misbehaves_and_agrees_with_reference(case):
    block, max_out = case
    status, out = c_decompress_status(block, max_out)
    assert status in (lib.DF_OK, lib.DF_ERR_CORRUPT, lib.DF_ERR_OVERFLOW)
    want = ref_decompress(block, max_out)
    if status == lib.DF_OK:
        assert out == want
    else:
        assert want is None
    # and the Python wrapper raises only our exceptions
    try:
        got = lzo.decompress(block, max_out)
    except (CorruptDumpError, CodecError):
        assert status != lib.DF_OK
    else:
        assert got == out


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mutated_blocks())
def test_decoder_accepts_exactly_what_liblzo2_accepts(liblzo2, case):
    block, max_out = case
    status, out = c_decompress_status(block, max_out)
    rc, lib_out = liblzo2.decompress(block, max_out)
    assert (status == lib.DF_OK) == (rc == LZO_E_OK), (status, rc)
    if rc == LZO_E_OK:
        assert out == lib_out


def test_decoder_rejects_a_lookbehind_before_the_start():
    # b"\x12a": first-byte literal run of 1; then 010DDD00 HHHHHHHH, a
    # 3-byte match at distance D + 1; then the end marker.
    ok = b"\x12a\x40\x00\x11\x00\x00"  # distance 1: "a" * 4
    assert lzo.decompress(ok, 10) == ref_decompress(ok, 10) == b"aaaa"
    bad = b"\x12a\x44\x00\x11\x00\x00"  # distance 2, one byte written
    assert ref_decompress(bad, 10) is None
    with pytest.raises(CorruptDumpError):
        lzo.decompress(bad, 10)


def test_long_zero_run_lengths_cannot_wrap():
    # A literal run whose length extension is a long run of zero bytes: must
    # end in an error (overflow or truncated input), never a huge copy.
    for tail in (b"", b"\x01", b"\x01" + bytes(64)):
        block = b"\x00" + bytes(100000) + tail
        status, _ = c_decompress_status(block, PAGE)
        assert status in (lib.DF_ERR_CORRUPT, lib.DF_ERR_OVERFLOW)
        assert ref_decompress(block, PAGE) is None


# --------------------------------------------------------------------------- 5. real pages

def _real_pages(path, n=400) -> list:
    """n pages spread over the file from 0x34d1000 on: a mix of zero pages,
    kernel text/data and page cache."""
    size = path.stat().st_size
    step = 37 * PAGE
    out = []
    with open(path, "rb") as fh:
        for k in range(n):
            off = 0x34D1000 + k * step
            if off + PAGE > size:
                break
            fh.seek(off)
            out.append(fh.read(PAGE))
    return out


@pytest.mark.realdump
def test_real_vmcore_pages(kdump_vmcore, liblzo2):
    pg = _real_pages(kdump_vmcore)
    assert len(pg) >= 300
    assert sum(p != bytes(PAGE) for p in pg) >= 100, "expected mostly non-zero pages"
    ours = lzo.compress_pages(b"".join(pg), PAGE, len(pg))
    theirs = [liblzo2.compress(p) for p in pg]
    for p, a, b in zip(pg, ours, theirs):
        rc, out = liblzo2.decompress(a, PAGE)
        assert rc == LZO_E_OK and out == p
        assert lzo.decompress(b, PAGE) == p
        assert lzo.decompress(a, PAGE) == p
    for p, a, b in list(zip(pg, ours, theirs))[:25]:
        assert _pyref_lzo.decompress(a, PAGE) == p == _pyref_lzo.decompress(b, PAGE)
    total_ours = sum(map(len, ours))
    total_theirs = sum(map(len, theirs))
    assert total_ours <= 1.15 * total_theirs, (total_ours, total_theirs)


def _kdump_lzo_pages(path, want=500):
    """(offset, size) of the first ``want`` LZO-compressed pages of a
    kdump-compressed file, from its page descriptors."""
    with open(path, "rb") as fh:
        hdr = fh.read(4096)
        assert hdr[:8] == b"KDUMP   "
        block_size, sub_hdr_size = struct.unpack_from("<ii", hdr, 428)
        (bitmap_blocks,) = struct.unpack_from("<I", hdr, 436)
        fh.seek((1 + sub_hdr_size + bitmap_blocks) * block_size)
        found = []
        while len(found) < want:
            chunk = fh.read(24 * 4096)
            if len(chunk) < 24:
                break
            for i in range(len(chunk) // 24):
                offset, size, flags, _pflags = struct.unpack_from("<qIIQ", chunk, 24 * i)
                if flags & compress.FLAG_LZO:
                    found.append((offset, size))
                    if len(found) == want:
                        break
        pages_ = []
        for offset, size in found:
            fh.seek(offset)
            pages_.append(fh.read(size))
    return block_size, pages_


@pytest.mark.realdump
def test_makedumpfile_lzo_pages(mdf_d31_lzo, liblzo2):
    block_size, blocks = _kdump_lzo_pages(mdf_d31_lzo)
    assert block_size == PAGE
    assert len(blocks) == 500
    for i, b in enumerate(blocks):
        rc, want = liblzo2.decompress(b, block_size)
        assert rc == LZO_E_OK and len(want) == block_size
        assert lzo.decompress(b, block_size) == want
        assert compress.decompress_page(compress.FLAG_LZO, b, block_size) == want
        if i < 20:
            assert _pyref_lzo.decompress(b, block_size) == want
