"""A real kdump capture under QEMU (TCG): Debian's 6.1 kernel, busybox, kexec -p, sysrq-c.

Used by ``tests/vmtest/test_capture.py`` (the collector in a real capture kernel) and by
``bench/make_capture.py`` (raw ``/proc/vmcore`` captures for benchmarks).

* ``kernel_tree()``: ``linux-image-6.1.0-56-amd64`` 6.1.192-2 (the kernel of the shared dumps)
  fetched with ``apt-get download``, unpacked with ``dpkg -x``, ``depmod -b``; cached in
  ``$DUMPFILTER_CACHE/vmtest`` (default ``~/.cache/dumpfilter/vmtest``).
* ``base_initramfs()``: busybox-static, the virtio/ext4 modules, kexec and Debian's
  makedumpfile with their libraries, a static workload helper and ``guest/init``.
* The capture initrd is that base with the payload of ``python3 -m dumpfilter.initramfs``
  appended; it sits on the data disk (``/dev/vda``) from which the first kernel's
  ``kexec -p`` reads it, so it is not a stale copy in the first kernel's RAM.
* ``run_vm()`` boots the first kernel, which arms kdump, runs the workload and crashes;
  the capture kernel writes onto the dump disk (``/dev/vdb``, ext4, read back here with
  ``debugfs``) or the raw disk (``/dev/vdc``) and powers off.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]
GUEST = Path(__file__).resolve().parent / "guest"

KVER = "6.1.0-56-amd64"
KPKG = f"linux-image-{KVER}"
KPKG_VERSION = "6.1.192-2"
#: the modules the guest loads; their dependencies come from modules.dep
WANTED_MODULES = ("crc32c_generic", "virtio_pci", "virtio_blk", "ext4")


class VMUnavailable(Exception):
    """A tool or download the VM test needs is missing (the test skips with this reason)."""


def cache_root() -> Path:
    env = os.environ.get("DUMPFILTER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dumpfilter"


def vm_cache() -> Path:
    d = cache_root() / "vmtest"
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def need_tool(name: str, package: str) -> str:
    for d in ("", "/usr/sbin/", "/sbin/"):
        p = shutil.which(name) if not d else (d + name if os.access(d + name, os.X_OK) else None)
        if p:
            return p
    raise VMUnavailable(f"{name} not installed (apt-get install {package})")


def _run(argv, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(argv, **kw)


# --------------------------------------------------------------------------- kernel

def kernel_tree() -> Path:
    """Root of the unpacked kernel package (boot/vmlinuz-KVER, lib/modules/KVER with modules.dep)."""
    root = vm_cache() / f"kernel-{KVER}-{KPKG_VERSION}"
    done = root / ".complete"
    if done.exists():
        return root
    with file_lock(vm_cache() / ".kernel.lock"):
        if done.exists():
            return root
        for tool, pkg in (("apt-get", "apt"), ("dpkg", "dpkg"), ("depmod", "kmod")):
            need_tool(tool, pkg)
        dl = Path(tempfile.mkdtemp(prefix=".dl.", dir=vm_cache()))
        try:
            r = _run(["apt-get", "download", f"{KPKG}={KPKG_VERSION}"], cwd=dl)
            debs = list(dl.glob(f"{KPKG}_*.deb"))
            if r.returncode != 0 or not debs:
                raise VMUnavailable(f"apt-get download {KPKG}={KPKG_VERSION} failed: "
                                    f"{(r.stderr or r.stdout).strip()[-500:]}")
            tree = dl / "tree"
            r = _run(["dpkg", "-x", str(debs[0]), str(tree)])
            if r.returncode != 0:
                raise RuntimeError(f"dpkg -x failed: {r.stderr}")
            depmod = need_tool("depmod", "kmod")
            r = _run([depmod, "-b", str(tree), KVER])
            if r.returncode != 0:
                raise RuntimeError(f"depmod -b failed: {r.stderr}")
            # modules are found below lib/ or usr/lib/ depending on the package's layout
            if root.exists():
                shutil.rmtree(root)
            os.replace(tree, root)
            done.write_text(f"{KPKG} {KPKG_VERSION}\n")
        finally:
            shutil.rmtree(dl, ignore_errors=True)
    return root


def vmlinuz(ktree: Path) -> Path:
    return ktree / "boot" / f"vmlinuz-{KVER}"


def module_dir(ktree: Path) -> Path:
    for cand in (ktree / "lib" / "modules" / KVER, ktree / "usr" / "lib" / "modules" / KVER):
        if (cand / "modules.dep").exists():
            return cand
    raise RuntimeError(f"no modules.dep under {ktree}")


def module_load_order(ktree: Path, wanted=WANTED_MODULES) -> List[str]:
    """Paths (relative to the module dir) of ``wanted`` and their dependencies, dependencies first."""
    mdir = module_dir(ktree)
    deps: Dict[str, List[str]] = {}
    byname: Dict[str, str] = {}
    for line in (mdir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
        name = os.path.basename(mod).split(".ko")[0].replace("-", "_")
        byname[name] = mod
    order: List[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        # modules.dep lists the full closure, deepest last: load from the end
        for d in reversed(deps[mod]):
            visit(d)
        order.append(mod)

    for w in wanted:
        if w not in byname:
            raise RuntimeError(f"module {w} not in modules.dep")
        visit(byname[w])
    return order


# --------------------------------------------------------------------------- guest files

def helper_binary() -> Path:
    """The workload and measuring helper (guest/vmhelper.c), built once per source version.

    Linked dynamically against the host's libc, which the initramfs carries anyway."""
    src = GUEST / "vmhelper.c"
    h = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    out = vm_cache() / f"vmhelper-{h}"
    if out.exists():
        return out
    gcc = need_tool("gcc", "gcc")
    tmp = out.with_name(out.name + f".{os.getpid()}")
    r = _run([gcc, "-O2", "-s", "-o", str(tmp), str(src)])
    if r.returncode != 0:
        raise VMUnavailable(f"cannot build the workload helper (gcc, libc6-dev): {r.stderr[-500:]}")
    os.replace(tmp, out)
    for old in vm_cache().glob("vmhelper-*"):
        if old != out and "." not in old.name:
            old.unlink()
    return out


