"""bench/make_large_dump.py: a 1 GiB dump tiled from the real capture is
accepted by our ELF reader, and at -d 31 our 2nd bitmap and per-class counts
equal makedumpfile 1.7.2's."""
from __future__ import annotations

import importlib.util
import re
import shutil
import struct
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.realdump, pytest.mark.oracle]

COUNT_KEYS = ("Pages filled with zero", "Non-private cache pages", "Private cache pages",
              "User process data pages", "Free pages", "Hwpoison pages", "Offline pages")


def _generator():
    spec = importlib.util.spec_from_file_location("make_large_dump", REPO_ROOT / "bench" / "make_large_dump.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _bitmap2(path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(4096)
        block, sub, blocks = struct.unpack_from("<iiI", head, 428)
        f.seek((1 + sub) * block + blocks * block // 2)
        return f.read(blocks * block // 2)


def _counts(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        m = re.match(r"\s*(.+?)\s*:\s*0x([0-9a-f]+)$", line)
        if m and m.group(1) in COUNT_KEYS:
            out[m.group(1)] = int(m.group(2), 16)
    return out


def test_tiled_1gib_dump_matches_makedumpfile(kdump_vmcore, tmp_path):
    mdf = shutil.which("makedumpfile")
    if not mdf:
        pytest.skip("makedumpfile not installed")
    gen = _generator()
    big = tmp_path / "big.vmcore"
    info = gen.generate(str(big), 1.0, str(kdump_vmcore), quiet=True)
    assert info["copies"] == 2

    from dumpfilter.readers.elf import ElfSource
    src = ElfSource(str(big))
    try:
        tile_pfns = info["tile_bytes"] // 4096
        assert src.max_pfn > tile_pfns  # the second copy is RAM
        assert b"OSRELEASE=6.1.0-56-amd64" in src.vmcoreinfo_raw
    finally:
        src.close()

    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    r1 = subprocess.run([mdf, "-c", "-d", "31", "--message-level", "31", str(big), str(theirs)],
                        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert r1.returncode == 0, r1.stdout + r1.stderr
    r2 = subprocess.run([sys.executable, "-m", "dumpfilter", "-c", "-d", "31", "--message-level", "31",
                         str(big), str(ours)], capture_output=True, text=True,
                        stdin=subprocess.DEVNULL, timeout=300)
    assert r2.returncode == 0, r2.stderr
    b1, b2 = _bitmap2(theirs), _bitmap2(ours)
    assert len(b1) == len(b2) and b1 == b2
    c1, c2 = _counts(r1.stdout + r1.stderr), _counts(r2.stdout + r2.stderr)
    assert len(c1) == len(COUNT_KEYS) and c1 == c2

    # The second copy repeats the first one's classification outside the
    # filled crashkernel hole (pfns 0x100..0x15000 of the real machine).
    bits = int.from_bytes(b1, "little")
    span = (1 << (0x15000 - 0x100)) - 1
    assert (bits >> 0x100) & span == (bits >> (tile_pfns + 0x100)) & span
