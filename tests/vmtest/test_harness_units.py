"""Pieces of the VM harness that need no QEMU (fast; not marked vmtest)."""
from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest

from vmtest import harness

REPO = Path(__file__).resolve().parents[2]


def test_module_load_order_puts_dependencies_first(tmp_path, monkeypatch):
    mdir = tmp_path / "lib" / "modules" / harness.KVER
    mdir.mkdir(parents=True)
    (mdir / "modules.dep").write_text(
        "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n"
        "kernel/fs/jbd2/jbd2.ko:\nkernel/fs/mbcache.ko:\nkernel/lib/crc16.ko:\n"
        "kernel/crypto/crc32c_generic.ko:\n"
        "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko "
        "kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio.ko:\nkernel/drivers/virtio/virtio_ring.ko:\n"
        "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko "
        "kernel/drivers/virtio/virtio_ring.ko\n")
    order = harness.module_load_order(tmp_path)
    assert order[0] == "kernel/crypto/crc32c_generic.ko"
    assert len(order) == len(set(order)) == 9
    for mod, deps in (("kernel/fs/ext4/ext4.ko", ("kernel/fs/jbd2/jbd2.ko", "kernel/lib/crc16.ko")),
                      ("kernel/drivers/block/virtio_blk.ko", ("kernel/drivers/virtio/virtio.ko",))):
        for d in deps:
            assert order.index(d) < order.index(mod)


def test_kdump_header_and_bitmap2(tmp_path):
    bs = 4096
    hdr = bytearray(bs)
    hdr[:8] = b"KDUMP   "
    struct.pack_into("<iiII", hdr, 428, bs, 2, 4, 1000)
    body = bytearray(bs * 2) + bytes(2 * bs) + b"\x01" * (2 * bs)
    p = tmp_path / "k"
    p.write_bytes(bytes(hdr) + bytes(body))
    h = harness.kdump_header(p)
    assert (h["block_size"], h["sub_hdr_size"], h["bitmap_blocks"], h["max_mapnr"]) == (bs, 2, 4, 1000)
    assert harness.bitmap2(p) == b"\x01" * (2 * bs)


def test_figures_table_lists_three_lines():
    res = harness.VMResult(config={"name": "x", "mem_mib": 1024, "crashkernel": "128M"}, ok=True,
                           runs={"ours_l": {"rc": "0", "wall_ms": "1500", "maxrss_kb": "20000",
                                            "hwm_polled_kb": "19000", "minfree_kb": "100",
                                            "minavail_kb": "200", "avail_before_kb": "300"}})
    t = harness.figures_table(res)
    assert "| 0 | 1.50 s (0.00 s) | 20,000 kB (19,000) | 100 kB | 200 kB | 300 kB |" in t
    assert t.count("(not run)") == 2


def test_make_capture_sizes():
    spec = importlib.util.spec_from_file_location("make_capture", REPO / "bench" / "make_capture.py")
    mc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mc)
    assert mc.parse_size_mib("4G") == 4096
    assert mc.parse_size_mib("12GiB") == 12288
    assert mc.parse_size_mib("1536M") == 1536
    assert mc.label(12288) == "12G" and mc.label(1536) == "1536M"
    with pytest.raises(Exception):
        mc.parse_size_mib("lots")


def test_guest_init_runs_the_collector_lines_verbatim():
    text = (Path(harness.GUEST) / "init").read_text()
    for line in ("dumpfilter -l --message-level 7 -d 31 /proc/vmcore /dump/vmcore-incomplete",
                 "dumpfilter -F -l -d 31 /proc/vmcore > /dump/vmcore.flat",
                 "makedumpfile -l --message-level 7 -d 31 /proc/vmcore /dump/mdf.kdump",
                 "mv /dump/vmcore-incomplete /dump/vmcore"):
        assert line in text
