"""``--kmem``: crash's ``kmem -i`` memory summary from the dump.

Reads (every symbol through ``ctx.symbol``, every layout through the type
source; a missing one leaves its line out with the reason in ``errors``):

* ``_totalram_pages`` (atomic_long_t; ``totalram_pages`` before 5.0):
  TOTAL MEM;
* the zones of every online node (``node_data[]`` up to ``nr_node_ids``, or
  ``contig_page_data`` without NUMA): ``zone.vm_stat[NR_FREE_PAGES]`` summed
  over the zones that have pages (``zone.present_pages``) — FREE, as crash
  sums it; USED = TOTAL MEM - FREE;
* ``vm_node_stat[]`` (atomic_long_t, indexed by ``enum node_stat_item``):
  ``NR_FILE_PAGES``, ``NR_SWAPCACHE`` (5.8+; else 0), ``NR_SLAB_RECLAIMABLE_B``
  + ``NR_SLAB_UNRECLAIMABLE_B`` (5.9+, kept in pages at the node level) or
  ``NR_SLAB_RECLAIMABLE`` + ``NR_SLAB_UNRECLAIMABLE`` before;
* BUFFERS as the kernel's ``nr_blockdev_pages()``: the block-device inodes on
  ``blockdev_superblock->s_inodes`` (``inode.i_sb_list``), summing
  ``inode.i_data.nrpages``; CACHED = NR_FILE_PAGES - NR_SWAPCACHE - BUFFERS;
* ``hstates[]`` (``hstate.order``, ``nr_huge_pages``, ``free_huge_pages``);
  the array length from ``hugetlb_max_hstate``;
* ``swap_info[]`` up to ``nr_swapfiles`` (``swap_info_struct.flags`` &
  SWP_USED, ``pages``, ``inuse_pages``);
* ``sysctl_overcommit_kbytes``, ``sysctl_overcommit_ratio``,
  ``vm_committed_as.count`` (the percpu_counter's global count, as crash
  reads it; negative shown as 0).

Differences from crash 8.0.2, which are crash's own (later crash releases
print these lines as we do): SHARED is not printed (crash 9.0 prints it only
for ``kmem -i=shared``, crash commit b39f8b5; it needs a walk of every struct
page); SLAB is
the kernel's slab counters, where crash 8.0.2 counts the pages with PG_slab
set (compound-page tails are not counted there) because it does not know the
``NR_SLAB_*_B`` names (fixed after 8.0.2 by crash commit 41d4b85, "Fix for
kmem -i to display correct SLAB statistics on Linux 5.9 and later").
"""
from __future__ import annotations

import struct
from typing import Dict, List, Optional

from dumpfilter.errors import DumpFilterError, FaultError
from dumpfilter.report.sysinfo import pages_to_size

HEADER = "                 PAGES        TOTAL      PERCENTAGE"
SWP_USED = 1


class _Reader:
    def __init__(self, ctx):
        self.ctx = ctx
        self.t = ctx.btf

    def sym(self, name: str) -> int:
        a = self.ctx.symbol(name)
        if a is None:
            raise DumpFilterError(f"the kernel has no symbol {name}")
        return a

    def s64(self, addr: int) -> int:
        return struct.unpack("<q", self.ctx.read(addr, 8))[0]

    def enum(self, name: str) -> int:
        v = self.t.enumerator(name)
        if v is None:
            raise DumpFilterError(f"the kernel's types have no enumerator {name}")
        return v

    def node_stat(self, name: str) -> int:
        return self.s64(self.sym("vm_node_stat") + 8 * self.enum(name))

    def nodes(self) -> List[int]:
        """pglist_data addresses of the nodes."""
        nd = self.ctx.symbol("node_data")
        if nd is None:
            return [self.sym("contig_page_data")]
        n = self.ctx.s32(self.sym("nr_node_ids")) if self.ctx.symbol("nr_node_ids") else 1
        if not 0 < n <= 1024:
            raise DumpFilterError(f"nr_node_ids {n} is not a plausible node count")
        ptrs = struct.unpack("<%dQ" % n, self.ctx.read(nd, 8 * n))
        return [p for p in ptrs if p]


