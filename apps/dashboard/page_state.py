"""Page state read from the URL: time range, time zone, request-list filters.

Every piece of dashboard state lives in GET parameters so a view can be bookmarked.
Parsing is forgiving: a bad value falls back to the default and is reported in
`problems` for the page to show, never a 500.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from urllib.parse import unquote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.utils import timezone

from apps.proxy.models import Exchange

TZ_COOKIE = "tz"
RANGES = (
    ("today", "Today"), ("24h", "24 h"), ("7d", "7 d"), ("30d", "30 d"),
    ("90d", "90 d"), ("1y", "1 y"),
)  # fmt: skip
_SPANS = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "1y": timedelta(days=365),
}
DEFAULT_RANGE = "24h"
SORTS = {
    "time": "started_at",
    "cost": "cost_usd",
    "ttfb": "ttfb_ms",
    "duration": "duration_ms",
    "input": "input_tokens",
    "output": "output_tokens",
}
PER_PAGE = 50
# The stats time series serves at most 1998 day buckets (schemas.MAX_BUCKETS).
MAX_CUSTOM_DAYS = 1990


def zone_from_name(name: str | None) -> ZoneInfo:
    """Return the IANA zone called name, or UTC when it is missing or unknown."""
    name = unquote(name or "")  # a cookie value may arrive percent-encoded
    if not name or len(name) > 64 or ".." in name or name.startswith("/"):
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def zone_from_request(request: HttpRequest) -> ZoneInfo:
    """Return the browser's time zone remembered in the tz cookie (UTC by default)."""
    return zone_from_name(request.COOKIES.get(TZ_COOKIE))


def render_page(
    request: HttpRequest, template: str, context: dict, *, zone: tzinfo
) -> HttpResponse:
    """Render a page with its times in the browser's zone."""
    with timezone.override(zone):
        return render(request, template, {**context, "zone": zone})


@dataclass(frozen=True)
class TimeRange:
    key: str
    start: datetime
    end: datetime  # exclusive
    zone: tzinfo
    bucket: str  # "hour" or "day"
    problems: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, str]:
        """Return the GET parameters that reproduce this range."""
        if self.key != "custom":
            return {"range": self.key}
        last_day = (self.end.astimezone(self.zone) - timedelta(seconds=1)).date()
        return {
            "range": "custom",
            "from": self.start.astimezone(self.zone).date().isoformat(),
            "to": last_day.isoformat(),
        }


def range_from_query(query: QueryDict, *, zone: tzinfo, now: datetime) -> TimeRange:
    """Return the range named by ?range= (today, 24h, 7d, 30d, custom&from=&to=)."""
    key = query.get("range", DEFAULT_RANGE)
    local_now = now.astimezone(zone)
    if key == "custom":
        custom = _custom_range(query, zone=zone)
        if isinstance(custom, TimeRange):
            return custom
        return _named_range(DEFAULT_RANGE, now=now, zone=zone, problems=(custom,))
    if key == "today":
        midnight = datetime.combine(local_now.date(), time(), tzinfo=zone)
        return TimeRange("today", midnight, now, zone, "hour")
    if key not in _SPANS:
        return _named_range(
            DEFAULT_RANGE, now=now, zone=zone, problems=(f"Unknown range {key!r}.",)
        )
    return _named_range(key, now=now, zone=zone)


def day_start(span: TimeRange) -> datetime:
    """Return a named range's start moved back to its local midnight (reports
    count whole days); a custom or today's range starts there already."""
    local = span.start.astimezone(span.zone)
    if span.bucket == "hour":
        return span.start
    return datetime.combine(local.date(), time(), tzinfo=span.zone)


def _named_range(
    key: str, *, now: datetime, zone: tzinfo, problems: tuple[str, ...] = ()
) -> TimeRange:
    span = _SPANS[key]
    bucket = "hour" if span <= timedelta(days=2) else "day"
    return TimeRange(key, now - span, now, zone, bucket, problems)


