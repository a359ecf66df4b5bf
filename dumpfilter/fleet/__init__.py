"""Fleet triage (``dumpfilter-triage``): many dumps, one record each,
bucketed by crash signature, run on Dask distributed.

Modules: ``discover`` (files and directories to work items; split sets
grouped), ``record`` (a record from the report's own collector; the task a
worker runs), ``isolate`` (a forked child per dump: timeout, crash, one
retry), ``signature`` (crash signatures), ``shrink`` (``--shrink``
re-filtering with the filter job API), ``store`` (dumps.jsonl, resume,
buckets, Parquet), ``engine`` (Dask: the only module importing it),
``cli``.
"""
