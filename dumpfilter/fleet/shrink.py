"""``--shrink``: re-filter a dump into a new file with dumpfilter's own job
API (``dumpfilter.filter.job.filter_kdump`` into a
``dumpfilter.writers.output.OutputFile``): the original is only read
(OutputFile refuses an output that is one of the inputs), the new file is
created 0600, and a failed run leaves nothing behind. A split set becomes
one file. The output is named after the first piece and the record key, so
that dumps of the same name in different directories do not collide.
"""
from __future__ import annotations

import os
from typing import Dict, List

EXT = {None: "kdump", "zlib": "kdump-zlib", "lzo": "kdump-lzo", "snappy": "kdump-snappy",
       "zstd": "kdump-zstd"}


def shrunk_path(item: Dict, opts: Dict) -> str:
    base = os.path.basename(item["files"][0][0])
    return os.path.join(opts["dir"], f"{base}.{item['key'][:8]}.d{opts['level']}.{EXT[opts.get('codec')]}")


def shrink_item(item: Dict, paths: List[str], opts: Dict) -> Dict:
    """``{"path", "size", "level", "codec", "ratio"}`` of the new file, or
    ``{"path", "error"}``."""
    from dumpfilter.filter.job import FilterOptions, filter_kdump
    from dumpfilter.fleet.record import error_message
    from dumpfilter.writers.output import OutputFile
    from dumpfilter.writers.sink import FileSink

    out_path = shrunk_path(item, opts)
    try:
        if len(paths) == 1:
            from dumpfilter.readers import open_dump

            source = open_dump(paths[0])
        else:
            from dumpfilter.readers.splitset import KdumpSplitSet

            source = KdumpSplitSet(paths)
        with source:
            with OutputFile(out_path, force=True, inputs=paths) as out:
                stats = filter_kdump(source, FileSink(out.fd), FilterOptions(
                    dump_level=opts["level"], codec=opts.get("codec"), threads=1))
                out.keep()
        size = os.path.getsize(out_path)
        total = sum(os.path.getsize(p) for p in paths)
        return {"path": out_path, "size": size, "level": opts["level"], "codec": opts.get("codec"),
                "ratio": round(size / total, 4) if total else None,
                "pages_written": stats.remaining}
    except Exception as e:
        return {"path": out_path, "error": error_message(e)}
