"""makedumpfile's whole command line: --check-params decides as
makedumpfile 1.7.2 does (the oracle runs the same lines), its tuning options
are accepted without changing a byte, the options we do not implement are
refused by name, every created file is 0600, and a -l/-c run imports none of
the optional packages."""
import os
import shutil
import stat
import subprocess
import sys

import pytest

from clitools import run_cli

#: (command line, valid?) — kdump scripts' lines and makedumpfile's rules.
CHECK_LINES = [
    ("-l --message-level 7 -d 31 /proc/vmcore /x", True),
    ("-F -l -d 31 /proc/vmcore", True),
    ("-F -l --message-level 7 -d 31 /proc/vmcore", True),
    ("-c -d 31 /proc/vmcore /var/crash/dump-incomplete", True),
    ("-l -d 31 --num-threads=4 /proc/vmcore /x", True),
    ("-l -d 31 --num-threads 0 --split /proc/vmcore /x /y", True),
    ("-z -d 1,31 -L 512M /proc/vmcore /x", True),
    ("--cyclic-buffer 1024 --work-dir /tmp --non-mmap -b 8 -l -d 31 /proc/vmcore /x", True),
    ("--dry-run -c -d 31 /proc/vmcore /x", True),
    ("-E -d 31 /proc/vmcore /x", True),
    ("--split -c -d 31 /proc/vmcore /a /b /c", True),
    ("--reassemble /a /b /c", True),
    ("-R /x", True),
    ("--dump-dmesg /proc/vmcore /x", True),
    ("--dump-dmesg --partial-dmesg /proc/vmcore /x", True),
    ("--show-stats -D -f -l -d 31 /proc/vmcore /x", True),
    ("-c -l -d 31 /proc/vmcore /x", True),  # the last codec counts
    ("-cd31 --num-th=2 /proc/vmcore /x", True),  # clustered, abbreviated
    ("/proc/vmcore -l /x -d 31", True),  # options after paths (GNU getopt)
    ("-d 99 -l /proc/vmcore /x", False),
    ("-d 32 /proc/vmcore /x", False),
    ("--message-level 32 -l -d 31 /proc/vmcore /x", False),
    ("-L 0 -l -d 31 /proc/vmcore /x", False),
    ("-c -E -d 31 /proc/vmcore /x", False),
    ("-F --split -d 31 /proc/vmcore /a /b", False),
    ("-F -l -d 31 /proc/vmcore /x", False),
    ("-l -d 31 /proc/vmcore", False),
    ("-l -d 31 /proc/vmcore /x /y", False),
    ("--split -d 31 /proc/vmcore /a", False),
    ("--num-threads 2 --split -d 31 /proc/vmcore /a /b", False),
    ("--num-threads 2 -E -d 31 /proc/vmcore /a", False),
    ("-R -d 31 /x", False),
    ("-R -c /x", False),
    ("-R /x /y", False),
    ("--reassemble -c /a /b /c", False),
    ("--reassemble --dry-run /a /b /c", False),
    ("--dry-run --dump-dmesg /proc/vmcore /x", False),
    ("--partial-dmesg -l -d 31 /proc/vmcore /x", False),
    ("--split -E -d 31 /proc/vmcore /a /b /c", False),
    ("--bogus -l -d 31 /proc/vmcore /x", False),
]


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_check(argv0, line):
    # Run from another directory (nothing may appear there): this
    # checkout's package first on the path.
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([*argv0, "--check-params", *line.split()], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=60, env=env)


