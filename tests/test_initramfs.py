"""``python3 -m dumpfilter.initramfs``: the capture-kernel payload.

The archive is parsed back (our reader and GNU cpio), unpacked into a directory
and run there with ``chroot`` (root only): ``dumpfilter -v``, filter runs whose
output must equal the host's byte for byte, ``--dump-dmesg`` of the real capture,
and an ``-X importtime`` check that ``-l``/``-c`` import no optional codec module.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dumpfilter.initramfs import cpio

REPO = Path(__file__).resolve().parent.parent
PYTHON = os.path.realpath(sys.executable)
OPTIONAL_CODEC_MODULES = ("zstandard", "cramjam", "isal", "xxhash", "tqdm")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def build_payload(out: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "dumpfilter.initramfs", str(out), *args],
                       capture_output=True, text=True, env=_env(), cwd=REPO,
                       stdin=subprocess.DEVNULL, timeout=600)
    assert r.returncode == 0, r.stderr
    return r


def host_dumpfilter(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dumpfilter", *args], env=_env(), cwd=REPO,
                          stdin=subprocess.DEVNULL, capture_output=True, **kw)


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    d = tmp_path_factory.mktemp("payload")
    out = d / "payload.cpio"
    r = build_payload(out)
    print(r.stderr)  # the size report
    return out, r.stderr


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    d = tmp_path_factory.mktemp("sample")
    p = d / "sample.vmcore"
    r = subprocess.run([sys.executable, "-m", "dumpfilter.testing.synthetic", str(p), "--mem-mib", "32"],
                       env=_env(), cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return p


@pytest.fixture(scope="module")
def unpacked(payload, tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    cpio.unpack(cpio.read_newc(payload[0].read_bytes()), str(root))
    return root


def chroot_run(root: Path, *argv: str, **kw) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/", "TERM": "linux"}
    return subprocess.run(["chroot", str(root), *argv], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=300, **kw)


# --------------------------------------------------------------------------- the archive

def test_cpio_roundtrip_and_alignment(tmp_path):
    b = tmp_path / "a.cpio"
    with open(b, "wb") as fh:
        w = cpio.NewcWriter(fh)
        w.add_dir("usr")
        w.add_file("usr/x", b"abc", 0o600)
        w.add_symlink("y", "usr/x")
        w.close()
    data = b.read_bytes()
    assert len(data) % 4 == 0
    ents = cpio.read_newc(data)
    assert [(e.name, e.data) for e in ents] == [("usr", b""), ("usr/x", b"abc"), ("y", b"usr/x")]
    assert stat.S_IMODE(ents[1].mode) == 0o600 and ents[2].is_symlink
    # concatenated after an odd-sized compressed archive and after itself
    gz = cpio.gzip_bytes(data) + b"\0"
    both = cpio.concat([gz, data, data])
    assert [e.name for e in cpio.read_newc(both)] == ["usr", "usr/x", "y"] * 3
    if shutil.which("cpio"):
        r = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True)
        assert r.returncode == 0 and r.stdout.decode().split() == ["usr", "usr/x", "y"]


def test_payload_is_valid_newc(payload):
    data = payload[0].read_bytes()
    assert len(data) % 4 == 0
    ents = cpio.read_newc(data)
    names = [e.name for e in ents]
    assert len(names) == len(set(names))
    # parents come before their children (the kernel creates no missing directories)
    seen = set()
    for e in ents:
        parent = os.path.dirname(e.name)
        assert parent == "" or parent in seen, e.name
        seen.add(e.name)
    if shutil.which("cpio"):
        r = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().split("\n")[:-1] == names


def test_payload_contents(payload):
    ents = {e.name: e for e in cpio.read_newc(payload[0].read_bytes())}
    launcher = ents["usr/bin/dumpfilter"]
    assert launcher.is_file and stat.S_IMODE(launcher.mode) == 0o755
    assert launcher.data.startswith(f"#!{PYTHON} -IS\n".encode())
    assert PYTHON.lstrip("/") in ents
    # no sources: compiled modules only
    assert not [n for n in ents if n.endswith(".py")]
    assert any(n.endswith("dumpfilter/__main__.pyc") for n in ents)
    assert any(n.endswith("dumpfilter/cli.pyc") for n in ents) or any(
        n.startswith("usr/lib/dumpfilter/dumpfilter/") for n in ents)
    # the synthetic builder, the report tool and the payload builder are not collector code
    for unwanted in ("dumpfilter/testing/", "dumpfilter/initramfs/", "dumpfilter/demo.pyc"):
        assert not [n for n in ents if unwanted in n], unwanted
    for mod in OPTIONAL_CODEC_MODULES:
        assert not [n for n in ents if f"/{mod}/" in n or f"/{mod}." in n], mod
    # the ldd closure of the interpreter and of the extension modules a run loads (the
    # manylinux _cffi_backend needs libpthread.so.0, a stub the interpreter itself lacks)
    import _cffi_backend

    for exe in (PYTHON, _cffi_backend.__file__):
        r = subprocess.run(["ldd", exe], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            parts = line.split("=>")
            path = (parts[1] if len(parts) > 1 else parts[0]).split("(")[0].strip()
            if path.startswith("/"):
                assert path.lstrip("/") in ents or os.path.realpath(path).lstrip("/") in ents, path


def test_shared_objects_are_stripped(payload):
    if not shutil.which("readelf"):
        pytest.skip("readelf not installed")
    ents = {e.name: e for e in cpio.read_newc(payload[0].read_bytes())}
    import tempfile

    checked = 0
    for n, e in ents.items():
        if e.is_file and e.data[:4] == b"\x7fELF":
            with tempfile.NamedTemporaryFile() as t:
                t.write(e.data)
                t.flush()
                r = subprocess.run(["readelf", "-S", "-W", t.name], capture_output=True, text=True)
            assert " .symtab " not in r.stdout and ".debug_info" not in r.stdout, n
            checked += 1
    assert checked >= 5


def test_size_report(payload):
    out, report = payload
    assert "bytes unpacked" in report
    unpacked = int(report.split("files, ")[1].split(" bytes")[0].replace(",", ""))
    total = sum(len(e.data) for e in cpio.read_newc(out.read_bytes()) if e.is_file)
    assert unpacked == total
    # the hand-built payload of capture-kernel.md was 15.6 MB
    assert total < 15_600_000, total
    if shutil.which("makedumpfile"):
        assert "makedumpfile: binary" in report


def test_list_option():
    r = subprocess.run([sys.executable, "-m", "dumpfilter.initramfs", "--list", "-q"],
                       capture_output=True, text=True, env=_env(), cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "/usr/bin/dumpfilter" in r.stdout
    assert any(l.strip().endswith("libc.so.6") for l in r.stdout.splitlines())


# --------------------------------------------------------------------------- it runs

@needs_root
def test_chroot_version(unpacked):
    r = chroot_run(unpacked, "/usr/bin/dumpfilter", "-v")
    assert r.returncode == 0, r.stderr
    assert b"dumpfilter" in r.stdout + r.stderr


@needs_root
@pytest.mark.parametrize("opts", [["-l", "--message-level", "7", "-d", "31"], ["-c", "-d", "31"]])
def test_chroot_filter_equals_host(unpacked, sample, tmp_path, opts):
    shutil.copy(sample, unpacked / "sample.vmcore")
    out = unpacked / "out.kdump"
    if out.exists():
        out.unlink()
    r = chroot_run(unpacked, "/usr/bin/dumpfilter", *opts, "/sample.vmcore", "/out.kdump")
    assert r.returncode == 0, r.stderr
    host = tmp_path / "host.kdump"
    h = host_dumpfilter(*opts, str(sample), str(host))
    assert h.returncode == 0, h.stderr
    assert out.read_bytes() == host.read_bytes()
    out.unlink()


@needs_root
def test_chroot_flattened_equals_host(unpacked, sample):
    shutil.copy(sample, unpacked / "sample.vmcore")
    r = chroot_run(unpacked, "/usr/bin/dumpfilter", "-F", "-l", "-d", "31", "/sample.vmcore")
    assert r.returncode == 0, r.stderr
    h = host_dumpfilter("-F", "-l", "-d", "31", str(sample))
    assert h.returncode == 0
    assert r.stdout == h.stdout and len(r.stdout) > 4096


@needs_root
@pytest.mark.parametrize("opts", [["-l", "-d", "31"], ["-c", "-d", "31"]])
def test_chroot_imports_no_optional_codecs(unpacked, sample, opts):
    shutil.copy(sample, unpacked / "sample.vmcore")
    out = unpacked / "imp.kdump"
    if out.exists():
        out.unlink()
    r = chroot_run(unpacked, PYTHON, "-X", "importtime", "-I", "-S", "/usr/bin/dumpfilter",
                   *opts, "/sample.vmcore", "/imp.kdump")
    assert r.returncode == 0, r.stderr
    mods = [l.split("|")[-1].strip() for l in r.stderr.decode().splitlines()
            if l.startswith("import time:") and "|" in l]
    assert "dumpfilter.cli" in mods or any(m.startswith("dumpfilter.") for m in mods)
    bad = [m for m in mods if m.split(".")[0] in OPTIONAL_CODEC_MODULES]
    assert not bad, bad
    out.unlink()


@needs_root
@pytest.mark.realdump
def test_chroot_dump_dmesg_real(unpacked, kdump_vmcore, reference_dir):
    target = unpacked / "real.vmcore"
    try:
        os.link(kdump_vmcore, target)
    except OSError:
        shutil.copy(kdump_vmcore, target)
    try:
        r = chroot_run(unpacked, "/usr/bin/dumpfilter", "--dump-dmesg", "/real.vmcore", "/dmesg.txt")
        assert r.returncode == 0, r.stderr
        assert (unpacked / "dmesg.txt").read_bytes() == (reference_dir / "dmesg.txt").read_bytes()
    finally:
        target.unlink()


@needs_root
def test_prefix_gzip_all_codecs(tmp_path, sample):
    """--root PREFIX (a /bin/sh launcher through the payload's own loader), --gzip, -z/-p."""
    busybox = shutil.which("busybox")
    if busybox is None or subprocess.run(["ldd", busybox], capture_output=True).returncode == 0:
        pytest.skip("busybox-static not installed")
    out = tmp_path / "p.cpio.gz"
    build_payload(out, "--root", "/opt/df", "--gzip", "--codecs", "lzo,zlib,zstd,snappy")
    data = out.read_bytes()
    assert data[:2] == b"\x1f\x8b"
    ents = cpio.read_newc(data)
    assert all(e.name.startswith("opt") for e in ents)
    root = tmp_path / "root"
    root.mkdir()
    cpio.unpack(ents, str(root))
    (root / "bin").mkdir()
    shutil.copy(busybox, root / "bin" / "sh")
    shutil.copy(sample, root / "sample.vmcore")
    launcher = "/opt/df/usr/bin/dumpfilter"
    r = chroot_run(root, launcher, "-v")
    assert r.returncode == 0, r.stderr
    for opt in ("-z", "-p"):
        r = chroot_run(root, launcher, opt, "-d", "31", "/sample.vmcore", f"/o{opt}")
        assert r.returncode == 0, r.stderr
        host = tmp_path / f"host{opt}"
        h = host_dumpfilter(opt, "-d", "31", str(sample), str(host))
        assert h.returncode == 0
        assert (root / f"o{opt}").read_bytes() == host.read_bytes()
