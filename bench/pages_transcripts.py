"""Server-side render time of the transcript pages over 300,000 indexed entries.

    .venv/bin/python bench/pages_transcripts.py [--entries 300000] [--files 2000]
        [--runs 20] [--seed 7] [--long 20000] [--keep DIR]

Generates the synthetic ~/.claude tree of bench/index.py (same generator), indexes
it with the indexing service into a temporary database, records one exchange per
transcript response of the sessions measured (their request-ids and session id,
as the relay would have), then renders with Django's test Client as a logged-in
user and prints p50/p95 wall-clock time: the session page and the thread's first
page for the largest session and a sample of typical ones, the thread page of a
deep-linked entry, and the search page over bench/index.py's query mix, with and
without filters. Target: p95 < 300 ms. Companion of bench/pages.py (relay pages).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=300_000)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--long", type=int, default=20_000, help="entries of one extra long session"
    )
    parser.add_argument("--keep", default="", help="build once in DIR, then reuse")
    args = parser.parse_args()
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        return _run(Path(args.keep), args)
    work = Path(tempfile.mkdtemp(prefix="claudemon-bench-pages-tx-"))
    try:
        return _run(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(work: Path, args: argparse.Namespace) -> int:
    from bench.index import tree_generate

    tree = work / "dot-claude"
    reuse = (work / "bench.sqlite3").exists()
    if not reuse:
        lines = tree_generate(
            tree, files=args.files, entries=args.entries - args.long, seed=args.seed
        )
        lines += _long_session_write(tree, entries=args.long, seed=args.seed)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="claudemon.settings.data",
        CLAUDEMON_DB_PATH=str(work / "bench.sqlite3"),
        CLAUDEMON_VAR_DIR=str(work / "var"),
        CLAUDEMON_CLAUDE_DIRS=str(tree),
    )
    os.environ.setdefault("CLAUDEMON_ALLOWED_HOSTS", "testserver,127.0.0.1")
    import django

    django.setup()
    from django.core.management import call_command

    from apps.indexing.models import Entry, Session
    from apps.indexing.services import index_sync

    call_command("migrate", verbosity=0)
    if not reuse:
        report = index_sync()
        print(f"indexed {lines:,} lines: {report.summary_line()}")
    print(f"entries in the index: {Entry.objects.count():,}")
    main_sessions = Session.objects.filter(is_subagent=False)
    largest = main_sessions.order_by("-entry_count").first()
    rng = random.Random(args.seed)
    typical = rng.sample(list(main_sessions.values_list("session_id", flat=True)), 10)
    relayed = 0 if reuse else _exchanges_record([largest.session_id, *typical])
    print(f"largest session: {largest.entry_count:,} entries, "
          f"{Session.objects.filter(parent=largest).count()} subagents; "
          f"{relayed:,} exchanges recorded for the measured sessions")  # fmt: skip
    _measure(runs=args.runs, largest=largest.session_id, typical=typical)
    return 0


def _long_session_write(tree: Path, *, entries: int, seed: int) -> int:
    """Add one main session of `entries` lines (a day-long session), same generator."""
    import json
    import uuid
    from datetime import UTC, datetime

    from bench.index import Words, session_lines

    rng = random.Random(seed + 1)
    session_id = str(uuid.uuid4())
    cwd = "/home/dev/src/long_running"
    folder = tree / "projects" / "".join(c if c.isalnum() else "-" for c in cwd)
    folder.mkdir(parents=True, exist_ok=True)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    lines = session_lines(Words(rng), rng, entries, session_id, cwd, "", start)
    path = folder / f"{session_id}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return len(lines)


def _exchanges_record(session_ids: list[str]) -> int:
    """Record one exchange per transcript response of these sessions."""
    from apps.indexing.models import Entry
    from apps.proxy.models import Exchange
    from tests.factories import exchange_build

    seen: set[str] = set()
    rows = []
    entries = (
        Entry.objects.filter(session__session_id__in=session_ids, type="assistant")
        .exclude(request_id="")
        .values_list("request_id", "session__session_id", "timestamp")
    )
    for request_id, session_id, at in entries:
        if request_id in seen:
            continue
        seen.add(request_id)
        rows.append(
            exchange_build(
                request_id=request_id,
                session_id=session_id,
                started_at=at,
                cache_read_tokens=20_000,
            )
        )
    Exchange.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def _measure(*, runs: int, largest: str, typical: list[str]) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from apps.indexing.models import Entry
    from bench.index import QUERIES

    user, _ = get_user_model().objects.get_or_create(username="bench")
    client = Client()
    client.force_login(user)
    deep = (
        Entry.objects.filter(session__session_id=largest, type="user")
        .exclude(uuid="")
        .order_by("-id")
        .values_list("uuid", flat=True)
        .first()
    )
    pages = [
        ("session (largest)", [(f"/sessions/{largest}/", {})]),
        ("session (10 typical)", [(f"/sessions/{s}/", {}) for s in typical]),
        ("thread page 1 (largest)", [(f"/sessions/{largest}/thread/", {})]),
        ("thread page 1 (10 typical)",
         [(f"/sessions/{s}/thread/", {}) for s in typical]),
        ("thread at a late entry (largest)",
         [(f"/sessions/{largest}/thread/", {"entry": deep, "hl": "migration"})]),
        ("search (query mix)", [("/search/", {"q": q}) for q in QUERIES]),
        ("search + role filter", [("/search/", {"q": q, "role": "assistant"})
                                  for q in QUERIES]),
        ("search + session filter", [("/search/", {"q": q, "session": largest})
                                     for q in QUERIES]),
        ("search page 3", [("/search/", {"q": "error", "page": "3"})]),
        ("search advanced", [("/search/", {"q": "migration NEAR(rollback, 5)",
                                           "advanced": "1"})]),
        ("sessions (all 2 months)", [("/sessions/", {"range": "custom",
          "from": "2026-08-01", "to": "2026-12-31"})]),
        ("sessions by cost", [("/sessions/", {"range": "custom", "sort": "cost",
          "from": "2026-08-01", "to": "2026-12-31"})]),
        ("projects", [("/projects/", {})]),
    ]  # fmt: skip
    print(f"{'page':34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  renders")
    for name, requests in pages:
        timings = []
        count = max(runs, len(requests))
        for i in range(count):
            path, params = requests[i % len(requests)]
            began = time.perf_counter()
            response = client.get(path, params)
            timings.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, (name, path, response.status_code)
        timings.sort()
        p95 = timings[min(len(timings) - 1, -(-95 * len(timings) // 100) - 1)]
        print(f"{name:34} {statistics.median(timings):8.1f} {p95:8.1f} "
              f"{timings[-1]:8.1f}  {len(timings)}")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
