"""--bt on an Oops (synthetic kernels from dumpfilter.testing.synthetic:
a NULL dereference in a module and in ext4, a BUG in a kthread, a GP fault
in softirq): the crash path above the exception, crash's ``[exception RIP:
func+off]`` line and register block at the fault, then the interrupted
frames — the layout crash prints. Expected names come from the builder's
CrashSpec (the stack it laid out), registers from the pt_regs it wrote."""
from __future__ import annotations

import io
import re

import pytest

from dumpfilter.report import cli
from dumpfilter.testing.synthetic import ImageSpec, build_vmcore
from dumpfilter.testing.synthetic.crashes import CRASHES, is_regs_frame
from dumpfilter.testing.synthetic.tasks import FAULT_AT

FRAME_RE = re.compile(r"^ ?#(\d+) \[([0-9a-f]{16})\] (\S+) at ([0-9a-f]+)")
OOPSES = ("module-null", "ext4-null", "list-corruption", "gpf-net")


@pytest.fixture(scope="module", params=OOPSES)
def oops(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("oops") / f"{request.param}.vmcore"
    build_vmcore(str(path), ImageSpec(mem_mib=16, seed=7, crash=request.param))
    buf = io.StringIO()
    rc = cli.run(["--bt", str(path)], stdout=buf)
    return CRASHES[request.param], rc, buf.getvalue().splitlines()


def test_oops_exception_frame_as_crash_prints_it(oops):
    spec, rc, lines = oops
    names = spec.frame_names()
    k = next(i for i, n in enumerate(names) if is_regs_frame(n))  # asm_exc_*
    exc = next(i for i, ln in enumerate(lines) if ln.startswith("    [exception RIP: "))
    above = [FRAME_RE.match(ln).group(3) for ln in lines[1:exc] if FRAME_RE.match(ln)]
    # The crash path: panic, oops_end, the fault handler, the asm entry.
    assert above == names[:k + 1]
    m = re.match(r"^    \[exception RIP: (\w+)\+(\d+)\]$", lines[exc])
    assert m and m.group(1) == names[k + 1]
    assert int(m.group(2)) == FAULT_AT  # where the builder put the faulting instruction
    # Every register of the pt_regs (kernel mode), then — the exception ran on
    # the task's stack, so as crash: no line of its own for the interrupted
    # function — its callers, in order.
    regs = lines[exc + 1:exc + 8]
    assert [r.split(":")[0].strip() for r in regs] == \
        ["RIP", "RAX", "RDX", "RBP", "R10", "R13", "ORIG_RAX"]
    assert "CS: 0010" in regs[6]
    assert not lines[exc + 8].startswith("---")
    below = [FRAME_RE.match(ln).group(3) for ln in lines[exc + 8:] if FRAME_RE.match(ln)]
    assert below == names[k + 2:]


def test_module_frames_unwound_with_the_module_orc(oops):
    spec, rc, lines = oops
    assert rc == cli.EXIT_OK
    assert not any("stack scan" in ln for ln in lines)


def test_module_orc_not_in_dump_falls_back_to_scanning(tmp_path, monkeypatch):
    """A module whose ORC tables are missing is passed by a stack scan, and
    bt says why."""
    from dumpfilter.report import modules

    path = tmp_path / "m.vmcore"
    build_vmcore(str(path), ImageSpec(mem_mib=16, seed=7, crash="module-null"))
    real = modules.load_module_symbols

    def broken(ctx):
        ms = real(ctx)
        ms.orc = {k: (n, ip + (1 << 40), t) for k, (n, ip, t) in ms.orc.items()}
        return ms

    monkeypatch.setattr(modules, "load_module_symbols", broken)
    buf = io.StringIO()
    rc = cli.run(["--bt", str(path)], stdout=buf)
    out = buf.getvalue()
    assert rc == cli.EXIT_PARTIAL
    assert "synth_drv_ioctl at" in out and "(caller found by stack scan)" in out
    assert "module synth_drv's ORC tables are not in the dump" in out
    names = [FRAME_RE.match(ln).group(3) for ln in out.splitlines() if FRAME_RE.match(ln)]
    assert names == CRASHES["module-null"].frame_names()
    assert "[exception RIP: synth_drv_ioctl+" in out


# --------------------------------------------------------------------------- a real Oops
# Debian's 6.1 kernel, a module's NULL write, panic_on_oops, kdump
# (tests/oopscapture.py, ~20 s of QEMU after the header download, cached):
# --bt and --bt-all against crash 8.0.2's bt with the -dbg vmlinux.

@pytest.fixture(scope="module")
def real_oops():
    import oopscapture

    try:
        return oopscapture.capture()
    except oopscapture.Unavailable as e:
        pytest.skip(f"no Oops capture: {e}")


@pytest.fixture(scope="module")
def crash_oops_bt(real_oops, debug_vmlinux):
    from oracles import run_crash

    theirs = run_crash(debug_vmlinux, [real_oops], ["bt"]).splitlines()
    return theirs[next(i for i, ln in enumerate(theirs) if ln.startswith("PID: ")):]


@pytest.mark.realdump
@pytest.mark.parametrize("option", ["--bt", "--bt-all"])
def test_real_oops_bt_equals_crash(real_oops, crash_oops_bt, option):
    theirs = crash_oops_bt
    buf = io.StringIO()
    assert cli.run([option, str(real_oops)], stdout=buf) == cli.EXIT_OK
    ours = buf.getvalue().split("\n\n")[0].splitlines()  # bt -a: the panic CPU's block first
    assert ours[0] == theirs[0]  # PID / TASK / CPU / COMMAND
    exc_o = next(i for i, ln in enumerate(ours) if "[exception RIP:" in ln)
    exc_t = next(i for i, ln in enumerate(theirs) if "[exception RIP:" in ln)
    # The crash path above the exception: crash's frames, slot for slot
    # (the module's NULL write reached panic through oops_end).
    fr = lambda lines: [FRAME_RE.match(ln).groups() for ln in lines if FRAME_RE.match(ln)]  # noqa: E731
    above = fr(ours[1:exc_o])
    assert above == fr(theirs[1:exc_t])
    assert [f[2] for f in above][-4:] == ["oops_end", "page_fault_oops", "exc_page_fault",
                                          "asm_exc_page_fault"]
    # [exception RIP: oops_null_write...+5] and every register, as crash.
    assert ours[exc_o:exc_o + 8] == theirs[exc_t:exc_t + 8]
    assert "oops_null_write" in ours[exc_o]
    # The interrupted frames: each one crash shows (crash adds stale ones
    # found by scanning; it calls the module's init text
    # _MODULE_INIT_START_<module>, we name its init function).
    crash_after = {(f[1], f[3]): f[2] for f in fr(theirs[exc_t + 8:])}
    after = fr(ours[exc_o + 8:])
    assert len(after) >= 5
    for _lvl, slot, sym, pc in after:
        name = crash_after[(slot, pc)]
        assert name == sym or name == "_MODULE_INIT_START_oops_null" and sym == "oops_null_init"
    assert [ln for ln in ours if ln.startswith("    R")][-6:] == \
        [ln for ln in theirs if ln.startswith("    R")][-6:]  # the syscall's user registers
