"""Shared pytest fixtures: the real vmcores in ``shared/`` and the debug vmlinux.

Everything large lives in a cache outside the repository:

* ``$DUMPFILTER_CACHE/vmcores`` (default ``~/.cache/dumpfilter/vmcores``): the
  decompressed ``shared/vmcores/*.zst`` files, verified against
  ``SHA256SUMS.decompressed``.
* ``$DUMPFILTER_CACHE/dbg`` (default ``~/.cache/dumpfilter/dbg``): the Debian
  ``-dbg`` vmlinux that crash and drgn need for symbols.

Both are filled lazily, once, under an ``fcntl`` file lock so that concurrent
pytest(-xdist) workers and concurrent pytest runs never see a half-written file
(everything is written to a temporary name and renamed into place).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from debs import extract_member

REPO_ROOT = Path(__file__).resolve().parent.parent

DBG_PACKAGE = "linux-image-6.1.0-56-amd64-dbg"
DBG_VERSION = "6.1.192-2"
DBG_MEMBER = "./usr/lib/debug/boot/vmlinux-6.1.0-56-amd64"

KDUMP_VMCORE = "kdump-6.1-512M.vmcore"
QEMU_ELF = "qemu-6.1-512M.elf"
QEMU_FLAT = "qemu-6.1-512M.kdump-zlib-flat"
MDF_D31_ZLIB = "kdump-6.1-512M.d31-zlib.kdump"
MDF_D31_LZO = "kdump-6.1-512M.d31-lzo.kdump"
ARM64_VMCORE = "arm64-6.1-1G.vmcore"
ARM64_MDF_D31_ZLIB = "arm64-6.1-1G.d31-zlib.kdump"


# --------------------------------------------------------------------------- markers

def pytest_configure(config):
    config.addinivalue_line("markers", "realdump: uses the real dumps from shared/vmcores")
    config.addinivalue_line(
        "markers", "oracle: runs an external reference tool (crash, makedumpfile, libkdumpfile, drgn)"
    )
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


# --------------------------------------------------------------------------- locations

def find_shared_dir() -> Path | None:
    env = os.environ.get("DUMPFILTER_SHARED")
    cand = Path(env) if env else REPO_ROOT.parent / "shared"
    return cand if cand.is_dir() else None


def cache_root() -> Path:
    env = os.environ.get("DUMPFILTER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dumpfilter"


@contextlib.contextmanager
def file_lock(path: Path):
    """Exclusive advisory lock on ``path`` (created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _expected_sha256(vmdir: Path, name: str) -> str | None:
    sums = vmdir / "SHA256SUMS.decompressed"
    if not sums.is_file():
        return None
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and (parts[1] == name or Path(parts[1]).name == name):
            return parts[0]
    return None


def _stamp_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.verified")


def _stamp_key(out: Path, expected: str) -> str:
    st = out.stat()
    return f"{expected} {st.st_size} {st.st_mtime_ns} {st.st_ino}\n"


def _stamp_ok(out: Path, expected: str) -> bool:
    """True if out was hashed before and has not changed since (size, mtime, inode)."""
    try:
        return _stamp_path(out).read_text() == _stamp_key(out, expected)
    except OSError:
        return False


def _write_stamp(out: Path, expected: str | None) -> None:
    if expected is None:
        return
    stamp = _stamp_path(out)
    tmp = stamp.with_name(stamp.name + f".{os.getpid()}")
    tmp.write_text(_stamp_key(out, expected))
    os.replace(tmp, stamp)


# Files already verified in this process (sha256 of ~0.5 GB costs ~1 s: do it once).
_verified: dict[Path, bool] = {}


def real_vmcore(name: str) -> Path:
    """Path of the decompressed ``name`` (e.g. ``kdump-6.1-512M.vmcore``) in the cache.

    Decompresses ``shared/vmcores/<name>.zst`` or ``shared/vmcores/reference/<name>.zst``
    on first use. Skips the calling test if shared/ or zstd is missing.
    """
    shared = find_shared_dir()
    if shared is None:
        pytest.skip("shared/ directory not found (set DUMPFILTER_SHARED or place it beside the repo)")
    vmdir = shared / "vmcores"
    src = None
    for cand in (vmdir / f"{name}.zst", vmdir / "reference" / f"{name}.zst",
                 vmdir / "reference-arm64" / f"{name}.zst"):
        if cand.is_file():
            src = cand
            break
    if src is None:
        pytest.skip(f"{name}.zst not found under {vmdir}")

    outdir = cache_root() / "vmcores"
    out = outdir / name
    if _verified.get(out):
        return out
    expected = _expected_sha256(vmdir, name)

    with file_lock(outdir / f".{name}.lock"):
        if out.is_file():
            if expected is None or _stamp_ok(out, expected) or _sha256(out) == expected:
                _write_stamp(out, expected)
                _verified[out] = True
                return out
            out.unlink()  # stale or corrupt: redo it
        zstd = shutil.which("zstd")
        if zstd is None:
            pytest.skip("zstd not installed: cannot decompress the real vmcores")
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=outdir)
        os.close(fd)
        try:
            r = subprocess.run(
                [zstd, "-d", "-q", "-f", "--long=27", str(src), "-o", tmp],
                stdin=subprocess.DEVNULL, capture_output=True, text=True,
            )
            if r.returncode != 0:
                raise RuntimeError(f"zstd -d {src} failed: {r.stderr.strip()}")
            if expected is not None:
                got = _sha256(Path(tmp))
                if got != expected:
                    raise RuntimeError(f"sha256 mismatch for {name}: {got} != {expected}")
            os.chmod(tmp, 0o444)
            os.replace(tmp, out)
            _write_stamp(out, expected)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    _verified[out] = True
    return out


