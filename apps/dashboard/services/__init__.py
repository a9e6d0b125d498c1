"""Writes of the data deployment: accounts, the ledger's rollups, history."""

from apps.dashboard.services.accounts import (
    TOKEN_PREFIX,
    ClaimError,
    admin_ensure,
    apitoken_authenticate,
    apitoken_create,
    apitoken_fill,
    apitoken_hash,
    apitoken_revoke,
    claim_add,
    claim_remove,
    login_failure_record,
    login_failures_clear,
)
from apps.dashboard.services.history import (
    exchange_delete,
    exchange_prune,
    ledger_rebuild,
)
from apps.dashboard.services.rollups import rollup_refresh
from apps.dashboard.services.workers import (
    HEARTBEAT_EVERY,
    worker_heartbeat_start,
    worker_heartbeat_write,
)

__all__ = [
    "HEARTBEAT_EVERY", "worker_heartbeat_start", "worker_heartbeat_write",
    "TOKEN_PREFIX", "admin_ensure", "apitoken_authenticate", "apitoken_create",
    "apitoken_fill", "apitoken_hash", "apitoken_revoke", "ClaimError", "claim_add",
    "claim_remove", "exchange_delete",
    "exchange_prune", "ledger_rebuild", "login_failure_record",
    "login_failures_clear", "rollup_refresh",
]  # fmt: skip
