"""Usage reports and the statusline over 200,000 ledger calls; ledger catch-up.

    .venv/bin/python bench/usage.py [--calls 200000] [--runs 20] [--entries 300000]

1. Fills a temporary database with calls as Claude Code makes them over 30 days:
   ~1,000 sessions, each a burst of 20-400 calls minutes apart on one or two
   main models with subagents and Haiku side calls, in 30 projects. About half
   are relayed (exchanges entered by the recorder's own service), a quarter
   known from transcripts only, and a quarter both (the relay's figures win).
2. Times the rollup build (manage.py rollup), then every report, the overview
   and the session and project pages, in-process through Django's test client,
   p50/p95 over --runs calls after a warm-up. Target: p95 < 150 ms.
3. Times the statusline as Claude Code runs it: a whole process, fed its JSON,
   p50/p95 over --runs runs, beside a bare `python -I -S -c pass` measured in
   the same run. Target: p95 < 100 ms.
4. Indexes a synthetic ~/.claude tree of --entries lines (bench/index.py's
   generator) and prints how long entering its calls in the ledger and
   rolling them up took. Target: under 10 s for 300,000 entries.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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

MAIN = ["claude-sonnet-4-5-20250929", "claude-opus-4-8"]
SIDE = "claude-haiku-4-5-20251001"
TOOLS = ["Bash", "Read", "Edit", "Grep", "Glob", "Write", "TodoWrite", "Task"]
DAYS = 30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--entries", type=int, default=300_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="claudemon-bench-usage-"))
    os.environ["CLAUDEMON_DB_PATH"] = str(work / "usage.sqlite3")
    os.environ["CLAUDEMON_VAR_DIR"] = str(work / "var")
    os.environ["DJANGO_SETTINGS_MODULE"] = "claudemon.settings.data"
    os.environ.setdefault("CLAUDEMON_ALLOWED_HOSTS", "testserver,127.0.0.1")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    now = datetime.now(UTC).replace(microsecond=0)
    _fill(calls=args.calls, now=now)
    _measure_pages(runs=args.runs, now=now)
    _measure_statusline(runs=args.runs, db=work / "usage.sqlite3")
    _measure_catch_up(entries=args.entries, work=work)
    return 0


def _sessions(rng: random.Random, calls: int, now: datetime) -> list[dict]:
    """Return sessions as bursts of calls: start, spacing, count, models."""
    sessions, total = [], 0
    while total < calls:
        count = min(rng.randint(20, 400), calls - total)
        sessions.append({
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "start": now - timedelta(seconds=rng.uniform(3600, DAYS * 86400)),
            "gap": rng.uniform(5, 90),  # seconds between calls
            "count": count, "main": rng.choice(MAIN), "project": rng.randrange(30),
        })  # fmt: skip
        total += count
    return sessions


def _fill(*, calls: int, now: datetime) -> None:
    from apps.dashboard.services import rollup_refresh
    from apps.proxy import services
    from apps.proxy.models import Exchange

    rng = random.Random(42)
    started = time.perf_counter()
    relayed: list[Exchange] = []
    transcribed: list[dict] = []
    for session in _sessions(rng, calls, now):
        at = session["start"]
        for n in range(session["count"]):
            at += timedelta(seconds=session["gap"] * rng.uniform(0.2, 3))
            call = _call(rng, session, n, at)
            source = rng.random()
            if source < 0.75:
                relayed.append(_exchange(rng, call))
            if source >= 0.5:
                transcribed.append(call)
        if len(relayed) >= 5000:
            _relayed_write(relayed)
            relayed = []
    _relayed_write(relayed)
    for start in range(0, len(transcribed), 5000):
        services.call_merge_transcripts(rows=transcribed[start : start + 5000])
    filled = time.perf_counter() - started
    print(f"ledger: {calls:,} calls entered in {filled:.0f} s")
    started = time.perf_counter()
    rebuilt = rollup_refresh()
    print(f"rollups: {rebuilt:,} quarter hours built in "
          f"{time.perf_counter() - started:.1f} s (manage.py rollup)")  # fmt: skip


def _call(rng: random.Random, session: dict, n: int, at: datetime) -> dict:
    from apps.proxy.pricing import Usage, usage_cost

    side = rng.random() < 0.15
    model = SIDE if side else session["main"]
    usage = (
        rng.randint(1, 3000),
        rng.randint(20, 4000),
        rng.randint(10_000, 180_000),
        rng.choice([0, rng.randint(100, 8000)]),
        0,
    )
    return {
        "request_id": f"req_{uuid.UUID(int=rng.getrandbits(128)).hex}",
        "message_id": f"msg_{uuid.UUID(int=rng.getrandbits(128)).hex}",
        "uuid": str(uuid.UUID(int=rng.getrandbits(128))), "at": at, "model": model,
        "speed": "", "usage": usage,
        "cost_usd": usage_cost(model=model, usage=Usage(*usage), at=at),
        "tools": " ".join(rng.sample(TOOLS, rng.randint(0, 3))),
        "session_id": session["id"],
        "agent_id": f"a{n % 7}" if rng.random() < 0.2 else "",
        "project_id": session["project"] + 1,
    }  # fmt: skip


def _exchange(rng: random.Random, call: dict):
    from apps.proxy.models import Exchange

    ttfb = rng.lognormvariate(6.5, 0.5)
    duration = ttfb + rng.lognormvariate(9, 0.8)
    inp, out, read, write, _ = call["usage"]
    subscription = rng.random() < 0.6
    return Exchange(
        uid=uuid.UUID(int=rng.getrandbits(128)), started_at=call["at"],
        ttfb_ms=ttfb, duration_ms=duration, method="POST", path="/v1/messages",
        query="beta=true", is_streaming=True, model=call["model"],
        model_requested=call["model"], session_id=call["session_id"],
        agent_id=call["agent_id"], state="complete", status_code=200,
        message_id=call["message_id"], request_id=call["request_id"],
        input_tokens=inp, output_tokens=out, cache_read_tokens=read,
        cache_write_5m_tokens=write, cost_usd=call["cost_usd"],
        tools_called={t: 1 for t in call["tools"].split()},
        unified_status="allowed" if subscription else "",
        unified_5h_utilization=rng.random() if subscription else None,
        unified_7d_utilization=rng.random() if subscription else None,
    )  # fmt: skip


def _relayed_write(batch: list) -> None:
    from django.db import transaction

    from apps.proxy import services
    from apps.proxy.models import Exchange

    with transaction.atomic():
        Exchange.objects.bulk_create(batch)
        services.call_record_exchanges(uids=[e.uid for e in batch])


def _measure_pages(*, runs: int, now: datetime) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from apps.proxy.models import ApiCall

    user = get_user_model().objects.create_superuser("bench", "", "bench-password")
    client = Client()
    client.force_login(user)
    month = {"from": (now - timedelta(days=DAYS)).date().isoformat(),
             "to": now.date().isoformat()}  # fmt: skip
    session = ApiCall.objects.order_by("-at").values_list("session_id", flat=True)[0]
    pages = [
        (f"/api/usage/{name}", month)
        for name in (
            "daily",
            "weekly",
            "monthly",
            "sessions",
            "projects",
            "models",
            "blocks",
        )
    ]
    pages += [
        ("/api/usage/daily", {**month, "tz": "Asia/Kolkata"}),
        ("/api/stats/summary", month),
        ("/api/sessions", month),
    ]
    pages += [
        ("/usage/", {"report": name, "range": "30d"})
        for name in ("daily", "monthly", "sessions", "projects", "models", "blocks")
    ]
    pages += [("/", {"range": "30d"}), ("/", {}), ("/sessions/", {"range": "30d"}),
              ("/projects/", {}), (f"/sessions/{session}/", {})]  # fmt: skip
    print(f"\n{'page or operation, 30 days':<52} {'p50 ms':>8} {'p95 ms':>8}")
    worst = 0.0
    for path, params in pages:
        p50, p95 = _time(lambda p=path, q=params: _get(client, p, q), runs)
        worst = max(worst, p95)
        shown = " ".join(f"{k}={v}" for k, v in params.items() if k not in month)
        label = f"{path} {shown}"
        print(f"{label:<52} {p50:8.1f} {p95:8.1f}")
    print(f"worst p95: {worst:.1f} ms (target < 150 ms)")


def _measure_statusline(*, runs: int, db: Path) -> None:
    from apps.proxy.models import ApiCall

    session = ApiCall.objects.order_by("-at").values_list("session_id", flat=True)[0]
    script = ROOT / "apps" / "dashboard" / "statusline.py"
    stdin = json.dumps({"session_id": session, "model": {"id": MAIN[0]}})
    command = [sys.executable, "-I", "-S", str(script), "--db", str(db)]
    bare = [sys.executable, "-I", "-S", "-c", "pass"]

    def run(argv: list[str]) -> None:
        subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True)

    line = subprocess.run(command, input=stdin, capture_output=True, text=True).stdout
    base50, base95 = _time(lambda: run(bare), runs)
    p50, p95 = _time(lambda: run(command), runs)
    print(f"\nstatusline: {line.strip()}")
    print(f"statusline, whole process: p50 {p50:.1f} ms, p95 {p95:.1f} ms "
          f"(target < 100 ms); bare python -I -S: p50 {base50:.1f}, p95 "
          f"{base95:.1f} ms; ratio p50 {p50 / base50:.2f}")  # fmt: skip


def _measure_catch_up(*, entries: int, work: Path) -> None:
    from apps.dashboard.services import rollup_refresh
    from apps.indexing.services import index_sync
    from apps.indexing.services import sessions as index_sessions
    from bench.index import tree_generate

    root = work / "dot-claude"
    written = tree_generate(root, files=2000, entries=entries, seed=7)
    spent = [0.0]
    merge = index_sessions.sessions_ledger_merge

    def timed(pks: list[int]) -> None:
        started = time.perf_counter()
        merge(pks)
        spent[0] += time.perf_counter() - started

    # Measure the ledger's share of a reindex.
    index_sessions.sessions_ledger_merge = timed
    started = time.perf_counter()
    report = index_sync(roots=[root], full=True)
    total = time.perf_counter() - started
    started = time.perf_counter()
    rollup_refresh()
    rolled = time.perf_counter() - started
    print(f"\nreindex of {written:,} entries ({report.entries_added:,} added): "
          f"{total:.1f} s, of which entering calls in the ledger {spent[0]:.1f} s; "
          f"rolling them up after: {rolled:.1f} s; ledger catch-up "
          f"{spent[0] + rolled:.1f} s (target < 10 s)")  # fmt: skip


def _get(client, path: str, params: dict) -> None:
    response = client.get(path, params)
    if response.status_code != 200:
        raise SystemExit(f"{path} {params} -> {response.status_code}")


def _time(call, runs: int) -> tuple[float, float]:
    call()  # warm up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, -(-95 * runs // 100) - 1)]


if __name__ == "__main__":
    sys.exit(main())
