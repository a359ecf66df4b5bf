"""crash ``sys`` banner values: pure formatting rules, then the real dumps
against crash's own output (crash-vmcore.txt / crash-d31-zlib.txt) for the
lines crash 8.0.2 gets right, and against groundtruth.json for TASKS and the
panic-task block that crash 8.0.2 gets wrong/omits on 6.1."""
from __future__ import annotations

import time

import pytest

from dumpfilter.report.sysinfo import (
    detect_hz, format_banner, format_loadavg, format_memory, format_uptime, pages_to_size,
    panic_message, read_sysinfo, uptime_jiffies,
)
from dumpfilter.report.tasks import STATE_NAMES

from oracles import crash_sys_lines


# --------------------------------------------------------------------------- formatting rules

def test_uptime_initial_jiffies_and_days():
    hz = 100
    initial = (-300 * hz) & 0xFFFFFFFF
    assert format_uptime(initial + 61 * hz, hz) == "00:01:01"
    assert format_uptime(initial + (2 * 86400 + 3600) * hz, hz) == "2 days, 01:00:00"
    # past the 32-bit wrap: the high word is set
    j = (1 << 32) + 5 * hz
    assert uptime_jiffies(j, hz) == 5 * hz + 300 * hz


def test_loadavg_rounding():
    assert format_loadavg([0, 2048, 2048 * 3 + 1024]) == "0.00, 1.00, 3.50"


def test_pages_to_size_and_rounding():
    assert pages_to_size(0, 4096) == "0"
    assert pages_to_size(262144, 4096) == "1 GB"
    assert pages_to_size(130938, 4096) == "511.5 MB"
    assert pages_to_size(100, 4096) == "400 KB"
    # within 64 MiB below a GiB boundary: rounded up
    assert format_memory((2 << 30) - (60 << 20), 4096) == "2 GB"
    assert format_memory((2 << 30) - (100 << 20), 4096) == "1.9 GB"


def test_panic_priority():
    lines = ["Oops: 0002 [#1] SMP", "BUG: unable to handle kernel NULL", "Kernel panic - not syncing: x"]
    assert panic_message(lines) == ("Kernel panic - not syncing: x", False)
    assert panic_message(["SysRq : Trigger a crash", "Kernel panic - y"]) == ("SysRq : Trigger a crash", True)
    assert panic_message(["nothing"]) == ("", False)


def test_banner_alignment():
    assert format_banner({"TASKS": "3", "LOAD AVERAGE": "x"}) == ["LOAD AVERAGE: x", "       TASKS: 3"]


# --------------------------------------------------------------------------- real dumps

def _crash_sys(text):
    """label -> value of crash's sys block."""
    return {label: line.split(": ", 1)[1] for label, line in crash_sys_lines(text).items()}


@pytest.fixture(scope="module")
def case(report_case):
    ctx, crash_text = report_case
    return ctx, _crash_sys(crash_text)


@pytest.fixture(scope="module")
def sysinfo(case):
    ctx, crash = case
    zone = crash["DATE"].split()[4]
    return read_sysinfo(ctx, tz="UTC" if zone == "UTC" else None)


CRASH_RIGHT = ("CPUS", "DATE", "UPTIME", "LOAD AVERAGE", "NODENAME", "RELEASE", "VERSION",
               "MACHINE", "MEMORY", "PANIC")


@pytest.mark.realdump
@pytest.mark.parametrize("label", CRASH_RIGHT)
def test_banner_matches_crash(case, sysinfo, label):
    _ctx, crash = case
    assert sysinfo.values[label] == crash[label]


@pytest.mark.realdump
def test_date_local_timezone(case, monkeypatch):
    ctx, crash = case
    from dumpfilter.report.sysinfo import format_date

    zone = crash["DATE"].split()[4]
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        assert format_date(ctx.info.crashtime) == crash["DATE"]
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.realdump
def test_banner_groundtruth_values(sysinfo, groundtruth):
    assert sysinfo.errors == []
    assert sysinfo.values["TASKS"] == str(groundtruth["nr_threads_incl_idle"])
    pt = groundtruth["panic_task"]
    assert sysinfo.values["PID"] == str(pt["pid"])
    assert sysinfo.values["COMMAND"] == f'"{pt["comm"]}"'
    assert sysinfo.values["TASK"].split()[0] == pt["task"][2:]
    assert sysinfo.values["CPU"] == str(pt["cpu"])
    state = [t["state"] for t in groundtruth["tasks"] if t["task"] == pt["task"]][0]
    assert sysinfo.values["STATE"] == f"{STATE_NAMES[state]} (PANIC)"
    assert sysinfo.hz == groundtruth["uptime"]["HZ"]
    assert sysinfo.avenrun == groundtruth["avenrun_raw"]
    assert sysinfo.jiffies_64 == groundtruth["jiffies_64"]
    assert sysinfo.utsname == groundtruth["utsname"] | {"sysname": "Linux"}
    assert abs(uptime_jiffies(sysinfo.jiffies_64, sysinfo.hz) / sysinfo.hz
               - groundtruth["uptime"]["jiffies_s"]) < 0.001


@pytest.mark.realdump
def test_hz_fallback_from_printk(case, groundtruth):
    """Without tick_nsec/ikconfig, jiffies vs. the last log timestamp."""
    ctx, _ = case
    from dumpfilter.report.printk import read_printk

    log = read_printk(ctx.mem, ctx.info)

    class NoTick:
        def __init__(self, ks):
            self.ks = ks

        def address(self, name):
            return None if name in ("tick_nsec", "kernel_config_data") else self.ks.address(name)

    saved = ctx._kallsyms
    ks = ctx.kallsyms
    ctx._kallsyms = NoTick(ks)
    try:
        hz, how = detect_hz(ctx, log.records[-1].ts_nsec, groundtruth["jiffies_64"])
    finally:
        ctx._kallsyms = saved
    assert (hz, how) == (groundtruth["uptime"]["HZ"], "jiffies vs. last printk timestamp")


@pytest.mark.realdump
def test_missing_page_is_explained(case):
    """A value whose page is excluded says what is missing and why."""
    from dumpfilter.errors import FaultError
    from dumpfilter.report.context import ReportContext

    ctx, _ = case
    avenrun = ctx.kallsyms.address("avenrun")

    class Holey:
        def __init__(self, mem):
            self.mem = mem

        def read(self, vaddr, n):
            if vaddr <= avenrun < vaddr + n:
                raise FaultError("page excluded from the dump", avenrun)
            return self.mem.read(vaddr, n)

    holey = ReportContext(ctx.source, ctx.info, Holey(ctx.mem))
    holey._kallsyms, holey._btf = ctx.kallsyms, ctx.btf
    si = read_sysinfo(holey, tz="UTC")
    assert si.values["LOAD AVERAGE"].startswith("(unavailable: avenrun: page excluded from the dump")
    assert any(e.startswith("LOAD AVERAGE:") for e in si.errors)
    assert si.values["TASKS"] == str(len(TaskReaderFor(holey)))


def TaskReaderFor(ctx):
    from dumpfilter.report.tasks import read_tasks

    return read_tasks(ctx)
