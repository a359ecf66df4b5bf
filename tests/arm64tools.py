"""Debian's arm64 crash 8.0.2 and makedumpfile 1.7.2 under qemu-user, for
tests on arm64 dumps (the x86_64 builds refuse them: crash "machine type
mismatch", makedumpfile "Can't get the symbol of init_level4_pgt").

Packages come from the Debian archive through apt with a private arm64
package list under the cache directory (no ``dpkg --add-architecture``, no
change to the system's apt state): crash and the libraries it links
(``readelf -d``), unpacked into a root for ``qemu-aarch64 -L``, the same
for makedumpfile, and the
kernel's ``-dbg`` package, from which only the vmlinux is extracted. Every
helper skips the calling test with a reason when something is missing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

import pytest

from conftest import cache_root, file_lock
from debs import extract_member

#: What Debian's arm64 crash 8.0.2 links against (its DT_NEEDED closure).
CRASH_PACKAGES = ("crash", "libc6", "libgcc-s1", "liblzo2-2", "libncursesw6", "libsnappy1v5",
                  "libstdc++6", "libtinfo6", "libzstd1")
#: ... and what its makedumpfile 1.7.2 links against (libdw's closure included).
MAKEDUMPFILE_PACKAGES = ("makedumpfile", "libc6", "libdw1", "libelf1", "liblzo2-2", "zlib1g",
                         "libbz2-1.0", "liblzma5", "libzstd1")
DBG_PACKAGE = "linux-image-6.1.0-57-arm64-dbg"
DBG_VERSION = "6.1.192-3"
DBG_MEMBER = "./usr/lib/debug/boot/vmlinux-6.1.0-57-arm64"


def _apt_dir() -> Path:
    return cache_root() / "apt-arm64"


def _apt(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess:
    d = _apt_dir()
    opts = ["-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64",
            "-o", f"Dir::State::Lists={d / 'lists'}", "-o", f"Dir::Cache={d / 'cache'}",
            "-o", f"Dir::State::status={d / 'status'}"]
    return subprocess.run(["apt-get", *opts, *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def _download(packages: Sequence[str], dest: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("apt-get/dpkg-deb not available: cannot fetch Debian arm64 packages")
    d = _apt_dir()
    (d / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (d / "cache").mkdir(parents=True, exist_ok=True)
    (d / "status").touch()
    if not any((d / "lists").glob("*arm64_Packages*")):
        r = _apt(["update"], d)
        if r.returncode != 0:
            pytest.skip(f"apt-get update (arm64 lists) failed: {r.stderr.strip()[-300:]}")
    dest.mkdir(parents=True, exist_ok=True)
    r = _apt(["download", *packages], dest)
    if r.returncode != 0:
        pytest.skip(f"apt-get download {' '.join(packages)} (arm64) failed: {r.stderr.strip()[-300:]}")


def _qemu_root(name: str, packages: Sequence[str], binary: str) -> Path:
    """A directory with Debian's arm64 ``packages`` unpacked, for
    ``qemu-aarch64 -L``; ``binary`` (relative) must be in it."""
    if shutil.which("qemu-aarch64") is None:
        pytest.skip("qemu-aarch64 not installed (apt-get install qemu-user)")
    base = cache_root() / f"arm64-{name}"
    root = base / "root"
    base.mkdir(parents=True, exist_ok=True)
    with file_lock(base / ".lock"):
        if (root / binary).is_file():
            return root
        _download(packages, base / "debs")
        tmp = base / "root.part"
        shutil.rmtree(tmp, ignore_errors=True)
        for deb in sorted((base / "debs").glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True,
                           stdin=subprocess.DEVNULL)
        os.replace(tmp, root)
    return root


def crash_root() -> Path:
    """A directory with Debian's arm64 crash and its libraries."""
    return _qemu_root("crash", CRASH_PACKAGES, "usr/bin/crash")


def run_arm64_makedumpfile(args: Sequence, stdin_path=None,
                           timeout: float = 300) -> subprocess.CompletedProcess:
    """Debian's arm64 makedumpfile 1.7.2 under qemu-aarch64 (stdout is
    returned as bytes: -F streams; ``stdin_path`` feeds -R); raises on a
    non-zero exit."""
    root = _qemu_root("makedumpfile", MAKEDUMPFILE_PACKAGES, "usr/bin/makedumpfile")
    argv = ["qemu-aarch64", "-L", str(root), str(root / "usr" / "bin" / "makedumpfile"),
            *map(str, args)]
    with open(stdin_path or os.devnull, "rb") as stdin:
        r = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=stdin)
    if r.returncode != 0:
        raise AssertionError(f"arm64 makedumpfile {args} exited {r.returncode}:\n"
                             f"{r.stderr.decode(errors='replace')[-2000:]}")
    return r


def debug_vmlinux() -> Path:
    """The -dbg vmlinux of the shared arm64 capture's kernel."""
    base = cache_root() / "dbg-arm64"
    target = base / DBG_MEMBER.removeprefix("./")
    if target.is_file():
        return target
    base.mkdir(parents=True, exist_ok=True)
    with file_lock(base / ".lock"):
        if target.is_file():
            return target
        debs = sorted(base.glob(f"{DBG_PACKAGE}_{DBG_VERSION}_arm64.deb"))
        if not debs:
            _download([f"{DBG_PACKAGE}={DBG_VERSION}"], base)
            debs = sorted(base.glob(f"{DBG_PACKAGE}_{DBG_VERSION}_arm64.deb"))
        extract_member(debs[0], DBG_MEMBER, target)
        debs[0].unlink()  # 800 MB: keep only the vmlinux
    return target


def run_arm64_crash(vmlinux: Path, dump: Path, commands: Sequence[str], timeout: float = 600) -> str:
    """``crash -s VMLINUX DUMP`` (arm64 build, under qemu-aarch64) with
    ``commands`` on stdin; returns stdout+stderr, raises on failure."""
    root = crash_root()
    script = "set scroll off\n" + "".join(c + "\n" for c in commands) + "quit\n"
    env = dict(os.environ, PAGER="cat", TERM="dumb", TZ="UTC")
    argv = ["qemu-aarch64", "-L", str(root), str(root / "usr" / "bin" / "crash"), "-s",
            str(vmlinux), str(dump)]
    r = subprocess.run(argv, input=script, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, errors="replace", timeout=timeout, env=env)
    if r.returncode != 0:
        raise AssertionError(f"arm64 crash exited {r.returncode}:\n{r.stdout[-3000:]}")
    return r.stdout
