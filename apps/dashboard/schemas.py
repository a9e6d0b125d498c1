"""Input and output schemas of the stats API (XIn / XOut / XFilter)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone
from ninja import Schema
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from apps.proxy.models import Exchange

STATUS_PATTERN = r"^[1-5](\d\d|xx)$"
DEFAULT_SPAN = timedelta(hours=24)
_YEARS = (1970, 2999)  # beyond this, date arithmetic would overflow
# What the schema says of the inputs that instant_parse and zone_parse check.
# A date or date-time of the years 1970-2999 (JSON Schema's format cannot bound
# a year, a pattern on its first digits can):
YEAR_PATTERN = r"^(19[7-9][0-9]|2[0-9]{3})-"
# An IANA zone name's characters (the tz database's rule); the name must also
# be a zone this machine knows, which no pattern can say.
TZ_PATTERN = r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"
WEEKDAYS = (
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
)  # fmt: skip


def zone_parse(name: str) -> ZoneInfo:
    """Return the IANA zone of a name, or raise ValueError naming `tz`."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"'tz' {name!r} is not an IANA time zone name") from None


def instant_parse(text: str, *, zone: ZoneInfo, name: str) -> datetime:
    """Parse ISO 8601 (date, naive or aware date-time); naive means local to zone."""
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), time(), tzinfo=zone)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            moment = moment if moment.tzinfo else moment.replace(tzinfo=zone)
        if not _YEARS[0] <= moment.year <= _YEARS[1]:
            raise ValueError
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(
            f"'{name}' {text!r} is not an ISO 8601 date-time "
            f"between {_YEARS[0]} and {_YEARS[1]}"
        ) from None


class RangeFilter(Schema):
    """A time range [from, to) and the time zone naive values and buckets use."""

    tz: str = Field(
        "UTC",
        max_length=64,
        pattern=TZ_PATTERN,
        description="IANA time zone name known to the server, e.g. Europe/Paris",
    )
    from_: datetime | None = Field(
        None,
        alias="from",
        description="ISO 8601 start (inclusive), years 1970-2999; a date or a naive "
        "time is local to tz; default: to - 24 h (bucket=day: 7 days); must be "
        "earlier than to",
        json_schema_extra={"pattern": YEAR_PATTERN},
    )
    to: datetime | None = Field(
        None,
        description="ISO 8601 end (exclusive), years 1970-2999; default now",
        json_schema_extra={"pattern": YEAR_PATTERN},
    )

    user: str | None = Field(
        None,
        max_length=150,
        description="staff only: just this person's calls (a username); "
        "others always see only the calls of the credentials they claimed",
    )
    _zone: ZoneInfo = PrivateAttr()
    _start: datetime = PrivateAttr()
    _end: datetime = PrivateAttr()

    @field_validator("tz")
    @classmethod
    def _check_tz(cls, value: str) -> str:
        zone_parse(value)
        return value

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _parse_instant(cls, value: Any, info: ValidationInfo) -> datetime | None:
        if value is None or value == "":
            return None
        name = "from" if info.field_name == "from_" else "to"
        try:
            zone = zone_parse(info.data.get("tz", "UTC"))
        except ValueError:
            zone = ZoneInfo("UTC")  # the tz error is reported on its own
        return instant_parse(str(value), zone=zone, name=name)

    @model_validator(mode="after")
    def _resolve_range(self) -> RangeFilter:
        self._zone = zone_parse(self.tz)
        self._end = self.to or timezone.now()
        self._start = self.from_ or self.default_start()
        if self._start >= self._end:
            raise ValueError("'from' must be earlier than 'to'")
        self.check_range()
        return self

    def default_span(self) -> timedelta:
        return DEFAULT_SPAN

    def default_start(self) -> datetime:
        """Return the start when `from` is not given (`to` is resolved)."""
        return self._end - self.default_span()

    def check_range(self) -> None:
        """Raise ValueError when a subclass cannot serve this range."""

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    @property
    def start(self) -> datetime:
        return self._start

    @property
    def end(self) -> datetime:
        return self._end


