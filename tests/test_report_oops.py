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
    m = re.match(r"^    \[exception RIP: (\w+)\+(\d+)( \[(\w+)\])?\]$", lines[exc])
    assert m and m.group(1) == names[k + 1]
    assert m.group(4) == spec.frame_modules().get(names[k + 1])
    # Every register of the pt_regs, then the interrupted function at the
    # fault's RSP and RIP.
    regs = lines[exc + 1:exc + 8]
    assert [r.split(":")[0].strip() for r in regs] == \
        ["RIP", "RAX", "RDX", "RBP", "R10", "R13", "ORIG_RAX"]
    rip, rsp = re.match(r"^    RIP: ([0-9a-f]{16})  RSP: ([0-9a-f]{16})", regs[0]).groups()
    assert "CS: 0010" in regs[6]  # kernel mode
    nxt = FRAME_RE.match(lines[exc + 8])
    assert nxt and nxt.group(3) == names[k + 1]
    assert int(nxt.group(2), 16) == int(rsp, 16) and int(nxt.group(4), 16) == int(rip, 16)
    # The rest of the interrupted stack, in order.
    below = [FRAME_RE.match(ln).group(3) for ln in lines[exc + 8:] if FRAME_RE.match(ln)]
    assert below == names[k + 1:]


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
