"""Reads for the session pages: a session's figures from the usage ledger, the
sessions list, and one session turn by turn with its transcript.

A package: the one definition of a session's figures (figures), its calls as the
ledger has them (calls), the sessions list (listing) and one session turn by
turn (turns).
"""

from apps.dashboard.selectors.sessions.calls import CallRow, call_list_by_session
from apps.dashboard.selectors.sessions.figures import (
    Figures,
    SessionFigures,
    session_figures,
    session_page_figures,
    session_page_figures_of,
)
from apps.dashboard.selectors.sessions.listing import (
    SessionRow,
    session_out,
    session_rows,
)
from apps.dashboard.selectors.sessions.turns import (
    TURNS_PER_PAGE,
    Turn,
    TurnCall,
    session_turns,
    turn_count,
    turn_details_fill,
)

__all__ = [
    "TURNS_PER_PAGE", "CallRow", "Figures", "SessionFigures", "SessionRow",
    "Turn", "TurnCall", "call_list_by_session", "session_figures", "session_out",
    "session_page_figures", "session_page_figures_of", "session_rows", "session_turns",
    "turn_count", "turn_details_fill",
]  # fmt: skip
