"""The ``vmtest`` marker and the figures table at the end of the test session."""
from __future__ import annotations

FIGURES: list = []


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "vmtest: boots Debian's 6.1 kernel under QEMU (TCG) for a real kdump capture "
        "(minutes; deselect with -m 'not vmtest')")


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("dumpfilter in a real capture kernel (in-guest figures, TCG)")
        for block in FIGURES:
            terminalreporter.write_line(block)
            terminalreporter.write_line("")
