"""dumpfilter-triage's pieces without Dask: signatures, discovery of split
sets, the forked child per dump (crash, hang, retry), the record log, and
that the collector never imports Dask."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dumpfilter.filter.job import FilterOptions
from dumpfilter.filter.split import split_dump
from dumpfilter.fleet import isolate, record, store
from dumpfilter.fleet.discover import discover
from dumpfilter.fleet.signature import normalize, signature, signature_frames
from dumpfilter.readers import open_dump
from dumpfilter.testing.synthetic import CRASHES, ImageSpec, build_vmcore


def test_normalize_drops_offsets_suffixes_and_addresses():
    assert normalize("__handle_sysrq.cold") == "__handle_sysrq"
    assert normalize("foo.isra.0.constprop.1") == "foo"
    assert normalize("bar.part.3+0x1f/0x40") == "bar"
    assert normalize("0xffffffffc0094010") is None
    assert normalize("ffffffffc0094010") is None


def test_generic_frames_are_dropped_everywhere():
    sysrq = CRASHES["sysrq"].frame_names()
    assert signature_frames(sysrq) == ["sysrq_handle_crash", "__handle_sysrq", "write_sysrq_trigger",
                                       "proc_reg_write", "vfs_write"]
    pf = CRASHES["ext4-null"].frame_names()
    assert signature_frames(pf) == ["ext4_readdir", "iterate_dir", "__x64_sys_getdents64"]
    # same functions at other offsets / with compiler suffixes: same signature
    moved = [f + "+0x10" if i % 2 else f + ".cold" for i, f in enumerate(sysrq)]
    assert signature(moved) == signature(sysrq)
    assert signature(sysrq) != signature(pf)
    assert signature(["panic", "0xffffffff81000000"]) is None


@pytest.fixture(scope="module")
def split_set(tmp_path_factory):
    d = tmp_path_factory.mktemp("split")
    elf = d / "one.vmcore"
    build_vmcore(str(elf), ImageSpec(mem_mib=16, seed=5, crash="sysrq"))
    sets = []
    for name, seed in (("a", 5), ("b", 6)):
        src = d / f"{name}.vmcore"
        if not src.exists():
            build_vmcore(str(src), ImageSpec(mem_mib=16, seed=seed, crash="gpf-net"))
        pieces = [str(d / f"{name}.part{i}") for i in range(3)]
        with open_dump(str(src)) as source:
            split_dump(source, pieces, FilterOptions(dump_level=31), splitblock_kb=1024)
        sets.append(pieces)
    return d, elf, sets


def test_split_sets_are_grouped_by_their_headers(split_set):
    d, elf, sets = split_set
    items = discover([str(d)])
    groups = sorted(it.paths for it in items if len(it.files) > 1)
    assert groups == sorted(sets)
    assert all(it.note is None for it in items)
    singles = {it.path for it in items if len(it.files) == 1}
    assert str(elf) in singles and not singles & {p for s in sets for p in s}


def test_incomplete_split_set_is_noted(split_set):
    _, _, sets = split_set
    items = discover([sets[0][0], sets[0][2]])
    assert len(items) == 1 and items[0].paths == [sets[0][0], sets[0][2]]
    assert items[0].note.startswith("split set incomplete: no piece holds pfns")


def _segfault():
    os.kill(os.getpid(), signal.SIGSEGV)


def _hang():
    time.sleep(30)


def _fail():
    raise OSError(2, "No such file or directory", "/x")


def test_isolated_child_crash_is_retried_then_reported():
    kind, value, attempts = isolate.run_isolated(_segfault, (), timeout=20)
    assert (kind, attempts) == ("died", 2)
    assert "SIGSEGV" in value


def test_isolated_timeout_is_retried_then_reported():
    t = time.monotonic()
    kind, value, attempts = isolate.run_isolated(_hang, (), timeout=0.5)
    assert (kind, value, attempts) == ("timeout", 0.5, 2)
    assert time.monotonic() - t < 10


def test_isolated_exception_is_not_retried():
    assert isolate.run_isolated(_fail, (), timeout=20) == ("raised", "/x: No such file or directory", 1)
    assert isolate.run_isolated(len, ("abc",), timeout=20) == ("ok", 3, 1)


def test_triage_item_timeout_becomes_an_error_record(monkeypatch):
    monkeypatch.setattr(record, "make_record", lambda item, shrink: _hang())
    monkeypatch.setattr(record, "warm_up", lambda shrink=False: None)
    item = {"files": [["/x", 1, 2]], "key": "k"}
    rec = record.triage_item(item, {"timeout": 0.3})
    assert rec["status"] == "error" and rec["attempts"] == 2
    assert rec["error"] == "triage ran past the --timeout of 0.3 s (2 attempts)"
    assert rec["path"] == "/x" and rec["files"] == [["/x", 1, 2]]


def test_record_log_drops_a_torn_line_and_resumes(tmp_path):
    log = store.RecordLog(str(tmp_path))
    log.append({"key": "a", "path": "/a"})
    log.close()
    with open(tmp_path / store.DUMPS, "a") as f:
        f.write('{"key": "b", "pa')  # a run killed mid-line
    log = store.RecordLog(str(tmp_path))
    assert log.done == {"a"}
    log.append({"key": "c", "path": "/c"})
    log.close()
    lines = (tmp_path / store.DUMPS).read_text().splitlines()
    assert [json.loads(x)["key"] for x in lines] == ["a", "c"]


def test_buckets_sorted_by_count():
    recs = [{"path": f"/d{i}", "signature": s, "crash_time": t, "release": r, "status": "complete",
             "signature_frames": ["f"], "panic": "p"}
            for i, (s, t, r) in enumerate([("x", 10, "6.1"), ("y", 5, "6.1"), ("y", 7, "6.6"),
                                           (None, None, None)])]
    rows = store.buckets(recs)
    assert [(b["signature"], b["count"]) for b in rows] == [("y", 2), ("x", 1), (None, 1)]
    assert rows[0]["kernels"] == ["6.1", "6.6"] and rows[0]["example"] == "/d1"
    assert rows[0]["first_crash"] == "1970-01-01T00:00:05Z" and rows[0]["last_crash"] == "1970-01-01T00:00:07Z"


def test_collector_never_imports_dask():
    code = ("import sys\n"
            "import dumpfilter.cli, dumpfilter.report.cli, dumpfilter.filter.job\n"
            "import dumpfilter.fleet.record, dumpfilter.fleet.discover, dumpfilter.fleet.store\n"
            "import dumpfilter.fleet.shrink, dumpfilter.fleet.isolate, dumpfilter.fleet.signature\n"
            "dumpfilter.fleet.record.warm_up(True)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_usage_errors_are_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dumpfilter.fleet", str(tmp_path), "--out",
                        str(tmp_path / "o"), "--shrink"], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr == ("dumpfilter-triage: --shrink needs --shrink-dir DIR2 "
                        "(try 'dumpfilter-triage -h')\n")
