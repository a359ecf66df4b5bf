"""Page codecs of the kdump-compressed format: zlib (-c), LZO1X-1 (-l),
snappy (-p), zstd (-z), or none. Each page is compressed on its own; a page
whose compressed form is not smaller than the page is stored raw.

This module is the one registry: option letters, the format's flag values
(``DUMP_DH_COMPRESSED_*``, defined in ``dumpfilter.formats.kdump``; the same
numbers in the header ``status`` and in each page descriptor) and the
decoders the readers use. Encoding (batches of pages, in C where a library
allows) is ``dumpfilter.codecs.encoders``.
"""
from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, Optional

from dumpfilter.errors import CodecError
from dumpfilter.formats.kdump import CODEC_FLAGS, FLAG_LZO, FLAG_SNAPPY, FLAG_ZLIB, FLAG_ZSTD


@dataclass(frozen=True)
class Codec:
    name: str
    option: str  # makedumpfile's option letter
    flag: int
    decompress: Callable[[bytes, int], bytes]  # (data, page_size) -> page
    #: The Python module the decoder needs (readers check it once, so a
    #: missing optional package is one clear message).
    decoder_module: str


def _zlib_decompress(data: bytes, size: int) -> bytes:
    return zlib.decompress(data, bufsize=size)


def _lzo_decompress(data: bytes, size: int) -> bytes:
    from dumpfilter.codecs import lzo

    return lzo.decompress(data, size)


def _snappy_decompress(data: bytes, size: int) -> bytes:
    import cramjam

    return bytes(cramjam.snappy.decompress_raw(data))


_tls = threading.local()


def _zstd_decompress(data: bytes, size: int) -> bytes:
    dctx = getattr(_tls, "zstd", None)  # decompression contexts are per thread
    if dctx is None:
        import zstandard

        dctx = _tls.zstd = zstandard.ZstdDecompressor()
    return dctx.decompress(data, max_output_size=size)


CODECS: Dict[str, Codec] = {
    "zlib": Codec("zlib", "-c", FLAG_ZLIB, _zlib_decompress, "zlib"),
    "lzo": Codec("lzo", "-l", FLAG_LZO, _lzo_decompress, "dumpfilter.codecs.lzo"),
    "snappy": Codec("snappy", "-p", FLAG_SNAPPY, _snappy_decompress, "cramjam"),
    "zstd": Codec("zstd", "-z", FLAG_ZSTD, _zstd_decompress, "zstandard"),
}
_BY_FLAG = {c.flag: c for c in CODECS.values()}


def codec_for_flag(flag: int) -> Optional[Codec]:
    """The codec a page descriptor's flags name; None for a raw page.
    Raises CodecError for an unknown or ambiguous flag set."""
    bits = flag & CODEC_FLAGS
    if bits == 0:
        return None
    try:
        return _BY_FLAG[bits]
    except KeyError:
        raise CodecError(f"page descriptor flags {flag:#x} name no single known codec") from None


def decompress_page(flags: int, data: bytes, page_size: int) -> bytes:
    """Decode one stored page; the result is exactly ``page_size`` bytes."""
    codec = codec_for_flag(flags)
    if codec is None:
        if len(data) != page_size:
            raise CodecError(f"raw page of {len(data)} bytes, expected {page_size}")
        return bytes(data)
    try:
        page = codec.decompress(bytes(data), page_size)
    except CodecError:
        raise
    except Exception as e:
        raise CodecError(f"{codec.name} page does not decompress: {e}") from None
    if len(page) != page_size:
        raise CodecError(f"{codec.name} page decompressed to {len(page)} bytes, expected {page_size}")
    return page
