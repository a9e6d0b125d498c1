"""Recording never blocks or breaks the relay, and never stores a secret."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from django.db import connection

from apps.proxy.models import ApiCall, Exchange
from tests.conftest import free_port, wait_for
from tests.fake_upstream import Reply, message_events
from tests.proxy.conftest import recorded

pytestmark = pytest.mark.django_db(transaction=True)


def health_when(relay, wanted) -> dict:
    """Poll the relay's /health until wanted(report) holds; return that report."""

    def report() -> dict | None:
        answer = httpx.get(relay.url + "/health")
        assert answer.status_code == 200  # degraded, never down, while it relays
        return answer.json() if wanted(answer.json()) else None

    return wait_for(report)


def test_it_streams_and_later_records_everything_while_another_process_locks_the_db(
    relay_factory, upstream, db_lock
):
    # A small backlog also forces the spill-to-file path.
    relay = relay_factory(
        CLAUDEMON_UPSTREAM_URL=upstream.url, CLAUDEMON_BACKLOG_SIZE="4"
    )
    events = message_events(text="streamed while locked", text_parts=5)
    upstream.enqueue(*[Reply(events=events, pause=0.01) for _ in range(20)])
    lock = db_lock()

    def stream(_: int) -> bytes:
        return httpx.post(relay.url + "/v1/messages", content=b"{}", timeout=30).content

    try:
        with ThreadPoolExecutor(20) as pool:
            bodies = list(pool.map(stream, range(20)))
        # The writer meets the lock: the relay says so, and holds the recordings.
        health_during_lock = health_when(relay, lambda r: r["status"] == "degraded")
    finally:
        lock.release()

    assert bodies == [b"".join(events)] * 20
    assert health_during_lock["recording_backlog"] >= 1
    rows = recorded(20, timeout=30)
    assert len(rows) == 20
    assert all(r.state == Exchange.State.COMPLETE for r in rows)
    assert all(
        r.response_message["content"][0]["text"] == "streamed while locked"
        for r in rows
    )
    wait_for(lambda: httpx.get(relay.url + "/health").json()["recording_backlog"] == 0)
    assert httpx.get(relay.url + "/health").json()["status"] == "ok"


def test_it_stores_no_key_or_token_anywhere_in_the_database_files(relay, upstream):
    api_key = "sk-ant-api03-SECRETKEYTEXT-0123456789abcdef"
    oauth = "sk-ant-oat01-SECRETOAUTHTEXT-fedcba9876543210"
    upstream.enqueue(
        Reply(
            events=message_events(),
            headers=[("set-cookie", "session=SECRETCOOKIETEXT")],
        )
    )
    httpx.post(
        relay.url + "/v1/messages",
        content=b'{"stream": true}',
        headers={"x-api-key": api_key, "cookie": "c=SECRETCOOKIETEXT"},
    )
    httpx.post(
        relay.url + "/v1/messages/count_tokens",
        content=b"{}",
        headers={"authorization": f"Bearer {oauth}"},
    )
    rows = recorded(2)

    database = Path(connection.settings_dict["NAME"])
    stored = b"".join(
        path.read_bytes()
        for path in [database, Path(f"{database}-wal")]
        if path.exists()
    )
    for secret in (
        api_key,
        oauth,
        "SECRETCOOKIETEXT",
        "SECRETKEYTEXT",
        "SECRETOAUTHTEXT",
    ):
        assert secret.encode() not in stored
    headers = dict((k.lower(), v) for k, v in rows[0].request_headers)
    assert (
        headers["x-api-key"].startswith("sha256:") and len(headers["x-api-key"]) == 19
    )
    assert dict((k.lower(), v) for k, v in rows[1].request_headers)[
        "authorization"
    ].startswith("Bearer sha256:")


