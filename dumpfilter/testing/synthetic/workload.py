"""Workload placement and page contents of a synthetic x86_64 vmcore: which
pfn holds what (kernel, slab, page tables, anonymous, page cache, buddy
blocks, folios, hwpoison, offline, unaccepted...) and the bytes each page
carries. A mixin of :class:`dumpfilter.testing.synthetic.kernel._Builder`,
which owns the state these methods fill (``cls``, ``pages``, ``spec``...).
"""

from __future__ import annotations

import random
import struct
from typing import Optional

from .truth import (ANON, FILE, FILE_PRIVATE, FREE, HUGETLB, HWPOISON, KERNEL, KERNEL_ALLOC,
                    NOT_RAM, OFFLINE, PGTABLE, SHMEM, SLAB, SWAPCACHE, UNACCEPTED)

PAGE = 4096
SECTION_SIZE_BITS = 27
PAGES_PER_SECTION = 1 << (SECTION_SIZE_BITS - 12)
MAX_ORDER = 10  # LENGTH(zone.free_area) = 11
UNASSIGNED = 255  # temporary class of RAM pfns during placement
IMG_STATIC_MEMSECTION = 0x400000  # kernel image offset of the bss holding a static mem_section[]


class WorkloadMixin:
    # ------------------------------------------------------------------ workload placement
    def _free_at(self, pfn: int, n: int) -> bool:
        return pfn >= 0 and pfn + n <= self.max_pfn and \
            bytes(self.cls[pfn:pfn + n]) == bytes([UNASSIGNED]) * n

    def _find_aligned(self, order: int) -> Optional[int]:
        n = 1 << order
        cands = [p for a, b in self.ram for p in range(-(-(a // self.P) // n) * n, b // self.P - n + 1, n)]
        if not cands:
            return None
        start = self.rng.randrange(len(cands))
        for p in cands[start:] + cands[:start]:
            if self._free_at(p, n):
                return p
        return None

    def _set(self, pfn: int, n: int, cls: int, kind: str = "") -> None:
        self.cls[pfn:pfn + n] = bytes([cls]) * n
        if kind:
            for p in range(pfn, pfn + n):
                self.page_kind[p] = kind

    def _folio(self, pfn: int, order: int, cls: int, kind: str) -> bool:
        if not self._free_at(pfn, 1 << order):
            return False
        self._set(pfn, 1 << order, cls, kind)
        self.folios.append((pfn, order, kind))
        return True

    def _buddy_block(self, pfn: int, order: int, check: bool = True) -> bool:
        if check and not self._free_at(pfn, 1 << order):
            return False
        self._set(pfn, 1 << order, FREE)
        self.buddy.append((pfn, order))
        return True

    def place_workload(self) -> None:
        rng = self.rng
        # edge cases at section and 64k-pfn boundaries
        for s in range(1, (self.max_pfn >> 15) + 1):
            b = s * PAGES_PER_SECTION
            if b % 65536 == 0:
                if self.spec.straddle_buddy:
                    # Deliberately misaligned (a kernel would never build it): makedumpfile
                    # excludes 1 << order pages from the head, across the boundary.
                    self._buddy_block(b - 4, 3)
                self._folio(b - 1024, 9, HUGETLB, "hugetlb")
                if not self.spec.straddle_buddy:
                    self._folio(b - 512, 9, HUGETLB, "hugetlb_anon")
            else:
                self._folio(b - 4, 2, FILE, "file_folio")  # last tail = last pfn of the section
        # folios and special pages anywhere
        specials = [(9, HUGETLB, "hugetlb"), (9, HUGETLB, "hugetlb_anon"), (9, ANON, "thp")]
        specials += [(2, FILE, "file_folio")] * 6
        if self.prof.types.get("unaccepted") is not None:
            p = self._find_aligned(MAX_ORDER)
            if p is not None:  # a MAX_ORDER block: head has the page type, no compound tails
                self._set(p, 1 << MAX_ORDER, UNACCEPTED)
                self.unaccepted.append(p)
        for order, cls, kind in specials:
            p = self._find_aligned(order)
            if p is not None:
                self._folio(p, order, cls, kind)
        for cls, count in ((HWPOISON, 2), (OFFLINE, 8)):
            p = self._find_aligned(3)
            if p is not None:
                self._set(p, count, cls)
        self._fill_runs(rng)

    def _fill_runs(self, rng: random.Random) -> None:
        kinds = [(FREE, 8), (FILE, 14), (FILE_PRIVATE, 3), (SHMEM, 4), (SWAPCACHE, 1), (ANON, 16),
                 (SLAB, 8), (PGTABLE, 2), (KERNEL_ALLOC, 8)]
        population = [k for k, w in kinds for _ in range(w)]
        pfn = 0
        while pfn < self.max_pfn:
            if self.cls[pfn] != UNASSIGNED:
                pfn += 1
                continue
            end = pfn
            while end < self.max_pfn and self.cls[end] == UNASSIGNED:
                end += 1
            while pfn < end:
                cls = rng.choice(population)
                n = min(end - pfn, rng.randint(1, 256) if cls == FREE else rng.randint(1, 48))
                if cls == FREE:
                    self._free_run(pfn, pfn + n)
                elif cls == SLAB:
                    self._slab_run(pfn, pfn + n, rng)
                else:
                    self._set(pfn, n, cls)
                pfn += n

    def _free_run(self, a: int, b: int) -> None:
        p = a
        while p < b:
            order = 0
            while order < MAX_ORDER and p % (2 << order) == 0 and p + (2 << order) <= b:
                order += 1
            self._buddy_block(p, order, check=False)
            p += 1 << order

    def _slab_run(self, a: int, b: int, rng: random.Random) -> None:
        p = a
        while p < b:
            if p % 2 == 0 and p + 2 <= b and rng.random() < 0.3:
                self._set(p, 2, SLAB, "slab_compound")
                self.folios.append((p, 1, "slab_compound"))
                p += 2
            else:
                self._set(p, 1, SLAB)
                p += 1

    # ------------------------------------------------------------------ page contents
    def make_corpus(self) -> None:
        rng = self.rng
        words = ("kernel", "mm", "ext4", "page", "cache", "alloc", "free", "zone", "dma32", "irq",
                 "sched", "task", "virtio", "blk", "inode", "dentry", "slab", "vmcore", "panic", "ok")
        lines = []
        for i in range(1400):
            lines.append(f"[{i * 7919 % 100000:6d}.{rng.randrange(10**6):06d}] "
                         + " ".join(rng.choice(words) for _ in range(rng.randint(3, 9)))
                         + f" id={rng.randrange(1 << 20)}\n")
        self.corpus = "".join(lines).encode()
        self.structs = [b"".join(struct.pack("<QQQQ", self.page_offset_base + rng.randrange(1 << 26) * 8,
                                             i, rng.randrange(1 << 32), 0xFFFF) for i in range(128))
                        for _ in range(16)]
        self.ints = [struct.pack("<1024I", *[rng.randrange(256) for _ in range(1024)]) for _ in range(8)]

    def content(self, kind: str) -> Optional[bytes]:
        rng = self.rng
        if kind == "zero":
            return None
        if kind == "text":
            off = rng.randrange(len(self.corpus) - PAGE)
            return self.corpus[off:off + PAGE]
        if kind == "random":
            return rng.randbytes(PAGE)
        if kind == "ints":
            return rng.choice(self.ints)
        if kind == "structs":
            return rng.choice(self.structs)
        if kind == "ptes":
            page = bytearray(PAGE)
            for i in range(rng.randrange(1, 64)):
                struct.pack_into("<Q", page, 8 * rng.randrange(512),
                                 (rng.randrange(self.max_pfn) << 12) | 0x67 | self.sme)
            return bytes(page)
        raise ValueError(kind)

    # zero probability and content kinds by class
    _CONTENT = {
        KERNEL: (0.2, ("structs", "text", "random")),
        KERNEL_ALLOC: (0.3, ("structs", "ints")),
        SLAB: (0.1, ("structs",)),
        PGTABLE: (0.05, ("ptes",)),
        ANON: (0.15, ("random", "text", "ints")),
        FILE: (0.03, ("text",)),
        FILE_PRIVATE: (0.05, ("text", "structs")),
        SHMEM: (0.1, ("text", "random")),
        SWAPCACHE: (0.05, ("random", "text")),
        FREE: (0.6, ("text",)),
        UNACCEPTED: (1.0, ()),
        HUGETLB: (0.3, ("random", "ints")),
        HWPOISON: (1.0, ()),
        OFFLINE: (0.5, ("text",)),
    }

    def fill_contents(self) -> None:
        rng = self.rng
        img0, img1 = self.kernel_paddr // PAGE, (self.kernel_paddr + self.ksize) // PAGE
        for pfn in range(self.max_pfn):
            cls = self.cls[pfn]
            if cls == NOT_RAM or pfn in self.structural:
                continue
            if img0 <= pfn < img1:
                off = (pfn - img0) * PAGE
                if off >= IMG_STATIC_MEMSECTION:
                    continue  # bss (holds the static mem_section[] when not EXTREME)
                zero_p = 0.0 if off < 0x200000 else (0.3 if off < 0x300000 else 0.85)
                kinds = ("text", "structs", "random")
            else:
                zero_p, kinds = self._CONTENT.get(cls, (0.5, ("structs",)))
            if rng.random() < zero_p or not kinds:
                continue
            data = self.content(rng.choice(kinds))
            if data is not None:
                self.pages[pfn] = data
