"""The fleet-triage test corpus (imported like ``clitools``): synthetic
dumps that carry each panic scenario of ``testing.synthetic.crashes`` in
every container dumpfilter writes, made here with dumpfilter's own job API,
plus a truncated dump, a file that is not a dump and a dangling symlink.
The real captures are added by the tests from the conftest fixtures (read in
place, never copied)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List

from dumpfilter.filter.job import FilterOptions, filter_kdump
from dumpfilter.filter.split import split_dump
from dumpfilter.readers import open_dump
from dumpfilter.testing.synthetic import CRASHES, ImageSpec, build_vmcore
from dumpfilter.writers.flattened import FlatSink
from dumpfilter.writers.output import OutputFile
from dumpfilter.writers.sink import FileSink

#: Containers of each synthetic dump: (name, codec, flattened); plus the ELF
#: itself and a --split pair.
KDUMP_FORMS = (("d31-zlib.kdump", "zlib", False), ("d31-lzo.kdump", "lzo", False),
               ("d31-zstd.kdump", "zstd", False), ("d31-zlib.flat", "zlib", True))
SEEDS = 6


def _kdump(src: str, out: str, codec, flat: bool) -> None:
    with open_dump(src) as source, OutputFile(out) as f:
        sink = FlatSink(f.fd) if flat else FileSink(f.fd)
        filter_kdump(source, sink, FilterOptions(dump_level=31, codec=codec))
        if flat:
            sink.finish()
        f.keep()


def build(root: Path, seeds: int = SEEDS) -> Dict[str, List[str]]:
    """Write the corpus under ``root``; return {scenario: [dump item paths]}
    (a split pair is listed by its first piece), plus "bad": the files
    that are not (whole) dumps."""
    out: Dict[str, List[str]] = {}
    for name in sorted(CRASHES):
        d = root / name
        d.mkdir(parents=True)
        paths = out.setdefault(name, [])
        for seed in range(seeds):
            elf = d / f"s{seed}.vmcore"
            build_vmcore(str(elf), ImageSpec(mem_mib=16, seed=1000 * seed + len(name), crash=name))
            paths.append(str(elf))
            for suffix, codec, flat in KDUMP_FORMS:
                p = d / f"s{seed}.{suffix}"
                _kdump(str(elf), str(p), codec, flat)
                paths.append(str(p))
            pieces = [str(d / f"s{seed}.split.{i}") for i in (1, 2)]
            with open_dump(str(elf)) as source:
                split_dump(source, pieces, FilterOptions(dump_level=31, codec="zlib"),
                           splitblock_kb=1024)
            paths.append(pieces[0])
    bad = root / "bad"
    bad.mkdir()
    trunc = bad / "truncated.vmcore"
    with open(out["sysrq"][0], "rb") as f:
        trunc.write_bytes(f.read(3 << 20))
    notdump = bad / "README.txt"
    notdump.write_text("not a dump\n")
    dangling = bad / "gone.vmcore"
    os.symlink(str(bad / "nowhere"), dangling)
    out["bad"] = [str(trunc), str(notdump), str(dangling)]
    return out
