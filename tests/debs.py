"""One file out of a Debian package, for the tests' oracles (debug vmlinux
files of Debian's kernels, x86_64 and arm64)."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def extract_member(deb: Path, member: str, out: Path) -> Path:
    """Extract ``member`` (a ``./``-rooted path in the package) of ``deb`` to
    ``out``, atomically (through a temporary directory beside ``out``).
    Raises RuntimeError when dpkg-deb or tar fails or the member is missing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract.", dir=out.parent))
    try:
        p1 = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                              stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        p2 = subprocess.run(["tar", "-x", "-C", str(tmp), member], stdin=p1.stdout,
                            capture_output=True, text=True)
        p1.stdout.close()
        rc1 = p1.wait()
        extracted = tmp / member.removeprefix("./")
        if rc1 != 0 or p2.returncode != 0 or not extracted.is_file():
            raise RuntimeError(f"extracting {member} from {deb} failed "
                               f"(dpkg-deb rc={rc1}, tar rc={p2.returncode}): "
                               f"{p2.stderr.strip()[-300:]}")
        os.replace(extracted, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