def _free_pages(r: _Reader) -> int:
    t = r.t
    zsize = t.sizeof("zone")
    zones = t.member("pglist_data", "node_zones")
    nzones = zones.size // zsize
    nr_free = r.enum("NR_FREE_PAGES")
    vm_stat = t.member_offset("zone", "vm_stat")
    present = t.member_offset("zone", "present_pages")
    total = 0
    for node in r.nodes():
        for z in range(nzones):
            zone = node + zones.offset + z * zsize
            if r.ctx.u64(zone + present) == 0:
                continue
            total += r.s64(zone + vm_stat + 8 * nr_free)
    return total


def _buffers(r: _Reader) -> int:
    """nr_blockdev_pages(): nrpages of every inode of the bdev superblock."""
    t = r.t
    sb = r.ctx.u64(r.sym("blockdev_superblock"))
    head = sb + t.member_offset("super_block", "s_inodes")
    link = t.member_offset("inode", "i_sb_list")
    nrpages = t.member_offset("inode", "i_data.nrpages")
    total, node, seen = 0, r.ctx.u64(head), set()
    while node != head:
        if node in seen or len(seen) > 1 << 20:
            raise DumpFilterError(f"blockdev_superblock inode list is corrupt at {node:#x}")
        seen.add(node)
        total += r.ctx.u64(node - link + nrpages)
        node = r.ctx.u64(node)
    return total


def _hugetlb(r: _Reader):
    t = r.t
    base = r.sym("hstates")
    n = r.ctx.s32(r.sym("hugetlb_max_hstate"))
    size = t.sizeof("hstate")
    o_order = t.member("hstate", "order")
    o_nr = t.member_offset("hstate", "nr_huge_pages")
    o_free = t.member_offset("hstate", "free_huge_pages")
    total = free = 0
    for i in range(max(0, min(n, 16))):
        h = base + i * size
        order = r.ctx.u32(h + o_order.offset)
        if not order:
            continue
        total += r.ctx.u64(h + o_nr) << order
        free += r.ctx.u64(h + o_free) << order
    return total, free


def _swap(r: _Reader):
    t = r.t
    n = r.ctx.u32(r.sym("nr_swapfiles"))
    base = r.sym("swap_info")
    o_flags = t.member_offset("swap_info_struct", "flags")
    o_pages = t.member_offset("swap_info_struct", "pages")
    inuse = t.member("swap_info_struct", "inuse_pages")
    total = used = 0
    for i in range(min(n, 64)):
        si = r.ctx.u64(base + 8 * i)
        if not si or not r.ctx.u64(si + o_flags) & SWP_USED:
            continue
        total += r.ctx.u32(si + o_pages)
        used += r.ctx.u64(si + inuse.offset) if inuse.size == 8 else r.ctx.u32(si + inuse.offset)
    return total, used


