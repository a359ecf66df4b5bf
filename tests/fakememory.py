"""A kernel memory made of (address -> bytes) segments, for report tests
that build kallsyms tables, printk rings or stacks by hand."""
from dumpfilter.errors import FaultError


class FakeMemory:
    def __init__(self, segments=None):
        self.segments = dict(segments or {})

    def add(self, addr, data):
        self.segments[addr] = bytes(data)

    def read(self, vaddr, n):
        for base, data in self.segments.items():
            if base <= vaddr and vaddr + n <= base + len(data):
                return data[vaddr - base:vaddr - base + n]
        raise FaultError("not in fake memory", vaddr)
