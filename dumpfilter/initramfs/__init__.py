"""The capture-kernel payload: ``python3 -m dumpfilter.initramfs OUT.cpio``.

A newc cpio archive (concatenable after any other initramfs) with this
interpreter, the shared libraries it and the extension modules need, only the
modules a collector run imports (compiled, no sources) and a runnable
``/usr/bin/dumpfilter``. What a run imports is found by running the collector
command lines on a synthetic sample (``record``), not from a list of names.
"""
from dumpfilter.initramfs.payload import Payload, build, makedumpfile_footprint

__all__ = ["Payload", "build", "makedumpfile_footprint"]
