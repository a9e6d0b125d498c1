"""Django admin for recorded exchanges: a fast list, a readable read-only detail.

Everything shown here was recorded from the network (prompts, tool output,
headers), so it only ever reaches HTML through format_html/format_html_join,
which escape it; nothing recorded is marked safe.

The list loads only the columns it shows (bodies and headers stay on disk) and
counts at most COUNT_CAP matches, so it stays fast with hundreds of thousands
of rows.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from apps.proxy import services
from apps.proxy.bodies import body_decode, body_pretty, json_pretty
from apps.proxy.models import ApiCall, Exchange
from apps.proxy.selectors import quarantine_list
from apps.proxy.sse import sse_events

COUNT_CAP = 10_000
SHOW_CHARS = 500_000  # a body shown in the page; the full one is in the API
SHOW_EVENTS = 2_000
LIST_ONLY = (
    "id", "started_at", "model", "model_requested", "state", "status_code",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens",
    "cache_write_1h_tokens", "cost_usd", "ttfb_ms", "duration_ms", "session_id",
    "is_streaming", "method", "path",
)  # fmt: skip


class CappedPaginator(Paginator):
    """Count at most COUNT_CAP + 1 rows: COUNT(*) over every match is the slow
    part of a big changelist, and nobody pages past a hundred pages."""

    @cached_property
    def count(self) -> int:
        rows = cast(QuerySet, self.object_list)  # the admin pages a QuerySet
        return min(rows[: COUNT_CAP + 1].count(), COUNT_CAP)


class ModelFilter(admin.SimpleListFilter):
    title = "model"
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        # DISTINCT over the (model, started_at) index: reads the index only.
        models = (
            Exchange.objects.exclude(model="")
            .order_by("model")
            .values_list("model", flat=True)
            .distinct()
        )
        return [(model, model) for model in models]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(model=self.value()) if self.value() else queryset


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"
    _CLASSES = {"2xx": (200, 300), "4xx": (400, 500), "5xx": (500, 600)}

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("2xx", "2xx"), ("4xx", "4xx"), ("429", "429"), ("5xx", "5xx"),
                ("529", "529"), ("none", "no response")]  # fmt: skip

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value in self._CLASSES:
            low, high = self._CLASSES[value]
            return queryset.filter(status_code__gte=low, status_code__lt=high)
        if value == "none":
            return queryset.filter(status_code__isnull=True)
        if value and value.isdigit():
            return queryset.filter(status_code=int(value))
        return queryset


class OlderThanFilter(admin.SimpleListFilter):
    """Pick old exchanges, e.g. to delete them with "Delete all matching"."""

    title = "older than"
    parameter_name = "older_than_days"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [(str(days), f"{days} days") for days in (1, 7, 30, 90, 365)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and value.isdigit():
            cutoff = timezone.now() - timedelta(days=int(value))
            return queryset.filter(started_at__lt=cutoff)
        return queryset


@admin.register(Exchange)
class ExchangeAdmin(admin.ModelAdmin):
    list_display = ("started_at", "model", "state", "status_code", "tokens", "cost",
                    "ttfb", "duration", "session")  # fmt: skip
    list_filter = ("state", ModelFilter, "is_streaming", StatusFilter,
                   "started_at", OlderThanFilter)  # fmt: skip
    search_fields = ("request_id", "message_id", "session_id", "path")
    search_help_text = (
        "req_... (request id), msg_... (message id), a session id, or part of a path"
    )
    list_per_page = 100
    show_full_result_count = False
    paginator = CappedPaginator
    actions = ["delete_matching"]

    class Media:
        # A file, not an inline <style>: the data deployment's policy blocks those.
        css = {"all": ["proxy/css/exchange_admin.css"]}

    fieldsets = (
        (None, {"fields": ("overview",)}),
        ("Usage and cost", {"fields": ("usage",)}),
        ("Rate limits", {"fields": ("rate_limits",)}),
        ("Request headers", {"fields": ("request_headers_table",)}),
        ("Request body", {"fields": ("request_body_view",)}),
        ("Response headers", {"fields": ("response_headers_table",)}),
        ("Response body", {"fields": ("response_body_view",)}),
        ("Assembled message", {"fields": ("message_view",)}),
    )
    readonly_fields = ("overview", "usage", "rate_limits", "request_headers_table",
                       "request_body_view", "response_headers_table",
                       "response_body_view", "message_view")  # fmt: skip

    # --- permissions: read-only; deleting is for superusers -----------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        if not self.has_delete_permission(request):
            actions.pop("delete_matching", None)
        return actions

    # Every delete (one object, the default bulk action, "Delete all matching")
    # goes through services.exchange_delete, which keeps the usage ledger and
    # its rollups in step.
    def delete_model(self, request: HttpRequest, obj: Exchange) -> None:
        services.exchange_delete(queryset=Exchange.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        services.exchange_delete(queryset=queryset)

    # --- list ------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        """Show above the list the steps the recorder set aside (a permanent
        database error), newest first: they are in no row, so not in the list."""
        context = {**(extra_context or {}), "quarantine": quarantine_list(limit=20)}
        return super().changelist_view(request, extra_context=context)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match is not None and match.url_name == "proxy_exchange_changelist":
            return queryset.only(*LIST_ONLY)
        return queryset

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Exact, indexed lookups for ids; a substring match only for paths."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("req_"):
            return queryset.filter(request_id=term), False
        if term.startswith("msg_"):
            return queryset.filter(message_id=term), False
        if len(term) >= 32 and term.count("-") == 4:
            return queryset.filter(session_id=term), False
        return queryset.filter(path__contains=term), False

    @admin.display(description="tokens in / out")
    def tokens(self, obj: Exchange) -> str:
        cached = (
            obj.cache_read_tokens
            + obj.cache_write_5m_tokens
            + obj.cache_write_1h_tokens
        )
        extra = f" (+{cached:,} cache)" if cached else ""
        return f"{obj.input_tokens:,} / {obj.output_tokens:,}{extra}"

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, obj: Exchange) -> str:
        return "-" if obj.cost_usd is None else f"${obj.cost_usd:.4f}"

    @admin.display(description="first byte", ordering="ttfb_ms")
    def ttfb(self, obj: Exchange) -> str:
        return "-" if obj.ttfb_ms is None else f"{obj.ttfb_ms:,.0f} ms"

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj: Exchange) -> str:
        return "-" if obj.duration_ms is None else f"{obj.duration_ms:,.0f} ms"

    @admin.display(description="session")
    def session(self, obj: Exchange) -> str:
        return obj.session_id[:8]

    # --- delete by filter ----------------------------------------------------------

    @admin.action(description="Delete all selected/matching exchanges (superuser)")
    def delete_matching(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        """Ask once with the count (no object list: it may be 200,000 rows), then
        delete in short batches so the relay's recorder never waits long."""
        if not self.has_delete_permission(request):
            self.message_user(request, "Only superusers may delete.", messages.ERROR)
            return None
        if request.POST.get("confirmed") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "count": queryset.order_by().count(),
                "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
                "select_across": request.POST.get("select_across", "0"),
                "action": "delete_matching",
                "title": "Delete exchanges?",
            }
            return TemplateResponse(
                request, "admin/proxy/exchange/delete_matching.html", context
            )
        deleted = services.exchange_delete(queryset=queryset)
        self.message_user(request, f"Deleted {deleted:,} exchanges.", messages.SUCCESS)
        return None

    # --- detail ----------------------------------------------------------------

    @admin.display(description="")
    def overview(self, obj: Exchange) -> str:
        rows = [
            ("Call", f"{obj.method} {obj.path}{'?' if obj.query else ''}{obj.query}"),
            ("State", obj.get_state_display()),
            ("Status", obj.status_code if obj.status_code is not None else "-"),
            ("Model", f"{obj.model or '-'} (requested {obj.model_requested or '-'})"),
            ("Streaming", "yes" if obj.is_streaming else "no"),
            ("Started", obj.started_at.isoformat()),
            ("Time to first byte", self.ttfb(obj)),
            ("Duration", self.duration(obj)),
            ("Session", obj.session_id or "-"),
            ("Subagent", obj.agent_id or "-"),
            ("Request id", obj.request_id or "-"),
            ("Message id", obj.message_id or "-"),
            ("Stop reason", obj.stop_reason or "-"),
            ("Error", f"{obj.error_type} {obj.error_message}".strip() or "-"),
            ("User agent", obj.user_agent or "-"),
            ("Tools called", ", ".join(f"{k} x{v}" for k, v in obj.tools_called.items())
             if isinstance(obj.tools_called, dict) and obj.tools_called else "-"),
            ("Tools offered", len(obj.tools_offered or [])),
            ("Request size", f"{obj.request_size:,} bytes"),
            ("Response size", f"{obj.response_size:,} bytes"),
        ]  # fmt: skip
        return _table(rows)

    @admin.display(description="")
    def usage(self, obj: Exchange) -> str:
        rows = [
            ("Input (uncached)", f"{obj.input_tokens:,}"),
            ("Output", f"{obj.output_tokens:,}"),
            ("Cache read", f"{obj.cache_read_tokens:,}"),
            ("Cache write 5m", f"{obj.cache_write_5m_tokens:,}"),
            ("Cache write 1h", f"{obj.cache_write_1h_tokens:,}"),
            ("Cost", "unknown (model has no price)" if obj.cost_usd is None
             else f"${obj.cost_usd:.6f}"),
        ]  # fmt: skip
        return _table(rows)

    @admin.display(description="")
    def rate_limits(self, obj: Exchange) -> str:
        limits = obj.ratelimits if isinstance(obj.ratelimits, dict) else {}
        if not limits:
            return "-"
        return _table(sorted((str(k), _scalar(v)) for k, v in limits.items()))

    @admin.display(description="")
    def request_headers_table(self, obj: Exchange) -> str:
        return _headers(obj.request_headers)

    @admin.display(description="")
    def response_headers_table(self, obj: Exchange) -> str:
        return _headers(obj.response_headers)

    @admin.display(description="")
    def request_body_view(self, obj: Exchange) -> str:
        return _body(obj.request_body)

    @admin.display(description="")
    def response_body_view(self, obj: Exchange) -> str:
        return _body(obj.response_body, sse=obj.is_streaming)

    @admin.display(description="")
    def message_view(self, obj: Exchange) -> str:
        if obj.response_message is None:
            return "-"
        return _pre(json_pretty(obj.response_message))