class ExchangeFilter(RangeFilter):
    """Which exchanges: a time range plus optional attribute filters."""

    model: str | None = Field(None, max_length=200, description="exact model id")
    family: str | None = Field(
        None, max_length=200, description="model id prefix, e.g. claude-sonnet-4"
    )
    state: Exchange.State | None = None
    status: str | None = Field(
        None,
        pattern=STATUS_PATTERN,
        description="HTTP status, e.g. 429, or a class: 5xx",
    )
    session: str | None = Field(None, max_length=100, description="session id")
    tool: str | None = Field(
        None, max_length=200, description="a tool the model called, e.g. Edit"
    )
    provider: str | None = Field(
        None, max_length=100, description="routed calls served by this provider"
    )
    streaming: bool | None = None
    kind: Literal["messages", "other"] | None = Field(
        None, description="messages: /v1/messages calls; other: every other path"
    )


class UsageFilter(RangeFilter):
    """Which calls of the usage ledger: a time range plus optional dimensions."""

    model: str | None = Field(None, max_length=200, description="exact model id")
    family: str | None = Field(
        None, max_length=200, description="model id prefix, e.g. claude-sonnet-4"
    )
    project: int | None = Field(
        None, ge=1, le=2**63 - 1, description="project id (GET /api/projects)"
    )
    session: str | None = Field(None, max_length=100, description="session id")
    kind: Literal["messages", "count_tokens"] = Field(
        "messages",
        description="messages: Messages calls; count_tokens: token counting calls",
    )


class PageIn(Schema):
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=1_000_000)


MAX_BUCKETS = 2000


class TimeseriesFilter(UsageFilter):
    bucket: Literal["hour", "day"] = Field(
        "hour",
        description=f"bucket width; from..to spans at most {MAX_BUCKETS - 2} of them",
    )

    def default_span(self) -> timedelta:
        return timedelta(days=7) if self.bucket == "day" else DEFAULT_SPAN

    def check_range(self) -> None:
        width = timedelta(days=1) if self.bucket == "day" else timedelta(hours=1)
        if (self._end - self._start) / width > MAX_BUCKETS - 2:
            raise ValueError(
                f"'from'..'to' spans more than {MAX_BUCKETS - 2} {self.bucket} "
                "buckets; narrow the range or use bucket=day"
            )


class ExportIn(Schema):
    format: Literal["csv", "jsonl"] = "csv"


class LimitsIn(Schema):
    limit: int = Field(500, ge=1, le=5000, description="history points, newest kept")


# --- outputs ----------------------------------------------------------------


class ErrorOut(Schema):
    """Why a request was refused: 401 not logged in, 404 no such id, 422 bad
    parameters (one item per invalid parameter, or the reason as text)."""

    detail: str | list[dict[str, Any]]


def answers(ok: Any, *, params: bool = True, not_found: bool = False) -> dict:
    """Return an operation's `response=`: its 200 schema and each refusal it makes."""
    refusals = {401: ErrorOut}  # the NinjaAPI's auth, before any parameter is read
    if params:
        refusals[422] = ErrorOut
    if not_found:
        refusals[404] = ErrorOut
    return {200: ok, **refusals}


class ExchangeOut(Schema):
    id: int
    started_at: datetime
    ended_at: datetime | None
    ttfb_ms: float | None
    duration_ms: float | None
    method: str
    path: str
    query: str
    is_streaming: bool
    model_requested: str
    model: str
    session_id: str
    agent_id: str
    state: str
    status_code: int | None
    message_id: str
    request_id: str
    stop_reason: str
    error_type: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cost_usd: float | None
    tools_called: dict[str, Any]
    unified_status: str
    unified_5h_utilization: float | None
    unified_7d_utilization: float | None
    request_size: int
    response_size: int


class ExchangeListOut(Schema):
    count: int
    limit: int
    offset: int
    items: list[ExchangeOut]


class ExchangeDetailOut(ExchangeOut):
    uid: str
    first_byte_at: datetime | None
    user_agent: str
    error_message: str
    tools_offered: list[Any]
    ratelimits: dict[str, Any]
    unified_5h_reset: datetime | None
    unified_7d_reset: datetime | None
    request_headers: list[Any]
    response_headers: list[Any]
    request_body: str | None = Field(
        description="decoded as UTF-8 (invalid bytes replaced)"
    )
    response_body: str | None
    response_message: Any


