"""Debian's arm64 crash 8.0.2 (under qemu-user) opens our filtered output
of the real arm64 capture: [PARTIAL DUMP], the PANIC line of crash on the
raw capture (reference-arm64/crash-vmcore.txt) and the panic backtrace.
One output, one crash run (~1-2 minutes under TCG); -c is covered without
crash by being byte-identical to makedumpfile's (test_arm64_filter.py), so
this uses LZO."""
import io
import json
import re

import pytest

from dumpfilter.report import cli as report_cli

from arm64tools import debug_vmlinux, run_arm64_crash
from clitools import run_cli
from oracles import crash_sys_fields

pytestmark = [pytest.mark.realdump, pytest.mark.oracle, pytest.mark.slow]


def test_arm64_crash_opens_our_lzo_output(arm64_vmcore, arm64_reference_dir, tmp_path):
    out = tmp_path / "d31-lzo.kdump"
    run_cli("-l", "-d", "31", arm64_vmcore, out)
    text = run_arm64_crash(debug_vmlinux(), out, ["sys", "bt", "mod"])
    assert re.search(r"DUMPFILE: \S+  \[PARTIAL DUMP\]", text), text[-3000:]
    ref = crash_sys_fields((arm64_reference_dir / "crash-vmcore.txt").read_text())
    got = crash_sys_fields(text)
    assert got["PANIC"] == ref["PANIC"] and "sysrq" in got["PANIC"]
    assert got["RELEASE"] == ref["RELEASE"] and got["MACHINE"] == ref["MACHINE"]
    frames = re.findall(r"^\s*#\d+ \[[0-9a-f]+\] (\S+) at", text, re.M)
    i = frames.index("sysrq_handle_crash")
    assert frames[i:i + 3] == ["sysrq_handle_crash", "__handle_sysrq", "write_sysrq_trigger"]
    # Loaded modules: ours (list head recovered from the modules, no
    # 'modules' symbol in this kernel's kallsyms) = crash's mod.
    theirs = {m.group(1): (m.group(2), m.group(3), int(m.group(4))) for m in re.finditer(
        r"^([0-9a-f]{16})  (\S+) +([0-9a-f]{16}) +(\d+)  ", text, re.M)}
    buf = io.StringIO()
    assert report_cli.run(["--json", "--mod", str(out)], stdout=buf) == report_cli.EXIT_OK
    ours = {m["address"]: (m["name"], m["base"], m["size"]) for m in json.loads(buf.getvalue())["mod"]["modules"]}
    assert ours == theirs and len(ours) == 9
