"""Page codecs of the kdump-compressed format: zlib (-c), LZO1X-1 (-l),
snappy (-p), zstd (-z), or none. Each page is compressed on its own; a page
whose compressed form is not smaller than the page is stored raw.

The flag values are the format's (``DUMP_DH_COMPRESSED_*``, defined in
``dumpfilter.kdumpformat``); they are the same numbers in the header
``status`` and in each page descriptor.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Dict, Optional

from dumpfilter.errors import CodecError
from dumpfilter.kdumpformat import CODEC_FLAGS, FLAG_LZO, FLAG_SNAPPY, FLAG_ZLIB, FLAG_ZSTD


@dataclass(frozen=True)
class Codec:
    name: str
    option: str  # makedumpfile's option letter
    flag: int
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes, int], bytes]  # (data, page_size) -> page


def _zlib_decompress(data: bytes, size: int) -> bytes:
    return zlib.decompress(data, bufsize=size)


def _lzo_compress(data: bytes) -> bytes:
    from dumpfilter import lzo

    return lzo.compress(data)


def _lzo_decompress(data: bytes, size: int) -> bytes:
    from dumpfilter import lzo

    return lzo.decompress(data, size)


def _snappy_compress(data: bytes) -> bytes:
    import cramjam

    return bytes(cramjam.snappy.compress_raw(data))


def _snappy_decompress(data: bytes, size: int) -> bytes:
    import cramjam

    return bytes(cramjam.snappy.decompress_raw(data))


_zstd_cctx = None
_zstd_dctx = None


def _zstd_compress(data: bytes) -> bytes:
    global _zstd_cctx
    if _zstd_cctx is None:
        import zstandard

        # makedumpfile: ZSTD_compressCCtx(..., level 1); no checksum, the
        # content size is written into the frame header.
        _zstd_cctx = zstandard.ZstdCompressor(level=1)
    return _zstd_cctx.compress(data)


def _zstd_decompress(data: bytes, size: int) -> bytes:
    global _zstd_dctx
    if _zstd_dctx is None:
        import zstandard

        _zstd_dctx = zstandard.ZstdDecompressor()
    return _zstd_dctx.decompress(data, max_output_size=size)


CODECS: Dict[str, Codec] = {
    "zlib": Codec("zlib", "-c", FLAG_ZLIB, lambda d: zlib.compress(d, 1), _zlib_decompress),
    "lzo": Codec("lzo", "-l", FLAG_LZO, _lzo_compress, _lzo_decompress),
    "snappy": Codec("snappy", "-p", FLAG_SNAPPY, _snappy_compress, _snappy_decompress),
    "zstd": Codec("zstd", "-z", FLAG_ZSTD, _zstd_compress, _zstd_decompress),
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
