"""A corpus of malformed dumps and the contract every run over one must
keep (issue 9), shared by tests/test_malformed_corpus.py and tools/fuzz.py.

``cases(seeds, rng)`` derives malformed files from well-formed seeds:
truncations, bit flips and field-targeted mutations (``mutate``) of ELF
program headers, VMCOREINFO values, kdump headers, sub headers, page
descriptors and flattened records. ``run_case`` runs one tool on one file
in a subprocess limited to ``TIME_LIMIT`` seconds and ``MEMORY_LIMIT``
bytes of address space and returns the violations of the contract:

* exit status 0 or 1 (``dumpfilter-report``: 0, 1 or 3);
* at most one ``dumpfilter:`` line on stderr, no traceback;
* an output left behind only after success or marked INCOMPLETE.
"""
from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from dumpfilter.formats.elf import PT_LOAD, PT_NOTE
from dumpfilter.formats.kdump import FLAG_INCOMPLETE, KDUMP_SIGNATURE
from dumpfilter.testing import mutate as M

TIME_LIMIT = 60
MEMORY_LIMIT = 512 << 20

#: VMCOREINFO values a crafted dump may carry: zero, negative, huge,
#: not a power of two, not a number.
_BAD_NUMBERS = ["0", "-1", "1", "3", "4097", "100", "65", "4294967296", "18446744073709551615",
                "99999999999999999999999", "x"]
_VMCOREINFO_KEYS = [
    "PAGESIZE", "SIZE(page)", "SIZE(mem_section)", "LENGTH(zone.free_area)",
    "OFFSET(page.flags)", "OFFSET(page._mapcount)", "OFFSET(page.mapping)",
    "OFFSET(page.compound_head)", "OFFSET(page.private)", "LENGTH(mem_section)",
    "NUMBER(MAX_PHYSMEM_BITS)", "NUMBER(SECTION_SIZE_BITS)", "NUMBER(PG_buddy)",
    "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)", "SYMBOL(mem_section)", "SYMBOL(vmemmap_base)",
    "SYMBOL(prb)", "SIZE(printk_ringbuffer)", "OFFSET(prb_desc_ring.count_bits)",
    "OFFSET(printk_ringbuffer.desc_ring)", "LENGTH(free_area.free_list)", "KERNELOFFSET",
    "SYMBOL(_stext)", "OFFSET(list_head.next)", "SIZE(list_head)",
]
_BIG = [1 << 62, 1 << 54, 1 << 46, (1 << 64) - 1, 1 << 40, 1 << 31, 0]


@dataclass
class Case:
    name: str
    data: bytes


@dataclass
class Outcome:
    rc: Optional[int]  # None: killed at the time limit
    stderr: str
    seconds: float
    problems: List[str] = field(default_factory=list)


def _kind(data: bytes) -> str:
    if data[:4] == b"\x7fELF":
        return "elf"
    if data[:8] == KDUMP_SIGNATURE:
        return "kdump"
    if data[:12] == b"makedumpfile":
        return "flat"
    return "other"


def _elf_mutations(data: bytes, rng: random.Random) -> Iterator[Case]:
    phdrs = M.elf_phdrs(data)
    loads = [i for i, (_, f) in enumerate(phdrs) if f[0] == PT_LOAD]
    notes = [i for i, (_, f) in enumerate(phdrs) if f[0] == PT_NOTE]
    for i in notes[:1]:
        for v in (1 << 62, 1 << 33, 7):
            yield Case(f"note{i}.p_filesz={v:#x}", M.elf_set_phdr(data, i, "p_filesz", v))
        yield Case(f"note{i}.p_offset=huge", M.elf_set_phdr(data, i, "p_offset", 1 << 62))
    last = loads[-1]
    for fld, vals in (("p_paddr", (1 << 54, 1 << 62, (1 << 64) - 4096)),
                      ("p_memsz", (1 << 46, 1 << 36, 1 << 62)),
                      ("p_filesz", (1 << 62, 1 << 40)),
                      ("p_offset", (1 << 62, (1 << 64) - 1))):
        for v in vals:
            i = rng.choice([loads[0], last])
            yield Case(f"load{i}.{fld}={v:#x}", M.elf_set_phdr(data, i, fld, v))
    for key in _VMCOREINFO_KEYS:
        yield Case(f"vmcoreinfo {key}={(v := rng.choice(_BAD_NUMBERS))}",
                   M.elf_set_vmcoreinfo(data, {key: v}))
    for key in ("PAGESIZE", "SIZE(mem_section)", "SIZE(page)", "LENGTH(zone.free_area)"):
        yield Case(f"vmcoreinfo {key}=0", M.elf_set_vmcoreinfo(data, {key: "0"}))
    yield Case("vmcoreinfo LENGTH(zone.free_area)=100",
               M.elf_set_vmcoreinfo(data, {"LENGTH(zone.free_area)": "100"}))
    yield Case("vmcoreinfo PAGESIZE=65537", M.elf_set_vmcoreinfo(data, {"PAGESIZE": "65537"}))
    yield Case("vmcoreinfo PAGESIZE=1048576", M.elf_set_vmcoreinfo(data, {"PAGESIZE": "1048576"}))
    yield Case("vmcoreinfo NUMBER(MAX_PHYSMEM_BITS)=200",
               M.elf_set_vmcoreinfo(data, {"NUMBER(MAX_PHYSMEM_BITS)": "200"}))
    for v in (1 << 63, (1 << 64) - 64, 1 << 40):
        yield Case(f"e_phoff={v:#x}", data[:32] + v.to_bytes(8, "little") + data[40:])
    yield Case("e_phnum=0xffff", _set_u16(data, 56, 0xFFFF))
    yield Case("e_phnum=1000", _set_u16(data, 56, 1000))


