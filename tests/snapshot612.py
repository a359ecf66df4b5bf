"""A real Linux 6.12 dump for the report tests: Debian's 6.12 kernel booted
under QEMU (TCG, 2 CPUs, 512 MiB, ``-device vmcoreinfo``) into a busybox
initramfs whose /init mounts a few file systems, gives ``lo`` an address,
holds open files and idles; QEMU's ``dump-guest-memory`` (QMP, ELF, no
paging) then writes the memory with the guest's VMCOREINFO. crash 8.0.2
cannot open 6.12; drgn with Debian's -dbg vmlinux is the oracle.

Everything is cached under ``$DUMPFILTER_CACHE/vm612`` (the kernel package,
the debug vmlinux extracted from its -dbg package, the dump). ``snapshot()``
and ``debug_vmlinux()`` raise ``Unavailable`` with the reason when a tool or
a download is missing (the tests skip with it). About 1 minute of QEMU.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from debs import extract_member

KVER = "6.12.107+deb12-amd64"
KVERSION = "6.12.107-1~deb12u1"
KPKG = f"linux-image-{KVER}-unsigned"
DBGPKG = f"linux-image-{KVER}-dbg"
DBG_MEMBER = f"./usr/lib/debug/boot/vmlinux-{KVER}"

#: QEMU's fw_cfg driver: it hands the guest's VMCOREINFO to -device vmcoreinfo.
FW_CFG = f"./lib/modules/{KVER}/kernel/drivers/firmware/qemu_fw_cfg.ko.xz"

INIT = r"""#!/bin/busybox sh
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /run /mnt/data
mount -t proc proc /proc
mount -t sysfs sys /sys
insmod /qemu_fw_cfg.ko
mount -t devtmpfs dev /dev
mount -t tmpfs -o size=16m scratch /tmp
mount -t tmpfs -o size=4m run /run
ip addr add 127.0.0.1/8 dev lo
ip link set lo up
echo hello > /tmp/held
exec 3</tmp/held 4>/run/log 5</proc/meminfo
sleep 1000 &
sleep 1001 &
echo SNAPSHOT-READY > /dev/ttyS0
while true; do sleep 1000; done
"""


class Unavailable(Exception):
    pass


def cache() -> Path:
    root = Path(os.environ.get("DUMPFILTER_CACHE") or Path.home() / ".cache" / "dumpfilter")
    d = root / "vm612"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise Unavailable(f"{name} not installed")
    return exe


def _download(pkg: str) -> Path:
    d = cache()
    debs = [Path(p) for p in glob.glob(str(d / f"{pkg}_*.deb"))]
    if debs:
        return debs[0]
    r = subprocess.run([_tool("apt-get"), "download", f"{pkg}={KVERSION}"], cwd=d,
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    debs = [Path(p) for p in glob.glob(str(d / f"{pkg}_*.deb"))]
    if r.returncode != 0 or not debs:
        raise Unavailable(f"apt-get download {pkg}={KVERSION}: {(r.stderr or r.stdout).strip()[-300:]}")
    return debs[0]


def _extract(deb: Path, member: str, out: Path) -> Path:
    if out.is_file():
        return out
    try:
        return extract_member(deb, member, out)
    except RuntimeError as e:
        raise Unavailable(str(e)) from None


def debug_vmlinux() -> Path:
    out = cache() / f"vmlinux-{KVER}"
    if out.is_file():
        return out
    deb = _download(DBGPKG)
    _extract(deb, DBG_MEMBER, out)
    deb.unlink()  # ~1 GB; only the vmlinux is needed
    return out


def _initramfs(path: Path, fw_cfg: bytes) -> None:
    from dumpfilter.initramfs.payload import Item, Payload

    busybox = _tool("busybox")
    if subprocess.run(["ldd", busybox], capture_output=True).returncode == 0:
        raise Unavailable(f"{busybox} is dynamic: apt-get install busybox-static")
    pl = Payload()
    pl.add(Item("/init", "file", INIT.encode(), 0o755, "init", "init"))
    pl.add(Item("/qemu_fw_cfg.ko", "file", fw_cfg, 0o644, "", "module"))
    pl.add(Item("/bin/busybox", "file", Path(busybox).read_bytes(), 0o755, busybox, "busybox"))
    for a in subprocess.run([busybox, "--list"], capture_output=True, text=True).stdout.split():
        if a != "busybox":
            pl.add(Item(f"/bin/{a}", "symlink", b"busybox", 0o777, "", "symlink"))
    path.write_bytes(pl.cpio_bytes())


def _qmp(sock_path: Path, commands, timeout: float = 600):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(str(sock_path))
    f = s.makefile("rw")
    json.loads(f.readline())  # greeting
    out = []
    for cmd in [{"execute": "qmp_capabilities"}, *commands]:
        f.write(json.dumps(cmd) + "\n")
        f.flush()
        while True:
            msg = json.loads(f.readline())
            if "return" in msg or "error" in msg:
                out.append(msg)
                break
    s.close()
    return out


def snapshot() -> Path:
    """The ELF dump of the idle 6.12 guest (made once, then cached)."""
    out = cache() / "qemu-6.12-512M.elf"
    if out.is_file():
        return out
    qemu = _tool("qemu-system-x86_64")
    import lzma

    deb = _download(KPKG)
    vmlinuz = _extract(deb, f"./boot/vmlinuz-{KVER}", cache() / f"vmlinuz-{KVER}")
    fw_cfg = _extract(deb, FW_CFG, cache() / "qemu_fw_cfg.ko.xz")
    work = Path(tempfile.mkdtemp(prefix=".vm.", dir=cache()))
    try:
        _initramfs(work / "initrd", lzma.decompress(fw_cfg.read_bytes()))
        serial, qsock = work / "serial.log", work / "qmp.sock"
        vm = subprocess.Popen(
            [qemu, "-accel", "tcg", "-m", "512", "-smp", "2", "-device", "vmcoreinfo",
             "-kernel", str(vmlinuz), "-initrd", str(work / "initrd"),
             "-append", "console=ttyS0 panic=-1 quiet", "-display", "none", "-no-reboot",
             "-serial", f"file:{serial}", "-qmp", f"unix:{qsock},server=on,wait=off"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            t0 = time.monotonic()
            while b"SNAPSHOT-READY" not in (serial.read_bytes() if serial.exists() else b""):
                if vm.poll() is not None or time.monotonic() - t0 > 600:
                    raise Unavailable("the 6.12 guest did not come up: "
                                      + serial.read_text(errors="replace")[-500:])
                time.sleep(1)
            time.sleep(3)
            tmp = work / "dump.elf"
            r = _qmp(qsock, [{"execute": "dump-guest-memory",
                              "arguments": {"paging": False, "protocol": f"file:{tmp}"}}])
            if "error" in r[-1]:
                raise Unavailable(f"dump-guest-memory: {r[-1]['error']}")
            os.chmod(tmp, 0o600)
            os.replace(tmp, out)
        finally:
            vm.kill()
            vm.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


if __name__ == "__main__":
    print(snapshot())
    print(debug_vmlinux())
