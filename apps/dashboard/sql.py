"""The dashboard's hand-written SQL: one home for its fragments.

Plain strings with no Django import, so that the statusline (which must start
in a few milliseconds, without Django) shares them with the selectors.

Reads of the ledger (apps.proxy's proxy_apicall) go through its rollups
(dashboard_usagerollup, dashboard_latencyrollup: per UTC quarter hour) for the
quarters wholly inside a range and not marked dirty, and through the ledger
itself for dirty quarters and the range's partial edge quarters. Both halves
are one statement, so they read one snapshot: a quarter is counted from exactly
one side.
"""

from __future__ import annotations

QUARTER = 900  # seconds
# Identifiers a caller may group by: the rollups' key columns.
GROUP_COLUMNS = ("quarter", "kind", "model", "session_id", "project_id", "error")
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
    1, CASE WHEN error <> '' THEN 1 ELSE 0 END,
    CASE WHEN agent_id <> '' THEN 1 ELSE 0 END,
    CASE WHEN speed = 'fast' THEN 1 ELSE 0 END,
    CASE WHEN exchange_id IS NULL THEN 0 ELSE 1 END,
    CASE WHEN cost_usd IS NULL AND {_TOKEN_SUM} > 0 THEN 1 ELSE 0 END,
    input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens,
    cache_write_1h_tokens, COALESCE(cost_usd, 0), savings_usd,
    COALESCE(ttfb_ms, 0), CASE WHEN ttfb_ms IS NULL THEN 0 ELSE 1 END,
    COALESCE(duration_ms, 0), CASE WHEN duration_ms IS NULL THEN 0 ELSE 1 END,
    at AS first_at, at AS last_at"""
# The quarters a range reads from the ledger: dirty ones, and its edges.
LIVE_QUARTERS = """
    SELECT quarter FROM proxy_apicalldirty WHERE quarter >= %s AND quarter <= %s
    UNION ALL SELECT %s UNION ALL SELECT %s"""
_KEYS = ", ".join(GROUP_COLUMNS)
# {group}: grouped columns; {where}: extra conditions on either half (both
# tables name the dimensions alike); params: see selectors.ledger._params.
SUMS = f"""
SELECT {{group}}{{comma}}
       {", ".join(f"SUM({c}) AS {c}" for c in SUM_COLUMNS)},
       MIN(first_at) AS first_at, MAX(last_at) AS last_at
FROM (
    SELECT {_KEYS}, {", ".join(SUM_COLUMNS)}, first_at, last_at
    FROM dashboard_usagerollup
    WHERE quarter >= %s AND quarter < %s
      AND quarter NOT IN (SELECT quarter FROM proxy_apicalldirty){{where}}
    UNION ALL
    SELECT {_KEYS}, {_CALL_AS_ROLLUP}
    FROM proxy_apicall
    WHERE quarter IN ({LIVE_QUARTERS}) AND at >= %s AND at < %s{{where}}
) AS u
{{group_by}}
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
TOOLS = f"""
SELECT tools FROM dashboard_usagerollup
WHERE quarter >= %s AND quarter < %s AND tools <> ''
  AND quarter NOT IN (SELECT quarter FROM proxy_apicalldirty){{where}}
UNION ALL
SELECT tools FROM proxy_apicall
WHERE quarter IN ({LIVE_QUARTERS}) AND at >= %s AND at < %s AND tools <> ''{{where}}
"""
# The rollup builder's read of the quarters it rebuilds.
QUARTER_CALLS = f"""
SELECT {_KEYS}, agent_id, speed, exchange_id, input_tokens, output_tokens,
       cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cost_usd,
       savings_usd, ttfb_ms, duration_ms, at, tools
FROM proxy_apicall WHERE quarter IN ({{marks}})
"""
# The slowest calls of a range: the duration index is walked from the top.
SLOWEST = """
SELECT id, exchange_id, at, model, session_id, ttfb_ms, duration_ms, error
FROM proxy_apicall
WHERE duration_ms IS NOT NULL AND at >= %s AND at < %s{where}
ORDER BY duration_ms DESC LIMIT %s
"""

# --- the statusline (apps.dashboard.statusline): plain sqlite3, no Django ----
STATUS_ANY = "SELECT 1 FROM proxy_apicall LIMIT 1"
_UNPRICED = f"SUM(CASE WHEN cost_usd IS NULL AND {_TOKEN_SUM} > 0 THEN 1 ELSE 0 END)"
STATUS_SESSION = f"""
SELECT COALESCE(SUM(cost_usd), 0), COALESCE({_UNPRICED}, 0)
FROM proxy_apicall WHERE session_id = ? AND kind = 'messages'
"""
STATUS_SINCE = f"""
SELECT COALESCE(SUM(cost_usd), 0), COALESCE({_UNPRICED}, 0)
FROM proxy_apicall WHERE at >= ? AND kind = 'messages'
"""
# The calls after an instant as quarter-hour activity (blocks.Activity).
STATUS_QUARTERS = f"""
SELECT MIN(at), MAX(at), COUNT(*), SUM({_TOKEN_SUM}), COALESCE(SUM(cost_usd), 0),
       {_UNPRICED}
FROM proxy_apicall WHERE at >= ? AND kind = 'messages' GROUP BY quarter
"""
# The newest subscription limits the relay saw: the condition is the partial
# index exchange_unified_time's (apps/proxy migration 0002), word for word.
STATUS_LIMITS = """
SELECT unified_5h_utilization, unified_5h_reset, unified_7d_utilization
FROM proxy_exchange WHERE unified_5h_utilization IS NOT NULL AND started_at < ?
ORDER BY started_at DESC LIMIT 1
"""