# Plain pydantic models for the dict-shaped points of a series: ninja's Schema
# runs a per-object root validator (for ORM attribute access) that made
# serialising a month of hourly buckets (~7,000 objects) cost 100-200 ms.


class TokensOut(BaseModel):
    input: int
    output: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int


class PercentilesOut(Schema):
    """Nearest-rank percentiles: the value at rank ceil(p/100 * count), ascending."""

    count: int
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None


class SummaryOut(Schema):
    from_: datetime = Field(alias="from")
    to: datetime
    requests: int = Field(description="API calls (Messages), each counted once")
    errors: int
    errors_by_type: dict[str, int]
    tokens: TokensOut
    total_tokens: int
    cost_usd: float = Field(description="USD of the calls whose price is known")
    unpriced_requests: int = Field(
        description="calls with usage but no known price (model or fast mode)"
    )
    unpriced_models: list[str] = Field(description="models of the unpriced calls")
    subagent_calls: int
    fast_calls: int = Field(description="calls in fast mode (usage.speed: fast)")
    relayed_calls: int = Field(description="calls the relay saw (exact timings)")
    count_tokens_calls: int = Field(description="count_tokens calls, not counted")
    cache_hit_rate: float | None = Field(
        description="cache_read / (input + cache_read + cache writes)"
    )
    cache_savings_usd: float
    ttfb_ms: PercentilesOut
    duration_ms: PercentilesOut


class ModelPointOut(BaseModel):
    model: str
    requests: int
    errors: int
    tokens: TokensOut
    cost_usd: float


class SeriesTokensOut(TypedDict):
    input: int
    output: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int


class SeriesPointOut(TypedDict):
    model: str
    requests: int
    errors: int
    tokens: SeriesTokensOut
    cost_usd: float


# TypedDicts, not models: a month of hourly buckets validates in half the time.
class BucketOut(TypedDict):
    start: datetime
    end: datetime
    requests: int
    errors: int
    tokens: SeriesTokensOut
    cost_usd: float
    models: list[SeriesPointOut]


class TimeseriesOut(BaseModel):  # not a ninja Schema: no per-object getter pass
    bucket: str
    tz: str
    buckets: list[BucketOut]


class ModelStatsOut(ModelPointOut):
    unpriced_requests: int = Field(description="calls with usage but no known price")
    fast_calls: int
    cache_hit_rate: float | None
    avg_ttfb_ms: float | None
    avg_duration_ms: float | None


class RouteStatsOut(BaseModel):
    provider: str = Field(description="the provider that served the calls")
    route: str = Field(description="the routing rule that took them (its name)")
    requests: int
    errors: int
    tokens: TokensOut
    cost_usd: float
    unpriced_requests: int = Field(description="calls with usage but no known price")
    avg_ttfb_ms: float | None
    avg_duration_ms: float | None


class ToolStatsOut(Schema):
    tool: str
    calls: int = Field(description="tool_use blocks with this name")
    exchanges: int = Field(description="responses that called it at least once")


class LatencyOut(Schema):
    ttfb_ms: PercentilesOut
    duration_ms: PercentilesOut


class ModelLatencyOut(LatencyOut):
    model: str


class PerformanceOut(Schema):
    definition: str
    overall: LatencyOut
    models: list[ModelLatencyOut]


class SessionUsageOut(Schema):
    """A session's whole figures (every call, whenever made) from the ledger."""

    session_id: str
    title: str
    project_id: int | None
    project: str
    first_at: datetime | None
    last_at: datetime | None
    requests: int
    turns: int = Field(description="prompts typed (from the transcript; 0 if none)")
    subagent_calls: int
    errors: int
    tokens: TokensOut
    total_tokens: int
    cost_usd: float | None = Field(description="None when no call has a price")
    unpriced_requests: int
    models: list[str]


class SessionListOut(Schema):
    count: int
    limit: int
    offset: int
    items: list[SessionUsageOut]


class UnifiedOut(Schema):
    at: datetime
    status: str
    five_hour_utilization: float | None
    five_hour_reset: datetime | None
    seven_day_utilization: float | None
    seven_day_reset: datetime | None
    representative_claim: str | None


class UnifiedPointOut(Schema):
    at: datetime
    status: str
    five_hour_utilization: float | None
    seven_day_utilization: float | None


