"""Recording under faults and hostile input, through a real relay under daphne: no
secret on disk, no body that stops or swells the recorder, no batch lost at a stop."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from apps.proxy.bodies import body_decode
from apps.proxy.models import Exchange
from tests.conftest import wait_for
from tests.fake_upstream import Reply, message_events
from tests.proxy.conftest import recorded

pytestmark = pytest.mark.django_db(transaction=True)


def health(relay) -> dict:
    return httpx.get(relay.url + "/health", timeout=5).json()


def test_it_spills_no_secret_to_disk_and_keeps_the_files_owner_only(
    relay_factory, upstream, db_lock, tmp_path
):
    relay = relay_factory(
        CLAUDEMON_UPSTREAM_URL=upstream.url,
        CLAUDEMON_BACKLOG_SIZE="1",
        CLAUDEMON_REDACT_HEADERS="X-Team-Token",
        CLAUDEMON_VAR_DIR=str(tmp_path / "var"),
    )
    lock = db_lock()
    secrets = {
        "x-api-key": "sk-ant-api03-SPILLEDKEY-0123456789",
        "authorization": "Bearer sk-ant-oat01-SPILLEDTOKEN-0123456789",
        "cookie": "session=SPILLEDCOOKIE",
        "x-team-token": "SPILLEDTEAMTOKEN",
    }
    for n in range(4):
        response = httpx.post(
            relay.url + "/v1/messages?beta=true&key=SPILLEDQUERYKEY",
            content=b'{"stream": true}',
            headers=secrets,
        )
        assert response.status_code == 200
        if n == 0:  # the writer now holds the first call, waiting for the lock
            wait_for(lambda: health(relay)["database"].startswith("error"))
    backlog = tmp_path / "var" / "backlog"
    wait_for(lambda: sum(f.stat().st_size for f in backlog.glob("*")) > 0)
    [spill] = list(backlog.glob("*"))

    data = spill.read_bytes()
    for secret in ("SPILLEDKEY", "SPILLEDTOKEN", "SPILLEDCOOKIE", "SPILLEDTEAMTOKEN"):
        assert secret.encode() not in data, secret
    assert b"SPILLEDQUERYKEY" not in data
    assert oct(spill.stat().st_mode & 0o777) == "0o600"
    assert oct(backlog.stat().st_mode & 0o777) == "0o700"
    lock.release()
    rows = recorded(4, timeout=30)
    assert all(r.query.startswith("beta=true&key=sha256:") for r in rows)


def test_it_spills_the_batch_in_hand_when_stopped_while_the_database_is_locked(
    relay_factory, upstream, db_lock, tmp_path
):
    # The same relay started again: the same var folder and name (its spill's).
    same = {"CLAUDEMON_VAR_DIR": str(tmp_path / "var"), "CLAUDEMON_RELAY_NAME": "r1"}
    relay = relay_factory(CLAUDEMON_UPSTREAM_URL=upstream.url, **same)
    lock = db_lock()
    httpx.post(relay.url + "/v1/messages", content=b'{"model": "held-at-stop"}')
    wait_for(lambda: health(relay)["database"].startswith("error"))

    relay.stop()  # SIGTERM while the writer holds the call, waiting for the lock
    lock.release()
    assert not Exchange.objects.filter(model_requested="held-at-stop").exists()
    again = relay_factory(CLAUDEMON_UPSTREAM_URL=upstream.url, **same)

    [row] = recorded(model_requested="held-at-stop", timeout=30)
    assert row.state == Exchange.State.COMPLETE
    again.settle()


def test_it_records_a_body_nested_100000_levels_deep_raw_with_a_note(relay, upstream):
    hostile = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    upstream.enqueue(Reply(body=b'{"type": "message"}'), Reply(events=message_events()))

    first = httpx.post(relay.url + "/v1/messages", content=hostile)
    second = httpx.post(relay.url + "/v1/messages", content=b'{"model": "after"}')

    assert (first.status_code, second.status_code) == (200, 200)
    hostile_row, after = recorded(2)
    assert body_decode(hostile_row.request_body) == hostile
    assert "nested too deeply" in hostile_row.request_body_note
    assert after.model_requested == "after"
    assert health(relay)["status"] == "ok"


def peak_memory(pid: int) -> int:
    """Return a process's peak resident memory in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_it_forwards_a_large_body_whole_and_records_it_capped(relay_factory, upstream):
    relay = relay_factory(
        CLAUDEMON_UPSTREAM_URL=upstream.url, CLAUDEMON_RECORD_MAX_BODY="1048576"
    )
    # A conversation of many small messages: parsed whole, it would take several
    # times its size in Python objects.
    message = b'{"role": "user", "content": "hi"},'
    count = 24 * 1024 * 1024 // len(message)
    body = b'{"model": "m", "messages": [' + message * count + b'{"role": "user"}]}'
    upstream.enqueue(Reply(body=b'{"type": "message"}'), Reply(body=b"{}"))
    httpx.post(relay.url + "/v1/messages", content=b'{"model": "warm-up"}')
    recorded(model_requested="warm-up")
    before = peak_memory(relay.process.pid)

    response = httpx.post(relay.url + "/v1/messages", content=body, timeout=60)
    [row] = recorded(path="/v1/messages", request_size=len(body), timeout=60)

    grew = peak_memory(relay.process.pid) - before
    print(
        f"peak memory grew {grew / 2**20:.0f} MB for a {len(body) / 2**20:.0f} MB body"
    )
    assert response.status_code == 200
    assert upstream.requests[-1].body == body
    assert body_decode(row.request_body) == body[:1048576]
    assert "truncated" in row.request_body_note
    # The handler's own copy and the forwarding hold the body twice at most; the
    # recorder adds its capped megabyte, not a parse of the whole.
    assert grew < 3 * len(body)
