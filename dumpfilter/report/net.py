"""``--net``: the network devices of a task's network namespace and their
IPv4 addresses, as crash's ``net`` prints them.

Reads: the panic task's (else init's) ``nsproxy->net_ns`` (``struct net``)
and its ``dev_base_head`` list of ``net_device.dev_list``;
``net_device.name``; ``net_device.ip_ptr`` (``struct in_device``) ->
``ifa_list`` -> ``in_ifaddr.ifa_address`` (network byte order) /
``ifa_next``.
"""
from __future__ import annotations

import socket
from typing import Dict, List

from dumpfilter.errors import FaultError

HEADER = "   NET_DEVICE     NAME   IP ADDRESS(ES)"


def read_net(ctx, sysinfo) -> Dict:
    t = ctx.btf
    m = t.member_offset
    pt = (sysinfo or {}).get("panic_task")
    task = int(pt["task"], 16) if pt else ctx.kallsyms.require("init_task")
    nsproxy = ctx.u64(task + m("task_struct", "nsproxy"))
    net = ctx.u64(nsproxy + m("nsproxy", "net_ns"))
    head = net + m("net", "dev_base_head")
    link = m("net_device", "dev_list")
    name_off, name_len = m("net_device", "name"), t.member("net_device", "name").size
    ip_ptr = m("net_device", "ip_ptr")
    ifa_list = m("in_device", "ifa_list")
    ifa_addr, ifa_next = m("in_ifaddr", "ifa_address"), m("in_ifaddr", "ifa_next")
    devs, errors = [], []
    node = ctx.u64(head)
    while node != head and len(devs) < 1 << 16:
        dev = node - link
        try:
            name = ctx.read(dev + name_off, name_len).split(b"\0", 1)[0].decode("latin-1")
            addrs = []
            ind = ctx.u64(dev + ip_ptr)
            ifa = ctx.u64(ind + ifa_list) if ind else 0
            while ifa and len(addrs) < 256:
                addrs.append(socket.inet_ntoa(ctx.read(ifa + ifa_addr, 4)))
                ifa = ctx.u64(ifa + ifa_next)
            devs.append({"net_device": f"{dev:x}", "name": name, "ipv4": addrs})
            node = ctx.u64(node)
        except FaultError as e:
            errors.append(f"net_device {dev:#x} not in the dump ({e.message})")
            break
    return {"devices": devs, "errors": errors}


def net_lines(sec: Dict) -> List[str]:
    if sec.get("error"):
        return [f"net: {sec['error']}"]
    out = [HEADER]
    out.extend("%16s  %-6s %s" % (d["net_device"], d["name"], ", ".join(d["ipv4"]))
               for d in sec["devices"])
    out.extend(f"net: {e}" for e in sec["errors"])
    return out


__all__ = ["read_net", "net_lines"]