class StandardLimitsOut(Schema):
    at: datetime
    model: str
    values: dict[str, Any] = Field(description="anthropic-ratelimit-* by name")


class LimitsOut(Schema):
    unified: UnifiedOut | None
    history: list[UnifiedPointOut]
    standard: StandardLimitsOut | None


# --- usage reports (apps.dashboard.selectors.reports) ------------------------


class ReportFilter(UsageFilter):
    """A report's range: by default the last 30 days in tz, from local midnight."""

    week_start: Literal[
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
    ] = Field("monday", description="the first day of a week (weekly report)")

    def default_span(self) -> timedelta:
        return timedelta(days=30)

    def default_start(self) -> datetime:
        last = self._end.astimezone(self._zone).date()
        first = last - self.default_span() + timedelta(days=1)
        return datetime.combine(first, time(), tzinfo=self._zone).astimezone(UTC)

    @property
    def week_start_index(self) -> int:
        return WEEKDAYS.index(self.week_start)


class MonthlyFilter(ReportFilter):
    """The monthly report's range: by default the last 12 months."""

    def default_start(self) -> datetime:
        last = self._end.astimezone(self._zone).date().replace(day=1)
        # This month and the eleven before it.
        first = date(last.year - (last.month < 12), last.month % 12 + 1, 1)
        return datetime.combine(first, time(), tzinfo=self._zone).astimezone(UTC)


class FiguresOut(BaseModel):
    calls: int = Field(description="API calls (Messages), each counted once")
    errors: int
    tokens: TokensOut
    total_tokens: int
    cost_usd: float = Field(description="USD of the calls whose price is known")
    unpriced_calls: int = Field(description="calls with usage but no known price")
    cache_savings_usd: float


class ModelFiguresOut(FiguresOut):
    model: str


class PeriodOut(FiguresOut):
    period: str = Field(description="2026-11-03 (day, week's first day) or 2026-11")
    start: datetime
    end: datetime
    unpriced_models: list[str]
    models: list[ModelFiguresOut]


class ProjectFiguresOut(FiguresOut):
    project_id: int | None = Field(description="None: no transcript places them")
    project: str


class ReportOut(BaseModel):
    report: str
    tz: str
    from_: datetime = Field(alias="from")
    to: datetime
    totals: FiguresOut

    model_config = {"populate_by_name": True}


class PeriodReportOut(ReportOut):
    rows: list[PeriodOut]


class ModelReportOut(ReportOut):
    rows: list[ModelFiguresOut]


class ProjectReportOut(ReportOut):
    rows: list[ProjectFiguresOut]


class SessionReportOut(ReportOut):
    count: int
    limit: int
    offset: int
    rows: list[SessionUsageOut]


class BurnOut(BaseModel):
    tokens_per_minute: float
    cost_per_hour: float
    minutes_left: float
    projected_tokens: int
    projected_cost_usd: float


class BlockLimitsOut(BaseModel):
    at: datetime
    status: str
    five_hour_utilization: float | None
    five_hour_reset: datetime | None
    seven_day_utilization: float | None
    seven_day_reset: datetime | None


class BlockOut(BaseModel):
    kind: Literal["block", "gap"]
    start: datetime
    end: datetime
    first_at: datetime | None = None
    last_at: datetime | None = None
    active: bool = False
    calls: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    models: list[str] = []
    burn: BurnOut | None = None
    limits: BlockLimitsOut | None = Field(
        None, description="the newest limits the relay saw in the block"
    )


class BlockTotalsOut(BaseModel):
    blocks: int
    calls: int
    total_tokens: int
    cost_usd: float
    unpriced_calls: int


class BlocksReportOut(BaseModel):
    report: str
    tz: str
    from_: datetime = Field(alias="from")
    to: datetime
    rows: list[BlockOut]
    totals: BlockTotalsOut
    active: BlockOut | None
    limits: BlockLimitsOut | None = Field(description="the newest limits seen")

    model_config = {"populate_by_name": True}


class ProjectUsageOut(FiguresOut):
    """A project: its real path (or folder name), its sessions, and every call of
    them from the ledger, whenever made."""

    id: int
    path: str
    path_known: bool
    session_count: int
    last_at: datetime | None
