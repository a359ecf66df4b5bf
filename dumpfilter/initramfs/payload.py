"""Assemble the capture-kernel payload: interpreter, libraries, compiled modules, launcher.

Layout (default ``root="/"``): every host file keeps its host path, so the
interpreter finds its stdlib and ``libpython`` (RUNPATH) exactly as on the host,
and the symlinks on the way (``/lib -> usr/lib``, ``libz.so.1``, the ELF
interpreter ``/lib64/ld-linux-x86-64.so.2``) are rebuilt as on the host. The
stdlib modules are compiled in place of their sources (``os.pyc`` beside where
``os.py`` was: Python's sourceless import), modules that are not stdlib
(the ``dumpfilter`` package, ``_cffi_backend``, codec wheels) go under
``libdir`` (``/usr/lib/dumpfilter``), and ``/usr/bin/dumpfilter`` is a Python
script whose ``#!`` line runs the interpreter with ``-I -S`` (no site-packages
scan, environment ignored) — no shell is needed.

With ``root`` other than ``/`` everything lives under that prefix and
``<root>/usr/bin/dumpfilter`` is a ``/bin/sh`` script that starts the
interpreter through the payload's own ELF loader with ``--library-path``.
"""
from __future__ import annotations

import os
import py_compile
import shutil
import stat
import struct
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence

from dumpfilter.initramfs import cpio, elfdeps
from dumpfilter.initramfs.record import DEFAULT_CODECS, Recording, launcher_body, record

DEFAULT_LIBDIR = "/usr/lib/dumpfilter"
LAUNCHER = "/usr/bin/dumpfilter"
#: modules the interpreter may need at start-up in another locale than the recording's
EXTRA_STDLIB = ("encodings/__init__.py", "encodings/aliases.py", "encodings/utf_8.py",
                "encodings/ascii.py", "encodings/latin_1.py")
#: getpath's landmark for the stdlib directory (``os`` itself is frozen)
LANDMARK = "os.py"
PAGE = 4096


@dataclass
class Item:
    path: str               # absolute path in the target (before the root prefix)
    kind: str               # "file" | "symlink"
    data: bytes = b""       # contents, or the link target
    perm: int = 0o644
    source: str = ""        # host file it came from
    what: str = ""          # python, library, stdlib, module, extension, launcher


