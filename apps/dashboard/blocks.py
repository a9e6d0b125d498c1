"""5-hour blocks: the windows Claude Code's subscription limits are counted in.

Pure functions, no Django: the statusline (apps.dashboard.statusline) imports
this module and must start in milliseconds.

The rule (as ccusage and Claude Code's own limit count them): a block starts at
the UTC hour of its first call and lasts five hours; the first call at or after
its end starts the next block. So block boundaries fall on whole UTC hours, and
any quarter hour lies wholly inside one block or outside it: blocks can be built
from the ledger's quarter-hour sums as exactly as from single calls. Time with
no block between two blocks is a gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

BLOCK = timedelta(hours=5)


@dataclass(slots=True)
class Activity:
    """Calls within one stretch of time (one call, or one quarter hour's sums)."""

    first_at: datetime
    last_at: datetime
    calls: int = 1
    tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    models: frozenset[str] = frozenset()


@dataclass(slots=True)
class Block:
    start: datetime
    first_at: datetime
    last_at: datetime
    calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    models: set[str] = field(default_factory=set)

    @property
    def end(self) -> datetime:
        return self.start + BLOCK

    def is_active(self, now: datetime) -> bool:
        """Tell whether the block's window is still open at `now`."""
        return self.start <= now < self.end

    def add(self, part: Activity) -> None:
        self.first_at = min(self.first_at, part.first_at)
        self.last_at = max(self.last_at, part.last_at)
        self.calls += part.calls
        self.tokens += part.tokens
        self.cost_usd += part.cost_usd
        self.unpriced += part.unpriced
        self.models |= part.models

    def burn(self, now: datetime) -> dict | None:
        """Return the active block's burn rate and its projection to the end.

        The rate is over the block's first to last call (as ccusage reports it);
        None before there are two minutes' worth of calls to measure.
        """
        minutes = (self.last_at - self.first_at).total_seconds() / 60
        if not self.is_active(now) or minutes < 1:
            return None
        left = max(0.0, (self.end - now).total_seconds() / 60)
        return {
            "tokens_per_minute": self.tokens / minutes,
            "cost_per_hour": self.cost_usd / minutes * 60,
            "minutes_left": left,
            "projected_tokens": round(self.tokens + self.tokens / minutes * left),
            "projected_cost_usd": self.cost_usd + self.cost_usd / minutes * left,
        }


def hour_floor(moment: datetime) -> datetime:
    """Return the start of a moment's UTC hour."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def blocks_build(activity: list[Activity]) -> list[Block]:
    """Group time-ordered activity into 5-hour blocks."""
    blocks: list[Block] = []
    for part in sorted(activity, key=lambda a: a.first_at):
        if not blocks or part.first_at >= blocks[-1].end:
            start = hour_floor(part.first_at)
            blocks.append(Block(start, part.first_at, part.last_at))
        blocks[-1].add(part)
    return blocks


def gaps_between(blocks: list[Block]) -> list[tuple[datetime, datetime]]:
    """Return the idle stretches between consecutive blocks (end, next start)."""
    return [
        (before.end, after.start)
        for before, after in zip(blocks, blocks[1:], strict=False)
        if after.start > before.end
    ]
