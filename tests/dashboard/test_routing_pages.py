"""The request pages show which route and provider served a routed call."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from apps.proxy.bodies import body_encode
from tests.factories import exchange_create

pytestmark = pytest.mark.django_db


def routed_exchange():
    return exchange_create(
        started_at=datetime.now(UTC),
        model_requested="claude-haiku-4-5",
        model="qwen2.5-coder",
        route="haiku to local",
        provider="local",
        provider_status=200,
        provider_request_body=body_encode(
            b'{"model": "qwen2.5-coder", "messages": []}'
        ),
        provider_response_body=body_encode(b"data: [DONE]\n\n"),
        routing={"agent": "code-reviewer", "attempts": []},
    )


def test_the_inspector_shows_route_provider_and_both_sides_of_the_call(user_client):
    exchange = routed_exchange()
    url = reverse("dashboard:exchange-detail", args=[exchange.pk])

    summary = user_client.get(url).content.decode()
    raw = user_client.get(url, {"tab": "raw"}).content.decode()

    assert "haiku to local" in summary and "(subagent code-reviewer)" in summary
    assert "answered 200" in summary and "(asked for claude-haiku-4-5)" in summary
    assert "Request body sent to the provider" in raw
    assert "&quot;model&quot;: &quot;qwen2.5-coder&quot;" in raw
    assert "Response body from the provider" in raw


def test_an_unrouted_exchange_shows_no_route(user_client):
    exchange = exchange_create(started_at=datetime.now(UTC))
    url = reverse("dashboard:exchange-detail", args=[exchange.pk])

    page = user_client.get(url).content.decode()
    raw = user_client.get(url, {"tab": "raw"}).content.decode()

    assert "<dt>Route</dt>" not in page and "sent to the provider" not in raw


def test_the_requests_list_marks_routed_calls(user_client):
    routed_exchange()
    exchange_create(started_at=datetime.now(UTC))

    page = user_client.get(reverse("dashboard:exchange-list")).content.decode()

    assert page.count("via local") == 1
    assert 'title="route haiku to local"' in page
