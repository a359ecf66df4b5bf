"""``--mount`` and ``--files PID``: the mounts of a task's mount namespace
and a task's open files, as crash's ``mount`` and ``files`` print them.

Reads (layouts from the type source):

* the panic task's (else init's) ``nsproxy->mnt_ns``: ``mnt_namespace.root``
  (``struct mount``) and ``mnt_namespace.list``, walked from the root
  mount's ``mnt_list`` as crash does; since the list became an rb-tree
  (``mnt_namespace.mounts`` of ``mount.mnt_node``, ordered by mount id;
  Linux 6.8, commit 2eea9ce4310d) that tree in order;
* ``struct mount``: ``mnt`` (``vfsmount.mnt_sb``), ``mnt_devname``,
  ``mnt_parent``, ``mnt_mountpoint``; ``super_block.s_type->name``;
* paths as crash's ``get_pathname``: ``dentry.d_name`` (``qstr.name``,
  ``len``) up the ``d_parent`` chain to the mount's root, then on from the
  mount point in the parent mount, until a mount is its own parent;
* ``task_struct.fs`` (``fs_struct.root``/``pwd``: ``struct path``) and
  ``task_struct.files->fdt`` (``fdtable.max_fds``, ``fd``); per file
  ``f_path``, ``dentry.d_inode``, ``inode.i_mode`` (the TYPE column),
  ``inode.i_op`` (a FIFO whose ops are ``pipe_inode_operations`` is PIPE).
"""
from __future__ import annotations

import struct
from typing import Dict, List, Optional

from dumpfilter.errors import DumpFilterError, FaultError

MOUNT_HEADER = "     MOUNT           SUPERBLK     TYPE   DEVNAME   DIRNAME"
FILES_HEADER = " FD       FILE            DENTRY           INODE       TYPE PATH"
_MAX_DEPTH = 256
_NAME_MAX = 4096  # longer than any name a file system gives a dentry (NAME_MAX is 255)
_MAX_FDS = 1 << 20  # fs.nr_open's ceiling
_S_IFMT = 0o170000
_TYPES = {0o100000: "REG ", 0o120000: "LNK ", 0o040000: "DIR ", 0o020000: "CHR ",
          0o060000: "BLK ", 0o010000: "FIFO", 0o140000: "SOCK"}


class _Vfs:
    def __init__(self, ctx):
        self.ctx = ctx
        t = ctx.btf
        m = t.member_offset
        self.d_name = m("dentry", "d_name.name")
        self.d_len = m("dentry", "d_name.len")
        self.d_parent = m("dentry", "d_parent")
        self.d_inode = m("dentry", "d_inode")
        self.mnt = m("mount", "mnt")
        self.mnt_sb = m("vfsmount", "mnt_sb")
        self.mnt_parent = m("mount", "mnt_parent")
        self.mnt_mountpoint = m("mount", "mnt_mountpoint")
        self.mnt_devname = m("mount", "mnt_devname")
        self.path_mnt = m("path", "mnt")
        self.path_dentry = m("path", "dentry")

    def string(self, addr: int, n: int = 256) -> Optional[str]:
        if not addr:
            return None
        try:
            return self.ctx.read(addr, n).split(b"\0", 1)[0].decode("utf-8", "replace")
        except FaultError:
            # The string may end before a page the dump lacks.
            out = b""
            for i in range(n):
                c = self.ctx.read(addr + i, 1)
                if c == b"\0":
                    break
                out += c
            return out.decode("utf-8", "replace")

    def name(self, dentry: int) -> str:
        n = self.ctx.u32(dentry + self.d_len)
        if n > _NAME_MAX:
            raise DumpFilterError(f"dentry {dentry:#x}: name length {n} > {_NAME_MAX}: corrupt")
        return self.ctx.read(self.ctx.u64(dentry + self.d_name), n).decode("utf-8", "replace") \
            if n else ""

    def pathname(self, dentry: int, vfsmnt: int) -> str:
        """crash's get_pathname(dentry, full=1, vfsmnt): ``vfsmnt`` is a
        ``struct vfsmount`` address (``&mount.mnt``) or 0."""
        parts: List[str] = []
        mount = vfsmnt - self.mnt if vfsmnt else 0
        for _ in range(_MAX_DEPTH):
            parent = self.ctx.u64(dentry + self.d_parent)
            if parent != dentry:
                parts.append(self.name(dentry))
                dentry = parent
                continue
            if not mount:
                break
            up = self.ctx.u64(mount + self.mnt_parent)
            if up == mount:
                break
            dentry = self.ctx.u64(mount + self.mnt_mountpoint)
            mount = up
        return "/" + "/".join(reversed(parts))


def _context_task(ctx, sysinfo: Optional[Dict]) -> int:
    pt = (sysinfo or {}).get("panic_task")
    if pt:
        return int(pt["task"], 16)
    return ctx.kallsyms.require("init_task")


