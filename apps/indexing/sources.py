"""Where Claude Code keeps its data, and the files of it worth indexing.

Read-only file-system walks and reads, no database: a scan over thousands of
unchanged files must cost only a directory walk and one stat per file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import BinaryIO

from django.conf import settings


@dataclass(frozen=True, slots=True)
class FoundFile:
    path: str
    root: str
    kind: str  # transcript | todo | task | plan | history
    device: int
    inode: int
    size: int
    mtime_ns: int


def config_roots() -> list[Path]:
    """Return the Claude Code config roots to index, as Claude Code resolves them."""
    configured = getattr(settings, "CLAUDEMON_CLAUDE_DIRS", [])
    if configured:
        candidates = [Path(p).expanduser() for p in configured]
    else:
        env = os.environ.get("CLAUDE_CONFIG_DIR", "")
        candidates = [Path(p.strip()).expanduser() for p in env.split(",") if p.strip()]
        xdg = os.environ.get("XDG_CONFIG_HOME", "").strip() or "~/.config"
        candidates += [
            Path("~/.claude").expanduser(),
            Path(xdg).expanduser() / "claude",
        ]
    roots: list[Path] = []
    for candidate in candidates:
        resolved = candidate.resolve()
        if resolved.is_dir() and resolved not in roots:
            roots.append(resolved)
    return roots


def files_scan(*, roots: list[Path]) -> list[FoundFile]:
    """Return every indexable file below the roots with its identity and size.

    Symbolic links below a root are never followed (a root itself may be one): a
    link in the Claude folder must not copy a file from elsewhere (a key, a
    credentials JSON) into a searchable index.
    """
    found: list[FoundFile] = []
    for root in roots:
        base = str(root)
        _walk(os.path.join(base, "projects"), base, "transcript", ".jsonl", found)
        _walk(os.path.join(base, "todos"), base, "todo", ".json", found, depth=0)
        _walk(os.path.join(base, "tasks"), base, "task", ".json", found)
        _walk(os.path.join(base, "plans"), base, "plan", ".md", found, depth=0)
        _add(os.path.join(base, "history.jsonl"), base, "history", found)
    return found


def _walk(
    folder: str,
    root: str,
    kind: str,
    suffix: str,
    found: list[FoundFile],
    depth: int = 8,
) -> None:
    if os.path.islink(folder):
        return
    try:
        entries = list(os.scandir(folder))
    except OSError:  # missing, unreadable, or vanished mid-walk
        return
    for item in entries:
        try:
            if item.is_dir(follow_symlinks=False):
                if depth > 0:
                    _walk(item.path, root, kind, suffix, found, depth - 1)
            elif item.name.endswith(suffix) and item.is_file(follow_symlinks=False):
                _append(item.path, item.stat(follow_symlinks=False), root, kind, found)
        except OSError:
            continue


def _add(path: str, root: str, kind: str, found: list[FoundFile]) -> None:
    try:
        stat = os.lstat(path)
    except OSError:
        return
    if S_ISREG(stat.st_mode):
        _append(path, stat, root, kind, found)


def source_open(path: str) -> BinaryIO:
    """Open a found file for reading, refusing a symbolic link put there since."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")


def _append(path: str, stat: os.stat_result, root: str, kind: str, found: list) -> None:
    found.append(
        FoundFile(
            path, root, kind, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns
        )
    )


def lines_read(
    handle: BinaryIO, *, limit: int, chunk: int
) -> Iterator[tuple[bytes | None, int]]:
    """Yield (line, size) per complete line, newline excluded; None for a longer one.

    Memory stays under limit + 2 chunks whatever a line's length: an over-long line
    is counted while it streams past, never held. A last line without its newline
    (still being written) is left for the next pass.
    """
    pending, dropped = bytearray(), 0
    while data := handle.read(chunk):
        cut = data.rfind(b"\n")
        ends = data[:cut].split(b"\n") if cut >= 0 else []
        if ends:
            size = dropped + len(pending) + len(ends[0])
            if dropped or size > limit:
                yield None, size
            else:
                yield (bytes(pending) + ends[0] if pending else ends[0]), size
            pending, dropped = bytearray(), 0
            for line in ends[1:]:
                yield (line if len(line) <= limit else None), len(line)
        rest = data[cut + 1 :]
        if dropped:
            dropped += len(rest)
        else:
            pending += rest
            if len(pending) > limit:
                pending, dropped = bytearray(), len(pending)


def transcript_identity(path: str) -> tuple[str, bool, str]:
    """Return (session key, is subagent, agent id) from a transcript's file name."""
    stem = Path(path).stem
    if stem.startswith("agent-"):
        return stem, True, stem[len("agent-") :]
    return stem, False, ""


def transcript_folder(path: str, root: str) -> str:
    """Return the encoded project folder name a transcript lives under."""
    relative = Path(path).relative_to(Path(root) / "projects")
    return relative.parts[0] if len(relative.parts) > 1 else ""


def todo_identity(path: str) -> tuple[str, str]:
    """Return (session key, agent id) from todos/<sessionId>-agent-<agentId>.json."""
    stem = Path(path).stem
    session, _, agent = stem.partition("-agent-")
    return session, agent


def task_session(path: str, root: str) -> str:
    """Return the session key of tasks/<sessionId>/<file>.json."""
    relative = Path(path).relative_to(Path(root) / "tasks")
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem
