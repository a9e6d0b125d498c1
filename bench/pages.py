"""Server-side render time of every dashboard page over 200,000 recorded exchanges.

    .venv/bin/python bench/pages.py [--rows 200000] [--runs 20] [--keep PATH]

Fills a temporary SQLite database (or, with CLAUDEMON_DATABASE_URL, a fresh
PostgreSQL one) with the same generator as bench/stats.py
(30 days, several models, sessions, errors, cache use, tool calls, limits),
adds one long Claude Code conversation (200 messages with tool calls, an Edit,
thinking) for the inspector, then renders each page in-process with Django's
test Client as a logged-in staff user and prints p50/p95 wall-clock time. It
also checks that no list page reads a body column. Target: p95 < 300 ms. The
stats rollups are built first, as `manage.py rollup --watch` does beside the
dashboard. With --member the pages are read by a user who is not staff and
claimed one person's API key (a tenth of the calls; bench/stats.py PEOPLE).

With --transcripts it then runs bench/pages_transcripts.py (session, thread and
search pages over 300,000 indexed transcript entries) in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stats import MEMBER_HELP  # noqa: E402  (after the path is set)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", default="", help="reuse/keep this database file")
    parser.add_argument(
        "--transcripts", action="store_true", help="also bench the transcript pages"
    )
    parser.add_argument("--member", action="store_true", help=MEMBER_HELP)
    args = parser.parse_args()
    path = Path(args.keep) if args.keep else Path(tempfile.mkdtemp()) / "pages.sqlite3"
    os.environ["CLAUDEMON_DB_PATH"] = str(path)
    os.environ["DJANGO_SETTINGS_MODULE"] = "claudemon.settings.data"
    os.environ.setdefault("CLAUDEMON_ALLOWED_HOSTS", "testserver,127.0.0.1")
    # Shared with the stats bench: the generator, and PostgreSQL when
    # CLAUDEMON_DATABASE_URL is set (a fresh database, dropped at the end).
    from bench.stats import (
        database_size,
        exchanges_fill,
        postgres_database,
        rollup_fill,
    )

    with postgres_database(os.environ.get("CLAUDEMON_DATABASE_URL", "")):
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        now = datetime.now(UTC).replace(microsecond=0)
        exchanges_fill(rows=args.rows, now=now)
        inspected = _long_conversation(now=now)
        print(f"database: {database_size(path)}")
        print(f"rollups built ahead of reads (manage.py rollup): {rollup_fill():.1f} s")
        _measure(runs=args.runs, inspected=inspected, member=args.member)
    if not args.keep:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    if args.transcripts:  # its own process: another database and settings
        script = ROOT / "bench" / "pages_transcripts.py"
        command = [sys.executable, str(script), "--runs", str(args.runs)]
        subprocess.run(command, check=True)
    return 0


def _long_conversation(*, now: datetime) -> int:
    """Store two consecutive calls of one long session; return the later one's id."""
    from apps.proxy.bodies import body_encode
    from apps.proxy.models import Exchange
    from bench.stats import person_credential
    from tests.factories import exchange_create

    existing = Exchange.objects.filter(session_id="bench-long-session")
    if existing.exists():
        return existing.order_by("-started_at").values_list("id", flat=True)[0]
    messages = []
    for turn in range(100):
        messages += _turn(turn)
    ids = []
    for count, offset in ((len(messages) - 2, 2), (len(messages), 1)):
        body = {"model": "claude-sonnet-4-5", "system": "You are Claude Code.",
                "tools": [{"name": "Bash", "input_schema": {"type": "object"}}] * 20,
                "messages": messages[:count]}  # fmt: skip
        ids.append(
            exchange_create(
                started_at=now - timedelta(minutes=offset),
                session_id="bench-long-session",
                credential=person_credential(0),  # the member's (--member)
                request_body=body_encode(json.dumps(body).encode()),
                uid=uuid.uuid4(),
            ).pk
        )
    return ids[-1]


def _turn(turn: int) -> list[dict]:
    old = "\n".join(f"line {i} of the old text" for i in range(30))
    return [
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Let me think about it. " * 40},
            {"type": "text", "text": f"Step {turn}:\n```python\nprint({turn})\n```"},
            {"type": "tool_use", "id": f"e{turn}", "name": "Edit", "input": {
                "file_path": "/repo/app.py", "old_string": old,
                "new_string": old.replace("old", "new")}},
            {"type": "tool_use", "id": f"b{turn}", "name": "Bash",
             "input": {"command": "pytest -q", "description": "Run tests"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"e{turn}", "content": "ok"},
            {"type": "tool_result", "tool_use_id": f"b{turn}",
             "content": "\n".join(f"test_{i} PASSED" for i in range(80))},
        ]},
    ]  # fmt: skip


def _measure(*, runs: int, inspected: int, member: bool) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from apps.proxy.models import Exchange
    from bench.stats import bench_user, person_credential

    client = Client()
    client.force_login(bench_user(member=member))
    seen = Exchange.objects.all()
    if member:  # the calls a member sees: person 0's
        seen = seen.filter(credential=person_credential(0))
    recent = seen.order_by("-started_at").values_list("id", flat=True)[5]
    pages = [
        ("overview 24h", "/", {}),
        ("overview 7d", "/", {"range": "7d"}),
        ("overview 30d", "/", {"range": "30d"}),
        ("overview 30d cost", "/", {"range": "30d", "metric": "cost"}),
        ("live", "/live/", {}),
        ("requests 24h", "/requests/", {}),
        ("requests 30d", "/requests/", {"range": "30d"}),
        ("requests 30d model", "/requests/",
         {"range": "30d", "model": "claude-haiku-4-5-20251001"}),
        ("requests 30d by cost", "/requests/", {"range": "30d", "sort": "-cost"}),
        ("requests 30d tool", "/requests/", {"range": "30d", "tool": "Edit"}),
        ("requests 30d page 200", "/requests/", {"range": "30d", "page": "200"}),
        ("performance 24h", "/performance/", {}),
        ("performance 7d", "/performance/", {"range": "7d"}),
        ("performance 30d", "/performance/", {"range": "30d"}),
        ("inspector (typical)", f"/requests/{recent}/", {}),
        ("inspector 200 msgs new", f"/requests/{inspected}/", {}),
        ("inspector 200 msgs conversation", f"/requests/{inspected}/",
         {"tab": "conversation"}),
        ("inspector raw", f"/requests/{inspected}/", {"tab": "raw"}),
    ]  # fmt: skip
    print(f"{'page':34} {'p50 ms':>8} {'p95 ms':>8}  bodies read")
    for name, path, params in pages:
        timings = []
        for _ in range(runs):
            began = time.perf_counter()
            response = client.get(path, params)
            timings.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, (name, response.status_code)
        with CaptureQueriesContext(connection) as queries:
            client.get(path, params)
        sql = " ".join(q["sql"] for q in queries.captured_queries)
        bodies = "yes" if "request_body" in sql or "response_body" in sql else "no"
        timings.sort()
        p95 = timings[min(len(timings) - 1, -(-95 * len(timings) // 100) - 1)]
        print(f"{name:34} {statistics.median(timings):8.1f} {p95:8.1f}  {bodies}")


if __name__ == "__main__":
    raise SystemExit(main())
