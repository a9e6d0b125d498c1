"""Builders of realistic test records (one shared test world)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from apps.proxy.models import Exchange
from apps.proxy.pricing import Usage, usage_cost

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)


def exchange_build(**overrides: Any) -> Exchange:
    """Return an unsaved, complete Exchange; cost is derived from model and usage."""
    started = overrides.pop("started_at", T0)
    fields: dict[str, Any] = {
        "uid": uuid.uuid4(),
        "started_at": started,
        "first_byte_at": started
        + timedelta(milliseconds=overrides.get("ttfb_ms", 400)),
        "ended_at": started
        + timedelta(milliseconds=overrides.get("duration_ms", 2000)),
        "ttfb_ms": 400.0,
        "duration_ms": 2000.0,
        "method": "POST",
        "path": "/v1/messages",
        "query": "beta=true",
        "is_streaming": True,
        "model_requested": "claude-sonnet-4-5",
        "model": "claude-sonnet-4-5-20250929",
        "state": Exchange.State.COMPLETE,
        "status_code": 200,
        "message_id": f"msg_{uuid.uuid4().hex[:20]}",
        "request_id": f"req_{uuid.uuid4().hex[:20]}",
        "session_id": "11111111-1111-1111-1111-111111111111",
        "user_agent": "claude-cli/2.1.197 (external, cli)",
        "stop_reason": "end_turn",
        "input_tokens": 100,
        "output_tokens": 50,
        "cache_read_tokens": 0,
        "cache_write_5m_tokens": 0,
        "cache_write_1h_tokens": 0,
    }
    fields.update(overrides)
    if "cost_usd" not in overrides:
        usage = Usage(
            input=fields["input_tokens"],
            output=fields["output_tokens"],
            cache_read=fields["cache_read_tokens"],
            cache_write_5m=fields["cache_write_5m_tokens"],
            cache_write_1h=fields["cache_write_1h_tokens"],
        )
        fields["cost_usd"] = usage_cost(model=fields["model"], usage=usage, at=started)
    return Exchange(**fields)


def exchange_create(**overrides: Any) -> Exchange:
    """Save and return an Exchange built by exchange_build."""
    exchange = exchange_build(**overrides)
    exchange.save()
    return exchange
