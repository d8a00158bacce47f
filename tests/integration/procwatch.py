"""What a running process tree shows to other users: command lines and environments, from /proc."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Seen:
    """Everything gathered from a process tree while it ran."""

    cmdlines: dict[int, str] = field(default_factory=dict)
    environs: dict[int, dict[str, str]] = field(default_factory=dict)

    def texts(self) -> list[tuple[str, str]]:
        out = [(f"command line of {pid}", text) for pid, text in self.cmdlines.items()]
        out += [(f"environment of {pid}", "\n".join(f"{k}={v}" for k, v in env.items()))
                for pid, env in self.environs.items()]
        return out


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> list[int]:
    """root's descendants now alive (not root itself)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = _ppid(int(entry))
            if ppid is not None:
                parents[int(entry)] = ppid
    out, frontier = [], {root}
    while frontier:
        children = {pid for pid, ppid in parents.items() if ppid in frontier}
        out.extend(sorted(children))
        frontier = children
    return out


def read_process(pid: int) -> tuple[str, dict[str, str]] | None:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            env[key] = value
    return cmdline, env


def watch(root: int, seen: Seen) -> None:
    """Add what the tree under root shows now (including root)."""
    for pid in [root, *descendants(root)]:
        got = read_process(pid)
        if got is not None:
            seen.cmdlines[pid], seen.environs[pid] = got


def all_command_lines() -> str:
    """Every process's command line on this machine (what `ps -eo args` shows any user)."""
    lines = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                lines.append(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return "\n".join(lines)
