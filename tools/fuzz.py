"""In-process mutation fuzzing of every reader (issue 9).

``python3 tools/fuzz.py [--target T ...] [--execs N | --seconds S] [--seed K]
[--seeds-from PATH ...] [--crashes DIR]``

Targets (each takes the bytes of one input and runs one reader over them):

=============  ============================================================
``elf``        ELF program headers and notes (``ElfSource``), VMCOREINFO
               from the notes, a few pages read through the PT_LOADs
``vmcoreinfo`` VMCOREINFO text -> ``VmcoreInfo`` -> struct page layout
``kdump``      kdump-compressed headers, bitmaps, page descriptors and page
               payloads (zlib, our LZO decoder, ...) read back page by page
``lzo``        raw LZO1X blocks into a page buffer (``codecs.lzo``)
``flattened``  flattened records (index) and the kdump file inside
``kallsyms``   the dump's kallsyms tables, ``btf`` its BTF blob, ``printk``
               its printk ring: the ELF with bytes changed only where the
               loader read (found by tracing one clean run)
=============  ============================================================

The seed corpus is built from synthetic dumps (``dumpfilter.testing.synthetic``,
with a crash so that kallsyms/BTF/printk exist) and, with ``--seeds-from``,
from real dumps (their first 1 MiB: headers, notes, bitmaps, descriptors).
Mutations: bit flips, byte and 8/16/32/64-bit field overwrites with
boundary values, truncation, duplication and splicing of chunks.

An input passes when the reader returns or raises a ``DumpFilterError``
(the project's error: one line at the CLI). Anything else (another
exception, a time over ``--slow`` seconds) is a finding: counted, and with
``--crashes`` the input is saved. Prints per-target counts at the end (and
every ``--report`` seconds); exit 1 if there were findings.

Long run (2 Dec 2026, one core shared with the test suite, 2,640 s,
``--balance time --seed 12``, synthetic seeds + the real dumps' heads):
elf 25,031 executions (1 finding: an ``e_phoff`` past 2**63 made pread
raise OverflowError, fixed in readers/elf.py), vmcoreinfo 2,340,836,
kdump 574,652, lzo 17,888,758, flattened 82,817, kallsyms 23,497, btf
23,366, printk 23,759 — no other findings. The report-side and ELF targets
rewrite a 20 MB file per input, hence their rate (~9/s).
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import struct
import sys
import tempfile
import time
from contextlib import contextmanager

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from dumpfilter.errors import DumpFilterError  # noqa: E402

INTERESTING = [0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0xFFF, 0x1000, 0x7FFF, 0xFFFF, 0x10000,
               0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, 1 << 40, 1 << 52, 1 << 62,
               (1 << 63) - 1, 1 << 63, (1 << 64) - 1]


class Timeout(Exception):
    pass


# ------------------------------------------------------------------ mutator

def mutate(data: bytes, rng: random.Random, hot=None) -> bytes:
    """One to four random mutations; ``hot`` = [(start, end)] byte ranges
    where positions are drawn (default: the whole input, biased to the
    first 64 KiB where the headers are)."""
    out = bytearray(data)

    def pos(width=1):
        if not out:
            return 0
        if hot:
            a, b = rng.choice(hot)
            return max(0, min(len(out) - width, rng.randrange(a, max(a + 1, b))))
        lim = len(out) if rng.random() < 0.2 else min(len(out), 1 << 16)
        return rng.randrange(max(1, lim - width + 1))

    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if not out:
            out += bytes(rng.randrange(64))
            continue
        if op < 0.3:
            p = pos()
            out[p] ^= 1 << rng.randrange(8)
        elif op < 0.45:
            out[pos()] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif op < 0.75:
            width = rng.choice([2, 4, 8])
            p = pos(width)
            if p + width <= len(out):
                v = rng.choice(INTERESTING) & ((1 << (8 * width)) - 1)
                if rng.random() < 0.3:
                    v = (int.from_bytes(out[p:p + width], "little") + rng.choice([-1, 1, 4096])) \
                        & ((1 << (8 * width)) - 1)
                out[p:p + width] = v.to_bytes(width, "little")
        elif op < 0.82 and not hot:
            del out[rng.randrange(len(out)):]
        elif op < 0.9:
            a = pos()
            b = min(len(out), a + rng.randrange(1, 256))
            c = pos()
            out[c:c + (b - a)] = out[a:b]
        elif not hot:
            a = pos()
            out[a:a] = out[a:a + rng.randrange(1, 64)]
    return bytes(out)


# ------------------------------------------------------------------ targets

class _Bytes:
    """``Preadable`` over bytes (the kdump reader's file interface)."""

    def __init__(self, data: bytes, name="fuzz"):
        self.data, self.name, self.size = data, name, len(data)

    def pread(self, offset: int, size: int) -> bytes:
        return self.data[offset:offset + size] if offset >= 0 else b""

    def close(self) -> None:
        pass


class Targets:
    def __init__(self, tmpdir: str):
        self.path = os.path.join(tmpdir, "input")

    def _write(self, data: bytes) -> str:
        with open(self.path, "wb") as f:
            f.write(data)
        return self.path

    def elf(self, data: bytes) -> None:
        from dumpfilter.readers.elf import ElfSource
        from dumpfilter.vmcoreinfo import VmcoreInfo

        with ElfSource(self._write(data)) as src:
            VmcoreInfo.parse(src.vmcoreinfo_raw)
            buf = bytearray(src.page_size * 4)
            for lo, hi in list(src.ram_pfn_ranges())[:4]:
                n = min(4, hi - lo)
                src.read_pages(lo, n, memoryview(buf)[:n * src.page_size])

    def vmcoreinfo(self, data: bytes) -> None:
        from dumpfilter.filter.layout import build_page_layout
        from dumpfilter.vmcoreinfo import VmcoreInfo

        info = VmcoreInfo.parse(data)
        if info.size("page") is not None:
            build_page_layout(info)

    def kdump(self, data: bytes) -> None:
        from dumpfilter.readers.kdump import KdumpSource

        src = KdumpSource("fuzz", file=_Bytes(data))
        self._read_present(src)

    @staticmethod
    def _read_present(src, limit=64) -> None:
        ps = src.page_size
        buf = bytearray(ps * 8)
        done = 0
        for lo, hi in src.ram_pfn_ranges():
            pfn = lo
            while pfn < hi and done < limit:
                n = min(8, hi - pfn)
                src.read_pages(pfn, n, memoryview(buf)[:n * ps])
                pfn += n
                done += n
            if done >= limit:
                break

    def lzo(self, data: bytes) -> None:
        from dumpfilter.codecs import lzo

        lzo.decompress(data, 4096)

    def flattened(self, data: bytes) -> None:
        from dumpfilter.readers import open_dump

        with open_dump(self._write(data)) as src:
            self._read_present(src, 16)

    def _report_part(self, data: bytes, what: str) -> None:
        from dumpfilter.report.context import ReportContext

        with ReportContext.open(self._write(data)) as ctx:
            if what == "kallsyms":
                ctx.kallsyms
            elif what == "btf":
                ctx.btf
            else:
                from dumpfilter.report.printk import read_printk

                read_printk(ctx.mem, ctx.info, partial=True)

    def kallsyms(self, data: bytes) -> None:
        self._report_part(data, "kallsyms")

    def btf(self, data: bytes) -> None:
        self._report_part(data, "btf")

    def printk(self, data: bytes) -> None:
        self._report_part(data, "printk")


TARGETS = ["elf", "vmcoreinfo", "kdump", "lzo", "flattened", "kallsyms", "btf", "printk"]


# -------------------------------------------------------------- seed corpus

def traced_ranges(path: str, what: str):
    """File byte ranges the ELF reader serves while ``what`` is loaded."""
    from dumpfilter.readers import elf as elfmod

    ranges = []
    orig = elfmod.ElfSource._walk

    def walk(self, paddr, size):
        for part in orig(self, paddr, size):
            if part[2] >= 0:
                ranges.append((part[2], part[2] + part[1]))
            yield part

    elfmod.ElfSource._walk = walk
    try:
        with open(path, "rb") as f:
            data = f.read()
        t = Targets(os.path.dirname(path))
        t.path = path + ".trace"
        # the context's own reads (page tables, VMCOREINFO symbols) are not this part's
        from dumpfilter.report.context import ReportContext

        with ReportContext.open(t._write(data)) as ctx:
            ctx.info
            ranges.clear()
            if what == "kallsyms":
                ctx.kallsyms
            elif what == "btf":
                ctx.kallsyms
                ranges.clear()
                ctx.btf
            else:
                from dumpfilter.report.printk import read_printk

                read_printk(ctx.mem, ctx.info, partial=True)
    finally:
        elfmod.ElfSource._walk = orig
    merged = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def build_corpus(tmpdir: str, real_paths=()):
    """{target: ([seed bytes], hot ranges or None)}"""
    import subprocess

    from dumpfilter.formats.elfnotes import find_vmcoreinfo
    from dumpfilter.testing.synthetic import ImageSpec, build_vmcore
    from dumpfilter.testing.synthetic.elfcore import make_vmcoreinfo_note  # noqa: F401

    elf = os.path.join(tmpdir, "seed.elf")
    info = build_vmcore(elf, ImageSpec(mem_mib=16, crash="sysrq"))
    outs = {}
    for name, args in (("zlib", ["-c"]), ("lzo", ["-l"]), ("raw", []), ("zstd", ["-z"])):
        p = os.path.join(tmpdir, f"seed.{name}.kdump")
        r = subprocess.run([sys.executable, "-m", "dumpfilter", *args, "-d", "31",
                            "--message-level", "0", elf, p], capture_output=True)
        if r.returncode == 0:
            outs[name] = p
    flat = os.path.join(tmpdir, "seed.flat")
    with open(flat, "wb") as f:
        subprocess.run([sys.executable, "-m", "dumpfilter", "-F", "-l", "-d", "31",
                        "--message-level", "0", elf], stdout=f, check=True)
    with open(elf, "rb") as f:
        elf_bytes = f.read()
    kdumps = []
    for p in outs.values():
        with open(p, "rb") as f:
            kdumps.append(f.read())
    with open(flat, "rb") as f:
        flat_bytes = f.read()
    from dumpfilter.codecs import lzo

    page_blocks = [lzo.compress(bytes(info.page_bytes(pfn))) for pfn in (0x100, 0x200, 0x1000)
                   if pfn < info.max_pfn]
    vmci = info.vmcoreinfo if isinstance(info.vmcoreinfo, bytes) else info.vmcoreinfo.encode()
    corpus = {
        "elf": ([elf_bytes], None),
        "vmcoreinfo": ([vmci], None),
        "kdump": (kdumps, None),
        "lzo": (page_blocks or [lzo.compress(b"x" * 4096)], None),
        "flattened": ([flat_bytes], None),
    }
    for what in ("kallsyms", "btf", "printk"):
        corpus[what] = ([elf_bytes], traced_ranges(elf, what))
    for p in real_paths:  # headers, notes, bitmaps, descriptors of real dumps
        with open(p, "rb") as f:
            head = f.read(1 << 20)
        if head[:4] == b"\x7fELF":
            loc = find_vmcoreinfo_in_elf(head)
            if loc:
                corpus["vmcoreinfo"][0].append(loc)
        elif head[:8] == b"KDUMP   ":
            corpus["kdump"][0].append(head)
        elif head[:12] == b"makedumpfile":
            corpus["flattened"][0].append(head)
    return corpus


def find_vmcoreinfo_in_elf(head: bytes):
    from dumpfilter.formats.elf import EHDR, PHDR, PT_NOTE
    from dumpfilter.formats.elfnotes import find_vmcoreinfo

    e = EHDR.unpack_from(head, 0)
    for i in range(e[10]):
        f = PHDR.unpack_from(head, e[5] + i * PHDR.size)
        if f[0] == PT_NOTE and f[2] + f[5] <= len(head):
            blob = head[f[2]:f[2] + f[5]]
            loc = find_vmcoreinfo(blob)
            if loc:
                return blob[loc[0]:loc[0] + loc[1]]
    return None


# --------------------------------------------------------------------- loop

@contextmanager
def _alarm(seconds: float):
    def fire(_s, _f):
        raise Timeout()

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run(targets, corpus, execs=None, seconds=None, seed=0, slow=10.0, crashes=None,
        report_every=60.0, out=sys.stdout, balance="count"):
    """Fuzz; returns {target: Counter(outcome)}; outcomes: "ok", "error"
    (a DumpFilterError), "finding:<ExceptionType>" and "finding:timeout"."""
    rng = random.Random(seed)
    counts = {t: collections.Counter() for t in targets}
    spent = {t: 0.0 for t in targets}
    examples = {}
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as td:
        tg = Targets(td)
        t0 = last = time.monotonic()
        i = 0
        while True:
            if execs is not None and all(sum(c.values()) >= execs for c in counts.values()):
                break
            if seconds is not None and time.monotonic() - t0 >= seconds:
                break
            if balance == "time":  # equal CPU time: fast readers get more inputs
                target = min(targets, key=spent.__getitem__)
            else:
                target = targets[i % len(targets)]
            i += 1
            t_start = time.monotonic()
            seeds, hot = corpus[target]
            data = mutate(rng.choice(seeds), rng, hot)
            try:
                with _alarm(slow):
                    getattr(tg, target)(data)
                outcome = "ok"
            except DumpFilterError:
                outcome = "error"
            except Timeout:
                outcome = "finding:timeout"
            except MemoryError:
                outcome = "finding:MemoryError"
            except Exception as e:  # noqa: BLE001 - the point of fuzzing
                outcome = f"finding:{type(e).__name__}"
                examples.setdefault((target, outcome), f"{type(e).__name__}: {e}"[:300])
            counts[target][outcome] += 1
            spent[target] += time.monotonic() - t_start
            if outcome.startswith("finding") and crashes:
                os.makedirs(crashes, exist_ok=True)
                with open(os.path.join(crashes, f"{target}-{i}-{outcome[8:]}"), "wb") as f:
                    f.write(data)
            now = time.monotonic()
            if now - last >= report_every:
                last = now
                print(f"[{now - t0:7.0f}s] " + "  ".join(
                    f"{t}:{sum(c.values())}/{c['error']}/"
                    f"{sum(v for k, v in c.items() if k.startswith('finding'))}"
                    for t, c in counts.items()) + "  (execs/errors/findings)",
                    file=out, flush=True)
    for (t, o), msg in sorted(examples.items()):
        print(f"example {t} {o}: {msg}", file=out)
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", action="append", choices=TARGETS)
    ap.add_argument("--execs", type=int, help="executions per target")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slow", type=float, default=10.0, help="seconds before a run is a finding")
    ap.add_argument("--seeds-from", action="append", default=[], metavar="PATH")
    ap.add_argument("--crashes", metavar="DIR")
    ap.add_argument("--report", type=float, default=60.0)
    ap.add_argument("--balance", choices=["count", "time"], default="count",
                    help="equal executions per target (default) or equal time")
    a = ap.parse_args(argv)
    if a.execs is None and a.seconds is None:
        a.execs = 200
    targets = a.target or TARGETS
    with tempfile.TemporaryDirectory() as td:
        corpus = build_corpus(td, a.seeds_from)
        t0 = time.monotonic()
        counts = run(targets, corpus, a.execs, a.seconds, a.seed, a.slow, a.crashes, a.report,
                     balance=a.balance)
    total = time.monotonic() - t0
    bad = 0
    for t in targets:
        c = counts[t]
        n = sum(c.values())
        f = sum(v for k, v in c.items() if k.startswith("finding"))
        bad += f
        print(f"{t:11} {n:9} execs  ok {c['ok']:8}  error {c['error']:8}  findings {f}"
              + "".join(f"  {k}={v}" for k, v in sorted(c.items()) if k.startswith("finding")))
    print(f"{total:.0f} s, {bad} findings")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
