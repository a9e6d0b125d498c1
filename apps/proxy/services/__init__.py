"""Writes of the relay's app: exchanges (recorded, deleted) and the usage ledger."""

from apps.proxy.services.calls import (
    call_dirty_sessions_take,
    call_dirty_take,
    call_error,
    call_merge_transcripts,
    call_record_exchanges,
    call_unrelay,
    call_untranscribe,
)
from apps.proxy.services.exchanges import (
    exchange_abandon_stale,
    exchange_delete,
    exchange_finish,
    exchange_record,
)
from apps.proxy.services.feed import exchange_publish

__all__ = [
    "call_dirty_sessions_take", "call_dirty_take", "call_error",
    "call_merge_transcripts", "call_record_exchanges",
    "call_unrelay", "call_untranscribe", "exchange_abandon_stale", "exchange_delete",
    "exchange_finish", "exchange_publish", "exchange_record",
]  # fmt: skip
