"""Synthetic kernels that carry tasks and a panic (ImageSpec.crash): the
report finds the panic task and unwinds exactly the scenario's stack with
ORC from the image, the stack-scan fallback recovers the return-address
frames, and the filtered (-d 31) dump keeps all of it."""
from __future__ import annotations

import pytest

from dumpfilter.report import backtrace as B
from dumpfilter.report.cli import collect, open_context
from dumpfilter.testing.synthetic import ImageSpec, build_vmcore
from dumpfilter.testing.synthetic.crashes import CRASHES, is_regs_frame
from dumpfilter.testing.synthetic.tasks import CALL_AT, FAULT_AT

from clitools import run_cli

SECTIONS = {"sys", "log", "ps", "bt", "mod", "regs"}


def _report(path):
    ctx = open_context([str(path)])
    try:
        return collect(ctx, [str(path)], SECTIONS, tz="UTC")
    finally:
        ctx.close()


@pytest.fixture(scope="module", params=sorted(CRASHES))
def crash_dump(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("crash") / f"{request.param}.vmcore"
    info = build_vmcore(str(path), ImageSpec(mem_mib=16, seed=7, crash=request.param))
    return path, info, CRASHES[request.param]


def test_report_complete_and_orc_unwinds_the_stack(crash_dump):
    path, info, spec = crash_dump
    rep = _report(path)
    assert rep["errors"] == []
    bt = rep["bt"]
    assert bt["method"] == "orc"
    assert [f["symbol"] for f in bt["frames"]] == spec.frame_names()
    assert {f["symbol"]: f["module"] for f in bt["frames"] if f["module"]} == spec.frame_modules()
    pt = rep["sys"]["panic_task"]
    assert (pt["pid"], pt["comm"], pt["cpu"]) == (spec.pid, spec.comm, spec.cpu)
    assert pt["task"] == f"{info.crash['panic_task']:#x}"
    panic_lines = [t for lvl, t in spec.log if t.startswith("Kernel panic - ")]
    assert rep["sys"]["values"]["PANIC"] == f'"{panic_lines[0]}"'
    assert rep["sys"]["values"]["RELEASE"] == info.utsname[2]
    # the regs frames hold the interrupted function's registers
    for f, nxt in zip(bt["frames"], bt["frames"][1:] + [None]):
        if is_regs_frame(f["symbol"]) and nxt is not None:
            assert int(f["regs"]["rip"], 16) == int(nxt["pc"], 16)
            assert int(nxt["pc"], 16) % 0x100 == FAULT_AT


def test_stack_scan_fallback_finds_return_addresses(crash_dump, monkeypatch):
    path, _, spec = crash_dump

    def no_orc(ctx):
        raise B.UnwindError("test: no ORC")

    monkeypatch.setattr(B, "OrcTable", no_orc)
    rep = _report(path)
    bt = rep["bt"]
    assert bt["method"] == "stack scan"
    names = spec.frame_names()
    # every frame entered by a call (not the one an exception interrupted) is found, in order
    called = [names[0]] + [names[k + 1] for k in range(len(names) - 1) if not is_regs_frame(names[k])]
    assert [f["symbol"] for f in bt["frames"]] == called
    assert all(int(f["pc"], 16) % 0x100 == CALL_AT + 5 for f in bt["frames"][1:])


def test_filtered_dump_keeps_the_crash(crash_dump, tmp_path):
    path, _, spec = crash_dump
    out = tmp_path / "d31.kdump"
    run_cli("-c", "-d", "31", str(path), str(out))
    rep = _report(out)
    assert rep["errors"] == []
    assert rep["filtered"]["dump_level"] == 31
    assert [f["symbol"] for f in rep["bt"]["frames"]] == spec.frame_names()


def test_crash_needs_its_cpu(tmp_path):
    with pytest.raises(ValueError, match="CPU 1"):
        build_vmcore(str(tmp_path / "x"), ImageSpec(mem_mib=16, nr_cpus=1, crash="ext4-null"))
