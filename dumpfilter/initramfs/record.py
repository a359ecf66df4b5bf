"""Find out what a collector run needs by running it.

Each collector command line runs in a subprocess of the interpreter that the
payload will carry, started exactly as the payload's launcher starts it
(``-I -S``, ``runpy`` of the ``dumpfilter`` package), against a built-in
synthetic sample vmcore (or a real one given with ``--sample``). At exit an
``atexit`` hook writes down every module in ``sys.modules`` with its file and
loader, ``sys.path``, and every file mapped into the process
(``/proc/self/maps``: extension modules, libraries that ctypes dlopen()ed).
The recording needs no list of module names, so it follows any renaming of
the package's modules.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

#: dumpfilter's codec options (``--codecs``): name -> makedumpfile flag
CODEC_FLAGS = {"none": None, "lzo": "-l", "zlib": "-c", "snappy": "-p", "zstd": "-z"}
DEFAULT_CODECS = ("lzo", "zlib")

LAUNCHER_BODY = """\
import sys
sys.path[0:0] = [{libdir!r}]
import runpy
runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
"""

# Builtins only (sys, atexit, posix): the hook must not add modules itself.
_RECORDER = """\
import sys, atexit, posix
def _dumpfilter_record(_out={out!r}):
    rows = []
    for name, mod in list(sys.modules.items()):
        spec = getattr(mod, "__spec__", None)
        loader = getattr(spec, "loader", None) if spec is not None else None
        lname = getattr(loader, "__name__", None) or type(loader).__name__
        origin = getattr(spec, "origin", None) if spec is not None else None
        rows.append("M\\t%s\\t%s\\t%s\\t%s" % (name, lname, origin, getattr(mod, "__file__", None)))
    for p in sys.path:
        rows.append("P\\t%s" % p)
    try:
        fd = posix.open("/proc/self/maps", posix.O_RDONLY)
        chunks = []
        while True:
            b = posix.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        posix.close(fd)
        for line in b"".join(chunks).decode().splitlines():
            rows.append("L\\t%s" % line)
    except OSError:
        pass
    fd = posix.open(_out, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC, 0o600)
    posix.write(fd, ("\\n".join(rows) + "\\n").encode())
    posix.close(fd)
atexit.register(_dumpfilter_record)
"""


@dataclass
class ModuleRecord:
    name: str
    loader: str
    origin: Optional[str]
    file: Optional[str]


@dataclass
class Recording:
    modules: Dict[str, ModuleRecord] = field(default_factory=dict)
    sys_path: List[str] = field(default_factory=list)
    maps: List[str] = field(default_factory=list)
    runs: List[dict] = field(default_factory=list)

    def merge(self, text: str, argv: Sequence[str], rc: int) -> None:
        maps_lines = []
        for line in text.splitlines():
            kind, _, rest = line.partition("\t")
            if kind == "M":
                name, loader, origin, file = rest.split("\t")
                self.modules.setdefault(name, ModuleRecord(
                    name, loader, None if origin == "None" else origin,
                    None if file == "None" else file))
            elif kind == "P":
                if rest not in self.sys_path:
                    self.sys_path.append(rest)
            elif kind == "L":
                maps_lines.append(rest)
        from dumpfilter.initramfs.elfdeps import mapped_files

        for p in mapped_files("\n".join(maps_lines)):
            if p not in self.maps:
                self.maps.append(p)
        self.runs.append({"argv": list(argv), "rc": rc})


def launcher_body(libdir: str, module: str = "dumpfilter") -> str:
    return LAUNCHER_BODY.format(libdir=libdir, module=module)


def collector_lines(codecs: Sequence[str], sample: str, outdir: str) -> List[List[str]]:
    """The command lines a capture kernel runs (kdump.conf / kdump-tools styles)."""
    lines: List[List[str]] = []
    n = 0

    def out() -> str:
        nonlocal n
        n += 1
        return os.path.join(outdir, f"out{n}")

    for c in codecs:
        flag = CODEC_FLAGS[c]
        fl = [flag] if flag else []
        lines.append(fl + ["--message-level", "7", "-d", "31", sample, out()])
        lines.append(["-F"] + fl + ["-d", "31", sample])
    first = [CODEC_FLAGS[codecs[0]]] if codecs and CODEC_FLAGS[codecs[0]] else []
    # the report (--message-level 31), a full disk with a fallback level, an existing output
    lines.append(first + ["--message-level", "31", "-d", "31", sample, out()])
    lines.append(first + ["-d", "1,31", "-L", "64K", sample, out()])
    existing = out()
    with open(existing, "wb"):
        pass
    lines.append(first + ["-d", "31", sample, existing])
    lines.append(["--dump-dmesg", sample, out()])
    return lines


def build_sample(python: str, path: str, pkg_parent: str, mem_mib: int = 16) -> None:
    """The built-in synthetic sample (``python -m dumpfilter.testing.synthetic``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    r = subprocess.run([python, "-m", "dumpfilter.testing.synthetic", path, "--mem-mib", str(mem_mib)],
                       capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"building the synthetic sample failed: {r.stderr.strip()}")


def record(python: str, pkg_parent: str, extra_path: Sequence[str], codecs: Sequence[str],
           samples: Sequence[str] = (), module: str = "dumpfilter",
           verbose: bool = False) -> Recording:
    """Run the collector lines for every sample and merge what they imported and mapped."""
    rec = Recording()
    libpath = [pkg_parent] + [p for p in extra_path if p != pkg_parent]
    with tempfile.TemporaryDirectory(prefix="dumpfilter-initramfs-") as tmp:
        all_samples = list(samples)
        synth = os.path.join(tmp, "synthetic.vmcore")
        build_sample(python, synth, pkg_parent)
        all_samples.insert(0, synth)
        # The capture kernel's environment: no locale, nothing of ours.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/", "TERM": "linux"}
        for si, sample in enumerate(all_samples):
            outdir = os.path.join(tmp, f"s{si}")
            os.mkdir(outdir)
            for li, argv in enumerate(collector_lines(codecs, sample, outdir)):
                recfile = os.path.join(tmp, f"rec{si}.{li}")
                code = (_RECORDER.format(out=recfile) + "sys.argv[1:] = " + repr(argv) + "\n"
                        + "sys.path[0:0] = " + repr(libpath) + "\n"
                        + launcher_body(libdir="/nonexistent", module=module))
                r = subprocess.run([python, "-I", "-S", "-c", code], env=env, cwd=outdir,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
                if verbose:
                    sys.stderr.write(f"recorded (rc {r.returncode}): dumpfilter {' '.join(argv)}\n")
                try:
                    with open(recfile) as fh:
                        text = fh.read()
                except FileNotFoundError:
                    raise RuntimeError(f"collector run left no record (rc {r.returncode}): "
                                       f"{argv}: {r.stderr.strip()[-2000:]}") from None
                rec.merge(text, argv, r.returncode)
    return rec
