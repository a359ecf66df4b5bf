"""QEMU harness for real kdump captures (see harness.py)."""
