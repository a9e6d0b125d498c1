"""Sending a routed call to its provider, and what each provider last did.

Invariants:
- The caller's credentials (x-api-key, Authorization, cookies) reach only the
  relay's own upstream (the built-in provider "anthropic"). Any other provider
  gets a fixed set of headers plus its own key from the routes file.
- A provider's key appears in one place only: the header of the request sent to
  that provider. The recording keeps the request body, never its headers.
- Connect and idle-read timeouts are the relay's (or the provider's own, from the
  routes file); there is no total timeout, as for the relay itself.
- One connection pool per provider origin (apps.proxy.pool serves one origin).
- A target whose provider has a key serves only callers the routes allow: from
  loopback (unless `[access] loopback = false`) or with a listed key fingerprint.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpcore
from django.conf import settings

import claudemon
from apps.proxy.pool import UpstreamPool
from apps.proxy.recorder import Call, Header, header_value, secret_fingerprint
from apps.proxy.routing.config import Provider, Routes, Target
from apps.proxy.upstream import upstream_pool, upstream_request

if TYPE_CHECKING:  # match.py imports this module (through reload.py)
    from apps.proxy.routing.match import Route

# Headers a non-builtin Anthropic-compatible provider gets from the caller's call.
_ANTHROPIC_PASSED = frozenset({b"anthropic-version", b"anthropic-beta"})


def provider_request(
    target: Target, *, call: Call, body: bytes, stream: bool
) -> httpcore.Request:
    """The request for one target: its URL, its headers, the converted body."""
    provider = target.provider
    if provider.builtin:
        headers, base_url, path = call.request_headers, "", call.path
    else:
        headers = _provider_headers(provider, call=call, stream=stream)
        base_url = provider.base_url
        path = "/chat/completions" if provider.kind == "openai" else call.path
    query = call.query if provider.kind == "anthropic" else ""
    return upstream_request(
        method="POST",
        raw_path=path.encode("latin-1"),
        query_string=query.encode("latin-1"),
        headers=headers,
        body=body,
        base_url=base_url,
        timeouts=(
            provider.connect_timeout or settings.CLAUDEMON_CONNECT_TIMEOUT,
            provider.idle_timeout or settings.CLAUDEMON_IDLE_TIMEOUT,
        ),
    )


def _provider_headers(provider: Provider, *, call: Call, stream: bool) -> list[Header]:
    accept = b"text/event-stream" if stream else b"application/json"
    headers: list[Header] = [
        (b"content-type", b"application/json"),
        (b"accept", accept),
        (b"user-agent", f"claudemon/{claudemon.__version__}".encode()),
    ]
    if provider.kind == "anthropic":
        passed = [
            (k, v) for k, v in call.request_headers if k.lower() in _ANTHROPIC_PASSED
        ]
        headers += passed or [(b"anthropic-version", b"2023-06-01")]
        if provider.key:
            headers.append((b"x-api-key", provider.key.encode("latin-1")))
    elif provider.key:
        headers.append((b"authorization", b"Bearer " + provider.key.encode("latin-1")))
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in provider.headers]
    return headers


# --- who may spend a provider's key --------------------------------------------


def provider_targets_allowed(call: Call, route: Route, client: Any) -> list[Target]:
    """Targets that spend a provider key serve only callers the routes allow."""
    targets = list(route.rule.targets)
    if all(not target.provider.key for target in targets):
        return targets
    if _caller_allowed(call, route.routes, client):
        return targets
    return [target for target in targets if not target.provider.key]


def _caller_allowed(call: Call, routes: Routes, client: Any) -> bool:
    host = client[0] if isinstance(client, (list, tuple)) and client else ""
    try:
        address = ipaddress.ip_address(str(host))
        mapped = getattr(address, "ipv4_mapped", None)
        loopback = (mapped or address).is_loopback
    except ValueError:
        loopback = False
    if routes.loopback and loopback:
        return True
    for name in (b"x-api-key", b"authorization"):
        value = header_value(call.request_headers, name)
        if value.lower().startswith("bearer "):
            value = value[7:]
        if value and secret_fingerprint(value) in routes.callers:
            return True
    return False


def provider_refusal(route: Route) -> str:
    return (
        f"The route {route.rule.name!r} spends a provider key and serves only the "
        "callers the routes file allows: add this caller's key fingerprint (as "
        "the dashboard shows it) to [access] callers, or call from this machine."
    )


_pools: dict[str, UpstreamPool] = {}


async def provider_send(target: Target, request: httpcore.Request) -> httpcore.Response:
    """Send through the provider's pool (the relay's own for the built-in one)."""
    provider = target.provider
    if provider.builtin:
        return await upstream_pool().handle_async_request(request)
    origin = urllib.parse.urlsplit(provider.base_url)._replace(path="").geturl()
    pool = _pools.get(origin)
    if pool is None:
        pool = _pools[origin] = UpstreamPool(
            max_connections=settings.CLAUDEMON_UPSTREAM_CONNECTIONS,
            keepalive_expiry=60,
        )
    return await pool.handle_async_request(request)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a provider's last call went, for /health."""

    answered: bool  # it sent a response that was not a 5xx or a 429
    status: int | None
    at: str
    error: str = ""


