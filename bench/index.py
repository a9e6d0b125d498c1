"""Benchmark the transcript index on a synthetic ~/.claude tree; prints figures.

    .venv/bin/python bench/index.py [--files 2000] [--entries 300000] [--seed 7]
    CLAUDEMON_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
        .venv/bin/python bench/index.py ...   # the same on PostgreSQL

On PostgreSQL the bench creates a database of its own on that server (the URL's
database is only connected to for that) and drops it at the end.

Generates a tree with the real mix of line types and sizes (prompts, assistant
text and thinking, one line per content block with repeated usage, tool calls
and results with duplicated toolUseResult payloads, large file reads, system,
attachment, queue and snapshot lines; about 15% subagent files in both layouts),
indexes it into a temporary database, and prints: full index rate, no-change
pass time, small-append time, database size against source size, and search
latency p50/p95 over a fixed query mix. Targets: >= 5,000 entries/s, no-change
pass over 2,000 files < 0.5 s, search p95 < 50 ms, database <= half the source.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COMMON = (
    "the a to of and in is it that for on with this be as at by from we not are "
    "file function test error value return should will can need use add fix run "
    "check update change code line data list type name path config module import "
    "class method call result output input string number object array null true "
    "false build server client request response database query index table row "
).split()
TECH = (
    "migration rollback alembic django sqlite postgres redis kafka docker kubernetes "
    "pytest fixture websocket asyncio httpx streaming latency throughput cache "
    "invoice billing webhook stripe oauth token session cookie middleware router "
    "serializer queryset transaction deadlock timeout retry backoff circuit breaker "
    "tokenizer embedding vector fts5 bm25 snippet porter unicode parser lexer "
    "refactor deprecate benchmark profile flamegraph regression bisect rebase "
).split()
TOOLS = [
    "Bash",
    "Read",
    "Edit",
    "Grep",
    "Glob",
    "Write",
    "TodoWrite",
    "Task",
    "WebFetch",
]
MODELS = [
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-1-20250805",
    "claude-haiku-4-5-20251001",
]
QUERIES = [
    "migration rollback",
    "alembic",
    "deadlock timeout",
    '"circuit breaker"',
    "websocket*",
    "stripe webhook",
    "pytest fixture",
    "fts5 bm25",
    "refactor parser",
    "kubernetes",
    "invoice billing",
    "oauth token",
    "error",
    "flamegraph",
    "retry backoff",
    "unicode tokenizer",
    "qzxv",
    "snippet",
    "throughput latency",
    "config module import",
]


class Words:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        rare = [
            "".join(
                rng.choice("bcdfghjklmnprstvwz") + rng.choice("aeiou")
                for _ in range(rng.randint(2, 4))
            )
            for _ in range(6000)
        ]
        # Zipf-distributed words, as in natural language and code: a few words
        # are everywhere, most are rare.
        vocabulary = COMMON + TECH + rare
        weights = [1 / (rank + 1) ** 1.05 for rank in range(len(vocabulary))]
        # A long stream to slice from: realistic text without per-word cost.
        self.stream = " ".join(rng.choices(vocabulary, weights=weights, k=400_000))
        # Source files of the projects: Read results return slices of these, as
        # Claude Code reads the same files again and again in a session.
        self.files = [self._source_file(vocabulary[:1500]) for _ in range(60)]

    def _source_file(self, names: list[str]) -> list[str]:
        rng = self.rng
        lines = []
        for _ in range(rng.randint(150, 900)):
            indent = "    " * rng.randint(0, 3)
            a, b, c = rng.choice(names), rng.choice(names), rng.choice(names)
            lines.append(
                rng.choice(
                    [
                        f"{indent}def {a}_{b}(self, {c}: str) -> None:",
                        f"{indent}{a} = self.{b}({c})",
                        f"{indent}if {a} is None:",
                        f"{indent}return {a}.{b}",
                        f"{indent}# {self.text(rng.randint(20, 70))}",
                        "",
                    ]
                )
            )
        return lines

    def code(self, chars: int) -> str:
        """Return a Read result: numbered lines from one of the source files."""
        lines = self.rng.choice(self.files)
        start = self.rng.randrange(0, max(1, len(lines) - 10))
        out, size = [], 0
        for number, line in enumerate(lines[start:], start=start + 1):
            out.append(f"{number:>6}\u2192{line}")
            size += len(out[-1]) + 1
            if size >= chars:
                break
        return "\n".join(out)

    def log(self, chars: int) -> str:
        """Return a Bash result: test-runner style output."""
        out, size = [], 0
        while size < chars:
            name = self.text(18).strip().replace(" ", "_")
            out.append(
                self.rng.choice(
                    [
                        f"tests/test_{name}.py::test_{name} PASSED",
                        f"tests/test_{name}.py::test_{name} FAILED",
                        f'  File "/home/dev/src/{name}.py", line {len(out)}',
                        f"INFO {name}: {self.text(40)}",
                    ]
                )
            )
            size += len(out[-1]) + 1
        return "\n".join(out)

    def text(self, chars: int) -> str:
        start = self.rng.randrange(0, len(self.stream) - chars - 1)
        return self.stream[start : start + chars]

    def size(self, median: int, spread: float = 1.0, cap: int = 200_000) -> int:
        return max(8, min(cap, int(self.rng.lognormvariate(0, spread) * median)))


def tree_generate(root: Path, *, files: int, entries: int, seed: int) -> int:
    """Write the synthetic tree; return the number of lines written."""
    rng = random.Random(seed)
    words = Words(rng)
    projects = [f"/home/dev/src/proj_{i}-{words.text(6).split()[0]}" for i in range(40)]
    per_file = max(4, entries // files)
    written = 0
    main_sessions: list[tuple[Path, str, str]] = []
    t0 = datetime(2026, 9, 1, tzinfo=UTC)
    for index in range(files):
        is_sub = main_sessions and rng.random() < 0.15
        if is_sub:
            folder, session_id, cwd = rng.choice(main_sessions)
            agent = uuid.uuid4().hex[:16]
            path = (
                folder / f"agent-{agent}.jsonl"
                if rng.random() < 0.5
                else folder / session_id / "subagents" / f"agent-{agent}.jsonl"
            )
        else:
            cwd = rng.choice(projects)
            session_id = str(uuid.uuid4())
            folder = root / "projects" / "".join(c if c.isalnum() else "-" for c in cwd)
            path = folder / f"{session_id}.jsonl"
            agent = ""
            main_sessions.append((folder, session_id, cwd))
        path.parent.mkdir(parents=True, exist_ok=True)
        count = per_file if index < files - 1 else entries - written
        start = t0 + timedelta(minutes=index * 37)
        lines = session_lines(words, rng, count, session_id, cwd, agent, start)
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        written += count
    return written


def session_lines(
    words: Words,
    rng: random.Random,
    count: int,
    session_id: str,
    cwd: str,
    agent: str,
    start: datetime,
) -> list[dict]:
    lines: list[dict] = []
    parent = None
    clock = start
    version = rng.choice(["2.1.112", "2.1.197", "2.1.330"])

    def common(**extra: object) -> dict:
        nonlocal parent, clock
        clock += timedelta(seconds=rng.randint(1, 30))
        record = {
            "parentUuid": parent,
            "isSidechain": bool(agent),
            "userType": "external",
            "cwd": cwd,
            "sessionId": session_id,
            "version": version,
            "gitBranch": "main",
            "uuid": str(uuid.uuid4()),
            "timestamp": clock.isoformat().replace("+00:00", "Z"),
            **extra,
        }
        if agent:
            record["agentId"] = agent
        parent = record["uuid"]
        return record

    while len(lines) < count:
        lines.append(
            common(
                type="user",
                message={
                    "role": "user",
                    "content": words.text(words.size(200, 0.8, 4000)),
                },
            )
        )
        lines.append(
            {
                "type": "queue-operation",
                "operation": "enqueue",
                "sessionId": session_id,
                "timestamp": clock.isoformat(),
                "content": words.text(80),
            }
        )
        for _ in range(rng.randint(1, 6)):
            message_id = f"msg_{uuid.uuid4().hex[:24]}"
            request_id = f"req_{uuid.uuid4().hex[:24]}"
            usage = {
                "input_tokens": rng.randint(1, 3000),
                "output_tokens": rng.randint(10, 2000),
                "cache_creation_input_tokens": rng.randint(0, 20000),
                "cache_read_input_tokens": rng.randint(0, 150000),
            }
            model = rng.choice(MODELS)
            blocks = []
            if rng.random() < 0.35:
                blocks.append(
                    {
                        "type": "thinking",
                        "signature": uuid.uuid4().hex * 4,
                        "thinking": words.text(words.size(700, 0.9, 8000)),
                    }
                )
            blocks.append(
                {"type": "text", "text": words.text(words.size(300, 1.0, 6000))}
            )
            tool = rng.choice(TOOLS)
            tool_id = f"toolu_{uuid.uuid4().hex[:24]}"
            blocks.append(
                {
                    "type": "tool_use",
                    "id": tool_id,
                    "name": tool,
                    "input": _tool_input(words, tool),
                }
            )
            for block in blocks:
                lines.append(
                    common(
                        type="assistant",
                        requestId=request_id,
                        message={
                            "id": message_id,
                            "type": "message",
                            "role": "assistant",
                            "model": model,
                            "content": [block],
                            "stop_reason": None,
                            "usage": usage,
                        },
                    )
                )
            size = words.size(900, 1.6, 60_000)
            output = (
                words.code(size)
                if tool == "Read"
                else words.log(size)
                if tool == "Bash"
                else words.text(size)
            )
            lines.append(
                common(
                    type="user",
                    message={
                        "role": "user",
                        "content": [
                            {
                                "tool_use_id": tool_id,
                                "type": "tool_result",
                                "content": output,
                                "is_error": rng.random() < 0.05,
                            }
                        ],
                    },
                    toolUseResult={
                        "stdout": output,
                        "stderr": "",
                        "interrupted": False,
                        "isImage": False,
                    },
                    sourceToolAssistantUUID=parent,
                )
            )
            if rng.random() < 0.3:
                lines.append(
                    common(
                        type="system",
                        subtype="turn_duration",
                        durationMs=rng.randint(100, 90000),
                    )
                )
            if rng.random() < 0.2:
                lines.append(
                    common(
                        type="attachment",
                        attachment={
                            "type": "file",
                            "filename": "/src/app.py",
                            "content": words.text(words.size(400, 1.0, 8000)),
                        },
                    )
                )
        if rng.random() < 0.3:
            lines.append(
                {
                    "type": "file-history-snapshot",
                    "messageId": parent,
                    "snapshot": {
                        "trackedFileBackups": {},
                        "timestamp": clock.isoformat(),
                    },
                    "isSnapshotUpdate": False,
                }
            )
    lines = lines[:count]
    if count > 3:
        leaf = next(
            (line["uuid"] for line in reversed(lines[:-1]) if "uuid" in line), None
        )
        lines[-1] = {"type": "summary", "summary": words.text(60), "leafUuid": leaf}
    return lines


def _tool_input(words: Words, tool: str) -> dict:
    if tool == "Bash":
        return {"command": "pytest -x " + words.text(40), "description": words.text(30)}
    if tool in ("Read", "Write"):
        data = {"file_path": f"/home/dev/src/{words.text(12).replace(' ', '_')}.py"}
        if tool == "Write":
            data["content"] = words.text(words.size(1500, 1.0, 20000))
        return data
    if tool == "Edit":
        return {
            "file_path": "/home/dev/src/app.py",
            "old_string": words.text(200),
            "new_string": words.text(220),
        }
    if tool in ("Grep", "Glob"):
        return {"pattern": words.text(15), "path": "/home/dev/src"}
    return {"prompt": words.text(words.size(300)), "description": words.text(20)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--entries", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="claudemon-bench-index-"))
    try:
        return _run(work, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


def _run(work: Path, args: argparse.Namespace) -> int:
    tree = work / "dot-claude"
    started = time.monotonic()
    lines = tree_generate(tree, files=args.files, entries=args.entries, seed=args.seed)
    source_bytes = sum(p.stat().st_size for p in tree.rglob("*.jsonl"))
    print(
        f"generated {args.files} files, {lines:,} lines, "
        f"{source_bytes / 1e6:,.1f} MB in {time.monotonic() - started:.1f}s"
    )

    os.environ.update(
        DJANGO_SETTINGS_MODULE="claudemon.settings.data",
        CLAUDEMON_DB_PATH=str(work / "bench.sqlite3"),
        CLAUDEMON_VAR_DIR=str(work / "var"),
        CLAUDEMON_CLAUDE_DIRS=str(tree),
    )
    server = os.environ.get("CLAUDEMON_DATABASE_URL", "")
    with _postgres_database(server) if server else contextlib.nullcontext():
        return _measure(work, tree, args, source_bytes)


@contextlib.contextmanager
def _postgres_database(url: str) -> Iterator[None]:
    """Point CLAUDEMON_DATABASE_URL at a fresh database on url's server; drop it."""
    import psycopg

    name = f"claudemon_bench_{os.getpid()}"
    parts = urlsplit(url)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    os.environ["CLAUDEMON_DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
    try:
        yield
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _measure(
    work: Path, tree: Path, args: argparse.Namespace, source_bytes: int
) -> int:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from apps.indexing.selectors import entry_search
    from apps.indexing.services import index_sync

    call_command("migrate", verbosity=0)
    print(f"database:        {connection.vendor}")
    report = index_sync()
    print(f"full index:      {report.summary_line()}")
    print(f"  rate           {report.rate:,.0f} entries/s (target >= 5,000)")

    report = index_sync()
    print(
        f"no-change pass:  {report.elapsed * 1000:.0f} ms over {report.files_scanned} "
        f"files (target < 500 ms)"
    )

    targets = sorted(tree.rglob("*.jsonl"))[:: max(1, args.files // 5)][:5]
    rng = random.Random(1)
    words = Words(rng)
    for path in targets:
        with open(path, "a") as handle:
            for record in session_lines(
                words,
                rng,
                10,
                path.stem,
                "/home/dev/x",
                "",
                datetime(2026, 11, 1, tzinfo=UTC),
            ):
                handle.write(json.dumps(record) + "\n")
    report = index_sync()
    print(
        f"small append:    {report.elapsed * 1000:.0f} ms for "
        f"{report.entries_added} new lines in {report.files_changed} files"
    )

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db_bytes = sum(
                p.stat().st_size
                for p in work.glob("bench.sqlite3*")
                if p.suffix != ".index-lock"
            )
        else:
            cursor.execute("SELECT pg_database_size(current_database())")
            db_bytes = cursor.fetchone()[0]
    print(
        f"database size:   {db_bytes / 1e6:,.1f} MB vs source "
        f"{source_bytes / 1e6:,.1f} "
        f"MB = {db_bytes / source_bytes:.2f} (target <= 0.50)"
    )

    latencies = []
    hits = 0
    for _round in range(5):
        for query in QUERIES:
            began = time.perf_counter()
            found = entry_search(query=query, limit=20)
            latencies.append((time.perf_counter() - began) * 1000)
            hits += len(found)
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(
        f"search:          p50 {statistics.median(latencies):.1f} ms, p95 {p95:.1f} ms "
        f"over {len(latencies)} queries ({len(QUERIES)} distinct, {hits} hits; "
        f"target p95 < 50 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