def base_initramfs(ktree: Path, capture: bool = False) -> bytes:
    """busybox + modules + Debian's makedumpfile (+ libraries) + the helper + /init; for
    the first kernel (``capture=False``) also kexec."""
    from dumpfilter.initramfs import elfdeps
    from dumpfilter.initramfs.payload import Item, Payload, Stripper

    busybox = need_tool("busybox", "busybox-static")
    if _run(["ldd", busybox]).returncode == 0:
        raise VMUnavailable(f"{busybox} is dynamic: apt-get install busybox-static")
    kexec = need_tool("kexec", "kexec-tools")
    mdf = need_tool("makedumpfile", "makedumpfile")

    pl = Payload()
    nostrip = Stripper(enabled=False)
    try:
        pl.add(Item("/init", "file", (GUEST / "init").read_bytes(), 0o755, "init", "init"))
        pl.add(Item("/bin/busybox", "file", Path(busybox).read_bytes(), 0o755, busybox, "busybox"))
        applets = _run([busybox, "--list"]).stdout.split()
        for a in applets:
            if a not in ("busybox",):
                pl.add(Item(f"/bin/{a}", "symlink", b"busybox", 0o777, "", "symlink"))
        helper = helper_binary()
        pl.add(Item("/bin/vmhelper", "file", helper.read_bytes(), 0o755, "", "helper"))
        tools = [mdf] if capture else [mdf, kexec]
        for exe in tools:
            pl.add_host(exe, "tool", False, nostrip)
        for lib in elfdeps.closure([os.path.realpath(t) for t in tools] + [str(helper)]):
            pl.add_host(lib, "library", False, nostrip)
        mdir = module_dir(ktree)
        order = module_load_order(ktree)
        for rel in order:
            # not below /lib, which may be a symlink to usr/lib (merged /usr)
            pl.add(Item(f"/vmtest/modules/{rel}", "file", (mdir / rel).read_bytes(), 0o644, rel,
                        "module"))
        pl.add(Item("/etc/vmtest/modules", "file", ("\n".join(order) + "\n").encode(), 0o644,
                    "", "config"))
    finally:
        nostrip.close()
    return pl.cpio_bytes()