_outcomes: dict[str, Outcome] = {}


def provider_note(name: str, *, status: int | None, error: str = "") -> None:
    """Remember how a provider's last call went."""
    answered = status is not None and status < 500 and status != 429
    at = datetime.now(UTC).isoformat(timespec="seconds")
    _outcomes[name] = Outcome(answered, status, at, error[:300])


def providers_health(providers: dict[str, Provider]) -> list[dict]:
    """Each provider: kind, base URL, where its key comes from, its last call."""
    report = []
    for name, provider in providers.items():
        outcome = _outcomes.get(name)
        report.append(
            {
                "name": name,
                "kind": provider.kind,
                "base_url": provider.base_url or settings.CLAUDEMON_UPSTREAM_URL,
                "key": provider.key_source
                or ("caller's" if provider.builtin else "none"),
                "last_call": None
                if outcome is None
                else {
                    "answered": outcome.answered,
                    "status": outcome.status,
                    "at": outcome.at,
                    "error": outcome.error,
                },
            }
        )
    return report


# --- errors -------------------------------------------------------------------

# Provider status -> (status Claude Code gets, Anthropic error type). Claude Code
# retries 429 (after retry-after) and 529/500 by itself; a 401/403 from a provider
# means the relay's key is wrong, not the user's, so it must not read as an
# authentication error (Claude Code would ask the user to log in again).
_ERRORS = {
    400: (400, "invalid_request_error"),
    401: (403, "permission_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    413: (413, "request_too_large"),
    422: (400, "invalid_request_error"),
    429: (429, "rate_limit_error"),
    500: (500, "api_error"),
    502: (529, "overloaded_error"),
    503: (529, "overloaded_error"),
    504: (529, "overloaded_error"),
    529: (529, "overloaded_error"),
}


def error_from_provider(status: int, body: bytes, *, provider: str) -> tuple[int, dict]:
    """Map a provider's error answer to Anthropic's status and error body."""
    mapped = _ERRORS.get(status)
    if mapped is None:
        mapped = (
            (529, "overloaded_error")
            if status >= 500
            else (400, "invalid_request_error")
        )
    message = _error_message(body) or f"HTTP {status}"
    text = f"{provider} answered {status}: {message}"
    return mapped[0], {"type": "error", "error": {"type": mapped[1], "message": text}}


def _error_message(body: bytes) -> str:
    """The message of an OpenAI- or Anthropic-shaped error body, else its text."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:500]
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "")[:500]
    if isinstance(error, str):
        return error[:500]
    return json.dumps(payload)[:500]
