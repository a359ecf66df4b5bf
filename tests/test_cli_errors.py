"""Bad input gets one clear error line, a non-zero exit code, and leaves no
output that could pass for a finished dump; nothing is overwritten without -f."""
import os

import pytest

from clitools import run_cli


def assert_one_error_line(r, *needles):
    assert r.returncode == 1, r
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("dumpfilter: ")
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_not_a_vmcore(tmp_path):
    src = tmp_path / "notes.txt"
    src.write_text("just some text\n" * 100)
    out = tmp_path / "out"
    assert_one_error_line(run_cli("-c", "-d", "31", src, out, check=False), "not a vmcore")
    assert not out.exists()


def test_directory_input(tmp_path):
    out = tmp_path / "out"
    assert_one_error_line(run_cli("-d", "31", tmp_path, out, check=False), str(tmp_path), "directory")
    assert not out.exists()


def test_missing_input(tmp_path):
    out = tmp_path / "out"
    assert_one_error_line(run_cli("-d", "31", tmp_path / "nope", out, check=False), "nope")
    assert not out.exists()


@pytest.mark.parametrize("args", [["-d", "32"], ["-d", "x"], ["--bogus"], ["-L"], []])
def test_usage_errors(tmp_path, args):
    paths = (tmp_path / "a", tmp_path / "b") if args else ()
    r = run_cli(*args, *paths, check=False)
    assert_one_error_line(r)


@pytest.mark.realdump
@pytest.mark.parametrize("keep", [64 << 10, 0x3432000 + (40 << 20)])
def test_truncated_vmcore(kdump_vmcore, tmp_path, keep):
    """Cut inside the program headers' data: the ELF header still parses,
    the PT_LOADs point past the end of the file."""
    src = tmp_path / "cut.vmcore"
    with open(kdump_vmcore, "rb") as f, open(src, "wb") as g:
        g.write(f.read(keep))
    out = tmp_path / "out"
    assert_one_error_line(run_cli("-c", "-d", "31", src, out, check=False), "truncated")
    assert not out.exists()


@pytest.mark.realdump
def test_refuses_to_overwrite_without_f(kdump_vmcore, tmp_path):
    out = tmp_path / "out"
    out.write_bytes(b"precious")
    assert_one_error_line(run_cli("-c", "-d", "31", kdump_vmcore, out, check=False), "-f")
    assert out.read_bytes() == b"precious"
    r = run_cli("-f", "-c", "-d", "31", "--message-level", "0", kdump_vmcore, out, check=False)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"KDUMP   "


def test_help_and_version():
    r = run_cli("-h", check=False)
    assert r.returncode == 0 and "-d LEVEL" in r.stdout
    r = run_cli("-v", check=False)
    assert r.returncode == 0 and "dumpfilter" in r.stdout


def test_failure_midway_removes_output(tmp_path, monkeypatch):
    """A source that fails while pages are copied: the half-written output is removed."""
    from dumpfilter import cli
    from dumpfilter.errors import CorruptDumpError
    import dumpfilter.filter.job as flt

    def boom(*a, **k):
        raise CorruptDumpError("page data unreadable")

    src = tmp_path / "src"
    src.write_bytes(b"x")
    out = tmp_path / "out"
    monkeypatch.setattr(flt, "filter_kdump", boom)
    monkeypatch.setattr("dumpfilter.readers.open_dump", lambda p, use_mmap=True: _Dummy())
    assert cli.main(["-c", "-d", "31", str(src), str(out)]) == 1
    assert not out.exists()


class _Dummy:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass
