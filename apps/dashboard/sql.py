"""The dashboard's hand-written SQL: one home for its fragments.

Plain strings with no Django import, so that the statusline (which must start
in a few milliseconds, without Django) shares them with the selectors.

Reads of the ledger (apps.proxy's proxy_apicall) go through its rollups
(per UTC quarter hour: dashboard_usagerollup by kind, model and error;
dashboard_projectrollup by project too; dashboard_latencyrollup) for the
quarters wholly inside a range and not marked dirty, and through the ledger
itself for dirty quarters and the range's partial edge quarters. Both halves
are one statement, so they read one snapshot: a quarter is counted from exactly
one side. A session's whole figures come the same way from
dashboard_sessiontotal, or from the ledger while the session is marked dirty.
Filters the rollups do not keep (a session) read the ledger alone.
"""

from __future__ import annotations

from functools import cache
from types import SimpleNamespace

from apps.proxy.sql import vendor_forms

QUARTER = 900  # seconds
# The rollup tables of sums and the columns each is keyed by: what a read may
# group and filter by. The project one is 3x larger (bench/usage.py): only reads
# by or of a project take it.
TABLES = {
    "usage": ("dashboard_usagerollup", ("quarter", "kind", "model", "error")),
    "project": (
        "dashboard_projectrollup",
        ("quarter", "kind", "model", "project_id", "error"),
    ),
}
GROUP_COLUMNS = TABLES["project"][1]
SUM_COLUMNS = (
    "calls", "errors", "subagent_calls", "fast_calls", "relayed_calls",
    "unpriced_calls", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_5m_tokens", "cache_write_1h_tokens", "cost_usd", "savings_usd",
    "ttfb_sum", "ttfb_n", "duration_sum", "duration_n",
)  # fmt: skip
_TOKEN_SUM = (
    "input_tokens + output_tokens + cache_read_tokens + cache_write_5m_tokens"
    " + cache_write_1h_tokens"
)
# One ledger row as a rollup row: the same columns, in the same order.
_CALL_AS_ROLLUP = f"""
    1 AS calls, CASE WHEN error <> '' THEN 1 ELSE 0 END AS errors,
    CASE WHEN agent_id <> '' THEN 1 ELSE 0 END AS subagent_calls,
    CASE WHEN speed = 'fast' THEN 1 ELSE 0 END AS fast_calls,
    CASE WHEN exchange_id IS NULL THEN 0 ELSE 1 END AS relayed_calls,
    CASE WHEN cost_usd IS NULL AND {_TOKEN_SUM} > 0 THEN 1 ELSE 0 END
        AS unpriced_calls,
    input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens,
    cache_write_1h_tokens, COALESCE(cost_usd, 0) AS cost_usd, savings_usd,
    COALESCE(ttfb_ms, 0) AS ttfb_sum,
    CASE WHEN ttfb_ms IS NULL THEN 0 ELSE 1 END AS ttfb_n,
    COALESCE(duration_ms, 0) AS duration_sum,
    CASE WHEN duration_ms IS NULL THEN 0 ELSE 1 END AS duration_n,
    at AS first_at, at AS last_at"""


def quarter_bounds(first: int, last: int) -> tuple[list[int], list[int]]:
    """Return the quarter parameters of a range [first, last) in epoch seconds:
    the rolled half's [lo, hi) (quarters wholly inside), and the live half's
    dirty-quarter window and partial edge quarters (-1: none). The live half
    also takes the range itself, as stored instants, after these."""
    lo = -(-first // QUARTER)  # ceil: the first whole quarter
    hi = last // QUARTER  # the quarters wholly inside end before this one
    lo_edge = first // QUARTER if first % QUARTER else -1
    hi_edge = hi if last % QUARTER else -1
    return [lo, hi], [first // QUARTER, (last - 1) // QUARTER, lo_edge, hi_edge]


# The quarters a range reads from the ledger: dirty ones, and its edges.
LIVE_QUARTERS = """
    SELECT quarter FROM proxy_apicalldirty WHERE quarter >= %s AND quarter <= %s
    UNION ALL SELECT %s UNION ALL SELECT %s"""
_KEYS = ", ".join(GROUP_COLUMNS)
# {table}, {keys}: a rollup table and its key columns (TABLES); {group}: grouped
# columns; {where}: conditions on the keys, applied to either half (both name
# them alike); params: see selectors.ledger._bounds.
SUMS = f"""
SELECT {{group}}{{comma}}
       {", ".join(f"SUM({c}) AS {c}" for c in SUM_COLUMNS)},
       MIN(first_at) AS first_at, MAX(last_at) AS last_at
FROM (
    SELECT {{keys}}, {", ".join(SUM_COLUMNS)}, first_at, last_at
    FROM {{table}}
    WHERE quarter >= %s AND quarter < %s
      AND quarter NOT IN (SELECT quarter FROM proxy_apicalldirty){{where}}
    UNION ALL
    SELECT {{keys}}, {_CALL_AS_ROLLUP}
    FROM proxy_apicall
    WHERE quarter IN ({LIVE_QUARTERS}) AND at >= %s AND at < %s{{where}}
) AS u
{{group_by}}
"""
# The same sums from the ledger alone, for filters the rollups do not keep.
SUMS_SCAN = f"""
SELECT {{group}}{{comma}}
       {", ".join(f"SUM({c}) AS {c}" for c in SUM_COLUMNS)},
       MIN(first_at) AS first_at, MAX(last_at) AS last_at
FROM (
    SELECT {_KEYS}, {_CALL_AS_ROLLUP}
    FROM proxy_apicall WHERE at >= %s AND at < %s{{where}}
) AS u
{{group_by}}
"""
# The sums of routed calls per provider and route: the ledger's figures of the
# calls whose exchange a routing rule took. Named, exchange_provider_time finds
# them (`provider > ''`: a range it can seek, where `<> ''` scans it); left to
# itself SQLite walked the month's exchanges by time, which added 40 ms to the
# 30-day overview at 200,000 exchanges, none routed (bench/usage.py).
# params: the range twice (exchanges, then calls), then {where}'s.
ROUTE_SUMS = f"""
SELECT e.provider, e.route,
       {", ".join(f"SUM(u.{c}) AS {c}" for c in SUM_COLUMNS)},
       MIN(u.first_at) AS first_at, MAX(u.last_at) AS last_at
FROM (
    SELECT exchange_id, {_CALL_AS_ROLLUP}
    FROM proxy_apicall
    WHERE exchange_id IN (
        SELECT id FROM proxy_exchange INDEXED BY exchange_provider_time
        WHERE provider > '' AND started_at >= %s AND started_at < %s
    ) AND at >= %s AND at < %s{{where}}
) AS u
JOIN proxy_exchange e ON e.id = u.exchange_id
GROUP BY e.provider, e.route
"""
# Sorted latency arrays of rolled quarters beside single values of live ones.
LATENCIES = f"""
SELECT quarter, kind, model, ttfb, duration, NULL AS ttfb_ms, NULL AS duration_ms
FROM dashboard_latencyrollup
WHERE quarter >= %s AND quarter < %s
  AND quarter NOT IN (SELECT quarter FROM proxy_apicalldirty){{where}}
UNION ALL
SELECT quarter, kind, model, NULL, NULL, ttfb_ms, duration_ms
FROM proxy_apicall
WHERE quarter IN ({LIVE_QUARTERS}) AND at >= %s AND at < %s{{where}}
  AND (ttfb_ms IS NOT NULL OR duration_ms IS NOT NULL)
"""
# Every latency of the matching calls, for filters the rollups do not keep.
LATENCIES_SCAN = """
SELECT quarter, kind, model, NULL, NULL, ttfb_ms, duration_ms
FROM proxy_apicall
WHERE at >= %s AND at < %s{where}
  AND (ttfb_ms IS NOT NULL OR duration_ms IS NOT NULL)
"""
# The rollups' tool counts summed, beside the live quarters' lists of names
# (one name per use) that the caller counts.
TOOLS = f"""
SELECT tool, SUM(uses), SUM(calls), NULL FROM dashboard_toolrollup
WHERE quarter >= %s AND quarter < %s
  AND quarter NOT IN (SELECT quarter FROM proxy_apicalldirty){{where}}
GROUP BY tool
UNION ALL
SELECT NULL, 0, 0, tools FROM proxy_apicall
WHERE quarter IN ({LIVE_QUARTERS}) AND at >= %s AND at < %s AND tools <> ''{{where}}
"""
TOOLS_SCAN = """
SELECT NULL, 0, 0, tools FROM proxy_apicall
WHERE at >= %s AND at < %s AND tools <> ''{where}
"""
# The rollup builder's read of the quarters it rebuilds.
QUARTER_CALLS = f"""
SELECT {_KEYS}, agent_id, speed, exchange_id, input_tokens, output_tokens,
       cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cost_usd,
       savings_usd, ttfb_ms, duration_ms, at, tools
FROM proxy_apicall WHERE quarter IN ({{marks}})
"""
# --- sessions' whole figures -------------------------------------------------
SESSION_COLUMNS = (
    "session_id", "project_id", "first_at", "last_at", "calls", "errors",
    "subagent_calls", "relayed_calls", "unpriced_calls", "input_tokens",
    "output_tokens", "cache_read_tokens", "cache_write_5m_tokens",
    "cache_write_1h_tokens", "cost_usd", "model_list",
)  # fmt: skip
# A session's Messages calls summed from the ledger (GROUP BY session_id).
_SESSION_SUMS = f"""
    session_id, MAX(project_id), MIN(at), MAX(at), COUNT(*),
    SUM(CASE WHEN error <> '' THEN 1 ELSE 0 END),
    SUM(CASE WHEN agent_id <> '' THEN 1 ELSE 0 END),
    SUM(CASE WHEN exchange_id IS NULL THEN 0 ELSE 1 END),
    SUM(CASE WHEN cost_usd IS NULL AND {_TOKEN_SUM} > 0 THEN 1 ELSE 0 END),
    SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens),
    SUM(cache_write_5m_tokens), SUM(cache_write_1h_tokens),
    COALESCE(SUM(cost_usd), 0), GROUP_CONCAT(DISTINCT model)"""
SESSION_REBUILD = f"""
SELECT {_SESSION_SUMS}
FROM proxy_apicall WHERE kind = 'messages' AND session_id IN ({{marks}})
GROUP BY session_id
"""
# Every session's whole figures: kept ones, and dirty ones from the ledger.
SESSIONS = f"""
SELECT {", ".join(SESSION_COLUMNS)} FROM dashboard_sessiontotal
WHERE session_id NOT IN (SELECT session_id FROM proxy_apicalldirtysession)
UNION ALL
SELECT {_SESSION_SUMS} FROM proxy_apicall
WHERE kind = 'messages'
  AND session_id IN (SELECT session_id FROM proxy_apicalldirtysession)
GROUP BY session_id
"""
# {where}: conditions on SESSION_COLUMNS (selectors add an ORDER BY and a page).
SESSIONS_SELECT = f"""
SELECT * FROM ({SESSIONS}) AS s WHERE session_id <> ''{{where}}"""
SESSIONS_COUNT = f"""
SELECT COUNT(*) FROM ({SESSIONS}) AS s WHERE session_id <> ''{{where}}"""
# The same for a reader who sees only some credentials' calls ({mine}: their
# condition, apps.proxy.selectors.viewer_sql): their calls summed from the
# ledger, as the kept totals hold everyone's; only the sessions {among} names
# (ids, or SESSIONS_MINE_SINCE), as summing all of theirs for a page of ten
# took 0.5 s over 20,000 calls (bench/pages.py --member).
_SESSIONS_MINE = f"""
WITH s({", ".join(SESSION_COLUMNS)}) AS (
    SELECT {_SESSION_SUMS} FROM proxy_apicall
    WHERE kind = 'messages'{{mine}} AND session_id IN ({{among}}) GROUP BY session_id
)"""
# The sessions holding a call of the reader's at or after a moment: those whose
# last_at can be in a range starting then.
SESSIONS_MINE_SINCE = "SELECT session_id FROM proxy_apicall WHERE at >= %s{mine}"
SESSIONS_MINE_SELECT = f"""{_SESSIONS_MINE}
SELECT * FROM s WHERE session_id <> ''{{where}}"""
SESSIONS_MINE_COUNT = f"""{_SESSIONS_MINE}
SELECT COUNT(*) FROM s WHERE session_id <> ''{{where}}"""
# The models of each quarter hour of a range (blocks list theirs); {table}: the
# rollup table that keeps the filter's columns (TABLES).
QUARTER_MODELS = f"""
SELECT DISTINCT quarter, model FROM {{table}}
WHERE quarter >= %s AND quarter < %s
  AND quarter NOT IN (SELECT quarter FROM proxy_apicalldirty){{where}}
UNION
SELECT DISTINCT quarter, model FROM proxy_apicall
WHERE quarter IN ({LIVE_QUARTERS}) AND at >= %s AND at < %s{{where}}
"""
# The same from the ledger alone, for filters the rollups do not keep.
QUARTER_MODELS_SCAN = """
SELECT DISTINCT quarter, model FROM proxy_apicall
WHERE at >= %s AND at < %s{where}
"""
# The newest subscription limits the relay saw within each of some spans
# ({spans}: a VALUES list of (index, start, end)); one index probe per span on
# the partial index exchange_unified_time (apps/proxy migration 0002); {where}:
# the viewer's condition (apps.proxy.selectors.viewer_sql), or "".
LIMITS_IN_SPANS = """
WITH span(i, lo, hi) AS (VALUES {spans})
SELECT span.i, e.started_at, e.unified_status, e.unified_5h_utilization,
       e.unified_5h_reset, e.unified_7d_utilization, e.unified_7d_reset
FROM span JOIN proxy_exchange e ON e.id = (
    SELECT id FROM proxy_exchange
    WHERE unified_5h_utilization IS NOT NULL AND started_at >= span.lo
      AND started_at < span.hi{where}
    ORDER BY started_at DESC LIMIT 1)
"""
# The slowest calls of a range: the duration index is walked from the top and
# each row's time checked. The unary + keeps SQLite off the `at` index, which
# it prefers by its statistics and which then sorts a month of calls: 167 ms
# against 0.1 ms at 200,000 calls (bench/usage.py).
SLOWEST = """
SELECT id, exchange_id, at, model, session_id, ttfb_ms, duration_ms, error
FROM proxy_apicall
WHERE duration_ms IS NOT NULL AND +at >= %s AND +at < %s{where}
ORDER BY duration_ms DESC LIMIT %s
"""

# --- the exchange lists (selectors.base, selectors.requests) -----------------------
# Every column the exchange lists filter and sort on is in this index (apps/proxy
# migration 0002), so counting and sorting a month never reads the wide rows.
# INDEXED BY pins it: with ANALYZE statistics SQLite otherwise prefers a
# skip-scan of the (model, started_at) index plus a row lookup per exchange.
COVER_INDEX = "exchange_stats_cover"
# {where}: a queryset's compiled WHERE (selectors.base.where_sql).
EXCHANGE_COUNT = (
    f"SELECT COUNT(*) FROM proxy_exchange INDEXED BY {COVER_INDEX} WHERE {{where}}"
)
# {order}: covered columns only (selectors.requests checks them).
EXCHANGE_PAGE_IDS = (
    f"SELECT id FROM proxy_exchange INDEXED BY {COVER_INDEX} WHERE {{where}}"
    " ORDER BY {order} LIMIT %s OFFSET %s"
)
# The export's keyset: rows after a (started_at, id) pair.
EXCHANGE_AFTER = "(started_at, id) > (%s, %s)"
# The newest standard (API-key) limits: literal conditions that match the partial
# index exchange_std_limits (apps/proxy migration), so one index probe.
# {where}: the viewer's condition (apps.proxy.selectors.viewer_sql), or "".
STANDARD_LIMITS = (
    "SELECT id FROM proxy_exchange WHERE unified_5h_utilization IS NULL"
    " AND ratelimits <> '{{}}' AND started_at < %s{where}"
    " ORDER BY started_at DESC LIMIT 1"
)

# --- a session's calls and turns (selectors.sessions) -----------------------------
# {columns}, {where}: CallRow's columns and conditions on the ledger.
SESSION_CALLS = (
    "SELECT {columns} FROM proxy_apicall WHERE {where} ORDER BY at, id LIMIT %s"
)
_SENT = (
    "a.input_tokens + a.cache_read_tokens + a.cache_write_5m_tokens"
    " + a.cache_write_1h_tokens"
)
# The ledger key of a transcript call (apps.proxy.services.calls' rule).
_KEY = (
    "CASE WHEN c.request_id <> '' THEN c.request_id"
    " WHEN c.message_id <> '' THEN 'msg:' || c.message_id"
    " ELSE 'uuid:' || c.uuid END"
)
# Each call of one transcript file's session counted in the session it belongs
# to (the first parameter: the session id the ledger knows it by), with the
# ledger's figures; a call the ledger gives another session (the same response
# in a forked session's file) is not this one's. {where}: the viewer's.
CALL_ROWS = f"""
SELECT c.turn, c.entry_id, a.exchange_id AS xid, {_SENT} AS sent,
       a.output_tokens AS output, a.cache_read_tokens AS cache_read,
       a.cost_usd AS cost
FROM indexing_transcriptcall c
JOIN proxy_apicall a ON a.key = {_KEY} AND a.session_id = %s{{where}}
WHERE c.session_id = %s
"""
# A session's figures per agent, from the ledger ({where}: the viewer's).
SESSION_FIGURES = f"""
SELECT agent_id, COUNT(*), COUNT(exchange_id), SUM({_SENT} + a.output_tokens),
       SUM(a.cost_usd), SUM(CASE WHEN a.cost_usd IS NULL AND {_SENT}
                                      + a.output_tokens > 0 THEN 1 ELSE 0 END),
       SUM(CASE WHEN a.transcript IS NULL THEN 1 ELSE 0 END)
FROM proxy_apicall a WHERE a.session_id = %s AND a.kind = 'messages'{{where}}
GROUP BY agent_id
"""
# Per turn: calls, relayed calls, tokens, prompt tokens, cache reads, cost, and
# the prompt tokens of its last call, each call with the ledger's figures
# (CALL_ROWS), as the session's header counts it.
TURN_SUMS = f"""
SELECT turn, COUNT(*), COUNT(xid), SUM(sent + output), SUM(sent), SUM(cache_read),
       SUM(cost), MAX(CASE WHEN later = 0 THEN sent END)
FROM (
    SELECT r.*, ROW_NUMBER() OVER (PARTITION BY turn ORDER BY entry_id DESC) - 1
               AS later
    FROM ({CALL_ROWS}) r
) AS t
GROUP BY turn ORDER BY turn
"""

# --- the statusline (apps.dashboard.statusline): sqlite3 or psycopg, no Django ---
STATUS_ANY = "SELECT 1 FROM proxy_apicall LIMIT 1"
# The newest subscription limits the relay saw: the condition is the partial
# index exchange_unified_time's (apps/proxy migration 0002), word for word.
STATUS_LIMITS = """
SELECT unified_5h_utilization, unified_5h_reset, unified_7d_utilization
FROM proxy_exchange WHERE unified_5h_utilization IS NOT NULL AND started_at < %s
ORDER BY started_at DESC LIMIT 1
"""


# --- PostgreSQL ----------------------------------------------------------------------
# The statements whose SQLite form PostgreSQL does not run or should not: SQLite's
# planner pins (INDEXED BY, a unary + on a column) go, PostgreSQL's planner picks
# from its own statistics; SUM of a bigint is a numeric there (a Decimal in
# Python), so token sums are cast back; GROUP_CONCAT is string_agg.
_TOKEN_SUMS = [f"SUM({c}) AS {c}" for c in SUM_COLUMNS if c.endswith("_tokens")]


def _postgresql(statement: str) -> str:
    for token_sum in _TOKEN_SUMS:
        statement = statement.replace(
            token_sum, token_sum.replace(") AS", ")::bigint AS")
        )
    return (
        statement.replace(f" INDEXED BY {COVER_INDEX}", "")
        .replace(" INDEXED BY exchange_provider_time", "")
        .replace("+at >= %s AND +at < %s", "at >= %s AND at < %s")
        .replace("GROUP_CONCAT(DISTINCT model)", "string_agg(DISTINCT model, ',')")
    )


@cache
def on(vendor: str) -> SimpleNamespace:
    """Return this module's statements in the form `vendor` runs."""
    return vendor_forms(globals(), vendor, rewrite=_postgresql)