@pytest.mark.parametrize("line,valid", CHECK_LINES)
def test_check_params(line, valid, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = _run_check([sys.executable, "-m", "dumpfilter"], line.replace("/x", "x"))
    assert r.returncode == (0 if valid else 1), (line, r.stdout, r.stderr)
    assert os.listdir(tmp_path) == []  # nothing read, nothing created
    if valid:
        assert r.stdout == r.stderr == ""
    else:
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("dumpfilter: ") and "Traceback" not in r.stderr
        assert "unrecognized arguments: /proc/vmcore" not in r.stderr


@pytest.mark.oracle
@pytest.mark.parametrize("line,valid", CHECK_LINES)
def test_check_params_agrees_with_makedumpfile(line, valid, tmp_path, monkeypatch):
    """The expectation in CHECK_LINES is makedumpfile 1.7.2's own answer."""
    mdf = shutil.which("makedumpfile")
    if mdf is None:
        pytest.skip("makedumpfile is not installed")
    monkeypatch.chdir(tmp_path)
    r = _run_check([mdf], line.replace("/x", "x"))
    assert r.returncode == (0 if valid else 1), (line, r.stdout, r.stderr)


@pytest.mark.parametrize("opt", ["-x vmlinux", "-i vmcoreinfo", "-g out", "-X", "-e",
                                 "--config f", "--eppic m", "--mem-usage", "--vtop 0x1",
                                 "--diskset=d", "--xen-syms s", "--xen-vmcoreinfo v",
                                 "--xen_phys_start 0", "--extension e.so"])
def test_unimplemented_options_are_refused_by_name(opt, tmp_path):
    r = run_cli(*opt.split(), "-l", "-d", "31", tmp_path / "in", tmp_path / "out", check=False)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert f"option {opt.split()[0].split('=')[0]} is not supported" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.realdump
def test_tuning_options_change_no_byte(kdump_vmcore, tmp_path):
    base = tmp_path / "base"
    run_cli("-l", "-d", "31", "--message-level", "0", kdump_vmcore, base)
    want = base.read_bytes()
    work = tmp_path / "work"
    work.mkdir()
    variants = [["--cyclic-buffer", "1024"], ["--work-dir", work], ["--non-mmap"],
                ["--non-cyclic"], ["-b", "8"], ["--num-threads=2"],
                ["--cyclic-buffer", "1024", "--work-dir", work, "--non-mmap", "--non-cyclic",
                 "-b", "8", "--num-threads=2"]]
    for i, extra in enumerate(variants):
        out = tmp_path / f"v{i}"
        run_cli(*extra, "-l", "-d", "31", "--message-level", "0", kdump_vmcore, out)
        assert out.read_bytes() == want, extra
    # -F with a work dir keeps its bitmap there (and removes it).
    flat = tmp_path / "flat"
    with open(flat, "wb") as f:
        run_cli("-F", "--work-dir", work, "-l", "-d", "31", kdump_vmcore, stdout=f)
    assert os.listdir(work) == []
    rebuilt = tmp_path / "rebuilt"
    with open(flat, "rb") as f:
        run_cli("-R", rebuilt, stdin=f)
    assert rebuilt.read_bytes() == want


@pytest.mark.realdump
def test_dry_run_writes_nothing_and_reports(kdump_vmcore, tmp_path):
    out = tmp_path / "out"
    r = run_cli("--dry-run", "-c", "-d", "31", "--show-stats", kdump_vmcore, out)
    assert not out.exists() and os.listdir(tmp_path) == []
    assert "Remaining pages" in r.stdout and "--dry-run" in r.stdout
    r = run_cli("--dry-run", "-F", "-c", "-d", "31", kdump_vmcore)
    assert r.stdout == ""  # no stream


@pytest.mark.realdump
def test_every_created_file_is_0600(kdump_vmcore, tmp_path):
    os.umask(0o022)
    made = []

    def out(name):
        made.append(tmp_path / name)
        return made[-1]

    run_cli("-c", "-d", "31", "--message-level", "0", kdump_vmcore, out("kdump"))
    run_cli("-E", "-d", "31", "--message-level", "0", kdump_vmcore, out("elf"))
    run_cli("--split", "-l", "-d", "31", "--message-level", "0", kdump_vmcore,
            out("p1"), out("p2"))
    run_cli("--reassemble", "--message-level", "0", made[-2], made[-1], out("joined"))
    run_cli("--dump-dmesg", "--message-level", "0", kdump_vmcore, out("dmesg"))
    flat = tmp_path / "stream"
    with open(flat, "wb") as f:
        run_cli("-F", "-l", "-d", "31", kdump_vmcore, stdout=f)
    with open(flat, "rb") as f:
        run_cli("-R", out("rebuilt"), stdin=f)
    old = out("was0644")
    old.write_bytes(b"old")
    old.chmod(0o644)
    run_cli("-f", "-l", "-d", "31", "--message-level", "0", kdump_vmcore, old)
    for p in made:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


_OPTIONAL = ("zstandard", "cramjam", "isal", "xxhash", "tqdm")


@pytest.mark.parametrize("codec", ["-l", "-c"])
def test_collector_run_imports_no_optional_package(codec, tmp_path):
    from dumpfilter.testing.synthetic import build_sample

    vmcore = tmp_path / "s.vmcore"
    build_sample(str(vmcore), mem_mib=32, seed=3)
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "dumpfilter", codec, "-d", "31",
                        "--message-level", "7", str(vmcore), str(tmp_path / "out")],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 0, r.stderr
    imported = {ln.split("|")[-1].strip() for ln in r.stderr.splitlines()
                if ln.startswith("import time:")}
    top = {name.split(".")[0] for name in imported}
    assert top.isdisjoint(_OPTIONAL), top & set(_OPTIONAL)
