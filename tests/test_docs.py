"""The docs tell the truth: every option the parsers take is in the man
pages and the README, every option they name exists, and pip installs the
man pages where man finds them."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _man_options(page: str) -> set:
    text = (REPO / "man" / page).read_text().replace("\\-", "-")
    return set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", text))


def _parser_options(parser) -> set:
    return {s for a in parser._actions for s in a.option_strings}


def test_dumpfilter_man_page_lists_exactly_the_options():
    from dumpfilter.cli.options import option_strings

    parser = set(option_strings())
    man = _man_options("dumpfilter.8")
    assert parser - man == set()
    # Everything the man page calls an option is one (bar words in prose).
    assert {o for o in man - parser if o not in ("-incomplete", "-utils")} == set(), man - parser


def test_report_man_page_lists_exactly_the_options():
    from dumpfilter.report.cli import build_parser

    parser = _parser_options(build_parser())
    man = _man_options("dumpfilter-report.1")
    assert parser - man == set()
    # crash commands named in prose: "bt -a", "kmem -i".
    known_elsewhere = {"--dump-dmesg", "--split", "-1", "-dbg", "-a", "-i"}
    assert man - parser - known_elsewhere == set()


def test_triage_man_page_lists_exactly_the_options():
    from dumpfilter.fleet.cli import build_parser

    parser = _parser_options(build_parser())
    man = _man_options("dumpfilter-triage.1")
    assert parser - man == set()
    assert man - parser - {"--split"} == set()


def test_readme_options_exist():
    """Every option the README's usage tables name is one of the tools'."""
    from dumpfilter.cli.options import option_strings
    from dumpfilter.fleet.cli import build_parser as triage_parser
    from dumpfilter.report.cli import build_parser as report_parser

    known = (set(option_strings()) | _parser_options(report_parser())
             | _parser_options(triage_parser()))
    text = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| *`([^`]+)`", text, re.M)
    named = {tok for row in rows for tok in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", row)}
    assert named and named <= known, named - known
    for opt in ("--check-params", "--dry-run", "--work-dir", "--non-mmap", "--partial-dmesg"):
        assert opt in named, opt


@pytest.mark.slow
def test_pip_install_puts_man_pages_where_man_finds_them(tmp_path):
    if shutil.which("man") is None:
        pytest.skip("man is not installed")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(REPO)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (venv / "share/man/man8/dumpfilter.8").is_file()
    assert (venv / "share/man/man1/dumpfilter-report.1").is_file()
    env = dict(os.environ, PATH=f"{venv / 'bin'}:/usr/bin:/bin")
    env.pop("MANPATH", None)
    for name, where in (("dumpfilter", "man8"), ("dumpfilter-report", "man1"),
                        ("dumpfilter-triage", "man1")):
        w = subprocess.run(["man", "-w", name], capture_output=True, text=True, env=env)
        assert w.returncode == 0, w.stderr
        assert w.stdout.strip() == str(venv / "share/man" / where / f"{name}.{where[-1]}")
