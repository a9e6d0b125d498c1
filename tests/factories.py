"""Builders of realistic test records (one shared test world)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction

from apps.proxy import services
from apps.proxy.bodies import body_block_ids, body_split, bodyblock_store
from apps.proxy.models import BodyBlock, Exchange
from apps.proxy.pricing import Usage, usage_cost

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def exchange_build(**overrides: Any) -> Exchange:
    """Return an unsaved, complete Exchange; cost is derived from model and usage."""
    started = overrides.pop("started_at", T0)
    ttfb = timedelta(milliseconds=overrides.get("ttfb_ms", 400))
    duration = timedelta(milliseconds=overrides.get("duration_ms", 2000))
    fields: dict[str, Any] = {
        "uid": uuid.uuid4(),
        "started_at": started,
        "first_byte_at": started + ttfb,
        "ended_at": started + duration,
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
        fields["cost_usd"] = usage_cost(
            model=fields["model"],
            usage=usage,
            at=started,
            speed=fields.get("speed", ""),
        )
    return Exchange(**fields)


def exchange_create(**overrides: Any) -> Exchange:
    """Save and return an Exchange built by exchange_build, entering its call in
    the usage ledger as the relay's recorder does."""
    exchange = exchange_build(**overrides)
    exchange.save()
    services.call_record_exchanges(uids=[exchange.uid])
    return exchange


def exchange_create_shared(*, body: bytes, **overrides: Any) -> Exchange:
    """Save an Exchange whose request body is its session's blocks, as recorded."""
    exchange = exchange_build(**overrides)
    with transaction.atomic():
        stored = bodyblock_store(body=body_split(body), scope=exchange.session_id)
        exchange.request_body = stored
        exchange.save()
    return exchange


def bodyblock_faults() -> dict[str, set]:
    """Return blocks no exchange lists and listed blocks missing from their session."""
    listed = set()
    for session_id, stored in Exchange.objects.values_list(
        "session_id", "request_body"
    ):
        listed |= {(session_id, block) for block in body_block_ids(stored) or ()}
    blocks = set(BodyBlock.objects.values_list("scope", "id"))
    return {"unlisted": blocks - listed, "missing": listed - blocks}
