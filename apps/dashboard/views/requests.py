"""The requests pages: the list of exchanges, the inspector of one, the live feed.

Views read the URL (apps.dashboard.page_state), call selectors and render;
every time is shown in the browser's zone (the tz cookie set by tz.js).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import get_script_prefix

from apps.dashboard import inspector, page_state
from apps.dashboard.auth import request_viewer
from apps.dashboard.page_state import render_page
from apps.dashboard.selectors import requests as request_selectors
from apps.proxy.bodies import body_decode
from apps.proxy.models import Exchange
from apps.proxy.selectors import Viewer

CONVERSATION_PAGE = 100  # messages per page of the conversation tab
INSPECTOR_TABS = (
    ("new", "What's new"),
    ("conversation", "Conversation"),
    ("response", "Response"),
    ("request", "System & tools"),
    ("headers", "Headers"),
    ("raw", "Raw JSON"),
)


@login_required
def requests_list(request: HttpRequest) -> HttpResponse:
    """List exchanges: filtered, sorted and paginated by GET parameters."""
    zone = page_state.zone_from_request(request)
    span = page_state.range_from_query(request.GET, zone=zone, now=page_state.now_utc())
    filters = page_state.filter_from_query(request.GET)
    viewer = request_viewer(request)
    page = request_selectors.exchange_page(
        start=span.start, end=span.end, filters=filters, viewer=viewer
    )
    export = page_state.query_string(
        **{"from": span.start.isoformat(), "to": span.end.isoformat()}, **filters.params
    )
    context = {
        "span": span,
        "filters": filters,
        "page": page,
        "models": request_selectors.exchange_model_names(viewer=viewer),
        "states": Exchange.State.choices,
        "export_query": export,
        "problems": span.problems + filters.problems,
    }
    return render_page(request, "dashboard/requests.html", context, zone=zone)


@login_required
def exchange_detail(request: HttpRequest, exchange_id: int) -> HttpResponse:
    """Inspect one exchange; ?tab= picks the part shown (new messages by default)."""
    viewer = request_viewer(request)
    exchange = request_selectors.exchange_detail(exchange_id=exchange_id, viewer=viewer)
    if exchange is None:
        raise Http404("No such exchange.")
    tab = request.GET.get("tab", "new")
    if tab not in dict(INSPECTOR_TABS):
        tab = "new"
    page = page_state.int_param(request.GET, "page", low=1)
    context = {
        "exchange": exchange,
        "tab": tab,
        "tabs": INSPECTOR_TABS,
        "next_id": request_selectors.exchange_next_in_session(
            exchange=exchange, viewer=viewer
        ),
        **_inspector_context(exchange, viewer=viewer, tab=tab, page=page),
    }
    zone = page_state.zone_from_request(request)
    return render_page(request, "dashboard/inspector.html", context, zone=zone)


def _inspector_context(
    exchange: Exchange, *, viewer: Viewer, tab: str, page: int | None
) -> dict:
    """Decode bodies (only through body_decode) and shape what the tab shows."""
    request_bytes = _decoded(exchange.request_body)
    body = inspector.json_load(request_bytes)
    view = inspector.request_view(body)
    previous = request_selectors.exchange_previous_in_session(
        exchange=exchange, viewer=viewer
    )
    start = 0
    if previous is not None:
        previous_body = inspector.json_load(_decoded(previous.request_body))
        previous_messages = (previous_body or {}).get("messages")
        if isinstance(previous_messages, list) and isinstance(body, dict):
            start = inspector.new_messages_start(
                body.get("messages") or [], previous_messages
            )
    context = {
        "view": view,
        "new_start": start,
        "new_messages": view["messages"][start:],
        "conversation": _conversation_page(view["messages"], page=page, start=start),
        "previous_id": previous.pk if previous else None,
        "ratelimits": sorted((exchange.ratelimits or {}).items()),
    }
    if tab == "response":
        context["response_blocks"] = _response_blocks(exchange)
        if exchange.is_streaming:
            stream = _decoded(exchange.response_body)
            context["events"] = inspector.stream_events(stream)
    if tab == "headers":
        context["request_headers"] = inspector.header_rows(exchange.request_headers)
        context["response_headers"] = inspector.header_rows(exchange.response_headers)
    if tab == "raw":
        context["raw_request"] = inspector.raw_text(request_bytes)
        response_bytes = _decoded(exchange.response_body)
        context["raw_response"] = inspector.raw_text(response_bytes)
        if exchange.route:  # routed: what the provider was sent and answered too
            for key in ("provider_request_body", "provider_response_body"):
                raw = _decoded(getattr(exchange, key))
                context[f"raw_{key}"] = inspector.raw_text(raw) if raw else None
    return context


def _conversation_page(messages: list[dict], *, page: int | None, start: int) -> dict:
    """Return one page of a long conversation (by default the one holding the new)."""
    size = CONVERSATION_PAGE
    pages = max(1, -(-len(messages) // size))
    if page is None or page > pages:
        page = min(start // size + 1, pages)
    return {
        "messages": messages[(page - 1) * size : page * size],
        "number": page,
        "pages": pages,
        "new_page": min(start // size + 1, pages),
        "numbers": range(1, pages + 1),
    }


def _response_blocks(exchange: Exchange) -> list[dict]:
    message = exchange.response_message
    if not isinstance(message, dict):
        return []
    return inspector.message_view(message, index=0, names={})["blocks"]


def _decoded(stored: bytes | memoryview | None) -> bytes | None:
    try:
        return body_decode(stored)
    except Exception:  # a damaged stored body is shown as absent, never a 500
        return None


@login_required
def live(request: HttpRequest) -> HttpResponse:
    """Show in-flight and just-finished exchanges; live.js keeps them current."""
    rows = request_selectors.exchange_live_recent(viewer=request_viewer(request))
    context = {
        "rows": rows,
        "after_id": max((row.pk for row in rows), default=0),
        # Under the front door's prefix the socket is too (apps/dashboard/routing).
        "socket_path": f"{get_script_prefix()}ws/live/",
        "watch_ids": ",".join(
            str(row.pk) for row in rows if row.state == Exchange.State.IN_PROGRESS
        ),
    }
    zone = page_state.zone_from_request(request)
    return render_page(request, "dashboard/live.html", context, zone=zone)
