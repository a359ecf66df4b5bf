"""Debian's arm64 crash 8.0.2 (under qemu-user) opens our filtered output
of the real arm64 capture: [PARTIAL DUMP], the PANIC line of crash on the
raw capture (reference-arm64/crash-vmcore.txt) and the panic backtrace.
One output, one crash run (~1-2 minutes under TCG); -c is covered without
crash by being byte-identical to makedumpfile's (test_arm64_filter.py), so
this uses LZO."""
import re

import pytest

from arm64tools import debug_vmlinux, run_arm64_crash
from clitools import run_cli
from oracles import crash_sys_fields

pytestmark = [pytest.mark.realdump, pytest.mark.oracle, pytest.mark.slow]


def test_arm64_crash_opens_our_lzo_output(arm64_vmcore, arm64_reference_dir, tmp_path):
    out = tmp_path / "d31-lzo.kdump"
    run_cli("-l", "-d", "31", arm64_vmcore, out)
    text = run_arm64_crash(debug_vmlinux(), out, ["sys", "bt"])
    assert re.search(r"DUMPFILE: \S+  \[PARTIAL DUMP\]", text), text[-3000:]
    ref = crash_sys_fields((arm64_reference_dir / "crash-vmcore.txt").read_text())
    got = crash_sys_fields(text)
    assert got["PANIC"] == ref["PANIC"] and "sysrq" in got["PANIC"]
    assert got["RELEASE"] == ref["RELEASE"] and got["MACHINE"] == ref["MACHINE"]
    frames = re.findall(r"^\s*#\d+ \[[0-9a-f]+\] (\S+) at", text, re.M)
    i = frames.index("sysrq_handle_crash")
    assert frames[i:i + 3] == ["sysrq_handle_crash", "__handle_sysrq", "write_sysrq_trigger"]
