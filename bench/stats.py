"""Latency of the stats API and the admin list over 200,000 recorded exchanges.

    .venv/bin/python bench/stats.py [--rows 200000] [--runs 20] [--keep PATH]

Fills a temporary SQLite database, or with CLAUDEMON_DATABASE_URL a fresh
PostgreSQL database on that server, dropped at the end (the real migrations,
bulk_create in batches) with realistic exchanges spread over 30 days: several models,
~800 sessions with subagent calls, streaming and not, errors (429, 529,
mid-stream), cache reads and writes, tool calls, unified rate-limit headers on
subscription traffic and standard ones on API-key traffic, compressed bodies
and headers of realistic size. Then it calls every API operation and the admin
changelist in-process through Django's test Client as a logged-in superuser and
prints p50/p95 wall-clock latency per operation. Target: p95 < 150 ms.

The sessions belong to PEOPLE people, each calling with their own API key. With
--member the operations are read instead by a user who is not staff and claimed
one of those keys (a tenth of the calls): every read is then narrowed to their
credential, and the rollups (kept for everyone) do not apply. The admin is
staff-only and left out.

Every usage figure is read from the usage ledger (the recorder's service enters
each batch's calls, as the relay does) through its rollups, which `manage.py
rollup --watch` builds beside the data deployment; that build is timed apart,
before any read, and each operation's first call (the warm-up) is left out of
its figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
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

MODELS = [
    ("claude-sonnet-4-5-20250929", 0.50),
    ("claude-opus-4-8", 0.28),
    ("claude-haiku-4-5-20251001", 0.17),
    ("claude-opus-5-5", 0.05),
]
TOOLS = ["Bash", "Read", "Edit", "Write", "Grep", "Glob", "Task", "TodoWrite"]
DAYS = 30
PEOPLE = 10  # who the sessions belong to: each calls with their own API key
MEMBER_HELP = (
    "read as a user who is not staff and claimed one person's API key (a tenth "
    "of the calls) instead of as a superuser"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", default="", help="reuse/keep this database file")
    parser.add_argument("--member", action="store_true", help=MEMBER_HELP)
    args = parser.parse_args()
    path = Path(args.keep) if args.keep else Path(tempfile.mkdtemp()) / "bench.sqlite3"
    os.environ["CLAUDEMON_DB_PATH"] = str(path)
    os.environ["DJANGO_SETTINGS_MODULE"] = "claudemon.settings.data"
    os.environ.setdefault("CLAUDEMON_ALLOWED_HOSTS", "testserver,127.0.0.1")
    with postgres_database(os.environ.get("CLAUDEMON_DATABASE_URL", "")):
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        now = datetime.now(UTC).replace(microsecond=0)
        exchanges_fill(rows=args.rows, now=now)
        print(f"database: {database_size(path)}")
        _measure(runs=args.runs, now=now, member=args.member)
    if not args.keep:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return 0


@contextlib.contextmanager
def postgres_database(url: str) -> Iterator[None]:
    """With a postgres:// url, point CLAUDEMON_DATABASE_URL at a fresh database on
    its server for the run, and drop it after; else use the SQLite file."""
    if not url:
        yield
        return
    import psycopg

    name = f"claudemon_bench_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    os.environ["CLAUDEMON_DATABASE_URL"] = urlunsplit(
        urlsplit(url)._replace(path=f"/{name}")
    )
    try:
        yield
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def database_size(path: Path) -> str:
    """Return which database the bench fills, and its size."""
    from django.db import connection

    if connection.vendor == "sqlite":
        return f"{path} ({path.stat().st_size / 1e6:,.0f} MB)"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        size = cursor.fetchone()[0]
    return f"PostgreSQL {connection.settings_dict['NAME']} ({size / 1e6:,.0f} MB)"


def exchanges_fill(*, rows: int, now: datetime) -> None:
    from apps.proxy.bodies import body_encode
    from apps.proxy.models import Exchange
    from apps.proxy.pricing import Usage, usage_cost

    existing = Exchange.objects.count()
    if existing >= rows:
        print(f"reusing {existing:,} exchanges")
        return
    started = time.perf_counter()
    rng = random.Random(42)
    sessions = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(800)]
    # Whose each session is, round robin (the random draws stay as they were).
    owner = {key: person_credential(n % PEOPLE) for n, key in enumerate(sessions)}
    bodies = [_request_body(rng, n) for n in range(8)]
    sse = body_encode(_sse_body().encode())
    headers = [[f"x-header-{i}", "v" * 40] for i in range(14)]
    batch: list[Exchange] = []
    for index in range(existing, rows):
        at = now - timedelta(seconds=rng.uniform(0, DAYS * 86400))
        model = rng.choices([m for m, _ in MODELS], [w for _, w in MODELS])[0]
        other = rng.random() < 0.05
        usage = Usage(
            input=rng.randint(1, 3000),
            output=rng.randint(20, 4000),
            cache_read=rng.choice([0, rng.randint(10_000, 180_000)]),
            cache_write_5m=rng.choice([0, 0, rng.randint(100, 8000)]),
            cache_write_1h=rng.choice([0, 0, 0, rng.randint(100, 4000)]),
        )
        roll = rng.random()
        status, error, state = 200, "", "complete"
        if roll < 0.02:
            status, error, state = 529, "overloaded_error", "complete"
        elif roll < 0.03:
            status, error, state = 429, "rate_limit_error", "complete"
        elif roll < 0.035:
            error = "overloaded_error"  # mid-stream error after a 200
        elif roll < 0.04:
            status, state = None, "client_disconnected"
        subscription = rng.random() < 0.6
        ttfb = rng.lognormvariate(6.5, 0.5)
        duration = ttfb + rng.lognormvariate(9, 0.8)
        streaming = rng.random() < 0.85
        uid = uuid.UUID(int=rng.getrandbits(128))
        session = rng.choice(sessions)  # drawn in the same order as before
        batch.append(
            Exchange(
                uid=uid,
                started_at=at,
                first_byte_at=at + timedelta(milliseconds=ttfb),
                ended_at=at + timedelta(milliseconds=duration),
                ttfb_ms=ttfb,
                duration_ms=duration,
                method="POST",
                path="/v1/messages/count_tokens" if other else "/v1/messages",
                query="beta=true",
                is_streaming=streaming and not other,
                model_requested=model,
                model=model,
                session_id=session,
                credential=owner[session],
                agent_id=f"agent-{index % 97}" if rng.random() < 0.2 else "",
                user_agent="claude-cli/2.1.197 (external, cli)",
                tools_offered=TOOLS,
                state=state,
                status_code=status,
                message_id=f"msg_{index:020d}",
                request_id=f"req_{index:020d}",
                stop_reason="tool_use" if roll > 0.5 else "end_turn",
                error_type=error,
                tools_called=(
                    {t: rng.randint(1, 3) for t in rng.sample(TOOLS, rng.randint(1, 3))}
                    if roll > 0.5
                    else {}
                ),
                input_tokens=usage.input,
                output_tokens=usage.output,
                cache_read_tokens=usage.cache_read,
                cache_write_5m_tokens=usage.cache_write_5m,
                cache_write_1h_tokens=usage.cache_write_1h,
                cost_usd=usage_cost(model=model, usage=usage, at=at),
                **_limits(rng, at, subscription),
                request_headers=headers,
                response_headers=headers,
                request_size=60_000,
                response_size=3_000,
                request_body=bodies[index % len(bodies)],
                response_body=sse,
                response_message={
                    "id": f"msg_{index}",
                    "content": [{"type": "text", "text": "ok"}],
                },
            )
        )
        if len(batch) == 5000:
            Exchange.objects.bulk_create(batch)
            _ledger_enter(batch)
            batch = []
    if batch:
        Exchange.objects.bulk_create(batch)
        _ledger_enter(batch)
    from django.db import connection

    with connection.cursor() as cursor:
        # PostgreSQL: autovacuum's steady state (statistics, and the visibility
        # map that index-only scans consult), not a table freshly filled.
        cursor.execute("ANALYZE" if connection.vendor == "sqlite" else "VACUUM ANALYZE")
    print(
        f"filled {rows - existing:,} exchanges in {time.perf_counter() - started:.0f} s"
    )


def _limits(rng: random.Random, at: datetime, subscription: bool) -> dict:
    if subscription:
        five = rng.random()
        return {
            "ratelimits": {"unified-status": "allowed", "unified-5h-utilization": five},
            "unified_status": "allowed",
            "unified_5h_utilization": five,
            "unified_5h_reset": at + timedelta(hours=2),
            "unified_7d_utilization": rng.random(),
            "unified_7d_reset": at + timedelta(days=3),
        }
    return {
        "ratelimits": {
            "requests-limit": 4000,
            "requests-remaining": rng.randint(0, 4000),
            "tokens-limit": 2_000_000,
            "tokens-remaining": rng.randint(0, 2_000_000),
            "requests-reset": (at + timedelta(seconds=30)).isoformat(),
        }
    }


def _request_body(rng: random.Random, seed: int) -> bytes:
    from apps.proxy.bodies import body_encode

    words = [f"word{rng.randint(0, 5000)}" for _ in range(6000)]
    body = {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": " ".join(words)}],
        "stream": True,
        "seed": seed,
    }
    return body_encode(json.dumps(body).encode())


def _sse_body() -> str:
    events = [("message_start", {"type": "message_start"})]
    events += [
        (
            "content_block_delta",
            {"type": "content_block_delta", "delta": {"text": "x" * 20}},
        )
        for _ in range(30)
    ]
    events.append(("message_stop", {"type": "message_stop"}))
    return "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events)


def _measure(*, runs: int, now: datetime, member: bool) -> None:
    from asgiref.sync import async_to_sync
    from django.test import Client

    from apps.proxy.models import Exchange

    client = Client()
    client.force_login(bench_user(member=member))
    seen = Exchange.objects.all()
    if member:  # the calls a member sees: person 0's
        seen = seen.filter(credential=person_credential(0))
    month = {"from": (now - timedelta(days=DAYS)).isoformat(), "to": now.isoformat()}
    some_id = seen.order_by("-started_at").values_list("id", flat=True)[500]
    session = seen.values_list("session_id", flat=True)[0]
    model = MODELS[0][0]
    page = max(1, min(50, Exchange.objects.count() // 100 - 1))  # admin pages 1-based
    cases = [
        ("exchanges (24 h, page 1)", "/api/exchanges", {}),
        ("exchanges (30 d, offset 10000)", "/api/exchanges",
         {**month, "offset": 10000}),
        ("exchanges (30 d, model + 5xx)", "/api/exchanges",
         {**month, "model": model, "status": "5xx"}),
        ("exchanges/{id}", f"/api/exchanges/{some_id}", {}),
        ("stats/summary (24 h)", "/api/stats/summary", {}),
        ("stats/summary (30 d)", "/api/stats/summary", month),
        ("stats/timeseries (24 h, hour, Europe/Paris)", "/api/stats/timeseries",
         {"tz": "Europe/Paris"}),
        ("stats/timeseries (30 d, day, America/New_York)", "/api/stats/timeseries",
         {**month, "bucket": "day", "tz": "America/New_York"}),
        ("stats/timeseries (30 d, hour)", "/api/stats/timeseries", month),
        ("stats/models (24 h)", "/api/stats/models", {}),
        ("stats/models (30 d)", "/api/stats/models", month),
        ("stats/tools (24 h)", "/api/stats/tools", {}),
        ("stats/tools (30 d)", "/api/stats/tools", month),
        ("stats/summary (30 d, model)", "/api/stats/summary",
         {**month, "model": model}),
        ("stats/performance (24 h)", "/api/stats/performance", {}),
        ("stats/performance (30 d)", "/api/stats/performance", month),
        ("stats/performance (30 d, family)", "/api/stats/performance",
         {**month, "family": "claude-opus"}),
        ("stats/summary (30 d, one session: scanned)", "/api/stats/summary",
         {**month, "session": session}),
        ("sessions (24 h)", "/api/sessions", {}),
        ("sessions (30 d)", "/api/sessions", month),
        ("limits (24 h)", "/api/limits", {}),
        ("limits (30 d)", "/api/limits", month),
        ("admin changelist", "/admin/proxy/exchange/", {}),
        ("admin changelist (filtered: model, 5xx)", "/admin/proxy/exchange/",
         {"model": model, "status": "5xx"}),
        ("admin changelist (page 50)", "/admin/proxy/exchange/", {"p": str(page)}),
        ("admin detail", f"/admin/proxy/exchange/{some_id}/change/", {}),
    ]  # fmt: skip
    if member:  # the admin is staff's
        cases = [case for case in cases if not case[0].startswith("admin")]
    print(f"rollups built ahead of reads (manage.py rollup): {rollup_fill():.1f} s")
    print(f"\n{'operation':<50} {'p50 ms':>8} {'p95 ms':>8}")
    worst = {"default": 0.0, "30 d": 0.0, "scanned": 0.0}
    for label, path, params in cases:
        p50, p95 = _time(lambda p=path, q=params: _get(client, p, q), runs)
        kind = "30 d" if "30 d" in label else "default"
        kind = "scanned" if "scanned" in label else kind
        worst[kind] = max(worst[kind], p95)
        print(f"{label:<50} {p50:8.1f} {p95:8.1f}")

    async def drain(response) -> int:
        size = 0
        async for chunk in response.streaming_content:
            size += len(chunk)
        return size

    def export(params: dict) -> None:
        response = client.get("/api/exchanges/export", params)
        assert response.status_code == 200, response.status_code
        async_to_sync(drain)(response)

    p50, p95 = _time(lambda: export({"format": "csv"}), max(3, runs // 4))
    rows = seen.filter(started_at__gte=now - timedelta(hours=24)).count()
    print(f"{f'exchanges/export csv (24 h, {rows:,} rows)':<50} {p50:8.1f} {p95:8.1f}")
    started = time.perf_counter()
    export({**month, "format": "jsonl"})
    total = time.perf_counter() - started
    print(f"exchanges/export jsonl (30 d, all rows): {total:.1f} s")
    print(
        f"\nworst p95, default range (last 24 h), by id and admin pages: "
        f"{worst['default']:.1f} ms (target < 150 ms)\n"
        f"worst p95 over 30 days (all rows): {worst['30 d']:.1f} ms (target < 150 ms)\n"
        f"worst p95 over 30 days with a filter rollups cannot apply: "
        f"{worst['scanned']:.1f} ms"
    )


def person_key(n: int) -> str:
    """Return the API key person n calls with."""
    return f"sk-ant-bench-person-{n}"


def person_credential(n: int) -> str:
    """Return the fingerprint the relay records for person n's calls."""
    from apps.proxy.recorder import secret_fingerprint

    return secret_fingerprint(person_key(n))


