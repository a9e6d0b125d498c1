"""Reads for the dashboard and the API (a package).

- ledger: the three reads of the usage ledger every usage figure is built on;
- usage: totals, series, per model and tool, latency percentiles;
- reports: daily, weekly, monthly, per session, project and model, 5-hour blocks;
- exchanges: the relay's raw record (lists, one exchange, exports, limits, health);
- base: the exchange list's filter;
- requests: what the requests pages show (a page of the list, the inspector's
  exchange and its neighbours, the live feed);
- sessions (a package): a session's figures, the sessions list, one session
  turn by turn;
- logins, readiness: the login throttle and the data side's readiness.
"""

from apps.dashboard.selectors.base import (
    LIST_FIELDS,
    MESSAGES_PATH,
    exchange_filter,
)
from apps.dashboard.selectors.exchanges import (
    apitoken_find,
    apitoken_list,
    data_health,
    exchange_detail,
    exchange_export_chunk,
    exchange_list,
    exchange_models,
    index_health,
    ratelimit_state,
)
from apps.dashboard.selectors.ledger import Scope, ledger_slowest, ledger_sums
from apps.dashboard.selectors.usage import (
    PERCENTILE_DEFINITION,
    PERCENTILES,
    bucket_edges,
    error_counts,
    figures_of,
    latency_by_bucket,
    latency_percentiles,
    percentile_rank,
    performance_stats,
    usage_by_model,
    usage_by_project,
    usage_by_route,
    usage_by_tool,
    usage_summary,
    usage_timeseries,
)

__all__ = [
    "LIST_FIELDS", "MESSAGES_PATH", "PERCENTILE_DEFINITION",
    "PERCENTILES", "Scope", "apitoken_find", "apitoken_list", "bucket_edges",
    "data_health", "error_counts", "exchange_detail", "exchange_export_chunk",
    "exchange_filter", "exchange_list", "exchange_models", "figures_of", "index_health",
    "latency_by_bucket", "latency_percentiles", "ledger_slowest", "ledger_sums",
    "percentile_rank", "performance_stats", "ratelimit_state",
    "usage_by_model", "usage_by_project", "usage_by_route", "usage_by_tool",
    "usage_summary", "usage_timeseries",
]  # fmt: skip