def _set_u16(data: bytes, at: int, v: int) -> bytes:
    out = bytearray(data)
    out[at:at + 2] = v.to_bytes(2, "little")
    return bytes(out)


def _kdump_mutations(data: bytes, rng: random.Random, wrap=None) -> Iterator[Case]:
    wrap = wrap or (lambda name, f: Case(name, f(data)))
    for fld, vals in (("block_size", (0, 1, 4095, 1 << 20, -4096)),
                      ("sub_hdr_size", (0, -1, 1 << 30)),
                      ("bitmap_blocks", (0, 1, 1 << 31)),
                      ("max_mapnr", (0, 1 << 31, (1 << 32) - 1)),
                      ("header_version", (0, 7, -1)),
                      ("status", (0xFFFFFFFF,)),
                      ("nr_cpus", (-1, 1 << 30))):
        for v in vals:
            yield wrap(f"kdump {fld}={v}", lambda d, f=fld, v=v: M.kdump_set_header(d, f, v))
    for fld, vals in (("max_mapnr_64", (1 << 40, 1 << 62, (1 << 64) - 1)),
                      ("offset_vmcoreinfo", (1 << 62, (1 << 63) - 1)),
                      ("size_vmcoreinfo", (1 << 62, 1 << 32, 0)),
                      ("offset_note", (1 << 62,)),
                      ("size_note", (1 << 62, 1 << 31)),
                      ("start_pfn_64", (1 << 40,)), ("end_pfn_64", (1 << 40,)),
                      ("split", (1,)),
                      ("offset_eraseinfo", (1 << 62,)), ("size_eraseinfo", (1 << 62,))):
        for v in vals:
            yield wrap(f"kdump sub.{fld}={v:#x}", lambda d, f=fld, v=v: M.kdump_set_sub(d, f, v))
    for fld, vals in (("offset", (0, 1 << 62, (1 << 63) - 1, -1)),
                      ("size", (0, 1, 1 << 31, 0xFFFFFFFF)),
                      ("flags", (0xFF, 0x02, 0x01, 0x20, 0x04))):
        for v in vals:
            for idx in (0, rng.randrange(1, 64)):
                yield wrap(f"kdump desc{idx}.{fld}={v:#x}",
                           lambda d, f=fld, v=v, i=idx: M.kdump_set_desc(d, i, f, v))


def _flat_mutations(data: bytes, rng: random.Random) -> Iterator[Case]:
    recs = M.flat_records(data)
    for v in (1 << 62, (1 << 63) - 1, 1 << 40):
        yield Case(f"flat rec0.size={v:#x}", M.flat_set_record(data, 0, size=v))
    for v in (1 << 62, 1 << 40, -5):
        i = rng.randrange(len(recs))
        yield Case(f"flat rec{i}.offset={v:#x}", M.flat_set_record(data, i, offset=v))
    # The inner kdump headers, changed where the stream holds them.
    inner = _flat_inner(data)
    if inner is not None:
        def wrap(name, f):
            return Case("flat/" + name, _flat_patch(data, inner, f))
        yield from _kdump_mutations(inner, rng, wrap)


def _flat_inner(data: bytes) -> Optional[bytes]:
    """The first 64 KiB of the logical file (headers, bitmaps, descriptors
    of small dumps), or None."""
    size = 1 << 16
    out = bytearray(size)
    for pos, o, s in M.flat_records(data):
        if o < size:
            n = min(s, size - o)
            out[o:o + n] = data[pos + 16:pos + 16 + n]
    return bytes(out) if out[:8] == KDUMP_SIGNATURE else None


def _flat_patch(data: bytes, inner: bytes, f: Callable[[bytes], bytes]) -> bytes:
    """Apply a mutation of the inner file's first 64 KiB to the stream: each
    changed byte is changed in the last record that holds it."""
    new = f(inner)
    out = bytearray(data)
    for i in range(len(inner)):
        if new[i] != inner[i]:
            pos = M.flat_inner_offset(data, i)
            if pos is not None:
                out[pos] = new[i]
    return bytes(out)


