"""``-f`` never destroys what dumpfilter did not create (issue 9).

An output that is the input (same path, a symbolic or hard link to it, the
standard input of ``-R``) or that is not a regular file (a character
device, a FIFO, a directory) is refused with one line, with ``-f`` or not,
and is left exactly as it was; a run that fails late removes only the
regular file it created itself.
"""
import hashlib
import os
import stat

import pytest

from clitools import run_cli
from dumpfilter.testing.synthetic import build_sample

DUMP_MODES = [
    ["-c", "-d", "31"],  # kdump output
    ["-E", "-d", "31"],  # ELF output
    ["--split", "-c", "-d", "31"],
    ["--dump-dmesg"],
]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("safety") / "sample.elf"
    build_sample(str(path), mem_mib=16)
    return path


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _one_line(r, needle):
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 1, r.stderr
    assert len(lines) == 1 and lines[0].startswith("dumpfilter: "), r.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    assert "try 'dumpfilter -h'" not in lines[0]  # not a usage error


def _copy(src, dst):
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read())


def _outputs(mode, target, tmp_path):
    """The output arguments of ``mode`` with ``target`` as the first one."""
    if mode[0] == "--split":
        return [target, tmp_path / "piece2"]
    return [target]


@pytest.mark.parametrize("mode", DUMP_MODES, ids=lambda m: m[0])
@pytest.mark.parametrize("link", ["same", "symlink", "hardlink", "dotpath"])
def test_output_is_the_input(sample, tmp_path, mode, link):
    vmcore = tmp_path / "in.elf"
    _copy(sample, vmcore)
    before = _digest(vmcore)
    target = {"same": vmcore, "symlink": tmp_path / "sym", "hardlink": tmp_path / "hard",
              "dotpath": tmp_path / "." / "in.elf"}[link]
    if link == "symlink":
        target.symlink_to("in.elf")
    elif link == "hardlink":
        os.link(vmcore, target)
    r = run_cli("-f", *mode, vmcore, *_outputs(mode, target, tmp_path), check=False)
    _one_line(r, "refusing to overwrite")
    assert _digest(vmcore) == before
    assert os.path.samefile(target, vmcore)
    assert os.path.islink(target) == (link == "symlink")
    assert not (tmp_path / "piece2").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
@pytest.mark.parametrize("force", [True, False])
@pytest.mark.parametrize("mode", DUMP_MODES, ids=lambda m: m[0])
def test_device_node_untouched(sample, tmp_path, mode, force):
    node = tmp_path / "null"
    os.mknod(node, 0o644 | stat.S_IFCHR, os.makedev(1, 3))
    args = (["-f"] if force else []) + mode
    r = run_cli(*args, sample, *_outputs(mode, node, tmp_path), check=False)
    _one_line(r, "not a regular file")
    st = os.lstat(node)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(st.st_mode) == 0o644


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink-to-device"])
def test_other_non_regular_targets(sample, tmp_path, kind):
    target = tmp_path / "t"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
        (target / "keep").write_text("x")
    else:
        target.symlink_to("/dev/null")
    r = run_cli("-f", "-c", "-d", "31", sample, target, check=False)
    _one_line(r, "not a regular file")
    if kind == "fifo":
        assert stat.S_ISFIFO(os.lstat(target).st_mode)
    elif kind == "directory":
        assert (target / "keep").read_text() == "x"
    else:
        assert os.readlink(target) == "/dev/null"
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_rearrange_onto_its_own_stdin(sample, tmp_path):
    """``dumpfilter -f -R x < x``: the output is the stream being read."""
    flat = tmp_path / "x.flat"
    with open(flat, "wb") as f:
        run_cli("-F", "-c", "-d", "31", "--message-level", "0", sample, stdout=f, text=False)
    before = _digest(flat)
    with open(flat, "rb") as stdin:
        r = run_cli("-f", "-R", flat, stdin=stdin, check=False)
    _one_line(r, "standard input")
    assert _digest(flat) == before


def test_force_replaces_a_regular_file_private(sample, tmp_path):
    """-f replaces an unrelated regular file by a new 0600 one; a symlink
    to an unrelated file is replaced itself, its target left alone."""
    out = tmp_path / "out"
    out.write_bytes(b"old")
    os.chmod(out, 0o644)
    other = tmp_path / "other"
    other.write_bytes(b"keep me")
    link = tmp_path / "link"
    link.symlink_to(other)
    for target in (out, link):
        r = run_cli("-f", "-c", "-d", "31", "--message-level", "0", sample, target, check=False)
        assert r.returncode == 0, r.stderr
        st = os.lstat(target)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert target.read_bytes()[:8] == b"KDUMP   "
    assert other.read_bytes() == b"keep me"


def test_late_failure_removes_only_what_it_created(sample, tmp_path, monkeypatch):
    """A failure after the output was created removes it; if the path was
    replaced meanwhile (by someone else), the replacement stays."""
    from dumpfilter.errors import CorruptDumpError
    from dumpfilter.writers.output import OutputFile

    out = tmp_path / "out"
    with pytest.raises(CorruptDumpError):
        with OutputFile(str(out)):
            raise CorruptDumpError("late")
    assert not out.exists()
    with pytest.raises(CorruptDumpError):
        with OutputFile(str(out)):
            os.unlink(out)
            out.write_bytes(b"someone else's")
            raise CorruptDumpError("late")
    assert out.read_bytes() == b"someone else's"