# --------------------------------------------------------------------------- dump fixtures

@pytest.fixture(scope="session")
def shared_dir() -> Path:
    d = find_shared_dir()
    if d is None:
        pytest.skip("shared/ directory not found (set DUMPFILTER_SHARED or place it beside the repo)")
    return d


@pytest.fixture(scope="session")
def reference_dir(shared_dir) -> Path:
    d = shared_dir / "vmcores" / "reference"
    if not d.is_dir():
        pytest.skip(f"{d} not found")
    return d


@pytest.fixture(scope="session")
def groundtruth(reference_dir) -> dict:
    return json.loads((reference_dir / "groundtruth.json").read_text())


@pytest.fixture(scope="session")
def real_vmcore_path():
    """The ``real_vmcore(name)`` function, for tests that need other files."""
    return real_vmcore


@pytest.fixture(scope="session")
def kdump_vmcore() -> Path:
    return real_vmcore(KDUMP_VMCORE)


@pytest.fixture(scope="session")
def qemu_elf() -> Path:
    return real_vmcore(QEMU_ELF)


@pytest.fixture(scope="session")
def qemu_flat() -> Path:
    return real_vmcore(QEMU_FLAT)


@pytest.fixture(scope="session")
def mdf_d31_zlib() -> Path:
    return real_vmcore(MDF_D31_ZLIB)


@pytest.fixture(scope="session")
def mdf_d31_lzo() -> Path:
    return real_vmcore(MDF_D31_LZO)


@pytest.fixture(scope="session")
def arm64_vmcore() -> Path:
    """The real arm64 capture (Debian 6.1 arm64, 1 GiB guest)."""
    return real_vmcore(ARM64_VMCORE)


@pytest.fixture(scope="session")
def arm64_reference_dir(shared_dir) -> Path:
    d = shared_dir / "vmcores" / "reference-arm64"
    if not d.is_dir():
        pytest.skip(f"{d} not found")
    return d


@pytest.fixture(scope="session")
def arm64_groundtruth(arm64_reference_dir) -> dict:
    return json.loads((arm64_reference_dir / "groundtruth.json").read_text())


@pytest.fixture(scope="session")
def arm64_mdf_d31_zlib() -> Path:
    """makedumpfile 1.7.2's (Debian arm64 build) -c -d 31 output of the arm64 capture."""
    return real_vmcore(ARM64_MDF_D31_ZLIB)


# --------------------------------------------------------------------------- debug vmlinux

def _deb_version(deb: Path) -> str | None:
    r = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        return None
    fields = dict(l.split(": ", 1) for l in r.stdout.splitlines() if ": " in l)
    if fields.get("Package") != DBG_PACKAGE:
        return None
    return fields.get("Version")