@dataclass
class Payload:
    items: Dict[str, Item] = field(default_factory=dict)
    root: str = "/"
    python: str = ""
    recording: Optional[Recording] = None
    notes: List[str] = field(default_factory=list)

    # ---------------------------------------------------------------- building
    def add(self, item: Item) -> None:
        old = self.items.get(item.path)
        if old is not None and (old.kind != item.kind or
                                (item.kind == "symlink" and old.data != item.data)):
            raise ValueError(f"{item.path}: added twice with different contents")
        self.items.setdefault(item.path, item)

    def add_host(self, path: str, what: str, strip: bool, stripper: "Stripper") -> str:
        """Add the host file ``path`` and the symlinks that lead to it; return its real path."""
        real, links = elfdeps.resolve_chain(path)
        for lpath, target in links:
            self.add(Item(lpath, "symlink", target.encode(), 0o777, lpath, "symlink"))
        if real not in self.items:
            st = os.stat(real)
            if strip and elfdeps.is_elf(real):
                data = stripper.strip(real)
            else:
                with open(real, "rb") as fh:
                    data = fh.read()
            self.add(Item(real, "file", data, stat.S_IMODE(st.st_mode) & 0o755, real, what))
        return real

    # ---------------------------------------------------------------- figures
    def files(self) -> List[Item]:
        return [i for i in self.items.values() if i.kind == "file"]

    def unpacked_bytes(self) -> int:
        return sum(len(i.data) for i in self.files())

    def ram_bytes(self) -> int:
        """What the files occupy in the capture kernel's rootfs (whole pages per file)."""
        return sum((len(i.data) + PAGE - 1) // PAGE * PAGE for i in self.files())

    def by_kind(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for i in self.files():
            out[i.what] = out.get(i.what, 0) + len(i.data)
        return out

    # ---------------------------------------------------------------- output
    def target(self, path: str) -> str:
        if self.root == "/":
            return path
        return self.root.rstrip("/") + path

    def entries(self) -> List[tuple]:
        """(archive path, kind, data, perm) in an order the kernel can unpack."""
        dirs = set()
        rows = []
        for it in self.items.values():
            tpath = self.target(it.path)
            data = it.data
            if it.kind == "symlink" and self.root != "/" and data.startswith(b"/"):
                data = self.target(data.decode()).encode()
            rows.append((tpath.lstrip("/"), it.kind, data, it.perm))
            d = os.path.dirname(tpath)
            while d not in ("/", ""):
                dirs.add(d.lstrip("/"))
                d = os.path.dirname(d)
        linkpaths = {r[0] for r in rows if r[1] == "symlink"}
        dirs -= linkpaths
        out = [(d, "dir", b"", 0o755) for d in sorted(dirs)]
        out += sorted(rows, key=lambda r: r[0])
        return out

    def write_cpio(self, fh, mtime: int = 0) -> int:
        w = cpio.NewcWriter(fh, mtime=mtime)
        for name, kind, data, perm in self.entries():
            if kind == "dir":
                w.add_dir(name, perm)
            elif kind == "symlink":
                w.add_symlink(name, data.decode())
            else:
                w.add_file(name, data, perm)
        w.close()
        return w.pos

    def cpio_bytes(self, gzip: bool = False, mtime: int = 0) -> bytes:
        import io

        b = io.BytesIO()
        self.write_cpio(b, mtime=mtime)
        data = b.getvalue()
        return cpio.gzip_bytes(data) if gzip else data


class Stripper:
    """``strip --strip-unneeded`` on copies (never on the installed files)."""

    def __init__(self, enabled: bool = True):
        self.exe = shutil.which("strip") if enabled else None
        self.warned = False
        self.tmp = tempfile.mkdtemp(prefix="dumpfilter-strip-")

    def strip(self, path: str) -> bytes:
        with open(path, "rb") as fh:
            data = fh.read()
        if self.exe is None:
            return data
        src = os.path.join(self.tmp, "in")
        dst = os.path.join(self.tmp, "out")
        with open(src, "wb") as fh:
            fh.write(data)
        r = subprocess.run([self.exe, "--strip-unneeded", "-o", dst, src], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            sys.stderr.write(f"dumpfilter.initramfs: strip {path}: {r.stderr.strip()} (kept as is)\n")
            return data
        with open(dst, "rb") as fh:
            return fh.read()

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _compile(src: str, display: str, optimize: int, tmpdir: str) -> bytes:
    cfile = os.path.join(tmpdir, "out.pyc")
    py_compile.compile(src, cfile=cfile, dfile=display, doraise=True, optimize=optimize,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    with open(cfile, "rb") as fh:
        return fh.read()


def _stdlib_dirs() -> List[str]:
    paths = sysconfig.get_paths()
    return sorted({os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib")}, key=len,
                  reverse=True)


def _under(path: str, d: str) -> bool:
    return path == d or path.startswith(d.rstrip("/") + "/")


def _is_site_dir(rel: str) -> bool:
    return any(p in ("site-packages", "dist-packages") for p in rel.split("/"))


def _e_type(path: str) -> int:
    try:
        with open(path, "rb") as fh:
            h = fh.read(18)
        return struct.unpack_from("<H", h, 16)[0] if h[:4] == elfdeps.ELF_MAGIC else -1
    except (OSError, struct.error):
        return -1


def host_extra_path() -> List[str]:
    """Entries of this interpreter's sys.path outside the stdlib (site-packages and the like)."""
    std = _stdlib_dirs()
    out = []
    for p in sys.path:
        if not p or not os.path.isdir(p):
            continue
        rp = os.path.realpath(p)
        if any(_under(rp, d) and not _is_site_dir(os.path.relpath(rp, d)) for d in std):
            continue
        if rp not in out:
            out.append(rp)
    return out


def build(codecs: Sequence[str] = DEFAULT_CODECS, root: str = "/", libdir: str = DEFAULT_LIBDIR,
          samples: Sequence[str] = (), strip: bool = True, optimize: int = 0,
          stdlib_optimize: int = 2, stdlib_zip: bool = True,
          module: str = "dumpfilter", verbose: bool = False) -> Payload:
    """Record the collector runs and build the payload for this interpreter.

    ``optimize`` is the bytecode optimization level of the package's modules (0
    keeps their asserts and docstrings), ``stdlib_optimize`` that of the stdlib
    modules (2: no docstrings). ``stdlib_zip`` puts the compiled stdlib modules
    into the deflated ``lib/pythonXY.zip`` that is on the interpreter's default
    sys.path (a third of the bytes in the capture kernel's RAM).
    """
    import importlib.util

    python = os.path.realpath(sys.executable)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {module} not found")
    pkg_dir = os.path.realpath(list(spec.submodule_search_locations)[0])
    pkg_parent = os.path.dirname(pkg_dir)
    rec = record(python, pkg_parent, host_extra_path(), codecs, samples, module, verbose)

    pl = Payload(root=root, python=python, recording=rec)
    stripper = Stripper(strip)
    tmpdir = tempfile.mkdtemp(prefix="dumpfilter-pyc-")
    try:
        _fill(pl, rec, python, libdir, module, optimize, stdlib_optimize, stdlib_zip, stripper,
              tmpdir, samples)
    finally:
        stripper.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
    if stripper.exe is None and strip:
        pl.notes.append("strip not found: shared objects are not stripped")
    return pl


def _fill(pl: Payload, rec: Recording, python: str, libdir: str, module: str, optimize: int,
          stdlib_optimize: int, stdlib_zip: bool, stripper: Stripper, tmpdir: str,
          samples: Sequence[str]) -> None:
    std = _stdlib_dirs()
    search = sorted({os.path.realpath(p) for p in rec.sys_path if p and p != "/nonexistent"},
                    key=len, reverse=True)

    def dest_of(f: str) -> Optional[str]:
        for d in std:
            if _under(f, d) and not _is_site_dir(os.path.relpath(f, d)):
                return f
        for d in search:
            if _under(f, d):
                return os.path.join(libdir, os.path.relpath(f, d))
        return None

    zipped: Dict[str, bytes] = {}
    zip_path = next((os.path.realpath(p) for p in rec.sys_path if p.endswith(".zip")), None)
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    if zip_path is None or not _under(zip_path, os.path.dirname(stdlib)):
        stdlib_zip = False

    def add_module_file(f: str, what: str, in_zip: bool = True) -> None:
        f = os.path.realpath(f)
        dest = dest_of(f)
        if dest is None:
            raise RuntimeError(f"{f}: not under any sys.path entry")
        if f.endswith(".py"):
            dpy = dest
            data = _compile(f, dpy, stdlib_optimize if what == "stdlib" else optimize, tmpdir)
            if what == "stdlib" and stdlib_zip and in_zip and _under(f, stdlib):
                zipped[os.path.relpath(dpy, stdlib)[:-3] + ".pyc"] = data
                return
            pl.add(Item(dpy[:-3] + ".pyc", "file", data, 0o644, f, what))
        elif f.endswith(".pyc"):
            with open(f, "rb") as fh:
                pl.add(Item(dest, "file", fh.read(), 0o644, f, what))
        else:
            data = stripper.strip(f)
            pl.add(Item(dest, "file", data, 0o755, f, "extension"))

    elf_roots = [python]
    for m in rec.modules.values():
        if m.loader in ("BuiltinImporter", "FrozenImporter") or not m.file:
            continue
        f = os.path.realpath(m.file)
        if not os.path.isfile(f):
            continue
        in_std = any(_under(f, d) and not _is_site_dir(os.path.relpath(f, d)) for d in std)
        add_module_file(f, "stdlib" if in_std else "module")
        if m.loader == "ExtensionFileLoader":
            elf_roots.append(f)
    # runpy executes <module>/__main__ without leaving it in sys.modules at exit.
    main_file = os.path.join(os.path.dirname(os.path.realpath(rec.modules[module].file)),
                             "__main__.py")
    if os.path.isfile(main_file):
        add_module_file(main_file, "module")
    for rel in EXTRA_STDLIB:
        p = os.path.join(stdlib, rel)
        if os.path.isfile(p):
            add_module_file(p, "stdlib")
    add_module_file(os.path.join(stdlib, LANDMARK), "stdlib", in_zip=False)
    if zipped:
        pl.add(Item(zip_path, "file", _zip_bytes(zipped), 0o644, "", "stdlib"))
    # lib-dynload must exist (getpath's exec_prefix landmark) even if empty
    dyn = os.path.realpath(sysconfig.get_paths()["platstdlib"])

    # The interpreter, every library mapped in a run (dlopen()ed ones too), and their closure.
    pl.add_host(sys.executable, "python", True, stripper)
    skip = {os.path.realpath(s) for s in samples}
    mapped = []
    ext_files = {os.path.realpath(f) for f in elf_roots}
    for p in rec.maps:
        rp = os.path.realpath(p)
        if rp in ext_files or rp in skip or not os.path.isfile(rp):
            continue
        if _e_type(rp) not in (2, 3):  # ET_EXEC / ET_DYN only (a vmcore is ET_CORE)
            continue
        mapped.append(rp)
    for lib in elfdeps.unique(elfdeps.closure(elf_roots + mapped)):
        pl.add_host(lib, "library", True, stripper)
    for rp in mapped:
        link = elfdeps.soname_link(rp)
        pl.add_host(link or rp, "library", True, stripper)

    # The launcher.
    if pl.root == "/":
        text = f"#!{python} -IS\n" + launcher_body(libdir, module)
    else:
        interp = next((i.path for i in pl.files() if os.path.basename(i.path).startswith("ld-linux")),
                      None)
        if interp is None:
            raise RuntimeError("no ELF loader found among the libraries")
        libdirs = sorted({os.path.dirname(i.path) for i in pl.items.values()
                          if i.what in ("library", "symlink") and ".so" in i.path})
        main_py = os.path.join(libdir, "dumpfilter-main.py")
        pl.add(Item(main_py, "file",
                    launcher_body(pl.target(libdir), module).encode(), 0o644, "", "launcher"))
        text = ("#!/bin/sh\n"
                f"exec {pl.target(interp)} --library-path "
                f"{':'.join(pl.target(d) for d in libdirs)} "
                f"{pl.target(python)} -IS {pl.target(main_py)} \"$@\"\n")
    pl.add(Item(LAUNCHER, "file", text.encode(), 0o755, "", "launcher"))
    if not any(_under(i.path, dyn) for i in pl.files()):
        pl.notes.append(f"no extension module in {dyn}")


def _zip_bytes(members: Dict[str, bytes]) -> bytes:
    """A deterministic deflated zip (fixed dates, sorted names) for zipimport."""
    import io
    import zipfile

    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name in sorted(members):
            zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            z.writestr(zi, members[name])
    return b.getvalue()


def makedumpfile_footprint(exe: Optional[str] = None) -> Optional[tuple]:
    """(binary bytes, libraries bytes, [paths]) of makedumpfile and its ldd closure."""
    exe = exe or shutil.which("makedumpfile")
    if exe is None:
        return None
    real = os.path.realpath(exe)
    libs = [os.path.realpath(p) for p in elfdeps.ldd(real)]
    libs = elfdeps.unique(libs)
    return os.path.getsize(real), sum(os.path.getsize(p) for p in libs), [real] + libs
