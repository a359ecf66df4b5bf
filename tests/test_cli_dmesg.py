"""``dumpfilter --dump-dmesg`` writes what ``makedumpfile --dump-dmesg`` writes."""
import pytest

from clitools import run_cli

pytestmark = pytest.mark.realdump


@pytest.mark.parametrize("which", ["raw", "d31"])
def test_dump_dmesg_equals_makedumpfile(kdump_vmcore, mdf_d31_zlib, reference_dir, tmp_path, which):
    src = kdump_vmcore if which == "raw" else mdf_d31_zlib
    out = tmp_path / "dmesg"
    r = run_cli("--dump-dmesg", src, out, check=False)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == (reference_dir / "dmesg.txt").read_bytes()
    # The log file is not overwritten without -f.
    r = run_cli("--dump-dmesg", src, out, check=False)
    assert r.returncode == 1 and "-f" in r.stderr
