"""A bug of ours still gets an Anthropic-shaped answer and a record, never a hang."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, override_settings

from apps.proxy import views
from apps.proxy.models import Exchange
from tests.proxy.conftest import recorded

pytestmark = pytest.mark.django_db(transaction=True)


class Exploding:
    async def handle_async_request(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")


@override_settings(
    ROOT_URLCONF="claudemon.urls_core",
    MIDDLEWARE=[],
    CLAUDEMON_RELAY_HOSTS=frozenset({"testserver"}),  # the test client's Host
)
def test_it_answers_500_in_anthropic_shape_and_records_a_proxy_error(monkeypatch):
    monkeypatch.setattr(views, "upstream_pool", Exploding)

    response = async_to_sync(AsyncClient().post)(
        "/v1/messages", data=b"{}", content_type="application/json"
    )

    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "api_error" and "boom" in error["message"]
    [row] = recorded()
    assert (row.state, row.error_type, row.status_code) == (
        Exchange.State.PROXY_ERROR,
        "proxy_error",
        500,
    )
