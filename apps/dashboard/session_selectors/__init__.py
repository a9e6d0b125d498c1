"""Reads joining the relay's exchanges with the transcript index, for session pages.

A Claude Code session is known from two sides: the relay saw its calls (the
session id header, each call's request-id) and the index read its transcript
(sessionId, each response's requestId). Either side may be missing: a session
run without the relay, or relayed calls whose transcript was never indexed.
Index reads go through apps.indexing.selectors; exchanges are read here
(exchanges). A package: the merged sessions list (listing) and one session
turn by turn (turns).
"""

from apps.dashboard.session_selectors.exchanges import (
    ExchangeRow,
    exchange_list_by_session,
    exchanges_by_request_id,
)
from apps.dashboard.session_selectors.listing import (
    CANDIDATES,
    SessionRow,
    session_rows,
)
from apps.dashboard.session_selectors.turns import (
    TURNS_PER_PAGE,
    Turn,
    TurnCall,
    session_turns,
    turn_count,
    turn_details_fill,
)

__all__ = [
    "CANDIDATES", "TURNS_PER_PAGE", "ExchangeRow", "SessionRow", "Turn", "TurnCall",
    "exchange_list_by_session", "exchanges_by_request_id", "session_rows",
    "session_turns", "turn_count", "turn_details_fill",
]  # fmt: skip