def payload_bytes(codecs: str = "lzo,zlib", extra: Optional[List[str]] = None) -> tuple:
    """(archive bytes, size report) of ``python3 -m dumpfilter.initramfs``."""
    with tempfile.TemporaryDirectory(prefix="vmtest-payload-") as d:
        out = Path(d) / "payload.cpio"
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        r = _run([sys.executable, "-m", "dumpfilter.initramfs", str(out), "--codecs", codecs,
                  *(extra or [])], env=env, cwd=REPO)
        if r.returncode != 0:
            raise RuntimeError(f"dumpfilter.initramfs failed: {r.stderr}")
        return out.read_bytes(), r.stderr


# --------------------------------------------------------------------------- disks

def make_ext4(img: Path, size_mib: int, src: Optional[Path] = None) -> None:
    mkfs = need_tool("mkfs.ext4", "e2fsprogs")
    if img.exists():
        img.unlink()
    with open(img, "wb") as fh:
        fh.truncate(size_mib << 20)
    argv = [mkfs, "-q", "-F", "-N", "4096", "-J", "size=16", "-E",
            "lazy_itable_init=0,lazy_journal_init=0,nodiscard", "-L", img.stem]
    if src is not None:
        argv += ["-d", str(src)]
    r = _run(argv + [str(img)])
    if r.returncode != 0:
        raise RuntimeError(f"mkfs.ext4 {img}: {r.stderr}")


def read_ext4(img: Path, dest: Path) -> None:
    """Copy every file of the ext4 image into dest (debugfs: no mount, no root needed)."""
    debugfs = need_tool("debugfs", "e2fsprogs")
    dest.mkdir(parents=True, exist_ok=True)
    r = _run([debugfs, "-R", f"rdump / {dest}", str(img)])
    if r.returncode != 0:
        raise RuntimeError(f"debugfs rdump {img}: {r.stderr}")


# --------------------------------------------------------------------------- runs

