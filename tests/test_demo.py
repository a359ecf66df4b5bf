"""The README's demo command runs the main job end to end and verifies it."""
import subprocess
import sys


def test_demo_runs_and_verifies():
    r = subprocess.run([sys.executable, "-m", "dumpfilter.demo"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "read back and verified" in r.stdout
    assert "dumpfilter Completed." in r.stdout
    assert "Pages filled with zero" in r.stdout
