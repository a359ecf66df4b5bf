"""A real kdump capture of an Oops: Debian's 6.1 kernel (the shared dumps'
kernel) under QEMU with tests/vmtest's harness, where PID 1 sets
``panic_on_oops`` and loads a module whose init writes through a NULL
pointer (``oops_null.ko``, built here against Debian's
linux-headers-6.1.0-56); the capture kernel copies /proc/vmcore. crash 8.0.2
with the -dbg vmlinux is the oracle for ``--bt``.

The harness's own files are not changed: its first-kernel initramfs gets a
second cpio appended that replaces ``/init`` (the harness's script with the
sysrq-c line swapped for the insmod) and adds the module. Cached under
``$DUMPFILTER_CACHE/oops``; about 2 minutes of QEMU (512 MiB guest).
"""
from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
from pathlib import Path

HDR_PKGS = (("linux-headers-6.1.0-56-amd64", "6.1.192-2"),
            ("linux-headers-6.1.0-56-common", "6.1.192-2"),
            # the -2 kbuild is gone from the archive; -3 is the same 6.1.192 tree
            ("linux-kbuild-6.1", "6.1.192-3"))
HDR_DIR = "usr/src/linux-headers-6.1.0-56-amd64"

MODULE_C = r"""// A NULL write in a module: a real Oops for dumpfilter's report tests.
#include <linux/module.h>
#include <linux/init.h>

struct victim { long pad[2]; long field; };

static noinline void oops_null_write(struct victim *v)
{
	WRITE_ONCE(v->field, 0x5a5a);
}

static int __init oops_null_init(void)
{
	oops_null_write(NULL);
	return 0;
}

module_init(oops_null_init);
MODULE_LICENSE("GPL");
"""
CRASH_LINE = "    echo c > /proc/sysrq-trigger\n"
OOPS_LINES = ("    echo 1 > /proc/sys/kernel/panic_on_oops\n"
              "    insmod /vmtest/oops_null.ko\n")


class Unavailable(Exception):
    pass


def cache() -> Path:
    from vmtest import harness

    d = harness.cache_root() / "oops"
    d.mkdir(parents=True, exist_ok=True)
    return d


def module() -> Path:
    """oops_null.ko for the 6.1.0-56 kernel."""
    ko = cache() / "mod" / "oops_null.ko"
    if ko.is_file():
        return ko
    for tool in ("apt-get", "dpkg", "make", "gcc-12"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} not installed")
    root = cache() / "root"
    if not (root / HDR_DIR / "Makefile").is_file():
        dl = Path(tempfile.mkdtemp(prefix=".dl.", dir=cache()))
        try:
            for name, ver in HDR_PKGS:
                r = subprocess.run(["apt-get", "download", f"{name}={ver}"], cwd=dl,
                                   capture_output=True, text=True, stdin=subprocess.DEVNULL)
                if r.returncode != 0:
                    raise Unavailable(f"apt-get download {name}={ver}: {r.stderr.strip()[-300:]}")
            for deb in glob.glob(str(dl / "*.deb")):
                subprocess.run(["dpkg", "-x", deb, str(root)], check=True)
        finally:
            shutil.rmtree(dl, ignore_errors=True)
        mk = root / HDR_DIR / "Makefile"  # includes the -common Makefile by absolute path
        mk.write_text(mk.read_text().replace("include /usr/src/", f"include {root}/usr/src/"))
    src = cache() / "mod"
    src.mkdir(exist_ok=True)
    (src / "oops_null.c").write_text(MODULE_C)
    (src / "Kbuild").write_text("obj-m := oops_null.o\n")
    r = subprocess.run(["make", "-C", str(root / HDR_DIR), f"M={src}", "modules"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0 or not ko.is_file():
        raise Unavailable(f"building oops_null.ko failed: {(r.stderr or r.stdout)[-500:]}")
    return ko


def capture() -> Path:
    """The ELF /proc/vmcore of the Oops (made once, then cached)."""
    from dumpfilter.initramfs import cpio
    from dumpfilter.initramfs.payload import Item, Payload
    from vmtest import harness

    out = cache() / "kdump-6.1-512M-oops.vmcore"
    if out.is_file():
        return out
    ko = module()
    init = (harness.GUEST / "init").read_text()
    if CRASH_LINE not in init:
        raise Unavailable("tests/vmtest/guest/init no longer crashes with sysrq-c")
    pl = Payload()
    pl.add(Item("/init", "file", init.replace(CRASH_LINE, OOPS_LINES).encode(), 0o755, "", "init"))
    pl.add(Item("/vmtest/oops_null.ko", "file", ko.read_bytes(), 0o644, "", "module"))
    extra = pl.cpio_bytes()
    orig = harness.base_initramfs

    def with_oops(ktree, capture=False):
        base = orig(ktree, capture=capture)
        return base if capture else cpio.concat([base, extra])

    work = Path(tempfile.mkdtemp(prefix=".vm.", dir=cache()))
    part = cache() / (out.name + ".part")
    harness.base_initramfs = with_oops
    try:
        cfg = harness.VMConfig(name="oops", mem_mib=512, crashkernel="160M", workload="idle",
                               action="copy", timeout=900)
        res = harness.run_vm(cfg, work, raw_disk=part)
        if not res.ok or res.runs.get("copy", {}).get("rc") != "0":
            raise Unavailable(f"the Oops capture failed: {res.error[-1500:] or res.runs}")
        size = int(res.info["vmcore_bytes"])
        with open(part, "r+b") as fh:
            fh.truncate(size)
        part.chmod(0o600)
        part.replace(out)
    finally:
        harness.base_initramfs = orig
        shutil.rmtree(work, ignore_errors=True)
        if part.exists():
            part.unlink()
    return out


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    print(capture())