def _table(rows: list | tuple) -> str:
    body = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
    return format_html('<table class="claudemon-kv">{}</table>', body)


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _headers(pairs: Any) -> str:
    if not pairs:
        return "-"
    rows = [(str(pair[0]), str(pair[1])) for pair in pairs if len(pair) == 2]
    return _table(rows)


def _pre(text: str) -> str:
    note = ""
    if len(text) > SHOW_CHARS:
        note = f"(first {SHOW_CHARS:,} of {len(text):,} characters; the API has all)"
        text = text[:SHOW_CHARS]
    return format_html(
        '<p class="help">{}</p><pre class="claudemon-body">{}</pre>', note, text
    )


def _body(stored: bytes | memoryview | None, *, sse: bool = False) -> str:
    try:
        data = body_decode(stored)
    except ValueError as exc:
        return format_html("<p>Stored body unreadable: {}</p>", str(exc))
    if data is None:
        return "-"
    text = data.decode("utf-8", errors="replace")
    if sse or text.startswith(("event:", "data:")):
        return _events(text)
    return _pre(body_pretty(text))


def _events(text: str) -> str:
    """Show a server-sent event stream as a table of (event, pretty data)."""
    rows = [(name, body_pretty(data)) for name, data in sse_events(text)]
    shown = rows[:SHOW_EVENTS]
    body = format_html_join(
        "", '<tr><th>{}</th><td><pre class="claudemon-body">{}</pre></td></tr>', shown
    )
    more = (
        f"{len(rows) - SHOW_EVENTS:,} more events not shown"
        if len(rows) > SHOW_EVENTS
        else ""
    )
    return format_html(
        '<table class="claudemon-events">{}</table><p class="help">{}</p>', body, more
    )


@admin.register(ApiCall)
class ApiCallAdmin(admin.ModelAdmin):
    """The usage ledger, read-only: one row per call and where it was learnt.

    Rows change only through apps.proxy.services (the recorder, the indexer,
    exchange deletes), which keep the rollups in step; so nothing here writes.
    """

    list_display = (
        "at", "kind", "model", "speed", "session_id", "agent_id", "input_tokens",
        "output_tokens", "cost_usd", "error", "relayed", "transcribed",
    )  # fmt: skip
    list_filter = ("kind", "speed", "error")
    search_fields = ("key", "request_id", "message_id", "session_id")
    date_hierarchy = "at"
    list_per_page = 100
    show_full_result_count = False
    paginator = CappedPaginator
    exclude = ("transcript",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(boolean=True)
    def relayed(self, obj: ApiCall) -> bool:
        return obj.exchange_id is not None

    @admin.display(boolean=True)
    def transcribed(self, obj: ApiCall) -> bool:
        return obj.transcript is not None
