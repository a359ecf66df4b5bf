"""dumpfilter-report refuses what crash refuses: a --vmlinux of another
build (build-id, else linux_banner) unless --force; a --split piece given
without the others (one line: how many pieces at least, which pfns are
missing)."""
from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys

import pytest

from dumpfilter.report import cli
from dumpfilter.readers.kdump import KdumpSource

pytestmark = pytest.mark.realdump

OTHER_BANNER = ("Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) (gcc-12) "
                "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)\\n")


def _cli(args):
    """(exit status, stdout, stderr) of the real command line."""
    r = subprocess.run([sys.executable, "-m", "dumpfilter.report", *map(str, args)],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


def _fake_vmlinux(tmp, build_id: bool):
    """An x86_64 ELF whose linux_banner is another build's (gcc-made)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed: cannot make a vmlinux of another build")
    src = tmp / "banner.c"
    src.write_text(f'const char linux_banner[] = "{OTHER_BANNER}";\n')
    out = tmp / ("vmlinux-bid" if build_id else "vmlinux-nobid")
    subprocess.run(["gcc", "-shared", "-nostdlib", "-Wl,--build-id=" + ("sha1" if build_id else "none"),
                    "-o", str(out), str(src)], check=True)
    return out


def test_other_build_id_refused(kdump_vmcore, tmp_path):
    fake = _fake_vmlinux(tmp_path, True)
    rc, out, err = _cli(["--vmlinux", fake, kdump_vmcore])
    assert rc == 1 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and "is not the dump's kernel build (build-id" in lines[0]
    assert "--force" in lines[0] and "Traceback" not in err
    rc, out, err = _cli(["--force", "--json", "--vmlinux", fake, kdump_vmcore])
    assert rc in (0, 3)
    notes = json.loads(out)["debuginfo"]["notes"]
    assert any(n.startswith("--force:") for n in notes)


def test_other_banner_refused(kdump_vmcore, tmp_path, groundtruth):
    fake = _fake_vmlinux(tmp_path, False)
    rc, out, err = _cli(["--vmlinux", fake, kdump_vmcore])
    assert rc == 1
    assert "linux_banner 'Linux version 6.1.0-57-amd64" in err
    # The dump's banner quoted is the dump's own release (drgn's utsname).
    assert f"the dump's is 'Linux version {groundtruth['utsname']['release']}" in err


def test_matching_vmlinux_accepted(kdump_vmcore, debug_vmlinux):
    rc, out, err = _cli(["--vmlinux", debug_vmlinux, kdump_vmcore])
    assert rc == 0, err
    assert out.startswith(f"      KERNEL: {debug_vmlinux}")


def test_force_needs_vmlinux(kdump_vmcore):
    rc, out, err = _cli(["--force", kdump_vmcore])
    assert rc == 1 and "--force goes with --vmlinux" in err


@pytest.fixture(scope="module")
def split_pieces(kdump_vmcore, tmp_path_factory):
    d = tmp_path_factory.mktemp("split")
    paths = [d / f"piece{i}" for i in range(3)]
    subprocess.run([sys.executable, "-m", "dumpfilter", "--split", "--splitblock-size", "65536",
                    "-l", "-d", "31", str(kdump_vmcore), *map(str, paths)], check=True,
                   capture_output=True, stdin=subprocess.DEVNULL)
    ranges = []
    for p in paths:
        s = KdumpSource(str(p))
        ranges.append((s.start_pfn, s.end_pfn, s.max_pfn))
        s.close()
    return paths, ranges


def test_split_piece_alone(split_pieces):
    paths, ranges = split_pieces
    rc, out, err = _cli([paths[0]])
    assert rc == 1 and out == ""
    line, = err.splitlines()
    # The missing pfns are exactly what the other pieces' headers cover.
    lo, hi = ranges[0][1], ranges[0][2]
    assert re.search(rf"missing the piece holding pfns {lo:#x}-{hi - 1:#x}", line), line
    assert "1 piece of a --split dump that has at least 2 pieces" in line


def test_split_set_complete_is_read(split_pieces, kdump_vmcore):
    paths, _ = split_pieces
    rc, out, err = _cli(["--kmem", *paths])
    assert rc == 0, err
    rc0, whole, _ = _cli(["--kmem", kdump_vmcore])
    assert out == whole
