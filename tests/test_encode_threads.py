"""Parallel compression and the faster zlib-format encoder keep the format:
output is byte-identical whatever the thread count, and isal's pages are
read by zlib's uncompress() (libkdumpfile, our reader)."""
import zlib

import pytest

from dumpfilter.readers import open_dump

from clitools import page_sha1s, run_cli
from oracles import libkdumpfile_digest

pytestmark = pytest.mark.realdump


@pytest.mark.parametrize("opt", ["-c", "-l", "-p", "-z"])
def test_thread_count_does_not_change_output(kdump_vmcore, tmp_path, opt):
    outs = []
    for n in (1, 2, 3):
        out = tmp_path / f"t{n}"
        run_cli(opt, "-d", "31", "--num-threads", n, "--message-level", "0", kdump_vmcore, out)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


def test_isal_encoder_output_reads_back_with_zlib(kdump_vmcore, tmp_path):
    pytest.importorskip("isal", reason="isal not installed (pip install isal)")
    out = tmp_path / "isal.kdump"
    run_cli("-c", "--zlib-encoder", "isal", "-d", "31", "--num-threads", "2",
            "--message-level", "0", kdump_vmcore, out)
    digest = libkdumpfile_digest(out)
    kept = {pfn: h for pfn, h in digest.items() if h is not None}
    assert len(kept) > 20000
    assert page_sha1s(kdump_vmcore, kept) == kept
    # Every compressed block is a zlib stream that plain zlib decodes.
    with open_dump(str(out)) as src:
        for pfn, off, size, flags, _ in src.descriptors(0, src.max_pfn):
            if flags & 1:
                with open(out, "rb") as f:
                    f.seek(off)
                    assert len(zlib.decompress(f.read(size))) == 4096
                break


@pytest.mark.parametrize("codec", ["zlib", "zstd"])
def test_python_fallback_when_system_library_is_missing(kdump_vmcore, tmp_path, monkeypatch, codec):
    """Without the system zlib/zstd the Python codec modules encode the
    pages: zlib bytes stay makedumpfile's, zstd pages decode the same."""
    import os

    from dumpfilter.codecs import native as nativecodecs
    from dumpfilter.filter.job import FilterOptions, filter_kdump
    from dumpfilter.writers.sink import FileSink

    outs = {}
    for native in (True, False):
        if not native:
            monkeypatch.setattr(nativecodecs, "zlib_version", lambda: None)
            monkeypatch.setattr(nativecodecs, "zstd_version", lambda: None)
        out = tmp_path / f"{codec}-{native}.kdump"
        fd = os.open(out, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        with open_dump(str(kdump_vmcore)) as src:
            stats = filter_kdump(src, FileSink(fd), FilterOptions(31, codec, threads=2,
                                                                  zlib_encoder="zlib"))
        os.close(fd)
        # The report says which encoder made the bytes.
        assert ("not found" in stats.encoder) == (not native), stats.encoder
        outs[native] = out
    if codec == "zlib":
        assert outs[True].read_bytes() == outs[False].read_bytes()
    with open_dump(str(outs[True])) as a, open_dump(str(outs[False])) as b:
        buf_a, buf_b = bytearray(4096 * 512), bytearray(4096 * 512)
        for start in range(0, a.max_pfn, 512):
            n = min(512, a.max_pfn - start)
            a.read_pages(start, n, memoryview(buf_a)[: n * 4096])
            b.read_pages(start, n, memoryview(buf_b)[: n * 4096])
            assert buf_a[: n * 4096] == buf_b[: n * 4096], start


@pytest.mark.realdump
def test_libdeflate_is_the_default_zlib_encoder(kdump_vmcore, tmp_path, mdf_d31_zlib):
    """-c encodes with libdeflate by default: the same bytes every run and
    for any thread count, every page a zlib stream plain zlib decodes, the
    file smaller than makedumpfile's zlib level 1 output, the encoder named
    in the report."""
    pytest.importorskip("deflate", reason="the deflate wheel is not installed")
    outs = []
    for n in (1, 2, 1):
        out = tmp_path / f"d{len(outs)}"
        r = run_cli("-c", "-d", "31", "--num-threads", n, "--message-level", "16",
                    kdump_vmcore, out)
        assert "Encoder         : zlib: libdeflate level 2" in r.stdout
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]
    assert len(outs[0]) < mdf_d31_zlib.stat().st_size
    blocks = 0
    with open_dump(str(tmp_path / "d0")) as src, open(tmp_path / "d0", "rb") as f:
        for _pfn, off, size, flags, _ in src.descriptors(0, src.max_pfn):
            if flags & 1:
                f.seek(off)
                assert len(zlib.decompress(f.read(size))) == 4096
                blocks += 1
    assert blocks > 10000
