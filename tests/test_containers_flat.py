"""-F (flattened stream on stdout) and -R (rebuild from stdin), against
makedumpfile's -F/-R, crash and libkdumpfile."""
import functools
import os
import struct
import subprocess

import pytest

from clitools import run_cli
from oracles import libkdumpfile_digest, run_crash, run_makedumpfile

pytestmark = pytest.mark.realdump


# Output as bytes: some tests write the flattened stream to stdout.
cli = functools.partial(run_cli, text=False)


@pytest.fixture(scope="module")
def outputs(kdump_vmcore, tmp_path_factory):
    d = tmp_path_factory.mktemp("flat")
    with open(d / "s.flat", "wb") as f:
        r = cli("-F", "-c", "-d", "31", kdump_vmcore, stdout=f)
    assert b"dumpfilter Completed." in r.stderr
    cli("-c", "-d", "31", kdump_vmcore, d / "direct.kdump")
    with open(d / "s.flat", "rb") as f:
        cli("-R", d / "rebuilt.kdump", stdin=f)
    return d


def test_flat_stream_format(outputs):
    data = (outputs / "s.flat").read_bytes()
    assert data[:16] == b"makedumpfile\0\0\0\0"
    assert struct.unpack(">qq", data[16:32]) == (1, 1)
    assert data[-16:] == b"\xff" * 16
    # walk the records: every payload within bounds, sizes capped
    pos, n = 4096, 0
    while True:
        off, size = struct.unpack(">qq", data[pos:pos + 16])
        if (off, size) == (-1, -1):
            break
        assert 0 <= off and 0 < size <= 1 << 20
        pos += 16 + size
        n += 1
    assert pos + 16 == len(data) and n > 3


def test_flat_then_R_equals_direct(outputs):
    assert (outputs / "rebuilt.kdump").read_bytes() == (outputs / "direct.kdump").read_bytes()


@pytest.mark.oracle
def test_makedumpfile_R_rebuilds_our_stream(outputs):
    out = outputs / "mdf-R.kdump"
    with open(outputs / "s.flat", "rb") as f:
        run_makedumpfile(["-R", out], input=f.read())
    assert out.read_bytes() == (outputs / "direct.kdump").read_bytes()


@pytest.mark.oracle
def test_our_R_rebuilds_makedumpfile_F(kdump_vmcore, tmp_path):
    # run_makedumpfile decodes stdout as text: run it capturing bytes
    p = subprocess.run(["makedumpfile", "-F", "-c", "-d", "31", str(kdump_vmcore)],
                       stdin=subprocess.DEVNULL, capture_output=True)
    assert p.returncode == 0, p.stderr
    stream = tmp_path / "m.flat"
    stream.write_bytes(p.stdout)
    run_makedumpfile(["-R", tmp_path / "mdf.kdump"], input=p.stdout)
    with open(stream, "rb") as f:
        cli("-R", tmp_path / "ours.kdump", stdin=f)
    assert (tmp_path / "ours.kdump").read_bytes() == (tmp_path / "mdf.kdump").read_bytes()


@pytest.mark.oracle
def test_crash_opens_flat_and_rebuilt(outputs, debug_vmlinux):
    for name in ("s.flat", "rebuilt.kdump"):
        out = run_crash(debug_vmlinux, [outputs / name], ["sys"])
        assert "[PARTIAL DUMP]" in out, out
        assert "PANIC:" in out and "sysrq triggered crash" in out, out


@pytest.mark.oracle
def test_libkdumpfile_reads_rebuilt(outputs):
    assert libkdumpfile_digest(outputs / "rebuilt.kdump") == \
        libkdumpfile_digest(outputs / "direct.kdump")


def _assert_R_fails(src, out):
    """-R of the stream ``src``: one error line, exit code 1, no ``out``."""
    with open(src, "rb") as f:
        r = cli("-R", out, stdin=f, check=False)
    assert r.returncode == 1
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dumpfilter: "), lines
    assert not out.exists()


def test_R_truncated_stream(outputs, tmp_path):
    data = (outputs / "s.flat").read_bytes()
    for cut in (100, len(data) // 2, len(data) - 16):
        src = tmp_path / "cut.flat"
        src.write_bytes(data[:cut])
        _assert_R_fails(src, tmp_path / "out.kdump")


def test_R_bogus_record(tmp_path):
    bad = bytearray(4096)
    bad[:12] = b"makedumpfile"
    bad[16:32] = struct.pack(">qq", 1, 1)
    for rec in (struct.pack(">qq", -5, 10), struct.pack(">Qq", 1 << 63, 10),
                struct.pack(">qq", (1 << 63) - 4, 10)):
        src = tmp_path / "bad.flat"
        src.write_bytes(bytes(bad) + rec + b"x" * 10 + b"\xff" * 16)
        _assert_R_fails(src, tmp_path / "out.kdump")


def test_R_refuses_overwrite(outputs, tmp_path):
    out = tmp_path / "exists.kdump"
    out.write_bytes(b"keep")
    with open(outputs / "s.flat", "rb") as f:
        r = cli("-R", out, stdin=f, check=False)
    assert r.returncode == 1 and out.read_bytes() == b"keep"
    with open(outputs / "s.flat", "rb") as f:
        cli("-R", out, "-f", stdin=f)
    assert out.read_bytes() == (outputs / "direct.kdump").read_bytes()


def test_F_argument_rules(kdump_vmcore, tmp_path):
    for args in (["-F", "-c", kdump_vmcore, tmp_path / "x"],
                 ["-F", "--split", kdump_vmcore, tmp_path / "a", tmp_path / "b"]):
        r = cli(*args, check=False)
        assert r.returncode == 1 and r.stdout == b""
        assert r.stderr.decode().startswith("dumpfilter: ")
