"""Which rule takes a call, and what an unmatched call costs."""

from __future__ import annotations

import json
import signal
import uuid
from datetime import UTC, datetime

import pytest

from apps.proxy.recorder import Call
from apps.proxy.routing.match import route_for
from apps.proxy.routing.reload import routes_start
from tests.proxy.routing.conftest import request_shape

ROUTES = """\
agent_dirs = ["agents"]

[providers.local]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[routes]]
agent = "code-reviewer"
to = "local:reviewer"

[[routes]]
agent = "*"
model = "claude-haiku-*"
to = "local:small-agent"

[[routes]]
name = "haiku main"
main = true
model = "claude-haiku-*"
to = "local:small-main"

[[routes]]
model = "claude-opus-*"
path = "/proxy/*"
to = "local:prefixed"
"""


@pytest.fixture(autouse=True)
def live_routes(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude"))
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "code-reviewer.md").write_text(
        "---\nname: code-reviewer\ndescription: Reviews code.\ntools: Bash\n---\n"
        "You are a meticulous code reviewer. Point out bugs and risky changes.\n"
    )
    (tmp_path / "routes.toml").write_text(ROUTES)
    previous = signal.getsignal(signal.SIGHUP)
    routes_start(str(tmp_path / "routes.toml"))
    yield
    routes_start("")
    signal.signal(signal.SIGHUP, previous)


def call(
    body: bytes | dict, *, path: str = "/v1/messages", method: str = "POST", agent=""
) -> Call:
    headers = [(b"content-type", b"application/json")]
    if agent:
        headers.append((b"x-claude-code-agent-id", agent.encode()))
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Call(
        uid=uuid.uuid4(),
        started_at=datetime.now(UTC),
        t0=0.0,
        method=method,
        path=path,
        query="beta=true",
        request_headers=headers,
        request_body=raw,
    )


HAIKU = {"model": "claude-haiku-4-5", "messages": []}


@pytest.mark.parametrize(
    ("kwargs", "target", "endpoint"),
    [
        ({"body": HAIKU}, "local:small-main", "messages"),
        ({"body": HAIKU, "agent": "a1"}, "local:small-agent", "messages"),
        (
            {"body": HAIKU, "path": "/v1/messages/count_tokens"},
            "local:small-main",
            "count_tokens",
        ),
        (
            {"body": {"messages": [], "model": "claude-haiku-4-5"}},
            "local:small-main",
            "messages",
        ),
        (
            {"body": {"model": "claude-opus-4-8"}, "path": "/proxy/abc/v1/messages"},
            "local:prefixed",
            "messages",
        ),
        ({"body": {"model": "claude-opus-4-8"}}, None, None),
        ({"body": {"model": "claude-sonnet-4-6"}, "agent": "a1"}, None, None),
        ({"body": HAIKU, "method": "GET"}, None, None),
        ({"body": HAIKU, "path": "/v1/models"}, None, None),
        ({"body": HAIKU, "path": "/api/event_logging/batch"}, None, None),
    ],
)
def test_it_takes_the_first_matching_rule(kwargs, target, endpoint):
    route = route_for(call(**kwargs))

    assert (str(route.rule.targets[0]) if route else None) == target
    assert (route.endpoint if route else None) == endpoint


def test_it_recognises_a_subagent_from_its_definition_in_a_real_cli_call():
    body = request_shape("cli_subagent")  # claude-opus-4-8, code-reviewer's prompt

    route = route_for(call(body, agent="a8e8984fab2c9333a"))

    assert str(route.rule.targets[0]) == "local:reviewer"
    assert route.agent == "code-reviewer"
    assert route_for(call(body)) is None  # no agent header: the main agent


def test_it_reads_only_the_first_key_when_the_model_comes_first():
    # Past its first key this body is not JSON: a full parse would fail and find
    # no model, so a match proves that only the first key was read.
    body = b'{"model":"claude-haiku-4-5","messages":[ this is not json'

    assert str(route_for(call(body)).rule.targets[0]) == "local:small-main"
    assert route_for(call(b"not json at all")) is None
