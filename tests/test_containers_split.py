"""--split / --reassemble: pieces readable as a set (our reader, crash),
balanced, and merged back into the same bytes as an unsplit run."""
import hashlib
import shutil

import pytest

from dumpfilter.readers import open_dump
from dumpfilter.readers.splitset import open_split
from dumpfilter.filter.split import choose_ranges
from clitools import run_cli, set_pfns
from oracles import (
    crash_sys_fields,
    read_kdump_bitmap1,
    read_kdump_bitmap2,
    read_kdump_header,
    run_crash,
)

SPLITBLOCK_KB = "4096"  # 1024 pfns: the 512 MiB dump fits one default (1 GiB) block


def test_choose_ranges():
    assert choose_ranges([10, 10, 10, 10], 8, 32, 2) == [(0, 16), (16, 32)]
    assert choose_ranges([30, 0, 5, 5], 8, 30, 2) == [(0, 8), (8, 30)]
    r = choose_ranges([0, 0, 0, 0], 8, 32, 3)  # nothing dumpable: still a cover
    assert r[0][0] == 0 and r[-1][1] == 32 and len(r) == 3


@pytest.fixture(scope="module")
def direct(kdump_vmcore, tmp_path_factory):
    d = tmp_path_factory.mktemp("split")
    run_cli("-c", "-d", "31", kdump_vmcore, d / "direct.kdump")
    return d / "direct.kdump"


@pytest.mark.realdump
@pytest.mark.parametrize("n", [2, 3, 4])
def test_split_pieces_and_reassemble(n, kdump_vmcore, direct, tmp_path):
    pieces = [tmp_path / f"p{i}.kdump" for i in range(n)]
    run_cli("--split", "-c", "-d", "31", "--splitblock-size", SPLITBLOCK_KB, kdump_vmcore, *pieces)
    bm2 = read_kdump_bitmap2(direct)
    dumpable = set_pfns(bm2)
    prev_end = 0
    counts = []
    for p in pieces:
        h = read_kdump_header(p)
        assert h["split"] == 1 and h["start_pfn_64"] == prev_end
        assert h["start_pfn"] == min(h["start_pfn_64"], 2**32 - 1)
        assert h["start_pfn_64"] % 1024 == 0 or h["start_pfn_64"] == h["max_mapnr_64"]
        assert read_kdump_bitmap2(p) == bm2 and read_kdump_bitmap1(p) == read_kdump_bitmap1(direct)
        prev_end = h["end_pfn_64"]
        counts.append(sum(h["start_pfn_64"] <= x < h["end_pfn_64"] for x in dumpable))
    assert prev_end == read_kdump_header(direct)["max_mapnr_64"]
    # balanced: every piece within one splitblock (1024 pfns) of the target
    target = len(dumpable) / n
    assert all(abs(c - target) <= 1024 for c in counts), counts
    # every dumpable page readable from the set, equal to the source
    with open_split(pieces) as s, open_dump(kdump_vmcore) as raw:
        assert [q.num_descriptors for q in s.pieces] == counts
        a, b = bytearray(4096), bytearray(4096)
        for pfn in dumpable:
            s.read_pages(pfn, 1, memoryview(a))
            raw.read_pages(pfn, 1, memoryview(b))
            assert a == b, pfn
    # reassemble == unsplit run, byte for byte
    out = tmp_path / "merged.kdump"
    run_cli("--reassemble", *pieces, out)
    assert out.read_bytes() == direct.read_bytes()
    h = read_kdump_header(out)
    assert (h["split"], h["start_pfn_64"], h["end_pfn_64"]) == (0, 0, 0)


@pytest.mark.realdump
@pytest.mark.oracle
def test_crash_opens_split_set(kdump_vmcore, tmp_path, debug_vmlinux):
    pieces = [tmp_path / f"p{i}.kdump" for i in range(3)]
    run_cli("--split", "-c", "-d", "31", "--splitblock-size", SPLITBLOCK_KB, kdump_vmcore, *pieces)
    out = run_crash(debug_vmlinux, pieces, ["sys", "bt"])
    f = crash_sys_fields(out)
    assert "sysrq triggered crash" in f["PANIC"], out
    assert f["DUMPFILES"].endswith("[PARTIAL DUMP]"), out
    assert "sysrq_handle_crash" in out


