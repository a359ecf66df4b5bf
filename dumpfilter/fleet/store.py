"""The output directory: ``dumps.jsonl`` (one record per line, appended as
records arrive, so an interrupted batch keeps what it finished),
``buckets.jsonl`` (one row per signature) and ``dumps.parquet`` when
pyarrow is installed.

Resuming: a record is done when its ``key`` (the dump's files' path, size
and mtime) is in ``dumps.jsonl``. A line cut short by a killed run is
dropped before appending. At the end of a batch the file is compacted:
one record per path, the latest.
"""
from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional

DUMPS, BUCKETS, PARQUET = "dumps.jsonl", "buckets.jsonl", "dumps.parquet"


def read_records(path: str) -> List[Dict]:
    """Complete, valid lines of a JSON Lines file."""
    out = []
    try:
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and "key" in rec:
                    out.append(rec)
    except FileNotFoundError:
        pass
    return out


class RecordLog:
    """Append-only ``DIR/dumps.jsonl``."""

    def __init__(self, out_dir: str):
        os.makedirs(out_dir, exist_ok=True)
        self.path = os.path.join(out_dir, DUMPS)
        self._drop_torn_tail()
        self.done = {r["key"] for r in read_records(self.path)}
        self.f = open(self.path, "a", encoding="utf-8")

    def _drop_torn_tail(self) -> None:
        try:
            with open(self.path, "rb+") as f:
                data = f.read()
                if data and not data.endswith(b"\n"):
                    f.truncate(data.rfind(b"\n") + 1)
        except FileNotFoundError:
            pass

    def append(self, rec: Dict) -> None:
        self.f.write(json.dumps(rec, sort_keys=True) + "\n")
        self.f.flush()
        self.done.add(rec["key"])

    def close(self) -> None:
        self.f.close()

    def compact(self) -> List[Dict]:
        """Rewrite with the latest record of each path; return them."""
        latest: "OrderedDict[str, Dict]" = OrderedDict()
        for rec in read_records(self.path):
            latest.pop(rec["path"], None)
            latest[rec["path"]] = rec
        recs = sorted(latest.values(), key=lambda r: r["path"])
        _write_jsonl(self.path, recs)
        return recs


def _write_jsonl(path: str, rows: Iterable[Dict]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _iso(t: Optional[int]) -> Optional[str]:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def buckets(records: Iterable[Dict]) -> List[Dict]:
    """One row per signature (``None``: dumps without a usable panic
    stack), sorted by count, then signature."""
    groups: Dict[Optional[str], List[Dict]] = {}
    for r in records:
        groups.setdefault(r.get("signature"), []).append(r)
    rows = []
    for sig, recs in groups.items():
        times = [r["crash_time"] for r in recs if r.get("crash_time") is not None]
        example = min(recs, key=lambda r: r["path"])
        status: Dict[str, int] = {}
        for r in recs:
            status[r["status"]] = status.get(r["status"], 0) + 1
        rows.append({
            "signature": sig, "count": len(recs),
            "first_crash": _iso(min(times)) if times else None,
            "last_crash": _iso(max(times)) if times else None,
            "kernels": sorted({r["release"] for r in recs if r.get("release")}),
            "example": example["path"], "frames": example.get("signature_frames") or [],
            "panic": example.get("panic"), "status": dict(sorted(status.items())),
        })
    rows.sort(key=lambda b: (-b["count"], b["signature"] is None, b["signature"] or ""))
    return rows


def write_buckets(out_dir: str, rows: List[Dict]) -> str:
    path = os.path.join(out_dir, BUCKETS)
    _write_jsonl(path, rows)
    return path


def write_parquet(out_dir: str, records: List[Dict]) -> Optional[str]:
    """``DIR/dumps.parquet`` if pyarrow is installed (else None): list
    fields stay lists of strings, object fields are JSON text."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    rows = []
    for r in records:
        row = {}
        for k, v in r.items():
            if isinstance(v, dict) or (isinstance(v, list) and any(not isinstance(x, str) for x in v)):
                v = json.dumps(v, sort_keys=True)
            row[k] = v
        rows.append(row)
    path = os.path.join(out_dir, PARQUET)
    pq.write_table(pa.Table.from_pylist(rows), path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


def format_table(rows: List[Dict]) -> str:
    """The bucket summary as printed: one row per signature, then its top
    frames (innermost first) and an example dump."""
    lines = [f"{'COUNT':>5}  {'SIGNATURE':<16}  {'FIRST CRASH':<20}  {'LAST CRASH':<20}  KERNELS"]
    for b in rows:
        lines.append(f"{b['count']:>5}  {b['signature'] or '(none)':<16}  {b['first_crash'] or '-':<20}  "
                     f"{b['last_crash'] or '-':<20}  {', '.join(b['kernels']) or '-'}")
        what = " < ".join(b["frames"]) if b["frames"] else (b["panic"] or "no panic stack")
        lines.append(f"{'':>7}{what}")
        lines.append(f"{'':>7}e.g. {b['example']}")
    return "\n".join(lines) + "\n"
