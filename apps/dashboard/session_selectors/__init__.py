"""Reads joining the relay's exchanges with the transcript index, for session pages.

A Claude Code session is known from two sides: the relay saw its calls (the
session id header, each call's request-id) and the index read its transcript
(sessionId, each response's requestId). Either side may be missing: a session
run without the relay, or relayed calls whose transcript was never indexed.
Index reads go through apps.indexing.selectors; exchanges are read here
(exchanges). A package: a session's figures, the one definition of its calls,
tokens and cost (figures), the merged sessions list (listing) and one session
turn by turn (turns).
"""

from apps.dashboard.session_selectors.exchanges import (
    ExchangeRow,
    exchange_list_by_session,
    exchanges_by_request_id,
)
from apps.dashboard.session_selectors.figures import (
    Figures,
    SessionFigures,
    project_figures,
    session_figures,
    session_page_figures,
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
    "CANDIDATES", "TURNS_PER_PAGE", "ExchangeRow", "Figures", "SessionFigures",
    "SessionRow", "Turn", "TurnCall", "exchange_list_by_session",
    "exchanges_by_request_id", "project_figures", "session_figures",
    "session_page_figures", "session_rows", "session_turns", "turn_count",
    "turn_details_fill",
]  # fmt: skip