def get_debug_vmlinux() -> Path:
    dbgdir = cache_root() / "dbg"
    target = dbgdir / DBG_MEMBER.removeprefix("./")
    if target.is_file():
        return target
    dbgdir.mkdir(parents=True, exist_ok=True)
    with file_lock(dbgdir / ".lock"):
        if target.is_file():
            return target
        for tool in ("dpkg-deb", "tar"):
            if shutil.which(tool) is None:
                pytest.skip(f"{tool} not installed: cannot extract {DBG_PACKAGE}")
        debs = [Path(p) for p in sorted(glob.glob(str(dbgdir / f"{DBG_PACKAGE}_*.deb")))]
        debs = [d for d in debs if _deb_version(d) == DBG_VERSION]
        if not debs:
            if shutil.which("apt-get") is None:
                pytest.skip(f"{DBG_PACKAGE} {DBG_VERSION} not available from the archive: no apt-get")
            r = subprocess.run(
                ["apt-get", "download", f"{DBG_PACKAGE}={DBG_VERSION}"],
                cwd=dbgdir, capture_output=True, text=True, stdin=subprocess.DEVNULL,
            )
            debs = [Path(p) for p in sorted(glob.glob(str(dbgdir / f"{DBG_PACKAGE}_*.deb")))]
            debs = [d for d in debs if _deb_version(d) == DBG_VERSION]
            if r.returncode != 0 or not debs:
                msg = (r.stderr.strip() or r.stdout.strip()).splitlines()
                pytest.skip(
                    f"{DBG_PACKAGE} {DBG_VERSION} not available from the archive: "
                    + (" | ".join(msg[-3:]) or f"apt-get exit {r.returncode}")
                )
        extract_member(debs[0], DBG_MEMBER, target)
        for d in dbgdir.glob(f"{DBG_PACKAGE}_*.deb"):
            d.unlink()  # ~860 MB: only the vmlinux is needed
    return target


@pytest.fixture(scope="session")
def debug_vmlinux() -> Path:
    return get_debug_vmlinux()


# --------------------------------------------------------------------------- report fixtures
# Shared ReportContexts for tests/test_report_*.py: opened once per session.
# Tests that swap ``ctx.mem`` / ``ctx._kallsyms`` must restore them.

def _open_report_ctx(path: Path):
    from dumpfilter.report.context import ReportContext

    return ReportContext.open(str(path))


@pytest.fixture(scope="session")
def report_raw_ctx(kdump_vmcore):
    """ReportContext of the raw ELF kdump vmcore."""
    ctx = _open_report_ctx(kdump_vmcore)
    yield ctx
    ctx.close()


@pytest.fixture(scope="session")
def report_d31_ctx(mdf_d31_zlib):
    """ReportContext of makedumpfile's ``-c -d 31`` reference file."""
    ctx = _open_report_ctx(mdf_d31_zlib)
    yield ctx
    ctx.close()


#: reference/crash-*.txt output matching each report context.
REPORT_CRASH_TXT = {"raw": "crash-vmcore.txt", "d31": "crash-d31-zlib.txt"}


@pytest.fixture(scope="session", params=["raw", "d31"])
def report_ctx(request):
    """Both report contexts in turn; ``request.param`` is "raw" or "d31"."""
    return request.getfixturevalue(f"report_{request.param}_ctx")


@pytest.fixture(scope="session")
def report_case(report_ctx, request, reference_dir):
    """(ctx, crash reference text) for each report context."""
    name = "raw" if report_ctx is request.getfixturevalue("report_raw_ctx") else "d31"
    return report_ctx, (reference_dir / REPORT_CRASH_TXT[name]).read_text()


#: codec option of ``python -m dumpfilter`` for each of our own -d 31 outputs.
REPORT_OWN_CODECS = {"zlib": "-c", "lzo": "-l", "snappy": "-p", "zstd": "-z"}


@pytest.fixture(scope="session")
def report_own_d31(kdump_vmcore, tmp_path_factory):
    """codec -> our own ``python -m dumpfilter <opt> -d 31`` output of the raw vmcore."""
    import sys

    out_dir = tmp_path_factory.mktemp("report-own-d31")
    outs = {}
    for codec, opt in REPORT_OWN_CODECS.items():
        out = out_dir / f"own-d31-{codec}.kdump"
        r = subprocess.run([sys.executable, "-m", "dumpfilter", opt, "-d", "31", str(kdump_vmcore),
                            str(out)], capture_output=True, text=True, cwd=REPO_ROOT,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"dumpfilter {opt} -d 31 failed: {r.stderr.strip()}")
        outs[codec] = out
    return outs


@pytest.fixture(scope="session")
def report_vmlinux(debug_vmlinux):
    """The debug vmlinux opened for ``--vmlinux`` (sections, .symtab and
    .BTF loaded on first use, shared by the session)."""
    from dumpfilter.report.vmlinux import Vmlinux

    v = Vmlinux(str(debug_vmlinux))
    yield v
    v.close()