def bench_user(*, member: bool):
    """Return the reader: a superuser, or a member who claimed person 0's key."""
    from django.contrib.auth import get_user_model

    from apps.dashboard import services

    if not member:
        user, _ = get_user_model().objects.get_or_create(username="bench")
        user.is_staff = user.is_superuser = True  # a kept database's may be neither
        user.save()
        return user
    user, _ = get_user_model().objects.get_or_create(username="bench-member")
    services.claim_add(user=user, secret=person_key(0))
    return user


def rollup_fill() -> float:
    """Build the rollups as `manage.py rollup --watch` does beside the dashboard."""
    from apps.dashboard.services import rollup_refresh

    started = time.perf_counter()
    rollup_refresh()
    return time.perf_counter() - started


def _ledger_enter(batch: list) -> None:
    """Enter a batch's calls in the usage ledger, as the recorder does."""
    from django.db import transaction

    from apps.proxy import services

    with transaction.atomic():
        services.call_record_exchanges(uids=[exchange.uid for exchange in batch])


def _get(client, path: str, params: dict) -> None:
    response = client.get(path, params)
    if response.status_code != 200:
        raise SystemExit(
            f"{path} {params} -> {response.status_code} {response.content[:300]!r}"
        )


def _time(call, runs: int) -> tuple[float, float]:
    call()  # warm caches
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p95 = samples[max(0, -(-95 * len(samples) // 100) - 1)]
    return statistics.median(samples), p95


if __name__ == "__main__":
    sys.exit(main())
