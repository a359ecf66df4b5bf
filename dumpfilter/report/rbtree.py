"""In-order walk of a kernel red-black tree (``struct rb_root`` /
``rb_node``: ``rb_left``, ``rb_right`` offsets from the type source), as
``rb_first``/``rb_next`` visit it; depth and size bounded so a corrupt tree
ends in an error, not a loop."""
from __future__ import annotations

from typing import List

from dumpfilter.errors import DumpFilterError

MAX_DEPTH = 64
MAX_NODES = 1 << 20


def rb_inorder(ctx, root: int) -> List[int]:
    """Addresses of the ``rb_node``s under ``root`` (an ``rb_root``), in order."""
    t = ctx.btf
    left, right = t.member_offset("rb_node", "rb_left"), t.member_offset("rb_node", "rb_right")
    out: List[int] = []
    stack: List[int] = []
    node = ctx.u64(root)
    while stack or node:
        while node:
            stack.append(node)
            if len(stack) > MAX_DEPTH:
                raise DumpFilterError(f"rb-tree {root:#x} is deeper than {MAX_DEPTH}: corrupt")
            node = ctx.u64(node + left)
        node = stack.pop()
        out.append(node)
        if len(out) > MAX_NODES:
            raise DumpFilterError(f"rb-tree {root:#x} has more than {MAX_NODES} nodes: corrupt")
        node = ctx.u64(node + right)
    return out


__all__ = ["rb_inorder"]