WORKLOADS = {
    # MiB per class as a function of the guest's memory; see guest/init
    "test": lambda m: dict(stale=m // 16, cache=m // 8, dirty=8, shm=m // 32, anon=m // 8),
    "idle": lambda m: dict(stale=0, cache=16, dirty=0, shm=0, anon=0),
    "busy": lambda m: dict(stale=m // 8, cache=m // 4, dirty=32, shm=m // 16, anon=m // 2),
}


@dataclass
class VMConfig:
    name: str
    mem_mib: int
    crashkernel: str                 # e.g. "128M"
    workload: str = "test"
    action: str = "filter"           # filter | copy
    smp: int = 2
    timeout: float = 900.0
    anonkind: str = "mixed"
    capture_append: str = "irqpoll nr_cpus=1 reset_devices"

    def sizes(self) -> dict:
        return WORKLOADS[self.workload](self.mem_mib)


@dataclass
class VMResult:
    config: dict
    ok: bool
    runs: Dict[str, dict] = field(default_factory=dict)
    info: Dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    outdir: str = ""
    serial: str = ""
    host_wall_s: float = 0.0
    raw_disk: str = ""
    payload_report: str = ""
    error: str = ""


def _parse_kv(text: str) -> Dict[str, str]:
    out = {}
    for w in text.split():
        k, sep, v = w.partition("=")
        if sep:
            out[k] = v
    return out


def qemu_argv(cfg: VMConfig, workdir: Path, ktree: Path, disks: List[Path]) -> List[str]:
    qemu = need_tool("qemu-system-x86_64", "qemu-system-x86")
    s = cfg.sizes()
    append = (f"console=ttyS0 panic=-1 crashkernel={cfg.crashkernel} "
              + " ".join(f"vt.{k}={v}" for k, v in s.items()) + f" vt.anonkind={cfg.anonkind}")
    argv = [qemu, "-accel", "tcg", "-m", str(cfg.mem_mib), "-smp", str(cfg.smp),
            "-kernel", str(vmlinuz(ktree)), "-initrd", str(workdir / "base.cpio"),
            "-append", append, "-serial", f"file:{workdir / 'serial.log'}",
            "-no-reboot", "-display", "none", "-monitor", "none", "-nodefaults",
            "-device", "vmcoreinfo"]
    for d in disks:
        argv += ["-drive", f"file={d},format=raw,if=virtio,cache=unsafe"]
    return argv


def run_vm(cfg: VMConfig, workdir: Path, keep_images: bool = False,
           raw_disk: Optional[Path] = None, log=None) -> VMResult:
    """Boot, crash, capture; return the guest's measurements and where its files are."""
    log = log or (lambda msg: None)
    workdir.mkdir(parents=True, exist_ok=True)
    res = VMResult(config=asdict(cfg), ok=False, workdir=str(workdir))
    ktree = kernel_tree()
    base = base_initramfs(ktree)
    (workdir / "base.cpio").write_bytes(base)
    from dumpfilter.initramfs import cpio

    capture_base = base_initramfs(ktree, capture=True)
    res.info["capture_base_bytes"] = str(len(capture_base))
    if cfg.action == "filter":
        payload, report = payload_bytes()
        res.payload_report = report
        res.info["payload_bytes"] = str(len(payload))
        capture_initrd = cpio.concat([capture_base, payload])
    else:
        capture_initrd = capture_base
    s = cfg.sizes()
    stage = workdir / "data-src"
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "kexec").mkdir(parents=True)
    shutil.copy(vmlinuz(ktree), stage / "kexec" / "vmlinuz")
    (stage / "kexec" / "initrd.img").write_bytes(capture_initrd)
    (stage / "kexec" / "cmdline").write_text(
        f"console=ttyS0 {cfg.capture_append} panic=-1 vt.action={cfg.action}\n")
    data_mib = int((s["cache"] + s["dirty"]) * 1.15) + 128 + (len(capture_initrd) >> 20) * 2
    data_img, dump_img = workdir / "data.img", workdir / "dump.img"
    make_ext4(data_img, data_mib, stage)
    shutil.rmtree(stage)
    dump_mib = 256 if cfg.action == "copy" else int(cfg.mem_mib * 1.6) + 256
    make_ext4(dump_img, dump_mib)
    disks = [data_img, dump_img]
    if cfg.action == "copy":
        raw_disk = raw_disk or workdir / "vmcore.raw"
        with open(raw_disk, "wb") as fh:
            fh.truncate((cfg.mem_mib + 512) << 20)
        disks.append(raw_disk)
        res.raw_disk = str(raw_disk)
    argv = qemu_argv(cfg, workdir, ktree, disks)
    (workdir / "qemu-argv.json").write_text(json.dumps(argv, indent=1))
    log(f"booting {cfg.name}: {cfg.mem_mib} MiB, crashkernel={cfg.crashkernel}, workload {s}")
    t0 = time.monotonic()
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=cfg.timeout)
        qrc = r.returncode
        qerr = r.stderr
    except subprocess.TimeoutExpired:
        qrc, qerr = None, f"QEMU timed out after {cfg.timeout} s"
    res.host_wall_s = time.monotonic() - t0
    serial = workdir / "serial.log"
    res.serial = str(serial)
    text = serial.read_text(errors="replace") if serial.exists() else ""
    log(f"QEMU exit {qrc} after {res.host_wall_s:.0f} s")
    if qrc != 0:
        res.error = f"QEMU exit {qrc}: {qerr.strip()[-1000:]}\n{text[-3000:]}"
        return res
    out = workdir / "out"
    if out.exists():
        shutil.rmtree(out)
    read_ext4(dump_img, out)
    res.outdir = str(out)
    if not keep_images:
        data_img.unlink()
        dump_img.unlink()
    if (out / "info.txt").exists():
        res.info.update(_parse_kv((out / "info.txt").read_text()))
    if (out / "results.txt").exists():
        for line in (out / "results.txt").read_text().splitlines():
            kv = _parse_kv(line)
            if "run" in kv:
                res.runs[kv["run"]] = kv
    if "vmtest: capture done" not in text:
        res.error = "the capture kernel did not finish:\n" + text[-4000:]
        return res
    res.ok = bool(res.runs)
    if not res.ok:
        res.error = "no results from the capture kernel:\n" + text[-4000:]
    return res