@pytest.mark.realdump
def test_reassemble_bad_sets(kdump_vmcore, direct, tmp_path):
    a = [tmp_path / f"a{i}.kdump" for i in range(3)]
    run_cli("--split", "-c", "-d", "31", "--splitblock-size", SPLITBLOCK_KB, kdump_vmcore, *a)
    b = [tmp_path / f"b{i}.kdump" for i in range(2)]
    run_cli("--split", "-c", "-d", "8", "--splitblock-size", SPLITBLOCK_KB, kdump_vmcore, *b)
    c = [tmp_path / f"c{i}.kdump" for i in range(2)]
    run_cli("--split", "-c", "-d", "31", "--splitblock-size", SPLITBLOCK_KB, kdump_vmcore, *c)
    assert read_kdump_header(c[0])["end_pfn_64"] > read_kdump_header(a[1])["start_pfn_64"]
    out = tmp_path / "out.kdump"
    bad_sets = {
        "overlapping ranges": [c[0], a[1], a[2]],
        "missing": [a[0], a[2]],
        "foreign": [a[0], a[1], b[1]],  # other dump level: other bitmaps
        "extra foreign piece": [a[0], a[1], a[2], b[1]],
        "not split": [a[0], direct],
        "last missing": [a[0], a[1]],
    }
    for why, set_ in bad_sets.items():
        r = run_cli("--reassemble", *set_, out, check=False)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1, why
        assert len(lines) == 1 and lines[0].startswith("dumpfilter: "), (why, lines)
        assert not out.exists(), why


def test_split_argument_errors(tmp_path):
    x = tmp_path / "x"
    x.write_bytes(b"")
    for args in (["--split", "-d", "1", x, tmp_path / "a"],  # one output only
                 ["--split", "-F", x, tmp_path / "a", tmp_path / "b"],
                 ["--splitblock-size", "1024", x, tmp_path / "a"],
                 ["--reassemble", tmp_path / "a", tmp_path / "b"]):
        r = run_cli(*args, check=False)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("dumpfilter: "), lines
        assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.realdump
def test_split_refuses_existing_and_cleans_up(kdump_vmcore, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    b.write_bytes(b"keep")
    r = run_cli("--split", "-d", "31", kdump_vmcore, a, b, check=False)
    assert r.returncode == 1 and b.read_bytes() == b"keep" and not a.exists()


def test_split_classifies_each_pfn_once(tmp_path, monkeypatch):
    """--split 3 scans the dump once and shares the bitmaps with its
    pieces: the classifier sees every pfn exactly once, in the parent or in
    any forked piece writer (calls are logged to a file, which the forked
    children inherit)."""
    from dumpfilter import cli
    from dumpfilter.filter.classify import Classifier
    from dumpfilter.testing.synthetic import build_sample

    vmcore = tmp_path / "s.vmcore"
    info = build_sample(str(vmcore), profile="6.1", mem_mib=64, seed=5)
    log = tmp_path / "calls.log"
    real = Classifier._classify_cycle

    def counting(self, start, n, b1, b2):
        with open(log, "a") as f:
            f.write(f"{start} {n}\n")
        return real(self, start, n, b1, b2)

    monkeypatch.setattr(Classifier, "_classify_cycle", counting)
    monkeypatch.setattr("dumpfilter.filter.classify.CYCLE_PFNS", 4096)
    pieces = [tmp_path / f"p{i}" for i in range(3)]
    assert cli.main(["--split", "-c", "-d", "31", "--splitblock-size", "64",
                     "--message-level", "0", str(vmcore), *map(str, pieces)]) == 0
    calls = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    covered = sorted(calls)
    assert sum(n for _s, n in covered) == info.max_pfn
    assert all(a[0] + a[1] == b[0] for a, b in zip(covered, covered[1:]))
    assert len(calls) == -(-info.max_pfn // 4096)
    assert all(p.stat().st_size > 0 for p in pieces)
