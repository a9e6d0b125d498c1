"""Token prices kept as data (prices.json, overridable) and the cost of one call.

Cost = input x in + 5m writes x w5 + 1h writes x w1 + cache reads x r + output x out
(per million tokens). An unknown model has no cost (None), never a guessed one.
Fast mode (the response's `usage.speed == "fast"`) has its own rates per family and
date (a rate's "fast" entry, with tiers of its own); a family or date without one
has no fast price, so such a call has no cost either: "price unknown", not a guess
at the standard rate.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_BUILTIN = Path(__file__).with_name("prices.json")
_RATE_KEYS = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")


@dataclass(frozen=True, slots=True)
class Usage:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0

    @property
    def prompt(self) -> int:
        """Total prompt tokens: uncached input plus cache writes and reads."""
        return self.input + self.cache_read + self.cache_write_5m + self.cache_write_1h


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    pattern: re.Pattern[str]
    rates: tuple[dict, ...]  # sorted by "from", oldest first


@lru_cache(maxsize=1)
def price_table() -> tuple[Family, ...]:
    """Load the price families: the user's override file first, then the built-in."""
    families: list[Family] = []
    override = getattr(settings, "CLAUDEMON_PRICES_FILE", "")
    for path in ([Path(override)] if override else []) + [_BUILTIN]:
        families.extend(_load_families(path))
    return tuple(families)


def _load_families(path: Path) -> list[Family]:
    try:
        document = json.loads(path.read_text())
        families = []
        for row in document["families"]:
            rates = sorted(row["rates"], key=lambda r: r["from"])
            for rate in rates:
                date.fromisoformat(rate["from"])
                fast = [rate["fast"]] if "fast" in rate else []
                for tier in [rate, *rate.get("tiers", []), *_tiered(fast)]:
                    for key in _RATE_KEYS:
                        float(tier[key])
            families.append(
                Family(row["family"], re.compile(row["match"]), tuple(rates))
            )
        return families
    except (OSError, ValueError, KeyError, TypeError, re.error) as exc:
        raise ImproperlyConfigured(
            f"Price table {path} is invalid ({type(exc).__name__}: {exc}). "
            'Expected {"families": [{"family", "match", "rates": [{"from", '
            + ", ".join(f'"{k}"' for k in _RATE_KEYS)
            + ', optional "tiers" and "fast"}]}]}.'
        ) from exc


def _tiered(rates: list[dict]) -> list[dict]:
    return [tier for rate in rates for tier in [rate, *rate.get("tiers", [])]]


def price_family(model: str) -> Family | None:
    """Return the price family of a model id (dated ids and [1m] suffixes included)."""
    model = model.split("[", 1)[0].strip()
    for family in price_table():
        if family.pattern.search(model):
            return family
    return None


def price_rate(
    *, model: str, usage: Usage, at: datetime | date, speed: str = ""
) -> dict | None:
    """Return the per-million rates of one call, or None when it has no price.

    speed: the response's usage.speed; "fast" takes the rate's fast-mode entry.
    """
    family = price_family(model) if model else None
    if family is None:
        return None
    day = (at.date() if isinstance(at, datetime) else at).isoformat()
    rate = family.rates[0]
    for candidate in family.rates:
        if candidate["from"] <= day:
            rate = candidate
    if speed == "fast":
        fast = rate.get("fast")
        if fast is None:
            return None
        rate = fast
    for tier in rate.get("tiers", []):
        if usage.prompt > tier["above_prompt_tokens"]:
            rate = tier
    return rate


def usage_cost(
    *, model: str, usage: Usage, at: datetime | date, speed: str = ""
) -> float | None:
    """Return the cost in USD of one call, or None when it has no price."""
    rate = price_rate(model=model, usage=usage, at=at, speed=speed)
    if rate is None:
        return None
    return (
        usage.input * rate["input"]
        + usage.cache_write_5m * rate["cache_write_5m"]
        + usage.cache_write_1h * rate["cache_write_1h"]
        + usage.cache_read * rate["cache_read"]
        + usage.output * rate["output"]
    ) / 1_000_000


def cache_savings(
    *, model: str, usage: Usage, at: datetime | date, speed: str = ""
) -> float | None:
    """Return what cache reads saved: their price as plain input minus their price."""
    rate = price_rate(model=model, usage=usage, at=at, speed=speed)
    if rate is None:
        return None
    return usage.cache_read * (rate["input"] - rate["cache_read"]) / 1_000_000
