"""dumpfilter-triage on Dask over a corpus of >= 200 dumps: synthetic dumps
of six panic stacks in every container dumpfilter writes, the real captures
in every container format, a truncated file, a non-dump and a dangling
symlink.

* every dump has a record; same-stack dumps share a signature, different
  stacks do not; the real dumps' records equal their
  ``dumpfilter-report --json``;
* a worker process killed mid-batch leaves no dump without a record, and a
  second run with the same --out triages nothing — against the embedded
  LocalCluster and against a separately started ``dask scheduler`` + two
  ``dask worker`` processes on localhost.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")

import fleetcorpus  # noqa: E402
from clitools import run_cli  # noqa: E402
from dumpfilter.fleet.record import fields_from_report  # noqa: E402
from dumpfilter.testing.synthetic import CRASHES  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="1")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, fleetcorpus.build(root)


@pytest.fixture(scope="module")
def real_dumps(kdump_vmcore, qemu_elf, qemu_flat, mdf_d31_zlib, mdf_d31_lzo, tmp_path_factory):
    """{path of the first file: [files]}: the captures read in place, and the
    containers makedumpfile's reference does not have, made from the kdump
    capture with dumpfilter (-z, -F, --split)."""
    d = tmp_path_factory.mktemp("realforms")
    zstd, flat = d / "kdump.d31-zstd.kdump", d / "kdump.d31-zlib.flat"
    pieces = [d / "kdump.d31.split1", d / "kdump.d31.split2"]
    run_cli("-z", "-d", "31", kdump_vmcore, zstd)
    with open(flat, "wb") as f:
        run_cli("-F", "-c", "-d", "31", kdump_vmcore, stdout=f)
    run_cli("--split", "-c", "-d", "31", kdump_vmcore, *pieces)
    out = {str(p): [str(p)] for p in (kdump_vmcore, qemu_elf, qemu_flat, mdf_d31_zlib, mdf_d31_lzo,
                                      zstd, flat)}
    out[str(pieces[0])] = [str(p) for p in pieces]
    return out


def _triage(args, out_dir, progress="--no-progress"):
    return subprocess.Popen([sys.executable, "-m", "dumpfilter.fleet", *map(str, args), "--out", str(out_dir),
                             progress], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _worker_processes(root_pids):
    """Dask worker processes (spawned by a nanny) below ``root_pids`` —
    not the nannies, not the children a worker forks per dump."""
    found = []
    for rp in root_pids:
        try:
            procs = psutil.Process(rp).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            try:
                if "spawn_main" in " ".join(p.cmdline()) and \
                        "spawn_main" not in " ".join(p.parent().cmdline()):
                    found.append(p)
            except psutil.NoSuchProcess:
                pass
    return found


def _run_with_kill(args, out_dir, worker_roots, after=25, timeout=900):
    """Run the triage; once ``after`` records are written, SIGKILL one Dask
    worker process. Returns (stdout, killed pid)."""
    proc = _triage(args, out_dir)
    roots = worker_roots or [proc.pid]
    dumps = Path(out_dir) / "dumps.jsonl"
    killed = None
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if killed is None and _lines(dumps) >= after:
                workers = _worker_processes(roots)
                if workers:
                    killed = workers[0].pid
                    os.kill(killed, signal.SIGKILL)
            time.sleep(0.2)
        out, err = proc.communicate(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert killed is not None, "the batch ended before a worker could be killed"
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == psutil.STATUS_ZOMBIE
    return out, killed


def _records(out_dir):
    recs = [json.loads(x) for x in (Path(out_dir) / "dumps.jsonl").read_text().splitlines()]
    by_path = {r["path"]: r for r in recs}
    assert len(by_path) == len(recs)
    return by_path


def _check_corpus_records(by_path, corpus_map):
    sigs = {}
    for name, paths in corpus_map.items():
        if name == "bad":
            continue
        spec = CRASHES[name]
        for p in paths:
            r = by_path[p]
            assert r["status"] == "complete", (p, r["error"], r["missing"])
            assert r["frames"] == spec.frame_names(), p
            assert r["panic_task"] == {"pid": spec.pid, "comm": spec.comm, "cpu": spec.cpu}
            assert r["modules"] == sorted(set(spec.frame_modules().values()))
            assert r["signature"], p
        # same stack, same signature: across seeds (KASLR slides) and containers
        sigs[name] = {by_path[p]["signature"] for p in paths}
        assert len(sigs[name]) == 1, (name, sigs[name])
    # different stacks, different signatures
    assert len({next(iter(s)) for s in sigs.values()}) == len(sigs)
    return {name: next(iter(s)) for name, s in sigs.items()}


def _check_second_run(args, out_dir):
    before = (Path(out_dir) / "dumps.jsonl").read_bytes()
    proc = _triage(args, out_dir)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "already recorded; nothing to triage" in out.splitlines()[0]
    assert (Path(out_dir) / "dumps.jsonl").read_bytes() == before


# --------------------------------------------------------------------------- local cluster

@pytest.fixture(scope="module")
def local_batch(corpus, real_dumps, tmp_path_factory):
    root, _ = corpus
    out_dir = tmp_path_factory.mktemp("triage-local") / "out"
    args = [root, *[f for files in real_dumps.values() for f in files], "--workers", "2"]
    stdout, killed = _run_with_kill(args, out_dir, None)
    return args, out_dir, stdout, killed


def test_every_dump_has_a_record(local_batch, corpus, real_dumps):
    _, out_dir, stdout, _ = local_batch
    by_path = _records(out_dir)
    want = {p for paths in corpus[1].values() for p in paths} | set(real_dumps)
    assert set(by_path) == want
    assert len(want) >= 200
    assert stdout.startswith(f"{len(want)} dumps found, 0 already recorded; triaged {len(want)} on 2 workers")
    for p, files in real_dumps.items():
        assert by_path[p]["paths"] == files


def test_signatures_bucket_the_stacks(local_batch, corpus, real_dumps):
    _, out_dir, stdout, _ = local_batch
    by_path = _records(out_dir)
    sigs = _check_corpus_records(by_path, corpus[1])
    # the real capture is a sysrq crash too: another kernel build, the same signature
    real_sysrq = [p for p in real_dumps if by_path[p]["panic"] == "Kernel panic - not syncing: sysrq triggered crash"]
    assert len(real_sysrq) == 6
    assert {by_path[p]["signature"] for p in real_sysrq} == {sigs["sysrq"]}
    rows = [json.loads(x) for x in (out_dir / "buckets.jsonl").read_text().splitlines()]
    counts = {b["signature"]: b["count"] for b in rows}
    n = len(corpus[1]["sysrq"])
    assert counts[sigs["sysrq"]] == n + 6
    assert all(counts[sigs[k]] == len(corpus[1][k]) for k in sigs if k != "sysrq")
    assert [b["count"] for b in rows] == sorted((b["count"] for b in rows), reverse=True)
    assert sum(counts.values()) == len(by_path)
    for b in rows:  # the printed table has every bucket
        assert f"{b['count']:>5}  {b['signature'] or '(none)':<16}" in stdout


def test_bad_files_are_error_records(local_batch, corpus):
    by_path = _records(local_batch[1])
    trunc, notdump, dangling = corpus[1]["bad"]
    assert by_path[trunc]["status"] == "error"
    assert by_path[trunc]["error"].startswith(f"{trunc}: truncated: PT_LOAD")
    assert by_path[notdump]["error"] == f"{notdump}: not a vmcore (no ELF, KDUMP or flattened signature)"
    assert by_path[dangling]["error"] == f"{dangling}: No such file or directory"


def test_real_records_equal_report_json(local_batch, real_dumps):
    by_path = _records(local_batch[1])
    for p, files in real_dumps.items():
        r = subprocess.run([sys.executable, "-m", "dumpfilter.report", "--json", *files],
                           capture_output=True, text=True, env=ENV)
        assert r.returncode in (0, 3), r.stderr
        rep = json.loads(r.stdout)
        rec = by_path[p]
        fields = fields_from_report(rep)
        assert {k: rec[k] for k in fields} == fields, p
        # and the record says what the report says, field by field
        assert rec["frames"] == [f["symbol"] for f in (rep.get("bt") or {}).get("frames", [])]
        assert rec["missing"] == rep["errors"]
        assert rec["status"] == ("complete" if r.returncode == 0 else "partial")
        assert rec["crash_time"] == rep["sys"]["crashtime"]
        assert rec["format"] == rep["filtered"]["format"]


def test_parquet_has_every_record(local_batch):
    pq = pytest.importorskip("pyarrow.parquet")
    out_dir = local_batch[1]
    table = pq.read_table(out_dir / "dumps.parquet")
    by_path = _records(out_dir)
    assert sorted(table.column("path").to_pylist()) == sorted(by_path)
    sig = dict(zip(table.column("path").to_pylist(), table.column("signature").to_pylist()))
    assert sig == {p: r["signature"] for p, r in by_path.items()}


def test_killed_worker_then_resume_local(local_batch):
    args, out_dir, _, killed = local_batch
    assert killed
    _check_second_run(args, out_dir)


# --------------------------------------------------------------------------- existing cluster

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def dask_cluster():
    """``dask scheduler`` + two ``dask worker`` processes on localhost."""
    from distributed import Client

    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port",
                               str(port), "--no-dashboard"], env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker", addr, "--nworkers", "1",
                                           "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                                          env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(addr, timeout=60) as c:
            c.wait_for_workers(2, timeout=120)
        yield addr, [p.pid for p in procs[1:]]
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_killed_worker_then_resume_on_existing_cluster(dask_cluster, corpus, tmp_path):
    addr, worker_cli_pids = dask_cluster
    root, cmap = corpus
    out_dir = tmp_path / "out"
    args = [root, "--scheduler", addr]
    stdout, _ = _run_with_kill(args, out_dir, worker_cli_pids)
    by_path = _records(out_dir)
    want = {p for paths in cmap.values() for p in paths}
    assert set(by_path) == want and len(want) >= 200
    assert f"triaged {len(want)} on 2 workers ({addr})" in stdout.splitlines()[0]
    _check_corpus_records(by_path, cmap)
    _check_second_run(args, out_dir)


# --------------------------------------------------------------------------- --shrink

def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_shrink_refilters_and_never_touches_the_original(corpus, tmp_path):
    _, cmap = corpus
    elf = cmap["ext4-null"][0]
    split = [cmap["gpf-net"][0].replace(".vmcore", f".split.{i}") for i in (1, 2)]
    flat = cmap["sysrq"][0].replace(".vmcore", ".d31-zlib.flat")
    inputs = [elf, *split, flat]
    before = {p: (_sha(p), os.stat(p).st_mtime_ns) for p in inputs}
    out_dir, shrink_dir = tmp_path / "out", tmp_path / "small"
    proc = _triage([*inputs, "--workers", "1", "--shrink", "-d", "31", "-z", "--shrink-dir", shrink_dir],
                   out_dir, progress="--progress")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "3/3 [" in err and ("dump/s]" in err or "s/dump]" in err)  # tqdm: done / total, rate
    assert {p: (_sha(p), os.stat(p).st_mtime_ns) for p in inputs} == before
    by_path = _records(out_dir)
    assert set(by_path) == {elf, split[0], flat}
    for p, r in by_path.items():
        s = r["shrink"]
        assert "error" not in s, s
        assert os.path.dirname(s["path"]) == str(shrink_dir)
        assert os.stat(s["path"]).st_mode & 0o777 == 0o600
        assert os.path.getsize(s["path"]) == s["size"] and (s["level"], s["codec"]) == (31, "zstd")
        rep = json.loads(subprocess.run([sys.executable, "-m", "dumpfilter.report", "--json", s["path"]],
                                        capture_output=True, text=True, env=ENV).stdout)
        assert (rep["filtered"]["dump_level"], rep["filtered"]["compression"]) == (31, "zstd")
        assert fields_from_report(rep)["signature"] == r["signature"]
    assert by_path[elf]["shrink"]["ratio"] < 0.5
