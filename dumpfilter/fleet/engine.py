"""The batch on Dask distributed: one task per dump.

``run_batch`` connects to ``scheduler`` (``tcp://HOST:8786``, a cluster
started with ``dask scheduler`` / ``dask worker``) or starts an embedded
``LocalCluster`` of worker processes (one thread each) on this machine,
submits ``record.triage_item`` once per item and hands every record to
``on_record`` as it completes, in completion order (the caller writes it
at once, so a batch that is stopped can be resumed).

Failures: a dump that crashes or hangs its triage child is retried and then
recorded inside the task (``isolate``). A worker process that dies while it
runs a task is Dask's business: the scheduler runs the task again on another
worker; after ``distributed.scheduler.allowed-failures`` deaths (1 for the
embedded cluster: one retry) it gives up with ``KilledWorker``, which is
recorded as an error for that dump. The batch always goes on.

This module (and ``dumpfilter.fleet.cli``) is the only one that imports
Dask; the collector never does.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Callable, Dict, List, Optional

from dumpfilter.errors import DumpFilterError
from dumpfilter.fleet.record import error_record, triage_item


class EngineError(DumpFilterError):
    """Dask is missing or the cluster cannot be reached."""


def _import_dask():
    try:
        import dask
        from dask import distributed
    except ImportError as e:
        raise EngineError(f"the fleet triage needs Dask ({e.name} is not installed): "
                          "pip install 'dumpfilter[fleet]'") from None
    return dask, distributed


def run_batch(items: List[Dict], opts: Dict, on_record: Callable[[Dict], None],
              scheduler: Optional[str] = None, workers: Optional[int] = None,
              progress: bool = False, connect_timeout: float = 30) -> Dict:
    """Triage ``items`` (``discover.Item`` dicts); returns
    ``{"workers": n, "cluster": address}``."""
    dask, distributed = _import_dask()
    if not items:
        return {"workers": 0, "cluster": scheduler or "(none: nothing to do)"}
    cluster = None
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        try:
            if scheduler:
                client = distributed.Client(scheduler, timeout=connect_timeout,
                                            set_as_default=False)
            else:
                n = workers or os.cpu_count() or 1
                cluster = distributed.LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=None, silence_logs=logging.ERROR)
                client = distributed.Client(cluster, set_as_default=False)
        except (OSError, TimeoutError) as e:
            if cluster is not None:
                cluster.close()
            raise EngineError(f"cannot reach the Dask scheduler {scheduler or '(local)'}: {e}") from None
        try:
            return _run(client, distributed, items, opts, on_record, progress)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _run(client, distributed, items, opts, on_record, progress) -> Dict:
    nworkers = len(client.scheduler_info().get("workers", {}))
    by_key = {}
    futures = []
    for item in items:
        fut = client.submit(triage_item, item, opts, key=f"triage-{item['key']}", pure=False)
        by_key[fut.key] = item
        futures.append(fut)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), unit="dump", file=sys.stderr, dynamic_ncols=True)
    try:
        for fut in distributed.as_completed(futures, loop=client.loop):
            item = by_key.pop(fut.key)
            try:
                rec = fut.result()
            except distributed.KilledWorker:
                rec = error_record(item, "the Dask worker died each time it triaged this dump "
                                   "(killed, out of memory or a crash)")
            except Exception as e:  # the task itself never raises; a scheduler-side failure
                rec = error_record(item, f"Dask: {type(e).__name__}: {e}")
            fut.release()
            on_record(rec)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return {"workers": nworkers, "cluster": client.scheduler.address}
