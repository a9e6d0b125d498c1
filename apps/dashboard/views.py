"""Server-rendered pages of the data deployment."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from apps.dashboard import selectors


def home(request: HttpRequest) -> HttpResponse:
    """Render the placeholder home page until the dashboard lands."""
    return render(request, "dashboard/home.html", {"health": selectors.data_health()})


@login_not_required  # public on purpose: status and a timestamp, no content
def health(request: HttpRequest) -> JsonResponse:
    """Report database reachability and the newest exchange time as JSON."""
    report = selectors.data_health()
    return JsonResponse(report, status=200 if report["database"] == "ok" else 503)
