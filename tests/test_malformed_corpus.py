"""A corpus of malformed dumps (issue 9 acceptance): truncations, bit flips
and field-targeted mutations of ELF program headers and notes, VMCOREINFO
values, kdump headers, sub headers and page descriptors, and flattened
records, derived from synthetic dumps (ELF, kdump, flattened) and from the
real capture's kdump file. Every case, run by ``dumpfilter -c -d 31`` and
``dumpfilter-report --json`` in a subprocess limited to 60 s and 512 MiB of
address space, must end with exit 0 or 1 (the report: 0, 1 or 3), at most
one ``dumpfilter:`` line and no traceback, and leave no output unless it
succeeded or the output is marked INCOMPLETE (``dumpfilter.testing.malformed``).

The corpus is deterministic (fixed seeds); ``tools/fuzz.py`` is the long
in-process run.
"""
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from dumpfilter.testing import malformed
from dumpfilter.testing.synthetic import ImageSpec, build_vmcore


@pytest.fixture(scope="module")
def synthetic_seeds(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    elf = d / "crash.elf"
    build_vmcore(str(elf), ImageSpec(mem_mib=16, crash="sysrq"))
    kdump, flat = d / "crash.kdump", d / "crash.flat"
    subprocess.run([sys.executable, "-m", "dumpfilter", "-l", "-d", "31", "--message-level", "0",
                    str(elf), str(kdump)], check=True)
    with open(flat, "wb") as f:
        subprocess.run([sys.executable, "-m", "dumpfilter", "-F", "-c", "-d", "31",
                        "--message-level", "0", str(elf)], check=True, stdout=f)
    return {p.name: p.read_bytes() for p in (elf, kdump, flat)}


def _run_all(cases, tools, tmp_path):
    """[(case name, tool, Outcome)] for every case and tool, two at a time."""
    jobs = []
    for i, c in enumerate(cases):
        path = tmp_path / f"case{i}"
        path.write_bytes(c.data)
        for tool in tools:
            out = str(tmp_path / f"out{i}-{tool}") if malformed.TOOLS[tool][1] else None
            jobs.append((c.name, tool, str(path), out))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda j: (j[0], j[1], malformed.run_case(j[2], j[1], j[3])),
                                jobs))
    return results


def _check(results):
    bad = [f"{tool} {name}: {'; '.join(o.problems)} | {o.stderr.strip()[-300:]}"
           for name, tool, o in results if o.problems]
    assert not bad, "\n".join(bad)
    rcs = {o.rc for _, _, o in results}
    assert 1 in rcs  # the corpus does contain refused inputs


@pytest.mark.parametrize("seed_name", ["crash.elf", "crash.kdump", "crash.flat"])
def test_synthetic_corpus(synthetic_seeds, tmp_path, seed_name):
    rng = random.Random(9)
    cases = list(malformed.cases({seed_name: synthetic_seeds[seed_name]}, rng, flips=6, cuts=3))
    # every structure's mutations, and a third of them also through the report
    report_cases = [c for i, c in enumerate(cases) if i % 3 == 0]
    (tmp_path / "r").mkdir()
    results = _run_all(cases, ["filter"], tmp_path) + _run_all(report_cases, ["report"],
                                                               tmp_path / "r")
    _check(results)


@pytest.mark.realdump
def test_real_kdump_header_corpus(mdf_d31_zlib, tmp_path):
    """Header, sub-header and descriptor mutations of the real capture's
    makedumpfile output (the page data is left as it is)."""
    data = mdf_d31_zlib.read_bytes()
    rng = random.Random(5)
    cases = [c for c in malformed.cases({"real.d31": data}, rng, flips=4, cuts=2)
             if "desc" in c.name or "sub." in c.name or "cut" in c.name or "max_mapnr" in c.name]
    results = _run_all(cases[:24], ["report"], tmp_path)
    _check(results)
