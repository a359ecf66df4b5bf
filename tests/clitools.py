"""Helpers shared by the tests that run ``python -m dumpfilter`` and compare
pages (imported like ``oracles``: ``from clitools import run_cli``)."""
import hashlib
import subprocess
import sys

from dumpfilter.readers import open_dump


def run_cli(*args, check=True, text=True, stdin=None, stdout=None):
    """Run ``python -m dumpfilter ARGS`` (each arg through ``str``).

    stdin is /dev/null and stdout is captured unless a file is given;
    stderr is always captured; ``text=False`` keeps both as bytes. With
    ``check``, a non-zero exit raises AssertionError showing stderr."""
    r = subprocess.run([sys.executable, "-m", "dumpfilter", *map(str, args)],
                       stdin=stdin if stdin is not None else subprocess.DEVNULL,
                       stdout=stdout if stdout is not None else subprocess.PIPE,
                       stderr=subprocess.PIPE, text=text)
    if check and r.returncode != 0:
        err = r.stderr if text else r.stderr.decode()
        raise AssertionError(f"dumpfilter {args} exited {r.returncode}:\n{err}")
    return r


def set_pfns(bitmap):
    """The pfns whose bits are set in an LSB-first bitmap, ascending."""
    return [i for i in range(len(bitmap) * 8) if bitmap[i >> 3] >> (i & 7) & 1]


def page_sha1s(path, pfns):
    """``{pfn: sha1 hex digest}`` of pages read with our reader."""
    out = {}
    with open_dump(path) as src:
        buf = bytearray(src.page_size)
        for pfn in pfns:
            src.read_pages(pfn, 1, memoryview(buf))
            out[pfn] = hashlib.sha1(buf).hexdigest()
    return out
