"""Reads never write: every GET page and API operation of the data deployment,
walked as test_access.py walks them, issues no INSERT, UPDATE or DELETE.

One write is by design and asserted apart: token auth stamps a token's
last_used_at at most once a minute (apps.dashboard.services.accounts), so its
owner can tell a token in use from a dead or leaked one. It is the
authentication's bookkeeping, not the read's, and a second call within the
minute writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.dashboard.test_access import data_urls
from tests.dashboard.test_transcript_pages import RELAYED, transcripts_seed

WRITE = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b\s", re.IGNORECASE)
DAYS = {"range": "custom", "from": "2026-11-19", "to": "2026-11-21", "tz": "UTC"}
API_DAYS = {"from": "2026-11-19T00:00:00Z", "to": "2026-11-21T00:00:00Z"}


@pytest.fixture
def world(db, tmp_path, superuser) -> dict:
    seeded = transcripts_seed(tmp_path / "dot-claude")
    client = Client()
    client.force_login(superuser)
    exchange = next(iter(seeded["exchanges"].values()))
    return {"client": client, "exchange_id": str(exchange.pk)}


def _writes(client: Client, url: str, params: dict) -> list[str]:
    """GET url (its whole body, streamed or not) and return the writes it made."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params)
        if response.streaming:  # the export: its queries run as it streams
            async_to_sync(_drain)(response.streaming_content)
    assert response.status_code != 500, url  # /ready is 503 here: no worker runs
    return [q["sql"] for q in captured.captured_queries if WRITE.search(q["sql"])]


async def _drain(content: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in content])


def _concrete(url: str, exchange_id: str) -> str:
    """Put a real exchange id and session id where test_access put samples."""
    url = re.sub(r"/1(?=/|$)", f"/{exchange_id}", url)
    return url.replace("/x/y/", f"/{exchange_id}/").replace("/x/", f"/{RELAYED}/")


def _pages() -> list[str]:
    return [url for url in data_urls() if not url.startswith("/api/")]


@pytest.mark.parametrize("url", _pages())
def test_it_writes_nothing_when_a_page_is_read(world, url):
    url = _concrete(url, world["exchange_id"])
    assert _writes(world["client"], url, {}) == []
    assert _writes(world["client"], url, DAYS) == []


def _api_gets(client: Client, exchange_id: str) -> list[tuple[str, dict]]:
    schema = client.get("/api/openapi.json").json()
    calls = []
    for path, operations in schema["paths"].items():
        if "get" not in operations:
            continue
        url = path.replace("{exchange_id}", exchange_id)
        url = url.replace("{session_id}", RELAYED)
        names = {p["name"] for p in operations["get"].get("parameters", [])}
        params = {k: v for k, v in API_DAYS.items() if k in names}
        params.update({"q": "fixture"} if "q" in names else {})
        calls.append((url, params))
    return calls


def test_it_writes_nothing_when_the_api_is_read(world):
    client = world["client"]
    calls = _api_gets(client, world["exchange_id"])
    assert len(calls) >= 20
    for url, params in calls:
        assert _writes(client, url, params) == [], url
        assert _writes(client, url, {}) == [], url


def test_it_stamps_a_token_once_a_minute_and_writes_nothing_else(world, token):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    first = _writes(client, "/api/stats/summary", API_DAYS)
    assert len(first) == 1 and "dashboard_apitoken" in first[0]
    assert "last_used_at" in first[0]
    for url, params in _api_gets(world["client"], world["exchange_id"]):
        assert _writes(client, url, params) == [], url