def _custom_range(query: QueryDict, *, zone: tzinfo) -> TimeRange | str:
    try:
        first = date.fromisoformat(query.get("from", ""))
        last = date.fromisoformat(query.get("to", "") or query.get("from", ""))
    except ValueError:
        return "Custom range needs from and to as YYYY-MM-DD dates."
    if last < first:
        return "Custom range: 'from' is after 'to'."
    if (last - first).days > MAX_CUSTOM_DAYS:
        return f"Custom range is longer than {MAX_CUSTOM_DAYS} days."
    if first.year < 1970 or last.year > 2998:
        return "Custom range must lie between 1970 and 2998."
    start = datetime.combine(first, time(), tzinfo=zone)
    end = datetime.combine(last + timedelta(days=1), time(), tzinfo=zone)
    bucket = "hour" if (last - first).days < 2 else "day"
    return TimeRange("custom", start, end, zone, bucket)


@dataclass(frozen=True)
class RequestsPageFilter:
    """The request-list filter: every field optional, all from GET parameters."""

    model: str = ""
    state: str = ""
    status: int | None = None
    session: str = ""
    tool: str = ""
    provider: str = ""  # routed calls served by this provider
    streaming: bool | None = None
    sort: str = "-time"
    page: int = 1
    problems: tuple[str, ...] = field(default=())

    @property
    def order_by(self) -> tuple[str, ...]:
        """Return the ORM ordering for sort, newest first as the tie-break."""
        name = self.sort.lstrip("-")
        column = SORTS[name]
        prefix = "-" if self.sort.startswith("-") else ""
        if name == "time":
            return (f"{prefix}{column}", f"{prefix}id")
        return (f"{prefix}{column}", "-started_at", "-id")

    @property
    def params(self) -> dict[str, str]:
        """Return the GET parameters of the filter (without sort and page)."""
        values = {
            "model": self.model,
            "state": self.state,
            "status": "" if self.status is None else str(self.status),
            "session": self.session,
            "tool": self.tool,
            "provider": self.provider,
            "streaming": {None: "", True: "yes", False: "no"}[self.streaming],
        }
        return {key: value for key, value in values.items() if value}


_STATES = {choice.value for choice in Exchange.State}


def filter_from_query(query: QueryDict) -> RequestsPageFilter:
    """Return the request-list filter in query; bad values are dropped and reported."""
    problems: list[str] = []
    state = query.get("state", "")
    if state and state not in _STATES:
        problems.append(f"Unknown state {state!r}.")
        state = ""
    status = int_param(query, "status", low=100, high=599)
    if query.get("status") and status is None:
        problems.append("Status must be an HTTP status code (100-599).")
    streaming = {"yes": True, "no": False}.get(query.get("streaming", ""))
    sort = query.get("sort", "-time")
    if sort.lstrip("-") not in SORTS:
        problems.append(f"Unknown sort {sort!r}.")
        sort = "-time"
    page = int_param(query, "page", low=1, high=1_000_000) or 1
    return RequestsPageFilter(
        model=query.get("model", "")[:200],
        state=state,
        status=status,
        session=query.get("session", "")[:100],
        tool=query.get("tool", "")[:200],
        provider=query.get("provider", "")[:100],
        streaming=streaming,
        sort=sort,
        page=page,
        problems=tuple(problems),
    )


def int_param(
    query: QueryDict, name: str, *, low: int, high: int = 10**9
) -> int | None:
    """Return GET parameter name as an int in [low, high]; None if absent or not."""
    try:
        number = int(query.get(name) or "")
    except ValueError:
        return None
    return number if low <= number <= high else None


def flag_param(query: QueryDict, name: str) -> bool:
    """Return whether GET parameter name is switched on (name=1)."""
    return query.get(name) == "1"


def query_string(**params: str | int | None) -> str:
    """Return an encoded query string of the non-empty params."""
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


def now_utc() -> datetime:
    """Return the current instant (one place to read the clock)."""
    return timezone.now()