def cases(seeds: Dict[str, bytes], rng: random.Random, flips: int = 8,
          cuts: int = 4) -> Iterator[Case]:
    """Malformed variants of each seed (``{name: bytes}``)."""
    for sname, data in seeds.items():
        kind = _kind(data)
        n = len(data)
        for frac in sorted(rng.random() for _ in range(cuts)):
            yield Case(f"{sname}: cut at {int(frac * n)}", M.truncate(data, int(frac * n)))
        hot = min(n, 1 << 16)  # headers, notes, bitmaps, descriptors
        for _ in range(flips):
            bit = rng.randrange(hot * 8)
            yield Case(f"{sname}: bit {bit} flipped", M.flip_bit(data, bit))
        gen = {"elf": _elf_mutations, "kdump": _kdump_mutations, "flat": _flat_mutations}.get(kind)
        if gen is not None:
            for c in gen(data, rng):
                yield Case(f"{sname}: {c.name}", c.data)


# -------------------------------------------------------------------- runner

def _limits() -> None:
    # AddressSanitizer (.ci/sanitize) reserves terabytes of shadow address
    # space: there the memory bound is left to the normal runs.
    if not os.environ.get("DUMPFILTER_SANITIZER"):
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (TIME_LIMIT + 5, TIME_LIMIT + 10))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


TOOLS = {
    "filter": (["-m", "dumpfilter", "-c", "-d", "31", "--message-level", "4"], True, (0, 1)),
    "report": (["-m", "dumpfilter.report", "--json"], False, (0, 1, 3)),
    "dmesg": (["-m", "dumpfilter", "--dump-dmesg"], True, (0, 1)),
}


def run_case(path: str, tool: str, out: Optional[str] = None,
             timeout: float = TIME_LIMIT) -> Outcome:
    """Run ``tool`` on ``path`` under the limits; the contract's
    violations are in ``Outcome.problems``."""
    import time

    args, wants_out, allowed = TOOLS[tool]
    cmd = [sys.executable, *args, path] + ([out] if wants_out else [])
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=timeout, preexec_fn=_limits)
        rc, err = r.returncode, r.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        rc, err = None, (e.stderr or b"").decode("utf-8", "replace")
    o = Outcome(rc, err, time.monotonic() - t0)
    if rc is None:
        o.problems.append(f"no exit within {timeout} s")
    elif rc not in allowed:
        o.problems.append(f"exit {rc}")
    if "Traceback" in err:
        o.problems.append("traceback on stderr")
    if sum(1 for line in err.splitlines() if line.startswith("dumpfilter")) > 1:
        o.problems.append("more than one dumpfilter: line")
    if "internal error" in err or "out of memory" in err:
        o.problems.append(err.strip().splitlines()[-1])
    if out is not None and os.path.lexists(out):
        if rc != 0 and not _marked_incomplete(out):
            o.problems.append(f"output left after exit {rc}, not marked INCOMPLETE")
        os.unlink(out)
    return o


def _marked_incomplete(path: str) -> bool:
    from dumpfilter.formats.kdump import DISK_HEADER

    with open(path, "rb") as f:
        head = f.read(DISK_HEADER.size)
    if len(head) < DISK_HEADER.size or head[:8] != KDUMP_SIGNATURE:
        return False
    return bool(DISK_HEADER.unpack(head)[M.DISK_HEADER_FIELDS.index("status")] & FLAG_INCOMPLETE)


def seeds_from(paths: Sequence[str], limit: int = 64 << 20) -> Dict[str, bytes]:
    out = {}
    for p in paths:
        if os.path.getsize(p) <= limit:
            with open(p, "rb") as f:
                out[os.path.basename(p)] = f.read()
    return out


__all__ = ["Case", "Outcome", "cases", "run_case", "seeds_from", "TIME_LIMIT", "MEMORY_LIMIT",
           "TOOLS"]


def _main(argv: List[str]) -> int:
    """``python -m dumpfilter.testing.malformed [--tool T] [--seed N] SEED...``:
    run the corpus and print one line per case that breaks the contract."""
    import argparse
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", action="append", choices=sorted(TOOLS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--match", default="")
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args(argv)
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for c in cases(seeds_from(a.paths), random.Random(a.seed)):
            if a.match not in c.name:
                continue
            p = os.path.join(tmp, "case")
            with open(p, "wb") as f:
                f.write(c.data)
            for tool in a.tool or ["filter"]:
                o = run_case(p, tool, os.path.join(tmp, "out") if TOOLS[tool][1] else None)
                tail = o.stderr.strip().splitlines()[-1:] or [""]
                status = "BAD " + "; ".join(o.problems) if o.problems else "ok"
                print(f"{tool} {c.name}: rc={o.rc} {o.seconds:.1f}s {status} | {tail[0][:160]}",
                      flush=True)
                bad += bool(o.problems)
    print(f"{bad} bad")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
