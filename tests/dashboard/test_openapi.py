"""The OpenAPI schema tells the truth: schemathesis generates requests for every
operation from the schema itself and checks every answer against it.

In process (Django's WSGI application, no network), a bounded number of
examples per operation with a fixed seed: once with an API token over a seeded
world (exchanges, the ledger, an indexed transcript tree), once without
credentials. No answer may be a 5xx, and each must match what the schema
declares for its status (401, 404 and 422 included).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from claudemon.api import api
from tests.dashboard.test_transcript_pages import transcripts_seed

schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
schema.app = get_wsgi_application()
EXAMPLES = settings(
    max_examples=15,
    derandomize=True,  # the same requests on every run
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def world(db, tmp_path) -> Iterator[None]:
    """Seed data; keep the test's connection open across WSGI requests.

    Django's WSGI handler closes connections after each request; the test
    database lives in the test's transaction, so (as Django's test Client does)
    the close is unhooked while the requests run.
    """
    transcripts_seed(tmp_path / "dot-claude")
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


# What is checked: no server error, and status, content type, headers and body
# as the schema declares them. Not checked: that a schema-valid request is
# accepted ('from' must be earlier than 'to', a series spans at most
# MAX_BUCKETS buckets, a zone name must name a zone: rules JSON Schema cannot
# state, so they are in the descriptions and answered 422, which is declared),
# nor that every schema-violating request is refused (an empty value means the
# default, as in the pages' forms).
LENIENT = [
    schemathesis.checks.positive_data_acceptance,
    schemathesis.checks.negative_data_rejection,
]


@schema.parametrize()
@EXAMPLES
def test_it_answers_as_the_schema_says_with_a_token(case, world, token):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"}, excluded_checks=LENIENT
    )


@schema.parametrize()
@EXAMPLES
def test_it_answers_as_the_schema_says_without_credentials(case, world):
    response = case.call_and_validate(excluded_checks=LENIENT)
    # A method the operation does not take is refused before auth (405).
    assert response.status_code == (401 if case.method == "GET" else 405)
