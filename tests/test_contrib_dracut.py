"""contrib/dracut/99dumpfilter: an image built by Debian's dracut runs dumpfilter.

dracut is pointed at a private copy of its module tree (``dracutbasedir``) that adds our
module, builds ``--modules 'base dumpfilter'`` for Debian's 6.1 kernel (the one the VM test
downloads; ``--kmoddir``, ``--add-drivers``) offline, and the image is unpacked and entered
with ``chroot`` as kdump's ``core_collector`` would run: ``dumpfilter -v`` and a filter run
through ``/bin/sh``, whose output must equal the host's.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dumpfilter.initramfs import cpio

REPO = Path(__file__).resolve().parent.parent
MODULE = REPO / "contrib" / "dracut" / "99dumpfilter"
DRACUT_BASE = Path("/usr/lib/dracut")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@pytest.fixture(scope="module")
def kernel():
    sys.path.insert(0, str(REPO / "tests"))
    from vmtest import harness

    try:
        tree = harness.kernel_tree()
    except harness.VMUnavailable as e:
        pytest.skip(str(e))
    return harness.KVER, harness.module_dir(tree)


@pytest.fixture(scope="module")
def dracut_image(tmp_path_factory, kernel):
    dracut = shutil.which("dracut")
    if dracut is None or not (DRACUT_BASE / "modules.d").is_dir():
        pytest.skip("dracut not installed (apt-get install dracut)")
    kver, kmoddir = kernel
    tmp = tmp_path_factory.mktemp("dracut")
    base = tmp / "dracutbase"
    (base / "modules.d").mkdir(parents=True)
    for p in DRACUT_BASE.iterdir():
        if p.name != "modules.d":
            (base / p.name).symlink_to(p)
    for p in (DRACUT_BASE / "modules.d").iterdir():
        (base / "modules.d" / p.name).symlink_to(p)
    shutil.copytree(MODULE, base / "modules.d" / MODULE.name)
    img = tmp / "initramfs.img"
    env = _env()
    env["dracutbasedir"] = str(base)
    env["dumpfilter_python"] = os.path.realpath(sys.executable)
    r = subprocess.run(
        [dracut, "--no-hostonly", "--force", "--no-compress", "--no-early-microcode",
         "--modules", "base dumpfilter", "--add-drivers", "virtio_blk ext4",
         "--kver", kver, "--kmoddir", str(kmoddir), "--tmpdir", str(tmp), str(img)],
        env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "dumpfilter: payload:" in r.stdout + r.stderr, r.stderr[-2000:]
    return img, r.stdout + r.stderr


@pytest.fixture(scope="module")
def unpacked(dracut_image, tmp_path_factory):
    img, _ = dracut_image
    root = tmp_path_factory.mktemp("dracut-root")
    data = img.read_bytes()
    skipcpio = DRACUT_BASE / "skipcpio"
    if skipcpio.exists():
        # what lsinitrd does: skip an early (microcode) archive, if any, then cpio -id
        r = subprocess.run([str(skipcpio), str(img)], capture_output=True)
        if r.returncode == 0 and r.stdout:
            data = r.stdout
    r = subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=data,
                       cwd=root, capture_output=True)
    assert r.returncode == 0, r.stderr
    return root


def chroot(root, *argv):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/", "TERM": "linux"}
    return subprocess.run(["chroot", str(root), *argv], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=300)


def test_image_lists_dumpfilter(dracut_image):
    img, log = dracut_image
    names = {e.name for e in cpio.read_newc(img.read_bytes())}
    assert "usr/bin/dumpfilter" in names
    assert any(n.startswith("usr/lib/dumpfilter/dumpfilter/") for n in names)
    if shutil.which("lsinitrd"):
        r = subprocess.run(["lsinitrd", str(img)], capture_output=True, text=True, errors="replace")
        assert "usr/bin/dumpfilter" in r.stdout
        assert "dumpfilter" in r.stdout.split("dracut modules:")[1].split("=====")[0]


def test_version_in_image(unpacked):
    r = chroot(unpacked, "/bin/sh", "-c", "dumpfilter -v")
    assert r.returncode == 0, r.stderr
    assert b"dumpfilter" in r.stdout + r.stderr


def test_core_collector_line_in_image(unpacked, tmp_path):
    sample = tmp_path / "sample.vmcore"
    r = subprocess.run([sys.executable, "-m", "dumpfilter.testing.synthetic", str(sample), "--mem-mib", "32"],
                       env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    shutil.copy(sample, unpacked / "vmcore")
    # kdump.sh: $CORE_COLLECTOR /proc/vmcore $dir/vmcore-incomplete
    r = chroot(unpacked, "/bin/sh", "-c",
               "dumpfilter -l --message-level 7 -d 31 /vmcore /vmcore-incomplete")
    assert r.returncode == 0, r.stderr
    host = tmp_path / "host.kdump"
    h = subprocess.run([sys.executable, "-m", "dumpfilter", "-l", "--message-level", "7", "-d", "31",
                        str(sample), str(host)], env=_env(), capture_output=True)
    assert h.returncode == 0, h.stderr
    assert (unpacked / "vmcore-incomplete").read_bytes() == host.read_bytes()
