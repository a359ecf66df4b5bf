"""A short, seeded run of the in-process fuzz harness (tools/fuzz.py) over
every reader: ELF, VMCOREINFO, kdump (headers, bitmaps, descriptors, page
payloads), the LZO decoder, flattened streams, kallsyms, BTF and printk.
Each input must be read or refused with the project's error; any other
exception or a run over 10 s fails. The long run is ``tools/fuzz.py
--seconds N`` (see its docstring)."""
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "fuzz.py"


def test_fuzz_smoke():
    r = subprocess.run([sys.executable, str(TOOL), "--execs", "150", "--seed", "3"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = [l for l in r.stdout.splitlines() if "execs" in l]
    assert len(lines) == 8, r.stdout
    for line in lines:
        assert " 150 execs" in line and "findings 0" in line, line
