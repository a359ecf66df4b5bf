"""Text rendering of a collected report (see ``dumpfilter.report.cli``):
crash's ``sys`` banner, the filtering summary, ``ps``, ``bt`` and the
registers. Pure functions from the report dict to lines; the CLI prints.
"""
from __future__ import annotations

from typing import Dict, List

from dumpfilter.report.backtrace import format_regs, frame_lines
from dumpfilter.report.sysinfo import format_banner

PS_HEADER = "      PID    PPID  CPU       TASK        ST  %MEM      VSZ      RSS  COMM"

#: crash's two-letter ps states by task state letter.
PS_STATES = {"R": "RU", "S": "IN", "D": "UN", "T": "ST", "t": "TR", "X": "DE", "Z": "ZO",
             "P": "PA", "I": "ID"}


def _label(key: str, value: str) -> str:
    return f"{key:>12}: {value}"


def banner_lines(rep: Dict) -> List[str]:
    out = [_label("KERNEL", rep["kernel"]["text"])]
    files = rep["dumpfile"]["files"]
    tags = rep["dumpfile"]["tags"]
    tag_text = (" " + "".join(f" [{t}]" for t in tags)) if tags else ""
    if len(files) == 1:
        out.append(_label("DUMPFILE", files[0] + tag_text))
    else:
        out.append(_label("DUMPFILES", files[0] + tag_text))
        out.extend(" " * 14 + f + tag_text for f in files[1:])
    out.extend(format_banner(rep["sys"]["values"]))
    return out


def filtered_lines(rep: Dict) -> List[str]:
    f = rep["filtered"]
    out = ["", "FILTERED:",
           _label("FORMAT", f["format"]),
           _label("DUMP LEVEL", str(f["dump_level"])),
           _label("COMPRESSION", f["compression"])]
    if f.get("ram_pages") is not None:
        out.append(_label("RAM PAGES", str(f["ram_pages"])))
        out.append(_label("PRESENT", f"{f['present_pages']}  (excluded: {f['excluded_pages']})"))
    classes = f.get("excluded_by_class")
    if classes:
        out.append(_label("EXCLUDED", ", ".join(f"{k} {v}" for k, v in classes.items())))
    if f.get("how"):
        out.append(_label("COUNTS", f["how"]))
    for e in f.get("errors", []):
        out.append(_label("NOTE", e))
    return out


def _num(v, width: int) -> str:
    return f"{v:>{width}}" if v is not None else f"{'-':>{width}}"


def ps_lines(rep: Dict) -> List[str]:
    ps = rep["ps"]
    out = [PS_HEADER]
    for r in ps["rows"]:
        mark = "> " if r["active"] else "  "
        comm = f"[{r['comm']}]" if r["kthread"] else r["comm"]
        pmem = f"{r['pmem']:5.1f}" if r["pmem"] is not None else "    -"
        out.append(f"{mark}{r['pid']:7d} {r['ppid']:7d} {r['cpu']:3d}  {r['task']:>16}"
                   f" {PS_STATES.get(r['state'], r['state']):>3} {pmem} "
                   f"{_num(r['vsz'], 8)} {_num(r['rss'], 8)}  {comm}")
    out.extend(f"ps: {e}" for e in ps["errors"])
    return out


def bt_lines(rep: Dict) -> List[str]:
    bt = rep["bt"]
    if bt.get("error"):
        return [f"bt: {bt['error']}"]
    head = (f'PID: {bt["pid"]:<7d}  TASK: {int(bt["task"], 16):<16x}  CPU: {bt["cpu"]:<3d}  '
            f'COMMAND: "{bt["comm"]}"')
    if bt["method"] == "stack scan":
        head += "  (stack scan)"
    out = [head]
    out.extend(frames_text(bt["frames"]))
    out.extend(f"bt: {e}" for e in bt["errors"])
    return out


def frames_text(frames) -> List[str]:
    """Frame dicts (as ``cli._bt`` stores them) in crash's bt layout."""
    out: List[str] = []
    for f in frames:
        if not f.get("shown", True):
            continue
        regs = {k: int(v, 16) for k, v in f["regs"].items()} if f.get("regs") else None
        out.extend(frame_lines(f["level"], int(f["stack"], 16), f["symbol"], int(f["pc"], 16),
                               f.get("module"), f["scanned"], regs, f.get("exception_rip"),
                               f.get("stack_name")))
    return out


def regs_lines(rep: Dict) -> List[str]:
    regs = rep["regs"]
    out: List[str] = []
    if regs.get("error"):
        return [f"regs: {regs['error']}"]
    for cpu in regs["cpus"]:
        out.append(f"CPU {cpu['cpu']}  (NT_PRSTATUS note {cpu['note']}, pid {cpu['pid']}):"
                   f"  {cpu['rip_symbol']}")
        out.extend(format_regs({k: int(v, 16) for k, v in cpu["regs"].items()}))
    return out


def mod_lines(rep: Dict) -> List[str]:
    mods = rep["mod"]
    if mods.get("error"):
        return [f"mod: {mods['error']}"]
    out = ["     MODULE       NAME                      BASE            SIZE  SYMBOLS"]
    for m in mods["modules"]:
        out.append(f"{m['address']:>16}  {m['name']:<20} {m['base']:>16} {m['size']:>8}  "
                   f"{m['nsyms'] if m['nsyms'] is not None else '-'}")
    out.extend(f"mod: {e}" for e in mods["errors"])
    return out


#: Printed order of the sections and crash's command for each header.
SECTION_HEADERS = (("sys", "sys"), ("bt", "bt"), ("bt_all", "bt -a"),
                   ("foreach_bt", "foreach bt"), ("regs", "regs"), ("ps", "ps"),
                   ("runq", "runq"), ("kmem", "kmem -i"), ("mount", "mount"),
                   ("files", "files"), ("net", "net"), ("mod", "mod"), ("log", "log"))


def _log_text(rep: Dict) -> List[str]:
    log = rep["log"]
    text = log.get("time_text") if "time_text" in log else log.get("text")
    if text is None:
        return [f"log: {log.get('error') or 'wall-clock timestamps unavailable'}"]
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")


def _section_lines(name: str, rep: Dict) -> List[str]:
    if name == "sys":
        return banner_lines(rep) + filtered_lines(rep)
    if name in ("bt_all", "foreach_bt"):
        from dumpfilter.report.btall import bts_lines

        return bts_lines(rep[name], name.replace("_", "-"))
    if name == "kmem":
        from dumpfilter.report.kmem import kmem_lines

        return kmem_lines(rep["kmem"])
    if name == "runq":
        from dumpfilter.report.runq import runq_lines

        return runq_lines(rep["runq"])
    if name in ("mount", "files"):
        from dumpfilter.report import vfs

        return (vfs.mount_lines if name == "mount" else vfs.files_lines)(rep[name])
    if name == "net":
        from dumpfilter.report.net import net_lines

        return net_lines(rep["net"])
    if name == "log":
        return _log_text(rep)
    return {"bt": bt_lines, "regs": regs_lines, "ps": ps_lines, "mod": mod_lines}[name](rep)


def render_text(rep: Dict, sections) -> str:
    """The whole text report: the sections asked for in a fixed order;
    when there is more than one, each starts with ``== <crash command> ==``
    and a blank line separates them."""
    names = [(n, h) for n, h in SECTION_HEADERS if n in sections]
    out: List[str] = []
    for k, (name, head) in enumerate(names):
        if k:
            out.append("")
        if len(names) > 1:
            out.append(f"== {head} ==")
        out.extend(_section_lines(name, rep))
    return "\n".join(out) + ("\n" if out else "")
