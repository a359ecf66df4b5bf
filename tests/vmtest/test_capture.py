"""dumpfilter as the collector in a real kdump capture kernel (QEMU TCG, Debian 6.1 kernel).

For each configuration (1 GiB guest with ``crashkernel=128M``, 4 GiB guest with
``crashkernel=256M``) the first kernel arms ``kexec -p`` with a capture initrd = small base
+ the ``python3 -m dumpfilter.initramfs`` payload, runs a workload and crashes with sysrq-c.
The capture kernel runs, verbatim:

    dumpfilter -l --message-level 7 -d 31 /proc/vmcore /dump/vmcore-incomplete   (then mv to vmcore)
    dumpfilter -F -l -d 31 /proc/vmcore > /dump/vmcore.flat
    makedumpfile -l --message-level 7 -d 31 /proc/vmcore /dump/mdf.kdump

each under a small wrapper that records exit status, wall time, VmHWM and the lowest
MemFree / MemAvailable. The host then checks the files (crash, bitmaps, -R, pages) and
prints the figures. ``-m 'not vmtest'`` deselects these tests.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vmtest import harness
from vmtest.conftest import FIGURES

pytestmark = [pytest.mark.vmtest, pytest.mark.slow]

CONFIGS = [
    harness.VMConfig(name="1G-crashkernel128M", mem_mib=1024, crashkernel="128M", timeout=900),
    harness.VMConfig(name="4G-crashkernel256M", mem_mib=4096, crashkernel="256M", timeout=1500),
]
RUNS = ("ours_l", "ours_flat", "mdf_l")


@pytest.fixture(scope="module", params=CONFIGS, ids=[c.name for c in CONFIGS])
def capture(request, tmp_path_factory):
    cfg = request.param
    workdir = tmp_path_factory.mktemp(cfg.name)
    try:
        res = harness.run_vm(cfg, workdir)
    except harness.VMUnavailable as e:
        pytest.skip(str(e))
    table = harness.figures_table(res)
    FIGURES.append(table + f"\n(host wall {res.host_wall_s:.0f} s; payload: "
                   + " ".join(res.payload_report.split("\n")[0].split()[1:]) + ")")
    summary = harness.vm_cache() / f"last-{cfg.name}.json"
    summary.write_text(json.dumps({"runs": res.runs, "info": res.info, "config": res.config,
                                   "host_wall_s": res.host_wall_s, "table": table}, indent=1))
    yield res
    if not os.environ.get("DUMPFILTER_VMTEST_KEEP"):
        shutil.rmtree(workdir, ignore_errors=True)


def _out(res) -> Path:
    assert res.ok, res.error
    return Path(res.outdir)


def test_collectors_exit_0(capture):
    out = _out(capture)
    for name in RUNS:
        r = capture.runs.get(name)
        assert r is not None, f"{name} did not run: {capture.runs}"
        assert r["rc"] == "0", (name, r, (out / "dmesg-capture.txt").read_text()[-2000:]
                                if (out / "dmesg-capture.txt").exists() else "")
        assert int(r["maxrss_kb"]) > 0 and int(r["minavail_kb"]) > 0
    assert (out / "vmcore").is_file() and not (out / "vmcore-incomplete").exists()
    assert (out / "vmcore.flat").stat().st_size > 4096
    assert (out / "mdf.kdump").is_file()


def test_crash_opens_our_dump(capture, debug_vmlinux):
    from oracles import crash_sys_fields, run_crash

    out = _out(capture)
    text = run_crash(debug_vmlinux, [out / "vmcore"], ["sys"], timeout=600)
    f = crash_sys_fields(text)
    assert "[PARTIAL DUMP]" in f.get("DUMPFILE", ""), text[-3000:]
    assert f.get("PANIC") == '"Kernel panic - not syncing: sysrq triggered crash"', text[-3000:]
    assert f.get("RELEASE") == harness.KVER


def test_bitmap_equals_makedumpfile(capture):
    from oracles import read_kdump_bitmap2, read_kdump_header

    out = _out(capture)
    ours, theirs = out / "vmcore", out / "mdf.kdump"
    h1, h2 = read_kdump_header(ours), read_kdump_header(theirs)
    for k in ("block_size", "sub_hdr_size", "bitmap_blocks", "max_mapnr"):
        assert h1[k] == h2[k], (k, h1[k], h2[k])
    b1, b2 = read_kdump_bitmap2(ours), read_kdump_bitmap2(theirs)
    diff = sum(bin(x ^ y).count("1") for x, y in zip(b1, b2))
    assert b1 == b2, f"2nd bitmaps differ in {diff} pfns"


def test_pages_equal_makedumpfile(capture):
    from clitools import page_sha1s, set_pfns
    from oracles import read_kdump_bitmap2

    out = _out(capture)
    pfns = set_pfns(read_kdump_bitmap2(out / "mdf.kdump"))
    assert pfns
    assert page_sha1s(out / "vmcore", pfns) == page_sha1s(out / "mdf.kdump", pfns)


def test_flat_stream_rebuilds_to_the_same_pages(capture, tmp_path):
    from clitools import page_sha1s, set_pfns
    from oracles import read_kdump_bitmap2

    out = _out(capture)
    rebuilt = tmp_path / "rebuilt.kdump"
    with open(out / "vmcore.flat", "rb") as fh:
        r = subprocess.run([sys.executable, "-m", "dumpfilter", "-R", str(rebuilt)], stdin=fh,
                           capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    b = read_kdump_bitmap2(rebuilt)
    assert b == read_kdump_bitmap2(out / "vmcore")
    if rebuilt.read_bytes() != (out / "vmcore").read_bytes():
        pfns = set_pfns(b)
        assert page_sha1s(rebuilt, pfns) == page_sha1s(out / "vmcore", pfns)


def test_figures(capture):
    """The in-guest figures, ours beside makedumpfile's (printed at the end of the session)."""
    _out(capture)
    table = harness.figures_table(capture)
    print(table)
    for name in RUNS:
        r = capture.runs[name]
        for key in ("wall_ms", "maxrss_kb", "minfree_kb", "minavail_kb"):
            assert int(r[key]) >= 0, (name, key, r)
