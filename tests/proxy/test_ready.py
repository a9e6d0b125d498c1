"""The relay's /ready: 200 when the upstream can be reached and recording keeps up,
503 naming what is not ready (for load balancers), never relayed upstream."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def ready(relay) -> httpx.Response:
    return httpx.get(relay.url + "/ready", timeout=10)


def test_it_is_ready_when_the_upstream_answers_a_connect(relay, upstream):
    response = ready(relay)

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "upstream": "ok",
        "recording": "ok",
        "recording_backlog": 0,
    }
    assert upstream.requests == []  # answered by the relay itself


def test_it_is_not_ready_when_the_upstream_cannot_be_reached(relay_factory):
    relay = relay_factory(CLAUDEMON_UPSTREAM_URL=f"http://127.0.0.1:{free_port()}")

    response = ready(relay)

    assert response.status_code == 503
    report = response.json()
    assert report["status"] == "not ready"
    assert report["upstream"].startswith("cannot connect to http://127.0.0.1:")
    assert report["recording"] == "ok"


def test_it_stays_ready_while_the_shared_database_is_stuck(
    relay_factory, upstream, db_lock
):
    """Every relay shares the database: were a stuck database to make relays
    unready, a load balancer would take all of them out at once, while each can
    relay and hold the calls in its backlog until the database is back."""
    relay = relay_factory(CLAUDEMON_UPSTREAM_URL=upstream.url)
    lock = db_lock()
    httpx.post(relay.url + "/v1/messages", content=b"{}")

    def health() -> dict:
        return httpx.get(relay.url + "/health", timeout=10).json()

    stuck = wait_for(lambda: health()["status"] == "degraded" and health())
    during = ready(relay)
    relayed = httpx.post(relay.url + "/v1/messages", content=b"{}")
    lock.release()

    assert "locked" in stuck["recording"] or "busy" in stuck["recording"]
    assert during.status_code == 200, during.json()
    assert during.json()["recording_backlog"] >= 1
    assert relayed.status_code == 200
    relay.settle()
