"""--bt / --regs / --mod: the panic task's backtrace (ORC, stack-scan
fallback) against the drgn ground truth and crash's bt; registers against
the ground-truth NT_PRSTATUS notes."""
from __future__ import annotations

import io
import re

import pytest

from dumpfilter.report import backtrace as B
from dumpfilter.report import cli

pytestmark = pytest.mark.realdump

FRAME_RE = re.compile(r"^ ?#(\d+) \[([0-9a-f]{16})\] (\S+) at ([0-9a-f]+)")


def run_report(args):
    buf = io.StringIO()
    rc = cli.run([*map(str, args)], stdout=buf)
    return rc, buf.getvalue()


@pytest.fixture(scope="module", params=["raw", "mdf-d31-zlib", "own-d31-lzo"])
def dump_path(request, kdump_vmcore, mdf_d31_zlib, report_own_d31):
    return {"raw": kdump_vmcore, "mdf-d31-zlib": mdf_d31_zlib,
            "own-d31-lzo": report_own_d31["lzo"]}[request.param]


@pytest.fixture(scope="module")
def bt_out(dump_path):
    return run_report(["--bt", dump_path])


@pytest.fixture(scope="module")
def crash_bt(reference_dir):
    """crash's bt block: header, frame lines, register lines."""
    lines = (reference_dir / "crash-vmcore.txt").read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("PID: "))
    block = [lines[i]]
    for ln in lines[i + 1:]:
        if FRAME_RE.match(ln) or re.match(r"^    (RIP|RAX|RDX|RBP|R10|R13|ORIG_RAX): ", ln):
            block.append(ln)
        else:
            break
    return block


def _frames(out):
    return [FRAME_RE.match(ln).groups() for ln in out.splitlines() if FRAME_RE.match(ln)]


def _base(name):
    return name.split(".", 1)[0]


def _expected_names(groundtruth, ks):
    """The ground-truth panic stack, innermost first, as kallsyms names the
    ground-truth pcs (inlined frames such as crash_setup_regs or pde_write
    share their caller's pc and collapse into it; a label like
    entry_SYSCALL_64_after_hwframe names what DWARF calls entry_SYSCALL_64)."""
    out = []
    for name, pc in zip(groundtruth["panic_stack"], groundtruth["panic_stack_pc"]):
        hit = ks.lookup(int(pc, 16))
        if name.startswith("0x") or hit is None:
            continue
        sym = _base(hit[0])
        assert sym == name or sym.startswith(name) or name not in ks
        if not out or out[-1] != sym:
            out.append(sym)
    return out


def _is_subsequence(want, got):
    it = iter(got)
    return all(any(w == g for g in it) for w in want)


def test_bt_shows_groundtruth_stack(bt_out, groundtruth, report_raw_ctx):
    rc, out = bt_out
    assert rc == cli.EXIT_OK, out
    names = [_base(f[2]) for f in _frames(out)]
    want = _expected_names(groundtruth, report_raw_ctx.kallsyms)
    assert len(want) >= 8
    assert _is_subsequence(want, names), (want, names)
    assert "(stack scan)" not in out.splitlines()[0]  # ORC did the unwinding


def test_bt_header_and_frames_match_crash(bt_out, crash_bt):
    lines = bt_out[1].splitlines()
    assert lines[0] == crash_bt[0]
    crash_frames = {(f[1], f[2], f[3]) for f in map(lambda ln: FRAME_RE.match(ln).groups(),
                                                    filter(FRAME_RE.match, crash_bt))}
    ours = _frames(bt_out[1])
    # Every frame is one crash shows too, with the same stack slot, symbol
    # and address — from machine_kexec, the frame that never returned.
    assert ours[0][2] == "machine_kexec"
    for f in ours:
        assert (f[1], f[2], f[3]) in crash_frames
    for k, f in enumerate(ours):
        assert int(f[0]) == k
    # The user-mode register block at the system-call entry is crash's.
    crash_regs = [ln for ln in crash_bt if ln.startswith("    ")]
    assert crash_regs and all(ln in lines for ln in crash_regs)


def test_bt_stack_scan_fallback(monkeypatch, groundtruth, report_raw_ctx, kdump_vmcore):
    def no_orc(ctx):
        raise B.UnwindError("ORC disabled by the test")

    monkeypatch.setattr(B, "OrcTable", no_orc)
    rc, out = run_report(["--bt", kdump_vmcore])
    assert rc == cli.EXIT_PARTIAL
    assert out.splitlines()[0].endswith("(stack scan)")
    assert "ORC disabled by the test" in out
    names = [_base(f[2]) for f in _frames(out)]
    assert _is_subsequence(_expected_names(groundtruth, report_raw_ctx.kallsyms), names)


def test_regs_equal_prstatus(dump_path, groundtruth):
    rc, out = run_report(["--regs", dump_path])
    assert rc == cli.EXIT_OK
    blocks = re.findall(r"RIP: ([0-9a-f]{16})  RSP: ([0-9a-f]{16})", out)
    want = [(int(n["regs"]["rip"], 16), int(n["regs"]["rsp"], 16))
            for n in groundtruth["prstatus_notes"]]
    assert [(int(a, 16), int(b, 16)) for a, b in blocks] == want
    pids = [int(p) for p in re.findall(r"^CPU \d+ +\(NT_PRSTATUS note \d+, pid (\d+)\)", out, re.M)]
    assert pids == [n["pr_pid"] for n in groundtruth["prstatus_notes"]]


def test_mod_list(dump_path, report_raw_ctx):
    rc, out = run_report(["--json", dump_path])
    assert rc == cli.EXIT_OK
    import json

    mods = json.loads(out)["mod"]
    assert mods["errors"] == [] and mods["modules"]
    ks = report_raw_ctx.kallsyms
    for m in mods["modules"]:
        assert m["name"] and m["size"] > 0 and m["nsyms"] and m["nsyms"] > 0
        assert int(m["base"], 16) > ks.require("_etext")  # module space lies above the kernel


def test_module_symbols(report_raw_ctx):
    from dumpfilter.report.modules import read_modules

    mods = read_modules(report_raw_ctx, with_symbols=True)["modules"]
    m = mods[0]
    base, size = int(m["base"], 16), m["size"]
    syms = m["symbols"]
    assert syms and any(base <= a < base + size for _n, a in syms)
