"""contrib/debian/dumpfilter-divert: kdump-tools' makedumpfile command lines run dumpfilter.

A temporary root (never the host's /usr/bin/makedumpfile) holds the dumpfilter payload,
busybox-static (sh, cat, gzip) and Debian's makedumpfile with its libraries; the script
diverts makedumpfile there (``dpkg-divert --root``), and kdump-config's command lines run in
it with ``chroot``, on the real capture instead of /proc/vmcore:

    makedumpfile $MAKEDUMP_ARGS $vmcore_file | compress > $KDUMP_CORETEMP
    makedumpfile --dump-dmesg $vmcore $outfile

with MAKEDUMP_ARGS "-F -c -d 31" (kdump-config's default) and "-c -d 31 -F" (a user's
"-c -d 31" with the -F kdump-config appends), compress = cat and gzip -c.
"""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dumpfilter.initramfs import cpio

REPO = Path(__file__).resolve().parent.parent
DIVERT = REPO / "contrib" / "debian" / "dumpfilter-divert"

pytestmark = [pytest.mark.slow, pytest.mark.realdump,
              pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _need(tool, pkg):
    p = shutil.which(tool)
    if p is None:
        pytest.skip(f"{tool} not installed (apt-get install {pkg})")
    return p


@pytest.fixture(scope="module")
def root(tmp_path_factory, kdump_vmcore):
    """A minimal Debian-like root: payload + busybox + Debian's makedumpfile + dpkg database."""
    from dumpfilter.initramfs import elfdeps
    from dumpfilter.initramfs.payload import Payload, Stripper

    _need("dpkg-divert", "dpkg")
    mdf = _need("makedumpfile", "makedumpfile")
    busybox = _need("busybox", "busybox-static")
    if subprocess.run(["ldd", busybox], capture_output=True).returncode == 0:
        pytest.skip("busybox is dynamic: apt-get install busybox-static")
    t = tmp_path_factory.mktemp("debroot")
    out = t / "payload.cpio"
    r = subprocess.run([sys.executable, "-m", "dumpfilter.initramfs", str(out), "-q"],
                       env=_env(), capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    rootdir = t / "root"
    rootdir.mkdir()
    cpio.unpack(cpio.read_newc(out.read_bytes()), str(rootdir))
    pl = Payload()
    st = Stripper(enabled=False)
    try:
        pl.add_host(mdf, "tool", False, st)
        for lib in elfdeps.closure([os.path.realpath(mdf)]):
            pl.add_host(lib, "library", False, st)
    finally:
        st.close()
    cpio.unpack(cpio.read_newc(pl.cpio_bytes()), str(rootdir))
    (rootdir / "bin").mkdir(exist_ok=True)
    shutil.copy(busybox, rootdir / "bin" / "busybox")
    for applet in ("sh", "cat", "gzip", "mkdir", "mv", "ls"):
        (rootdir / "bin" / applet).symlink_to("busybox")
    (rootdir / "var" / "lib" / "dpkg").mkdir(parents=True)
    crash = rootdir / "var" / "crash"
    crash.mkdir(parents=True)
    try:
        os.link(kdump_vmcore, crash / "vmcore")
    except OSError:
        shutil.copy(kdump_vmcore, crash / "vmcore")
    return rootdir


def chroot(root, script):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/", "TERM": "linux"}
    return subprocess.run(["chroot", str(root), "/bin/sh", "-c", script], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def diverted(root):
    r = subprocess.run([str(DIVERT), "install", "--root", str(root), "--dumpfilter",
                        "/usr/bin/dumpfilter"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return root


def test_divert_install(diverted):
    mdf = Path(shutil.which("makedumpfile")).resolve()
    assert (diverted / "usr/bin/makedumpfile.distrib").read_bytes() == mdf.read_bytes()
    r = subprocess.run(["dpkg-divert", "--root", str(diverted), "--list", "/usr/bin/makedumpfile"],
                       capture_output=True, text=True)
    assert "local diversion of /usr/bin/makedumpfile to /usr/bin/makedumpfile.distrib" in r.stdout
    r = chroot(diverted, "makedumpfile -v")
    assert r.returncode == 0 and b"dumpfilter" in r.stdout + r.stderr, r
    # Debian's own binary still works under its diverted name
    r = chroot(diverted, "makedumpfile.distrib -v")
    assert b"makedumpfile" in r.stdout + r.stderr and b"dumpfilter" not in r.stdout + r.stderr
    r = subprocess.run([str(DIVERT), "status", "--root", str(diverted)], capture_output=True,
                       text=True)
    assert "makedumpfile runs /usr/bin/dumpfilter" in r.stdout


@pytest.mark.parametrize("args,compress", [("-F -c -d 31", "cat"), ("-c -d 31 -F", "gzip -c")])
def test_kdump_config_savecore_line(diverted, args, compress, kdump_vmcore, reference_dir,
                                    tmp_path):
    from clitools import page_sha1s, set_pfns
    from oracles import read_kdump_bitmap2

    ext = ".gz" if compress.startswith("gzip") else ""
    stampdir = "/var/crash/202612020600"
    script = (f'compress() {{ {compress}; }}\n'
              f'MAKEDUMP_ARGS="{args}"\nvmcore_file=/var/crash/vmcore\n'
              f'KDUMP_CORETEMP="{stampdir}/dump-incomplete{ext}"\n'
              f'mkdir -p {stampdir}\n'
              'makedumpfile $MAKEDUMP_ARGS $vmcore_file | compress > "$KDUMP_CORETEMP"\n'
              f'mv "$KDUMP_CORETEMP" "{stampdir}/dump.202612020600{ext}"\n')
    r = chroot(diverted, script)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    dump = diverted / stampdir.lstrip("/") / f"dump.202612020600{ext}"
    stream = dump.read_bytes()
    dump.unlink()
    if ext:
        stream = gzip.decompress(stream)
    assert stream[:16].startswith(b"makedumpfile"), stream[:16]
    rebuilt = tmp_path / "rebuilt.kdump"
    h = subprocess.run([sys.executable, "-m", "dumpfilter", "-R", str(rebuilt)], input=stream,
                       env=_env(), capture_output=True)
    assert h.returncode == 0, h.stderr
    bitmap = read_kdump_bitmap2(rebuilt)
    assert bitmap == (reference_dir / "bitmap2-d31.bin").read_bytes()
    pfns = set_pfns(bitmap)
    assert page_sha1s(rebuilt, pfns) == page_sha1s(kdump_vmcore, pfns)


def test_kdump_config_dump_dmesg_line(diverted, reference_dir):
    r = chroot(diverted, 'vmcore=/var/crash/vmcore; outfile=/var/crash/dmesg.202612020600\n'
                         'makedumpfile --dump-dmesg "$vmcore" "$outfile"')
    assert r.returncode == 0, r.stderr
    out = diverted / "var/crash/dmesg.202612020600"
    assert out.read_bytes() == (reference_dir / "dmesg.txt").read_bytes()
    out.unlink()


def test_divert_remove(diverted):
    r = subprocess.run([str(DIVERT), "remove", "--root", str(diverted)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    mdf = Path(shutil.which("makedumpfile")).resolve()
    assert (diverted / "usr/bin/makedumpfile").read_bytes() == mdf.read_bytes()
    assert not (diverted / "usr/bin/makedumpfile.distrib").exists()
    r = subprocess.run(["dpkg-divert", "--root", str(diverted), "--list", "/usr/bin/makedumpfile"],
                       capture_output=True, text=True)
    assert r.stdout.strip() == ""