# --------------------------------------------------------------------------- dump files

def kdump_header(path: Path) -> dict:
    """The sub-header fields needed to find the 2nd bitmap (makedumpfile's layout)."""
    import struct

    with open(path, "rb") as fh:
        h = fh.read(464)
    if h[:8] != b"KDUMP   ":
        raise ValueError(f"{path}: not a kdump-compressed file")
    block_size, sub_hdr_size, bitmap_blocks, max_mapnr = struct.unpack_from("<iiII", h, 428)
    status, = struct.unpack_from("<i", h, 424)
    return dict(block_size=block_size, sub_hdr_size=sub_hdr_size, bitmap_blocks=bitmap_blocks,
                max_mapnr=max_mapnr, status=status)


def bitmap2(path: Path) -> bytes:
    h = kdump_header(path)
    off = (1 + h["sub_hdr_size"]) * h["block_size"] + h["bitmap_blocks"] * h["block_size"] // 2
    with open(path, "rb") as fh:
        fh.seek(off)
        return fh.read(h["bitmap_blocks"] * h["block_size"] // 2)


def figures_table(res: VMResult) -> str:
    """Our two runs and makedumpfile's, side by side."""
    names = [("ours_l", "dumpfilter -l --message-level 7 -d 31 /proc/vmcore /dump/vmcore-incomplete"),
             ("ours_flat", "dumpfilter -F -l -d 31 /proc/vmcore > /dump/vmcore.flat"),
             ("mdf_l", "makedumpfile -l --message-level 7 -d 31 /proc/vmcore /dump/mdf.kdump")]
    c = res.config
    lines = [f"{c['name']}: {c['mem_mib']} MiB guest, crashkernel={c['crashkernel']}, "
             f"MemTotal {int(res.info.get('memtotal_kb', 0)):,} kB, rootfs (Shmem) "
             f"{int(res.info.get('shmem_kb', 0)):,} kB, /proc/vmcore {int(res.info.get('vmcore_bytes', 0)):,} bytes",
             f"| collector line | exit | in-guest wall (user+sys) | VmHWM at exit (highest polled) | min MemFree | min MemAvailable | MemAvailable before |",
             "|---|---|---|---|---|---|---|"]
    for key, line in names:
        r = res.runs.get(key)
        if r is None:
            lines.append(f"| `{line}` | (not run) | | | | | |")
            continue
        lines.append(
            f"| `{line}` | {r.get('rc')} | {int(r.get('wall_ms', 0)) / 1000:.2f} s "
            f"({(int(r.get('user_ms', 0)) + int(r.get('sys_ms', 0))) / 1000:.2f} s) | "
            f"{int(r.get('maxrss_kb') or 0):,} kB ({int(r.get('hwm_polled_kb') or 0):,}) | "
            f"{int(r.get('minfree_kb', 0)):,} kB | "
            f"{int(r.get('minavail_kb', 0)):,} kB | {int(r.get('avail_before_kb', 0)):,} kB |")
    return "\n".join(lines)
