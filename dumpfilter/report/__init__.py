"""Crash-style analysis of a dump without a debug vmlinux.

Everything here reads the dumped kernel's own metadata: VMCOREINFO, the
kallsyms tables (``kallsyms``), the printk ring (``printk``), the BTF blob
(``btf``), and from those the task list (``tasks``) and the values behind
crash's ``sys`` banner (``sysinfo``). ``context.ReportContext`` ties a dump
source, its VMCOREINFO and a virtual-memory reader together and builds the
rest lazily.
"""
