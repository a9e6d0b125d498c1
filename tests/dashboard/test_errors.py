"""One definition of an error: the exchange rows' badges and the usage figures
(apps.proxy.services.call_error, the ledger's) count the same calls."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse

from apps.dashboard import selectors
from apps.dashboard.selectors.ledger import Scope
from apps.proxy.models import Exchange
from apps.proxy.selectors import EVERYONE
from tests.factories import T0, exchange_create

State = Exchange.State
# (state, status, error_type): the shapes an exchange ends in.
ENDINGS = [
    (State.COMPLETE, 200, ""),
    (State.COMPLETE, 200, "overloaded_error"),  # an error event after a 200
    (State.COMPLETE, 429, "rate_limit_error"),
    (State.COMPLETE, 500, ""),
    (State.CLIENT_DISCONNECTED, 200, "client_disconnected"),
    (State.UPSTREAM_ERROR, None, "upstream_unreachable"),
    (State.PROXY_ERROR, None, ""),
]


@pytest.mark.django_db
def test_it_marks_as_errors_on_the_requests_page_exactly_the_calls_the_figures_count(
    user_client,
):
    for i, (state, status, error_type) in enumerate(ENDINGS):
        exchange_create(
            started_at=T0 + timedelta(minutes=i),
            state=state,
            status_code=status,
            error_type=error_type,
        )
    span = {"range": "custom", "from": "2026-11-20", "to": "2026-11-20", "tz": "UTC"}
    page = user_client.get(reverse("dashboard:exchange-list"), span)
    rows = re.findall(r'<tr data-id="\d+".*?</tr>', page.content.decode(), re.S)
    marked = sum('class="badge bad"' in row for row in rows)
    counted = selectors.error_counts(
        scope=Scope(T0, T0 + timedelta(hours=1), viewer=EVERYONE)
    )
    assert len(rows) == len(ENDINGS)
    assert marked == sum(counted.values()) == 5
