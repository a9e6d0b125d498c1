"""The relay app's hand-written SQL: one home for its fragments.

Plain strings, no Django import. The usage ledger (proxy_apicall) is written
with upserts whose merge rules are SQL expressions (the relay's figures win;
apps.proxy.services.calls states the invariants); every write marks the
quarter hours and sessions it touched (proxy_apicalldirty,
proxy_apicalldirtysession) for the rollups.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from types import SimpleNamespace
from typing import Any

# --- the ledger ------------------------------------------------------------------
# {columns}, {marks}: the row's columns and one %s each; {assignments}: the
# merge rule of each column (RELAY_SETS or TRANSCRIPT_SETS, joined).
CALL_UPSERT = (
    "INSERT INTO proxy_apicall ({columns}) VALUES ({marks})"
    " ON CONFLICT (key) DO UPDATE SET {assignments}"
)
OLD = "proxy_apicall"  # the row before the upsert, in ON CONFLICT expressions


def relay_sets(figures: tuple[str, ...]) -> dict[str, str]:
    """Return the merge rule of each column when the relay records a call."""
    return {
        "request_id": "excluded.request_id",
        "message_id": f"COALESCE(NULLIF(excluded.message_id, ''), {OLD}.message_id)",
        "exchange_id": "excluded.exchange_id",
        **{name: f"excluded.{name}" for name in figures},
        "session_id": f"COALESCE(NULLIF(excluded.session_id, ''), {OLD}.session_id)",
        "agent_id": f"CASE WHEN excluded.session_id <> '' THEN excluded.agent_id"
        f" ELSE {OLD}.agent_id END",
        "project_id": f"COALESCE(excluded.project_id, {OLD}.project_id)",
        "credential": "excluded.credential",
    }


def transcript_sets(figures: tuple[str, ...]) -> dict[str, str]:
    """Return the merge rule of each column when a transcript records a call."""
    return {
        "transcript": "excluded.transcript",
        "credential": f"{OLD}.credential",
        "request_id": f"COALESCE(NULLIF({OLD}.request_id, ''), excluded.request_id)",
        "message_id": f"COALESCE(NULLIF({OLD}.message_id, ''), excluded.message_id)",
        **{
            name: f"CASE WHEN {OLD}.exchange_id IS NULL THEN excluded.{name}"
            f" ELSE {OLD}.{name} END"
            for name in figures
        },
        "session_id": f"COALESCE(NULLIF({OLD}.session_id, ''), excluded.session_id)",
        "agent_id": f"CASE WHEN {OLD}.session_id = '' THEN excluded.agent_id"
        f" ELSE {OLD}.agent_id END",
        "project_id": f"CASE WHEN {OLD}.session_id IN ('', excluded.session_id)"
        f" THEN excluded.project_id ELSE {OLD}.project_id END",
    }


# A transcript's "msg:" row takes the request-id the relay now knows for it.
CALL_REKEY = (
    "UPDATE proxy_apicall SET key = %s WHERE key = %s AND NOT EXISTS"
    " (SELECT 1 FROM proxy_apicall k WHERE k.key = %s)"
)

# --- what the rollups must rebuild -------------------------------------------------
DIRTY_MARK = (
    "INSERT INTO proxy_apicalldirty (quarter, touched) VALUES (%s, 1)"
    " ON CONFLICT (quarter) DO UPDATE SET touched = proxy_apicalldirty.touched + 1"
)
DIRTY_SESSION_MARK = (
    "INSERT INTO proxy_apicalldirtysession (session_id, touched) VALUES (%s, 1)"
    " ON CONFLICT (session_id)"
    " DO UPDATE SET touched = proxy_apicalldirtysession.touched + 1"
)
# Take up to %s marks off the list, returning them. On SQLite the rollup's
# IMMEDIATE transaction holds the one write lock, so nobody marks meanwhile.
DIRTY_TAKE = (
    "DELETE FROM proxy_apicalldirty WHERE quarter IN"
    " (SELECT quarter FROM proxy_apicalldirty ORDER BY quarter LIMIT %s)"
    " RETURNING quarter"
)
DIRTY_SESSIONS_TAKE = (
    "DELETE FROM proxy_apicalldirtysession WHERE session_id IN"
    " (SELECT session_id FROM proxy_apicalldirtysession ORDER BY session_id LIMIT %s)"
    " RETURNING session_id"
)
# The ledger's writers read a row's old quarter and session, then write it: on
# SQLite the IMMEDIATE transaction makes them one at a time; PostgreSQL (read
# committed, many writers) needs a lock for it (_POSTGRESQL). Nothing here.
LEDGER_LOCK = ""
# A session's body blocks: a block found by one transaction must not be swept
# by another before the row listing it is written (apps.proxy.bodies).
# %s: the sessions (a list), sorted so that two takers never deadlock.
BODYBLOCK_LOCK = ""

# --- bodies and health -------------------------------------------------------------
# One bound parameter however many blocks (a JSON array of ids): the ORM's IN
# list of 450 ids cost half the read time of a 200-call session's body
# (bench/storage.py).
BODYBLOCKS_READ = (
    "SELECT id, data FROM proxy_bodyblock WHERE id IN (SELECT value FROM json_each(%s))"
)
EXCHANGE_ANY = "SELECT 1 FROM proxy_exchange LIMIT 1"

# --- PostgreSQL ---------------------------------------------------------------------
# Any read-committed transaction may run beside another writer: what SQLite's
# single writer kept apart takes a transaction-scoped advisory lock (released at
# commit or rollback; https://www.postgresql.org/docs/15/explicit-locking.html
# #ADVISORY-LOCKS), keyed (_LOCKS, what). A taker skips marks a writer holds
# (SKIP LOCKED): that writer's mark stays for the next round.
_LOCKS = 0x636D  # "cm": claudemon's advisory locks
_POSTGRESQL = {
    "DIRTY_TAKE": (
        "DELETE FROM proxy_apicalldirty WHERE quarter IN"
        " (SELECT quarter FROM proxy_apicalldirty ORDER BY quarter LIMIT %s"
        " FOR UPDATE SKIP LOCKED) RETURNING quarter"
    ),
    "DIRTY_SESSIONS_TAKE": (
        "DELETE FROM proxy_apicalldirtysession WHERE session_id IN"
        " (SELECT session_id FROM proxy_apicalldirtysession ORDER BY session_id"
        " LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING session_id"
    ),
    "LEDGER_LOCK": f"SELECT pg_advisory_xact_lock({_LOCKS}, 1)",
    "BODYBLOCK_LOCK": (
        f"SELECT pg_advisory_xact_lock({_LOCKS + 1}, hashtext(s))"
        " FROM unnest(%s::text[]) AS s"
    ),
    "BODYBLOCKS_READ": (
        "SELECT id, data FROM proxy_bodyblock WHERE id IN"
        " (SELECT value::bigint FROM jsonb_array_elements_text(%s::jsonb))"
    ),
}


def vendor_forms(
    statements: dict[str, Any],
    vendor: str,
    *,
    rewrite: Callable[[str], str] | None = None,
    replaced: dict[str, str] | None = None,
) -> SimpleNamespace:
    """Return a SQL module's statements (its public upper-case names) in the form
    `vendor` (Django's connection.vendor) runs: on PostgreSQL each string goes
    through `rewrite`, then the `replaced` ones take their own form."""
    forms = {
        name: value
        for name, value in statements.items()
        if name.isupper() and not name.startswith("_")
    }
    if vendor == "postgresql":
        if rewrite is not None:
            forms = {
                name: rewrite(value) if isinstance(value, str) else value
                for name, value in forms.items()
            }
        forms.update(replaced or {})
    return SimpleNamespace(**forms)


@cache
def on(vendor: str) -> SimpleNamespace:
    """Return this module's statements in the form `vendor` runs."""
    return vendor_forms(globals(), vendor, replaced=_POSTGRESQL)
