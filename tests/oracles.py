"""Helpers that run the reference tools (the "oracles") on dump files.

Every helper calls ``pytest.skip`` with a reason when its tool is missing, so a
test that uses them never fails just because the machine lacks crash, Debian's
libkdumpfile bindings, drgn or makedumpfile (``.ci/run`` installs all of them).

The kdump header parsers at the bottom are deliberately tiny and independent of
dumpfilter's own reader, so tests can cross-check it.
"""

from __future__ import annotations

import json
import re
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

import pytest

# Debian's python3-libkdumpfile belongs to Debian's interpreter, not to the
# python on PATH (pyenv/venv): always run it in a subprocess of this one.
DEBIAN_PYTHON = "/usr/bin/python3"


# --------------------------------------------------------------------------- crash

def crash_binary() -> str:
    exe = shutil.which("crash")
    if exe is None:
        pytest.skip("crash not installed (apt-get install crash)")
    return exe


def run_crash(vmlinux, dumpfiles: Sequence, commands: Sequence[str], timeout: float = 300,
              extra_args: Sequence[str] = ()) -> str:
    """Run ``crash -s VMLINUX DUMP...`` non-interactively and return its stdout+stderr.

    ``commands`` are fed on stdin, after ``set scroll off`` and followed by ``quit``.
    Raises ``AssertionError`` (with the output) if crash exits non-zero or times out.
    """
    exe = crash_binary()
    script = "set scroll off\n" + "".join(c.rstrip("\n") + "\n" for c in commands) + "quit\n"
    env = dict(os.environ, PAGER="cat", TERM=os.environ.get("TERM") or "dumb")
    env["TZ"] = "UTC"  # crash prints DATE in local time; the reference outputs are in UTC
    argv = [exe, "-s", *extra_args, str(vmlinux), *[str(d) for d in dumpfiles]]
    try:
        r = subprocess.run(argv, input=script, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, errors="replace", timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise AssertionError(f"crash timed out after {timeout}s: {argv}\n{out[-4000:]}") from None
    if r.returncode != 0:
        raise AssertionError(f"crash exited {r.returncode}: {argv}\n{r.stdout[-4000:]}")
    return r.stdout


CRASH_SYS_KEYS = ("KERNEL", "DUMPFILE", "DUMPFILES", "CPUS", "DATE", "UPTIME", "LOAD AVERAGE",
                  "TASKS", "NODENAME", "RELEASE", "VERSION", "MACHINE", "MEMORY", "PANIC",
                  "PID", "COMMAND", "TASK", "CPU", "STATE")


def crash_sys_lines(text: str) -> dict[str, str]:
    """The lines of crash's ``sys`` banner, whole, by label (up to the task
    block's ``PID:``): ``{"RELEASE": "     RELEASE: 6.1.0-56-amd64", ...}``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("PID:"):
            break
        m = re.match(r"^\s*([A-Z][A-Z ]*): (.*)$", line)
        if m:
            out[m.group(1)] = line
    return out


def crash_sys_fields(text: str) -> dict[str, str]:
    """Parse the first ``sys`` banner of crash output into {label: value}.

    Banner labels are right-aligned to 12 columns (``"      KERNEL: "``); other
    ``NAME: value`` lines (registers in ``bt``) are not at that column and are ignored.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        label = line[:12].strip()
        if line[12:14] == ": " and label in CRASH_SYS_KEYS and line[:12] == label.rjust(12):
            if label in fields:
                break  # a second banner
            fields[label] = line[14:].strip()
    return fields


# --------------------------------------------------------------------------- libkdumpfile

_KDUMPFILE_SCRIPT = r"""
import hashlib, json, sys
import kdumpfile
from kdumpfile.exceptions import NoDataException

req = json.loads(sys.stdin.read())
paths = req["paths"]
k = kdumpfile.kdumpfile(paths[0])
k.attr["addrxlat.ostype"] = "linux"
ps = k.attr["arch.page_size"]
max_pfn = k.attr["max_pfn"]
out = {"max_pfn": max_pfn, "page_size": ps, "format": k.attr["file.format"]}
try:
    out["uts"] = {key: k.attr["linux.uts." + key] for key in k.attr["linux.uts"].keys()}
except Exception as e:
    out["uts"] = None
try:
    out["arch"] = k.attr["arch.name"]
except Exception:
    out["arch"] = None
mode = req["mode"]
if mode == "info":
    pass
else:
    pfns = range(max_pfn) if req["pfns"] is None else req["pfns"]
    pages = {}
    for pfn in pfns:
        try:
            data = k.read(kdumpfile.KDUMP_KPHYSADDR, pfn * ps, ps)
        except NoDataException:
            pages[pfn] = None
            continue
        pages[pfn] = hashlib.sha1(data).hexdigest() if mode == "sha1" else bytes(data).hex()
    out["pages"] = pages
json.dump(out, sys.stdout)
"""


def _have_debian_kdumpfile() -> None:
    if not os.path.exists(DEBIAN_PYTHON):
        pytest.skip(f"{DEBIAN_PYTHON} not found (python3-libkdumpfile needs Debian's python3)")
    r = subprocess.run([DEBIAN_PYTHON, "-c", "import kdumpfile"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        pytest.skip("python3-libkdumpfile not installed for /usr/bin/python3 "
                    "(apt-get install python3-libkdumpfile)")


def _run_kdumpfile(paths, mode: str, pfns=None, timeout: float = 600) -> dict:
    _have_debian_kdumpfile()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if len(paths) != 1:
        # Debian's python3-libkdumpfile 0.5.1 can only open one file (kdumpfile(path));
        # setting file.set.number / file.set.N.fd afterwards aborts with
        # "double free or corruption". Split sets need crash instead.
        pytest.skip("python3-libkdumpfile 0.5.1 cannot open split dump sets")
    req = {"paths": [str(p) for p in paths], "mode": mode,
           "pfns": None if pfns is None else [int(p) for p in pfns]}
    r = subprocess.run([DEBIAN_PYTHON, "-c", _KDUMPFILE_SCRIPT], input=json.dumps(req),
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"libkdumpfile failed on {req['paths']}:\n{r.stderr[-4000:]}")
    out = json.loads(r.stdout)
    if "pages" in out:
        out["pages"] = {int(k): v for k, v in out["pages"].items()}
    return out


def libkdumpfile_info(path) -> dict:
    """``{'max_pfn', 'page_size', 'format', 'uts': {...}, 'arch'}`` as libkdumpfile sees the dump."""
    return _run_kdumpfile(path, "info")


def libkdumpfile_pages(path, pfns: Iterable[int]) -> dict[int, bytes | None]:
    """Read the given pfns with libkdumpfile (KPHYSADDR): pfn -> page bytes, None if excluded/absent."""
    out = _run_kdumpfile(path, "bytes", list(pfns))
    return {pfn: (None if h is None else bytes.fromhex(h)) for pfn, h in out["pages"].items()}


def libkdumpfile_digest(path) -> dict[int, str | None]:
    """Read every pfn below libkdumpfile's ``max_pfn`` in one subprocess.

    Returns pfn -> sha1 hex of the page, or None where libkdumpfile reports no data
    (excluded by filtering, or not in the dump). Any other error (corrupt file,
    unsupported compression, ...) raises AssertionError.
    """
    return _run_kdumpfile(path, "sha1")["pages"]


# --------------------------------------------------------------------------- drgn

def drgn_read_pages(path, pfns: Iterable[int], page_size: int = 4096) -> dict[int, bytes | None]:
    """Read pfns in-process with drgn (no vmlinux): pfn -> bytes, or None on a fault."""
    drgn = pytest.importorskip("drgn", reason="drgn not installed (pip install drgn)")
    prog = drgn.Program()
    prog.set_core_dump(str(path))
    out: dict[int, bytes | None] = {}
    for pfn in pfns:
        try:
            out[pfn] = prog.read(pfn * page_size, page_size, True)
        except drgn.FaultError:
            out[pfn] = None
    return out


# --------------------------------------------------------------------------- makedumpfile

def makedumpfile_binary() -> str:
    exe = shutil.which("makedumpfile")
    if exe is None:
        pytest.skip("makedumpfile not installed (apt-get install makedumpfile)")
    return exe


def run_makedumpfile(args: Sequence, timeout: float = 600, check: bool = True,
                     input: bytes | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run Debian's makedumpfile with ``args``; returns the CompletedProcess (text output).

    makedumpfile 1.7.2 prints "The kernel version is not supported." on this 6.1 dump
    and still works; that is not treated as an error. With ``check`` a non-zero exit
    raises AssertionError carrying the output.
    """
    exe = makedumpfile_binary()
    argv = [exe, *[str(a) for a in args]]
    r = subprocess.run(argv, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                       capture_output=True, timeout=timeout, cwd=cwd)
    r = subprocess.CompletedProcess(r.args, r.returncode,
                                    r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"))
    if check and r.returncode != 0:
        raise AssertionError(f"makedumpfile exited {r.returncode}: {argv}\n{r.stdout}\n{r.stderr}")
    return r


# --------------------------------------------------------------------------- independent kdump parsers

def read_kdump_header(path) -> dict:
    """Parse the disk_dump_header and kdump_sub_header of a (non-flattened) kdump file.

    Independent of dumpfilter: plain struct.unpack on the documented x86_64 offsets.
    """
    with open(path, "rb") as fh:
        main = fh.read(464)
        if len(main) < 464:
            raise ValueError(f"{path}: too short for a kdump header")
        (block_size,) = struct.unpack_from("<i", main, 428)
        if block_size <= 0 or block_size & (block_size - 1):
            raise ValueError(f"{path}: bad block_size {block_size}")
        fh.seek(block_size)
        sub = fh.read(104)
    uts = [main[12 + 65 * i: 12 + 65 * (i + 1)].split(b"\0", 1)[0].decode("ascii", "replace")
           for i in range(6)]
    h = {
        "signature": main[0:8],
        "header_version": struct.unpack_from("<i", main, 8)[0],
        "utsname": dict(zip(("sysname", "nodename", "release", "version", "machine", "domainname"), uts)),
        "timestamp_sec": struct.unpack_from("<q", main, 408)[0],
        "timestamp_usec": struct.unpack_from("<q", main, 416)[0],
        "status": struct.unpack_from("<I", main, 424)[0],
        "block_size": block_size,
        "sub_hdr_size": struct.unpack_from("<i", main, 432)[0],
        "bitmap_blocks": struct.unpack_from("<I", main, 436)[0],
        "max_mapnr": struct.unpack_from("<I", main, 440)[0],
        "total_ram_blocks": struct.unpack_from("<I", main, 444)[0],
        "device_blocks": struct.unpack_from("<I", main, 448)[0],
        "written_blocks": struct.unpack_from("<I", main, 452)[0],
        "current_cpu": struct.unpack_from("<I", main, 456)[0],
        "nr_cpus": struct.unpack_from("<i", main, 460)[0],
    }
    sub = sub.ljust(104, b"\0")
    h.update({
        "phys_base": struct.unpack_from("<Q", sub, 0)[0],
        "dump_level": struct.unpack_from("<i", sub, 8)[0],
        "split": struct.unpack_from("<i", sub, 12)[0],
        "start_pfn": struct.unpack_from("<Q", sub, 16)[0],
        "end_pfn": struct.unpack_from("<Q", sub, 24)[0],
        "offset_vmcoreinfo": struct.unpack_from("<q", sub, 32)[0],
        "size_vmcoreinfo": struct.unpack_from("<Q", sub, 40)[0],
        "offset_note": struct.unpack_from("<q", sub, 48)[0],
        "size_note": struct.unpack_from("<Q", sub, 56)[0],
        "offset_eraseinfo": struct.unpack_from("<q", sub, 64)[0],
        "size_eraseinfo": struct.unpack_from("<Q", sub, 72)[0],
        "start_pfn_64": struct.unpack_from("<Q", sub, 80)[0],
        "end_pfn_64": struct.unpack_from("<Q", sub, 88)[0],
        "max_mapnr_64": struct.unpack_from("<Q", sub, 96)[0],
    })
    return h


def _read_bitmap(path, second: bool) -> bytes:
    h = read_kdump_header(path)
    bs = h["block_size"]
    half = h["bitmap_blocks"] * bs // 2
    off = (1 + h["sub_hdr_size"]) * bs + (half if second else 0)
    with open(path, "rb") as fh:
        fh.seek(off)
        data = fh.read(half)
    if len(data) != half:
        raise ValueError(f"{path}: bitmap truncated")
    return data


def read_kdump_bitmap1(path) -> bytes:
    """The raw 1st bitmap (pfns present in memory) of a kdump file."""
    return _read_bitmap(path, second=False)


def read_kdump_bitmap2(path) -> bytes:
    """The raw 2nd bitmap (pfns with a page descriptor) of a kdump file."""
    return _read_bitmap(path, second=True)


def bitmap_pfns(bitmap: bytes) -> list[int]:
    """Set bits of a raw kdump bitmap (LSB first within each byte) as a sorted pfn list."""
    out = []
    for i, byte in enumerate(bitmap):
        if byte:
            base = i * 8
            for b in range(8):
                if byte >> b & 1:
                    out.append(base + b)
    return out