def read_mounts(ctx, sysinfo: Optional[Dict]) -> Dict:
    v = _Vfs(ctx)
    t = ctx.btf
    task = _context_task(ctx, sysinfo)
    nsproxy = ctx.u64(task + t.member_offset("task_struct", "nsproxy"))
    ns = ctx.u64(nsproxy + t.member_offset("nsproxy", "mnt_ns"))
    root = ctx.u64(ns + t.member_offset("mnt_namespace", "root"))
    mounts: List[int] = []
    if t.has_member("mnt_namespace", "list"):
        head = ns + t.member_offset("mnt_namespace", "list")
        link = t.member_offset("mount", "mnt_list")
        node = root + link
        while node != head and len(mounts) < 1 << 16:
            mounts.append(node - link)
            node = ctx.u64(node)
    elif t.has_member("mnt_namespace", "mounts") and t.has_member("mount", "mnt_node"):
        from dumpfilter.report.rbtree import rb_inorder

        node_off = t.member_offset("mount", "mnt_node")
        mounts = [n - node_off for n in
                  rb_inorder(ctx, ns + t.member_offset("mnt_namespace", "mounts"))]
    else:
        raise DumpFilterError("mnt_namespace has neither a mount list nor a mount tree")
    s_type = t.member_offset("super_block", "s_type")
    fs_name = t.member_offset("file_system_type", "name")
    rows, errors = [], []
    for mnt in mounts:
        try:
            sb = ctx.u64(mnt + v.mnt + v.mnt_sb)
            fstype = v.string(ctx.u64(ctx.u64(sb + s_type) + fs_name)) or "unknown"
            dev = v.string(ctx.u64(mnt + v.mnt_devname))
            dirname = v.pathname(ctx.u64(mnt + v.mnt_mountpoint),
                                 ctx.u64(mnt + v.mnt_parent) + v.mnt)
            rows.append({"mount": f"{mnt:x}", "superblock": f"{sb:x}", "type": fstype,
                         "devname": dev if dev is not None else "(unknown)", "dirname": dirname})
        except FaultError as e:
            errors.append(f"mount {mnt:#x} not in the dump ({e.message})")
    return {"task": f"{task:x}", "mounts": rows, "errors": errors}


def mount_lines(sec: Dict) -> List[str]:
    if sec.get("error"):
        return [f"mount: {sec['error']}"]
    out = [MOUNT_HEADER]
    for r in sec["mounts"]:
        mid = "%-6s " % r["type"] + "%-9s " % r["devname"]
        while len(mid) > 17 and mid[-2] == " ":
            mid = mid[:-1]
        out.append("%16s %16s %s%-10s" % (r["mount"], r["superblock"], mid, r["dirname"]))
    out.extend(f"mount: {e}" for e in sec["errors"])
    return out


def read_files(ctx, tasks, pid: int) -> Dict:
    v = _Vfs(ctx)
    t = ctx.btf
    m = t.member_offset
    found = [x for x in tasks.tasks if x.pid == pid and not x.idle] or tasks.by_pid(pid)
    if not found:
        raise DumpFilterError(f"no task with pid {pid}")
    task = found[0]
    out: Dict = {"pid": task.pid, "task": f"{task.address:x}", "cpu": task.cpu,
                 "comm": task.comm, "files": [], "errors": []}
    fs = ctx.u64(task.address + m("task_struct", "fs"))
    if fs:
        for key in ("root", "pwd"):
            p = fs + m("fs_struct", key)
            out[key] = v.pathname(ctx.u64(p + v.path_dentry), ctx.u64(p + v.path_mnt))
    files = ctx.u64(task.address + m("task_struct", "files"))
    if not files:
        return out
    fdt = ctx.u64(files + m("files_struct", "fdt"))
    max_fds = ctx.u32(fdt + m("fdtable", "max_fds"))
    if max_fds > _MAX_FDS:
        raise DumpFilterError(f"pid {pid}: fdtable.max_fds {max_fds} > {_MAX_FDS}: corrupt")
    fd_arr = ctx.u64(fdt + m("fdtable", "fd"))
    ptrs = struct.unpack("<%dQ" % max_fds, ctx.read(fd_arr, 8 * max_fds))
    f_path = m("file", "f_path")
    i_mode = m("inode", "i_mode")
    i_op = m("inode", "i_op")
    pipe_ops = ctx.symbol("pipe_inode_operations")
    for fd, f in enumerate(ptrs):
        if not f:
            continue
        try:
            dentry = ctx.u64(f + f_path + v.path_dentry)
            mnt = ctx.u64(f + f_path + v.path_mnt)
            inode = ctx.u64(dentry + v.d_inode)
            mode = struct.unpack("<H", ctx.read(inode + i_mode, 2))[0] if inode else 0
            kind = _TYPES.get(mode & _S_IFMT, "UNKN")
            path = v.pathname(dentry, mnt)
            if kind == "FIFO" and pipe_ops is not None and ctx.u64(inode + i_op) == pipe_ops:
                kind, path = "PIPE", ""
            if kind == "SOCK" and path == "/":
                path = ""
            out["files"].append({"fd": fd, "file": f"{f:x}", "dentry": f"{dentry:x}",
                                 "inode": f"{inode:x}", "type": kind, "path": path})
        except FaultError as e:
            out["errors"].append(f"fd {fd}: file {f:#x} not in the dump ({e.message})")
    return out


def files_lines(sec: Dict) -> List[str]:
    if sec.get("error"):
        return [f"files: {sec['error']}"]
    out = [f'PID: {sec["pid"]:<7d}  TASK: {int(sec["task"], 16):<16x}  CPU: {sec["cpu"]:<3d}  '
           f'COMMAND: "{sec["comm"]}"']
    if "root" in sec:
        out.append(f"ROOT: {sec['root']}    CWD: {sec['pwd']}")
    out.append(FILES_HEADER)
    for f in sec["files"]:
        out.append("%3d %16s %16s %16s %s %s" % (f["fd"], f["file"], f["dentry"], f["inode"],
                                                 f["type"], f["path"]))
    out.extend(f"files: {e}" for e in sec["errors"])
    return out


__all__ = ["read_mounts", "mount_lines", "read_files", "files_lines"]
