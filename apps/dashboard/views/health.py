"""The data deployment's public probes: health and readiness (JSON, no content)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse

from apps.dashboard import selectors
from apps.dashboard.selectors.readiness import data_readiness


@login_not_required  # public on purpose: status and a timestamp, no content
def health(request: HttpRequest) -> JsonResponse:
    """Report database and index status and the newest exchange time as JSON."""
    report = selectors.data_health()
    return JsonResponse(report, status=200 if report["database"] == "ok" else 503)


@login_not_required  # public on purpose, for load balancers: states, no content
def ready(request: HttpRequest) -> JsonResponse:
    """Say whether the data side can serve: database migrated, workers alive."""
    report = data_readiness()
    return JsonResponse(report, status=200 if report["status"] == "ready" else 503)