def read_kmem(ctx) -> Dict:
    """{"page_size", "values": {LINE: pages}, "errors": [...]}; a line
    whose inputs cannot be read is absent from values."""
    r = _Reader(ctx)
    v: Dict[str, int] = {}
    errors: List[str] = []

    def get(name: str, fn):
        try:
            v[name] = fn()
        except (DumpFilterError, KeyError) as e:
            msg = e.message if isinstance(e, FaultError) else str(e)
            errors.append(f"{name}: {msg}")

    def total_ram():
        a = ctx.symbol("_totalram_pages")
        return ctx.u64(a if a is not None else r.sym("totalram_pages"))

    get("TOTAL MEM", total_ram)
    get("FREE", lambda: _free_pages(r))
    if "TOTAL MEM" in v and "FREE" in v:
        v["USED"] = v["TOTAL MEM"] - v["FREE"]
    get("BUFFERS", lambda: _buffers(r))

    def cached():
        swapcache = r.node_stat("NR_SWAPCACHE") if r.t.enumerator("NR_SWAPCACHE") is not None else 0
        return max(0, r.node_stat("NR_FILE_PAGES") - swapcache - v["BUFFERS"])

    if "BUFFERS" in v:
        get("CACHED", cached)

    def slab():
        if r.t.enumerator("NR_SLAB_RECLAIMABLE_B") is not None:
            return r.node_stat("NR_SLAB_RECLAIMABLE_B") + r.node_stat("NR_SLAB_UNRECLAIMABLE_B")
        return r.node_stat("NR_SLAB_RECLAIMABLE") + r.node_stat("NR_SLAB_UNRECLAIMABLE")

    get("SLAB", slab)
    hugetlb: Optional[tuple] = None
    try:
        hugetlb = _hugetlb(r)
        v["TOTAL HUGE"], v["HUGE FREE"] = hugetlb
    except DumpFilterError as e:
        errors.append(f"TOTAL HUGE: {e}")
    try:
        v["TOTAL SWAP"], v["SWAP USED"] = _swap(r)
        v["SWAP FREE"] = v["TOTAL SWAP"] - v["SWAP USED"]
    except DumpFilterError as e:
        errors.append(f"TOTAL SWAP: {e}")

    def commit_limit():
        kb = ctx.u64(r.sym("sysctl_overcommit_kbytes"))
        if kb:
            allowed = kb // ((ctx.info.page_size or 4096) // 1024)
        else:
            if hugetlb is None or "TOTAL MEM" not in v:
                raise DumpFilterError("needs TOTAL MEM and the huge page counts")
            ratio = ctx.s32(r.sym("sysctl_overcommit_ratio"))
            allowed = (v["TOTAL MEM"] - hugetlb[0]) * ratio // 100
        return allowed + v.get("TOTAL SWAP", 0)

    get("COMMIT LIMIT", commit_limit)
    get("COMMITTED", lambda: max(0, r.s64(r.sym("vm_committed_as")
                                          + r.t.member_offset("percpu_counter", "count"))))
    return {"page_size": ctx.info.page_size or 4096, "values": v, "errors": errors}


def kmem_lines(km: Dict) -> List[str]:
    if km.get("error"):
        return [f"kmem: {km['error']}"]
    v, ps = km["values"], km["page_size"]
    out = [HEADER]

    def row(name: str, of: Optional[str] = None, base: Optional[str] = None):
        if name not in v:
            return
        n = v[name]
        size = pages_to_size(n, ps)
        if of is None:
            out.append("%13s  %7d  %11s         ----" % (name, n, size))
        else:
            whole = v.get(base, 0)
            pct = (n * 100 // whole) if whole and n else 0
            out.append("%13s  %7d  %11s  %3d%% of %s" % (name, n, size, pct, of))

    row("TOTAL MEM")
    for name in ("FREE", "USED", "BUFFERS", "CACHED", "SLAB"):
        row(name, "TOTAL MEM", "TOTAL MEM")
    if "TOTAL HUGE" in v:
        out.append("")
        row("TOTAL HUGE")
        row("HUGE FREE", "TOTAL HUGE", "TOTAL HUGE")
    out.append("")
    row("TOTAL SWAP")
    row("SWAP USED", "TOTAL SWAP", "TOTAL SWAP")
    row("SWAP FREE", "TOTAL SWAP", "TOTAL SWAP")
    if "COMMIT LIMIT" in v or "COMMITTED" in v:
        out.append("")
        row("COMMIT LIMIT")
        if v.get("COMMIT LIMIT"):
            row("COMMITTED", "TOTAL LIMIT", "COMMIT LIMIT")
        else:
            row("COMMITTED")
    out.extend(f"kmem: {e}" for e in km["errors"])
    return out


__all__ = ["read_kmem", "kmem_lines"]
