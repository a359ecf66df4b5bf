"""dumpfilter-report on the real arm64 capture, no vmlinux: banner vs crash
8.0.2 (Debian's arm64 build) where crash is right, tasks and the panic task
vs drgn's ground truth, --log vs makedumpfile --dump-dmesg, --bt vs crash's
bt frame for frame, --regs vs the ground-truth NT_PRSTATUS registers. Run
on the raw ELF capture and on makedumpfile's -c -d 31 output of it."""
from __future__ import annotations

import io
import json
import re

import pytest

from dumpfilter.report import cli
from dumpfilter.report.context import ReportContext
from dumpfilter.report.tasks import STATE_NAMES

from oracles import crash_sys_lines
from test_report_cli import CRASH_RIGHT, banner_of

pytestmark = pytest.mark.realdump


def run_report(*args):
    buf = io.StringIO()
    rc = cli.run(["--utc", *map(str, args)], stdout=buf)
    return rc, buf.getvalue()


@pytest.fixture(scope="module", params=["raw", "mdf-d31-zlib"])
def dump(request, arm64_vmcore, arm64_mdf_d31_zlib):
    return arm64_vmcore if request.param == "raw" else arm64_mdf_d31_zlib


@pytest.fixture(scope="module")
def crash_txt(arm64_reference_dir):
    return (arm64_reference_dir / "crash-vmcore.txt").read_text()


@pytest.fixture(scope="module")
def banner(dump):
    return run_report(dump)


@pytest.fixture(scope="module")
def report(dump):
    return run_report("--bt", "--ps", dump)


def test_exit_codes(banner, report):
    assert banner[0] == cli.EXIT_OK, banner[1]
    assert report[0] == cli.EXIT_OK, report[1]


@pytest.mark.parametrize("label", CRASH_RIGHT)
def test_banner_equals_crash(banner, crash_txt, label):
    assert banner_of(banner[1])[label] == crash_sys_lines(crash_txt)[label]


def test_banner_tasks_and_panic_task(banner, arm64_groundtruth):
    """crash 8.0.2 counts 3 tasks on this dump ("not found in PID hash"):
    TASKS and the panic task come from drgn."""
    gt = arm64_groundtruth
    b = banner_of(banner[1])
    pt = gt["panic_task"]
    assert b["TASKS"] == f"       TASKS: {gt['nr_threads_incl_idle']}"
    assert b["PID"] == f"         PID: {pt['pid']}"
    assert b["COMMAND"] == f'     COMMAND: "{pt["comm"]}"'
    assert b["CPU"] == f"         CPU: {pt['cpu']}"
    assert b["TASK"].split(": ", 1)[1].split()[0] == f"{int(pt['task'], 16):x}"
    gt_task = next(t for t in gt["tasks"] if t["task"] == pt["task"])
    assert b["STATE"].split(": ", 1)[1].startswith(STATE_NAMES[gt_task["state"]])


def test_bt_equals_crash(report, crash_txt):
    """Every frame line (and the user registers after the last one) as
    crash prints them; PAC-signed return addresses symbolised."""
    ours = report[1].splitlines()
    start = ours.index(next(l for l in ours if l.startswith("PID: ")))
    theirs = crash_txt.splitlines()
    tstart = theirs.index(next(l for l in theirs if l.startswith("PID: ")))
    n = next(i for i, l in enumerate(theirs[tstart:]) if l.lstrip().startswith("ORIG_X0")) + 1
    assert ours[start:start + n] == theirs[tstart:tstart + n]
    names = [m.group(1) for l in ours[start:start + n] for m in [re.match(r"^#?\s*#\d+ \[\w+\] (\S+)", l)] if m]
    i = names.index("sysrq_handle_crash")
    assert names[i:i + 3] == ["sysrq_handle_crash", "__handle_sysrq", "write_sysrq_trigger"]


def test_ps_equals_groundtruth(report, arm64_groundtruth):
    rows = {}
    for line in report[1].splitlines():
        m = re.match(r"^([> ]) +(\d+) +(\d+) +(\d+) +([0-9a-f]{16}) +([A-Z]{2}) .* (\S+)$", line)
        if m:
            rows[int(m.group(5), 16)] = (m.group(1) == ">", int(m.group(2)), int(m.group(3)),
                                         int(m.group(4)), m.group(7).strip("[]"))
    gt = arm64_groundtruth["tasks"]
    assert len(rows) == len(gt)
    for t in gt:
        active, pid, ppid, cpu, comm = rows[int(t["task"], 16)]
        assert (pid, ppid, cpu, comm) == (t["pid"], t["ppid"], t["cpu"], t["comm"])
        assert active == (t["running_on_cpu"] is not None)


def test_log_equals_makedumpfile(dump, arm64_reference_dir):
    rc, out = run_report("--log", dump)
    assert rc == cli.EXIT_OK
    log = out[out.index("[    0.000000]"):]
    assert log == (arm64_reference_dir / "dmesg.txt").read_text()


def test_regs_equal_groundtruth(arm64_vmcore, arm64_groundtruth):
    rc, out = run_report("--json", "--regs", arm64_vmcore)
    cpus = json.loads(out)["regs"]["cpus"]
    notes = arm64_groundtruth["prstatus_notes"]
    assert len(cpus) == len(notes) == 2
    for cpu, note in zip(cpus, notes):
        assert cpu["pid"] == note["pr_pid"]
        assert {k: int(v, 16) for k, v in cpu["regs"].items()} == \
            {k: int(v, 16) for k, v in note["regs"].items()}
    assert cpus[1]["rip_symbol"].startswith("__crash_kexec+")


def test_image_symbols_match_groundtruth(arm64_vmcore, arm64_groundtruth):
    """Without CONFIG_KALLSYMS_ALL the data symbols come from __ksymtab
    and BTF: init_task is drgn's swapper/0 task."""
    with ReportContext.open(str(arm64_vmcore)) as ctx:
        ks = ctx.kallsyms
        swapper0 = next(t for t in arm64_groundtruth["tasks"] if t["comm"] == "swapper/0")
        assert ks.address("init_task") == int(swapper0["task"], 16)
        assert ctx.u64(ks.address("jiffies_64")) == arm64_groundtruth["jiffies_64"]
        assert ctx.debuginfo["symbols"] == "dump kallsyms + kernel image tables"


def test_mod_without_modules_symbol(dump):
    """kallsyms has no 'modules' here; the list head is found from the
    modules themselves. The names are those Debian's arm64 crash lists with
    ``mod`` on this capture (checked live in test_arm64_crash.py)."""
    rc, out = run_report("--json", "--mod", dump)
    assert rc == cli.EXIT_OK
    mods = json.loads(out)["mod"]["modules"]
    assert sorted(m["name"] for m in mods) == sorted(
        ["crc32c_generic", "ext4", "jbd2", "mbcache", "crc16", "virtio_blk", "virtio_pci",
         "virtio_pci_modern_dev", "virtio_pci_legacy_dev"])
