"""Reads for the dashboard and the stats API (a package: exchanges and usage).

Every aggregation runs in SQL; Python only loops over grouped results. See
selectors.usage for the percentile definition (nearest rank).
"""

from apps.dashboard.selectors.base import (
    COVER_INDEX,
    ERROR_Q,
    LIST_FIELDS,
    MESSAGES_PATH,
    PERCENTILE_DEFINITION,
    PERCENTILES,
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
from apps.dashboard.selectors.usage import (
    bucket_edges,
    cache_savings_total,
    error_counts,
    latency_percentiles,
    percentile_rank,
    performance_stats,
    request_counts,
    session_list,
    usage_by_model,
    usage_by_tool,
    usage_summary,
    usage_timeseries,
)

__all__ = [
    "COVER_INDEX", "ERROR_Q", "LIST_FIELDS", "MESSAGES_PATH", "PERCENTILE_DEFINITION",
    "PERCENTILES", "apitoken_find", "apitoken_list", "bucket_edges",
    "cache_savings_total", "data_health", "error_counts", "exchange_detail",
    "exchange_export_chunk", "exchange_filter", "exchange_list", "exchange_models",
    "index_health", "latency_percentiles", "percentile_rank", "performance_stats",
    "ratelimit_state", "request_counts", "session_list", "usage_by_model",
    "usage_by_tool", "usage_summary", "usage_timeseries",
]  # fmt: skip
