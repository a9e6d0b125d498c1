"""Who sees what (issue 15 §4): every page and API operation of the data
deployment, walked as test_access.py walks them, as user B with user A's calls
seeded, shows B none of A's calls, sessions, figures or exports, and B's own.

A's world is the transcript pages' (a relayed, indexed session with a search
phrase, a project, a plan and a subagent), its calls sent with A's key; a
transcript-only session (no credential) and an unclaimed call are staff-only.
The last test sends calls with the official SDK through a real relay (two API
keys, an OAuth token) and claims one on the profile page.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import anthropic
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from apps.dashboard import services
from apps.dashboard.models import CredentialClaim
from apps.dashboard.selectors.sessions import session_page_figures
from apps.dashboard.templatetags.dashboard import usd
from apps.proxy.models import ApiCall, Exchange
from apps.proxy.recorder import secret_fingerprint
from apps.proxy.selectors import Viewer
from tests.dashboard.conftest import PASSWORD
from tests.dashboard.test_access import data_urls
from tests.dashboard.test_reads_never_write import API_DAYS, DAYS, _concrete
from tests.dashboard.test_transcript_pages import (
    COSTS,
    ORPHAN,
    PHRASE,
    RELAYED,
    transcripts_seed,
)
from tests.factories import exchange_create
from tests.indexing.conftest import T0

KEY_A, KEY_B, KEY_NOBODY = "sk-ant-key-of-anna", "sk-ant-key-of-ben", "sk-ant-nobody"
B_SESSION = "b0b0b0b0-eeee-4000-8000-00000000000b"
B_MODEL = "claude-bens-model-beta"
NOBODY_SESSION = "00000000-ffff-4000-8000-00000000000f"
# What only A's calls, sessions and transcripts hold (the index's project path,
# the search phrase, the plan under A's session's slug, A's request ids).
A_MARKS = (RELAYED, PHRASE, "/home/me/billing", "req_t1a", "Rollback plan")
STAFF_ONLY = (ORPHAN, NOBODY_SESSION, "/home/me/ledger")


@pytest.fixture
def world(db, tmp_path) -> dict:
    seeded = transcripts_seed(tmp_path / "dot-claude")
    people = get_user_model().objects
    anna = people.create_user(username="anna", password=PASSWORD)
    ben = people.create_user(username="ben", password=PASSWORD)
    services.claim_add(user=anna, secret=KEY_A)
    services.claim_add(user=ben, secret=f"Bearer {KEY_B}")  # as pasted from a header
    # A's relayed calls were sent with A's key (the recorder's column, tested
    # through the relay in test_it_records_the_credential_of_each_call).
    Exchange.objects.update(credential=secret_fingerprint(KEY_A))
    ApiCall.objects.exclude(exchange_id=None).update(
        credential=secret_fingerprint(KEY_A)
    )
    mine = exchange_create(
        started_at=T0, session_id=B_SESSION, model=B_MODEL, request_id="req_bens",
        credential=secret_fingerprint(KEY_B), input_tokens=4242,
    )  # fmt: skip
    exchange_create(
        started_at=T0, session_id=NOBODY_SESSION, request_id="req_nobody",
        credential=secret_fingerprint(KEY_NOBODY),
    )  # fmt: skip
    a_exchange = next(iter(seeded["exchanges"].values()))
    client = Client()
    client.force_login(ben)
    return {"ben": client, "a_exchange": str(a_exchange.pk), "b_exchange": mine}


def _body(client: Client, url: str, params: dict) -> tuple[int, str]:
    response = client.get(url, params)
    if response.streaming:
        content = async_to_sync(_drain)(response.streaming_content)
    else:
        content = response.content
    return response.status_code, content.decode("utf-8", "replace")


async def _drain(content: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in content])


def _assert_hidden(status: int, body: str, url: str) -> None:
    assert status != 500, url
    for mark in A_MARKS + STAFF_ONLY:
        assert mark not in body, (url, mark)


@pytest.mark.parametrize("url", [u for u in data_urls() if not u.startswith("/api/")])
def test_it_shows_b_no_page_of_as_calls(world, url):
    client = world["ben"]
    # The sample ids filled with A's exchange and A's session: B gets 404 there.
    concrete = _concrete(url, world["a_exchange"])
    for params in ({}, DAYS):
        status, body = _body(client, concrete, params)
        _assert_hidden(status, body, concrete)
    if concrete != url and "/login" not in url:
        assert status in (302, 404), (concrete, status)


def test_it_shows_b_no_api_operation_of_as_calls(world):
    client = world["ben"]
    schema = client.get("/api/openapi.json").json()
    walked = 0
    for path, operations in schema["paths"].items():
        if "get" not in operations:
            continue
        names = {p["name"] for p in operations["get"].get("parameters", [])}
        params = {k: v for k, v in API_DAYS.items() if k in names}
        params.update({"q": "fixture"} if "q" in names else {})
        for session_id in (RELAYED, ORPHAN):
            url = path.replace("{exchange_id}", world["a_exchange"])
            url = url.replace("{session_id}", session_id)
            status, body = _body(client, url, params)
            _assert_hidden(status, body, url)
            if "{" in path:
                assert status == 404, (url, status)
        walked += 1
    assert walked >= 20


def test_it_shows_b_their_own_calls_and_figures(world):
    client = world["ben"]
    listed = client.get("/api/exchanges", API_DAYS).json()
    assert [item["request_id"] for item in listed["items"]] == ["req_bens"]
    summary = client.get("/api/stats/summary", API_DAYS).json()
    assert (summary["requests"], summary["tokens"]["input"]) == (1, 4242)
    sessions = client.get("/api/sessions", API_DAYS).json()
    assert [row["session_id"] for row in sessions["items"]] == [B_SESSION]
    b_exchange = world["b_exchange"].pk
    assert client.get(f"/api/exchanges/{b_exchange}").status_code == 200
    assert client.get(f"/requests/{b_exchange}/").status_code == 200
    page = client.get("/requests/", DAYS).content.decode()
    assert B_MODEL in page and "req_bens" not in A_MARKS
    export = _body(client, "/api/exchanges/export", {**API_DAYS, "format": "jsonl"})
    assert export[1].count("\n") == 1 and "req_bens" in export[1]


def test_it_sums_a_shared_session_from_bs_calls_alone(world):
    # One session holding calls of both (a key passed around): B's row counts
    # B's calls, whenever made; a session whose last call of B's is before the
    # range is not B's in the range, however recent A's calls in it are.
    shared, stale = "5a5a5a5a-0000-4000-8000-000000000005", "57a1e000-0000-4000-8000-0"
    a, b = secret_fingerprint(KEY_A), secret_fingerprint(KEY_B)
    for session, at, whose, tokens in (
        (shared, T0 - timedelta(days=3), b, 10), (shared, T0, b, 20),
        (shared, T0, a, 1000), (stale, T0 - timedelta(days=3), b, 1), (stale, T0, a, 1),
    ):  # fmt: skip
        exchange_create(
            started_at=at, session_id=session, credential=whose, input_tokens=tokens
        )
    rows = world["ben"].get("/api/sessions", API_DAYS).json()["items"]
    found = {row["session_id"]: row for row in rows}
    assert set(found) == {B_SESSION, shared}
    assert (found[shared]["requests"], found[shared]["tokens"]["input"]) == (2, 30)
    paged = world["ben"].get("/api/sessions", {**API_DAYS, "limit": 1, "offset": 1})
    assert paged.json()["count"] == 2  # the count is of all, the page of one
    assert [row["session_id"] for row in paged.json()["items"]] == [
        rows[1]["session_id"]
    ]
    heading = session_page_figures(session_id=shared, viewer=Viewer(credentials=(b,)))
    assert (heading.calls, heading.main.calls) == (2, 2)  # its page's, the same


def test_it_shows_b_none_of_as_calls_in_a_session_they_share(world):
    # B's call in A's indexed session: B sees the session, but its turns count
    # and link B's calls alone (its transcript is the session's whole: README).
    b = secret_fingerprint(KEY_B)
    exchange_create(started_at=T0, session_id=RELAYED, credential=b)
    page = world["ben"].get(f"/sessions/{RELAYED}/")
    assert page.status_code == 200
    body = page.content.decode()
    for exchange in Exchange.objects.filter(session_id=RELAYED).exclude(credential=b):
        assert f"/requests/{exchange.pk}/" not in body
    turn_one = COSTS["req_t1a"] + COSTS["req_t1b"]
    assert not any(usd(cost) in body for cost in [turn_one, *COSTS.values()])


def test_it_shows_staff_everyone_and_one_person_on_request(world, user_client):
    everyone = user_client.get("/api/exchanges", API_DAYS).json()
    ids = {item["request_id"] for item in everyone["items"]}
    assert {"req_bens", "req_nobody", "req_t1a"} <= ids
    bens = user_client.get("/api/exchanges", {**API_DAYS, "user": "ben"}).json()
    assert [item["request_id"] for item in bens["items"]] == ["req_bens"]
    summary = user_client.get("/api/stats/summary", {**API_DAYS, "user": "ben"})
    assert summary.json()["requests"] == 1
    page = user_client.get("/requests/", {**DAYS, "user": "anna"}).content.decode()
    assert (
        B_MODEL not in page
        and "req_t1a"
        in user_client.get(
            "/api/exchanges", {**API_DAYS, "user": "anna"}
        ).content.decode()
    )


def test_it_keeps_a_claim_to_one_user_and_never_the_key(world):
    carl = get_user_model().objects.create_user(username="carl", password=PASSWORD)
    with pytest.raises(services.ClaimError):
        services.claim_add(user=carl, secret=KEY_A)
    claims = list(CredentialClaim.objects.all())
    assert len(claims) == 2
    assert all(KEY_A not in str(vars(claim)) for claim in claims)


# --- through a real relay: the recorder's column, then a claim on the profile page

RELAY_KEY_A, RELAY_KEY_B = "sk-ant-relay-anna-0001", "sk-ant-relay-ben-0002"
RELAY_TOKEN = "sk-ant-oat01-relay-anna-oauth"  # an OAuth bearer token


def _sdk_call(relay, session: str, **credential: str) -> str:
    """Send one Messages call with the official SDK; return its request id."""
    client = anthropic.Anthropic(
        base_url=relay.url, max_retries=0,
        default_headers={"x-claude-code-session-id": session}, **credential,
    )  # fmt: skip
    reply = client.messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=16,
        messages=[{"role": "user", "content": f"hello from {session}"}],
    )  # fmt: skip
    return reply.headers["request-id"]


@pytest.mark.django_db(transaction=True)
def test_it_records_the_credential_of_each_call(relay, upstream, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)  # the SDK's fallback
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    relay.settle()
    sent = {
        RELAY_KEY_A: [_sdk_call(relay, f"{i}aaa0000-0000-4000-8000-00000000000a",
                                api_key=RELAY_KEY_A) for i in range(2)],
        RELAY_KEY_B: [_sdk_call(relay, "bbbb0000-0000-4000-8000-00000000000b",
                                api_key=RELAY_KEY_B)],
        RELAY_TOKEN: [_sdk_call(relay, "cccc0000-0000-4000-8000-00000000000c",
                                auth_token=RELAY_TOKEN)],
    }  # fmt: skip
    assert upstream.requests[-1].header("authorization") == f"Bearer {RELAY_TOKEN}"
    relay.settle()
    for secret, request_ids in sent.items():
        whose = secret_fingerprint(secret)
        exchanges = Exchange.objects.filter(request_id__in=request_ids)
        calls = ApiCall.objects.filter(exchange_id__in=exchanges.values("pk"))
        for rows in (exchanges, calls):  # the exchange and its ledger row
            credentials = list(rows.values_list("credential", flat=True))
            assert credentials == [whose] * len(request_ids), secret
    _assert_never_stored(RELAY_KEY_A, RELAY_KEY_B, RELAY_TOKEN)
    anna = get_user_model().objects.create_user(username="anna", password=PASSWORD)
    client = Client()
    client.force_login(anna)
    assert client.get("/api/exchanges").json()["count"] == 0  # nothing claimed yet
    claimed = client.post("/profile/", {"secret": RELAY_KEY_A, "label": "laptop"})
    assert claimed.status_code == 302
    listed = client.get("/api/exchanges").json()["items"]
    assert sorted(item["request_id"] for item in listed) == sorted(sent[RELAY_KEY_A])
    assert client.get("/api/stats/summary").json()["requests"] == 2
    sessions = client.get("/api/sessions").json()["items"]
    assert {row["session_id"][:4] for row in sessions} == {"0aaa", "1aaa"}
    page = client.get("/requests/").content.decode()
    shown = {int(pk) for pk in re.findall(r'<tr data-id="(\d+)"', page)}
    assert shown == {item["id"] for item in listed}
    _assert_never_stored(RELAY_KEY_A)  # the claim keeps only the fingerprint


def _assert_never_stored(*secrets: str) -> None:
    """Assert no secret is anywhere in the database's files (WAL included)."""
    database = Path(connection.settings_dict["NAME"])
    stored = b"".join(
        path.read_bytes()
        for path in database.parent.glob(database.name + "*")
        if path.is_file()
    )
    for secret in secrets:
        assert secret.encode() not in stored, secret