def test_it_redacts_configured_extra_headers(relay_factory, upstream):
    relay = relay_factory(
        CLAUDEMON_UPSTREAM_URL=upstream.url, CLAUDEMON_REDACT_HEADERS="X-Team-Token"
    )

    httpx.post(relay.url + "/v1/models", headers={"x-team-token": "team-secret-value"})

    [row] = recorded()
    assert dict(row.request_headers)["x-team-token"].startswith("sha256:")
    assert upstream.requests[0].header("x-team-token") == "team-secret-value"


def test_it_shows_in_flight_exchanges_before_they_finish(relay, upstream):
    upstream.enqueue(
        Reply(events=message_events(text="z" * 30, text_parts=30), pause=0.1)
    )

    with httpx.stream(
        "POST", relay.url + "/v1/messages", content=b'{"model": "m1"}'
    ) as resp:
        chunks = resp.iter_raw()
        next(chunks)
        in_flight = wait_for(
            lambda: Exchange.objects.filter(state=Exchange.State.IN_PROGRESS).first()
        )
        assert in_flight.model_requested == "m1"
        for _ in chunks:
            pass
    [row] = recorded()
    assert row.uid == in_flight.uid
    assert Exchange.objects.count() == 1


def test_it_keeps_relaying_when_the_database_is_gone(relay_factory, upstream, tmp_path):
    missing = tmp_path / "gone" / "claudemon.sqlite3"
    if connection.vendor == "sqlite":
        gone = {"CLAUDEMON_DB_PATH": str(missing)}
    else:  # a server that no longer answers
        gone = {"CLAUDEMON_DATABASE_URL": f"postgres://127.0.0.1:{free_port()}/gone"}
    relay = relay_factory(CLAUDEMON_UPSTREAM_URL=upstream.url, **gone)
    missing.unlink(missing_ok=True)
    for leftover in missing.parent.glob("*"):
        leftover.unlink()

    response = httpx.post(relay.url + "/v1/messages", content=b'{"stream": true}')
    report = health_when(relay, lambda r: r["status"] == "degraded")
    relay.stop()  # it can never write its backlog; stop it so others can settle

    assert response.status_code == 200 and b"message_stop" in response.content
    assert report["database"].startswith("error")


def test_it_loses_nothing_when_the_database_server_restarts_mid_stream(
    relay_factory, upstream
):
    """Twenty streams run through a relay while the PostgreSQL server drops every
    connection of the test database, again and again (pg_terminate_backend: what
    a restart or a failover does to the relay's connections, without disturbing
    other databases on the shared server). Every call is relayed whole, and once
    the recorder's backlog catches up every one is an exchange and a ledger call,
    with the right figures."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL: SQLite has no server to restart")
    relay = relay_factory(CLAUDEMON_UPSTREAM_URL=upstream.url)
    gate = threading.Event()
    events = message_events(text="through the restart", text_parts=10)
    upstream.enqueue(*[Reply(events=events, pause=0.05, gate=gate) for _ in range(20)])

    def stream(_: int) -> bytes:
        return httpx.post(relay.url + "/v1/messages", content=b"{}", timeout=60).content

    with ThreadPoolExecutor(20) as pool:
        bodies = pool.map(stream, range(20))
        # Every start is written (so the writer holds a live connection), then the
        # server drops it while the streams trickle and their finishes are written.
        wait_for(
            lambda: (
                Exchange.objects.filter(state=Exchange.State.IN_PROGRESS).count() == 20
            )
        )
        terminated = _terminate_backends()
        gate.set()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            terminated += _terminate_backends()
            time.sleep(0.1)
        bodies = list(bodies)

    assert terminated >= 1
    assert bodies == [b"".join(events)] * 20
    relay.settle(timeout=60)
    rows = recorded(20, timeout=30)
    assert len(rows) == 20 and all(r.state == Exchange.State.COMPLETE for r in rows)
    calls = ApiCall.objects.filter(exchange_id__in=[r.pk for r in rows])
    assert calls.count() == 20
    assert sum(calls.values_list("input_tokens", flat=True)) == 20 * 25
    assert httpx.get(relay.url + "/health").json()["status"] == "ok"


def _terminate_backends() -> int:
    """Drop every other connection to the test database; return how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]
