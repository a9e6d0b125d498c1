"""What a routed call's recording adds to its Exchange row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apps.proxy.bodies import body_encode


@dataclass(slots=True)
class RoutedCall:
    """Kept on the Call (and pickled with it if recording spills to disk), so it
    holds names and bytes only: never a Provider, whose key must not be stored."""

    route: str
    agent: str = ""
    provider: str = ""  # the provider that served the call, or the last one tried
    model: str = ""  # the model it was asked for
    provider_model: str = ""  # the model the provider says answered
    provider_status: int | None = None
    request: bytes | None = None  # what the provider was sent
    chunks: list[bytes] = field(default_factory=list)  # what it answered
    passthrough: bool = False  # the provider speaks Anthropic: answered as is
    free: bool = False
    estimate: bool = False  # count_tokens answered with an estimate
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def attempt(
        self, *, provider: str, model: str, outcome: str, status: int | None
    ) -> None:
        self.attempts.append(
            {"provider": provider, "model": model, "outcome": outcome, "status": status}
        )

    def row(self) -> dict[str, Any]:
        """The Exchange fields of a routed call (merged into its finishing row)."""
        response = None if self.passthrough else b"".join(self.chunks)
        fields: dict[str, Any] = {
            "route": self.route[:200],
            "provider": self.provider[:100],
            "provider_status": self.provider_status,
            "provider_request_body": body_encode(self.request)
            if self.request
            else None,
            "provider_response_body": body_encode(response) if response else None,
            "routing": {
                "agent": self.agent,
                "model": self.model,
                "provider_model": self.provider_model,
                "passthrough": self.passthrough,
                "estimate": self.estimate,
                "attempts": self.attempts,
            },
        }
        if self.free:
            fields["cost_usd"] = 0.0
        return fields
