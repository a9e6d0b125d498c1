"""End to end: routed calls through a real daphne relay to the strict fake OpenAI
server (and to fake Anthropic-compatible upstreams), with the official SDKs."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import httpx
import pytest
from django.db import connection

from apps.proxy.bodies import body_decode
from apps.proxy.models import Exchange
from apps.proxy.recorder import secret_fingerprint
from tests.conftest import free_port
from tests.fake_openai import Turn
from tests.proxy.conftest import recorded
from tests.proxy.routing.conftest import request_shape

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]
PROVIDER_KEY = "sk-provider-secret-0123456789"
COMPAT_KEY = "sk-compat-secret-9876543210"
ALLOWED = "sk-ant-allowed-caller-key"
STRANGER = "sk-ant-stranger-key"

ROUTES = """\
agent_dirs = ["agents"]

[access]
loopback = false
callers = ["{allowed}"]

[providers.fake]
kind = "openai"
base_url = "{openai}"
ping_interval = 0.3
free = false

[providers.keyed]
kind = "openai"
base_url = "{openai}"
key_env = "ROUTING_TEST_PROVIDER_KEY"

[providers.down]
kind = "openai"
base_url = "http://127.0.0.1:{closed}/v1"
connect_timeout = 2

[providers.compat]
kind = "anthropic"
base_url = "{anthropic}"
key_env = "ROUTING_TEST_COMPAT_KEY"

[[routes]]
agent = "code-reviewer"
to = "fake:reviewer-model"

[[routes]]
name = "haiku to fake"
model = "claude-haiku-*"
to = "fake:gpt-test"

[[routes]]
model = "keyed-*"
to = "keyed:gpt-keyed"

[[routes]]
model = "down-fallback-*"
to = "down:nothing"
fallback = ["fake:gpt-rescue"]

[[routes]]
model = "down-only-*"
to = "down:nothing"

[[routes]]
model = "compat-*"
to = "compat:claude-sonnet-4-6"

[[routes]]
model = "busy-*"
to = "fake:gpt-busy"
fallback = "anthropic"
"""

PRICES = {
    "families": [
        {
            "family": "gpt-test",
            "match": "^gpt-test",
            "rates": [
                {
                    "from": "2020-01-01",
                    "input": 1.0,
                    "cache_write_5m": 1.0,
                    "cache_write_1h": 1.0,
                    "cache_read": 0.5,
                    "output": 2.0,
                }
            ],
        }
    ]
}


@pytest.fixture(scope="module")
def routed(relay_factory, fake, openai_server, tmp_path_factory):
    """A relay whose routes send chosen calls to the fakes."""
    folder = tmp_path_factory.mktemp("routes")
    (folder / "agents").mkdir()
    (folder / "agents" / "code-reviewer.md").write_text(
        "---\nname: code-reviewer\ndescription: Reviews code.\ntools: Bash\n---\n"
        "You are a meticulous code reviewer. Point out bugs and risky changes.\n"
    )
    routes = folder / "routes.toml"
    routes.write_text(
        ROUTES.format(
            openai=openai_server.url,
            anthropic=fake.url,
            closed=free_port(),
            allowed=secret_fingerprint(ALLOWED),
        )
    )
    prices = folder / "prices.json"
    prices.write_text(json.dumps(PRICES))
    return relay_factory(
        CLAUDEMON_UPSTREAM_URL=fake.url,
        CLAUDEMON_ROUTES_FILE=str(routes),
        CLAUDEMON_PRICES_FILE=str(prices),
        CLAUDE_CONFIG_DIR=str(folder / "claude"),
        ROUTING_TEST_PROVIDER_KEY=PROVIDER_KEY,
        ROUTING_TEST_COMPAT_KEY=COMPAT_KEY,
    )


def client(relay, key: str = ALLOWED, **options) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=relay.url, api_key=key, **options)


def post(relay, body: dict, *, key: str = ALLOWED, path: str = "/v1/messages", **kw):
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    headers.update(kw.pop("headers", {}))
    return httpx.post(
        f"{relay.url}{path}?beta=true", json=body, headers=headers, timeout=30, **kw
    )


def test_it_streams_a_routed_call_to_the_sdk_as_a_well_formed_message(
    routed, openai_fake, upstream
):
    # Client, provider and record sides of one call: long, but one story.
    with client(routed).messages.stream(
        model="claude-haiku-4-5",
        max_tokens=256,
        system="Be brief.",
        messages=[{"role": "user", "content": "hello there"}],
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()

    assert final.content[0].text == "You said: hello there"
    assert final.model == "gpt-test"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (100, 15)
    assert final.usage.cache_read_input_tokens == 20
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    [sent] = openai_fake.requests
    body = json.loads(sent.body)
    assert body["model"] == "gpt-test" and body["stream"] is True
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent.header("authorization") is None and sent.header("x-api-key") is None
    assert openai_fake.rejected == [] and upstream.requests == []
    [row] = recorded()
    assert (row.route, row.provider, row.provider_status) == (
        "haiku to fake",
        "fake",
        200,
    )
    assert (row.model_requested, row.model) == ("claude-haiku-4-5", "gpt-test")
    assert row.state == Exchange.State.COMPLETE and row.status_code == 200
    assert (row.input_tokens, row.cache_read_tokens, row.output_tokens) == (100, 20, 15)
    assert row.cost_usd == pytest.approx((100 * 1.0 + 20 * 0.5 + 15 * 2.0) / 1e6)
    assert json.loads(body_decode(row.provider_request_body)) == body
    assert b"chat.completion.chunk" in body_decode(row.provider_response_body)
    assert b"event: message_start" in body_decode(row.response_body)
    assert json.loads(body_decode(row.request_body))["model"] == "claude-haiku-4-5"
    assert row.routing["attempts"] == [
        {"provider": "fake", "model": "gpt-test", "outcome": "served", "status": 200}
    ]


def test_streamed_calls_reuse_their_provider_connection(routed, openai_fake):
    body = {"model": "claude-haiku-4-5", "max_tokens": 8, "stream": True}
    body["messages"] = HI

    answers = [post(routed, body) for _ in range(3)]

    assert all(a.text.rstrip().endswith('{"type": "message_stop"}') for a in answers)
    assert openai_fake.connections <= 1  # (none when the pool kept one from before)
    recorded(3)


def test_it_does_a_tool_round_trip_through_a_route(routed, openai_fake):
    sdk = client(routed)
    first = sdk.messages.create(
        model="claude-haiku-4-5",
        max_tokens=256,
        tools=[{"name": "Bash", "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": "run echo hi"}],
    )
    [call] = first.content
    assert (call.type, call.name, call.input) == (
        "tool_use",
        "Bash",
        {"command": "echo hi", "description": "Run it"},
    )
    assert first.stop_reason == "tool_use"

    second = sdk.messages.create(
        model="claude-haiku-4-5",
        max_tokens=256,
        tools=[{"name": "Bash", "input_schema": {"type": "object"}}],
        messages=[
            {"role": "user", "content": "run echo hi"},
            {"role": "assistant", "content": [call.model_dump()]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "hi"}
                ],
            },
        ],
    )

    assert second.content[0].text == "The command printed: hi"
    tool_message = json.loads(openai_fake.requests[1].body)["messages"][-1]
    assert tool_message == {"role": "tool", "tool_call_id": call.id, "content": "hi"}
    assert openai_fake.rejected == []
    assert [row.stop_reason for row in recorded(2)] == ["tool_use", "end_turn"]


def test_it_routes_a_real_cli_subagent_call_by_its_definition(routed, openai_fake):
    body = request_shape("cli_subagent")

    answer = post(routed, body, headers={"x-claude-code-agent-id": "a8e8984fab2c9333a"})

    assert answer.status_code == 200
    assert json.loads(openai_fake.requests[0].body)["model"] == "reviewer-model"
    assert "event: message_stop" in answer.text
    [row] = recorded()
    assert row.routing["agent"] == "code-reviewer" and row.route == "routes[1]"


def test_it_estimates_count_tokens_for_a_routed_model_and_says_so(routed, openai_fake):
    body = {
        "model": "claude-haiku-4-5",
        "messages": [{"role": "user", "content": "x" * 400}],
    }

    answer = post(routed, body, path="/v1/messages/count_tokens")

    assert answer.status_code == 200
    assert answer.json()["input_tokens"] > 50
    assert answer.headers["x-claudemon-token-count"].startswith("estimate")
    assert openai_fake.requests == []
    [row] = recorded()
    assert row.routing["estimate"] is True and row.provider == "fake"


def test_a_provider_429_stays_429_with_retry_after(routed, openai_fake):
    openai_fake.enqueue(
        Turn(status=429, error="slow down", headers=[("retry-after", "7")])
    )

    with pytest.raises(anthropic.RateLimitError) as error:
        client(routed, max_retries=0).messages.create(
            model="claude-haiku-4-5",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
        )

    assert error.value.status_code == 429
    assert error.value.response.headers["retry-after"] == "7"
    assert error.value.body["error"] == {
        "type": "rate_limit_error",
        "message": "fake answered 429: slow down",
    }
    [row] = recorded()
    assert (row.status_code, row.provider_status) == (429, 429)


@pytest.mark.parametrize(
    ("provider_status", "status", "kind"),
    [
        (503, 529, "overloaded_error"),
        (500, 500, "api_error"),
        (400, 400, "invalid_request_error"),
    ],
)
def test_provider_errors_come_back_in_anthropic_shape(
    routed, openai_fake, provider_status, status, kind
):
    openai_fake.enqueue(Turn(status=provider_status, error="model crashed"))

    answer = post(
        routed, {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": HI}
    )

    assert answer.status_code == status
    assert answer.json() == {
        "type": "error",
        "error": {
            "type": kind,
            "message": f"fake answered {provider_status}: model crashed",
        },
    }
    assert recorded()[0].provider_status == provider_status


def test_a_provider_that_is_down_answers_502_at_once(routed, openai_fake):
    answer = post(routed, {"model": "down-only-1", "max_tokens": 8, "messages": HI})

    assert answer.status_code == 502
    assert answer.json()["error"]["type"] == "api_error"
    assert "down (ConnectError)" in answer.json()["error"]["message"]
    [row] = recorded()
    assert row.state == Exchange.State.UPSTREAM_ERROR
    assert row.error_type == "provider_unreachable"
    assert (row.provider, row.provider_status) == ("down", None)
    health = httpx.get(f"{routed.url}/health").json()
    down = next(p for p in health["providers"] if p["name"] == "down")
    assert down["last_call"]["answered"] is False


def test_a_fallback_serves_the_call_when_the_provider_is_down(routed, openai_fake):
    message = client(routed).messages.create(
        model="down-fallback-1",
        max_tokens=16,
        messages=[{"role": "user", "content": "anyone there?"}],
    )

    assert message.content[0].text == "You said: anyone there?"
    assert json.loads(openai_fake.requests[0].body)["model"] == "gpt-rescue"
    [row] = recorded()
    assert row.provider == "fake"
    assert [a["outcome"] for a in row.routing["attempts"]] == ["ConnectError", "served"]


def test_a_429_falls_back_to_the_relays_own_upstream_untouched(
    routed, openai_fake, upstream
):
    openai_fake.enqueue(Turn(status=429, error="busy"))
    body = {
        "model": "busy-1",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }

    answer = post(routed, body)

    assert answer.status_code == 200
    assert answer.json()["content"][0]["text"] == "You said: hi"
    [sent] = upstream.requests
    assert json.loads(sent.body) == body and sent.header("x-api-key") == ALLOWED
    [row] = recorded()
    assert [a["outcome"] for a in row.routing["attempts"]] == ["fell back", "served"]
    assert row.provider == "anthropic"


def test_a_key_spending_route_serves_only_allowed_callers(routed, openai_fake):
    body = {
        "model": "keyed-1",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }

    refused = post(routed, body, key=STRANGER)
    served = post(routed, body, key=ALLOWED)

    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    assert served.status_code == 200
    [sent] = openai_fake.requests  # the stranger's call never left
    assert sent.header("authorization") == f"Bearer {PROVIDER_KEY}"
    assert ALLOWED not in str(sent.headers)
    assert sorted(row.status_code for row in recorded(2)) == [200, 403]


def test_provider_keys_reach_neither_the_database_nor_health(
    routed, openai_fake, upstream
):
    post(routed, {"model": "keyed-1", "max_tokens": 8, "messages": HI})
    post(routed, {"model": "compat-1", "max_tokens": 8, "messages": HI})
    recorded(2)
    routed.settle()

    health = httpx.get(f"{routed.url}/health").text
    database = Path(connection.settings_dict["NAME"])
    stored = b"".join(
        p.read_bytes() for p in database.parent.glob(database.name + "*") if p.is_file()
    )
    for key in (PROVIDER_KEY, COMPAT_KEY):
        assert key not in health and key not in routed.log()
        assert key.encode() not in stored


def test_an_anthropic_compatible_provider_gets_the_call_with_its_own_key(
    routed, upstream
):
    body = {
        "model": "compat-x",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }

    answer = post(routed, body)

    assert answer.status_code == 200
    assert answer.json()["model"] == "claude-sonnet-4-6"  # the fake echoes the model
    [sent] = upstream.requests
    assert json.loads(sent.body) == dict(body, model="claude-sonnet-4-6")
    assert sent.header("x-api-key") == COMPAT_KEY
    assert sent.header("anthropic-version") == "2023-06-01"
    [row] = recorded()
    assert row.routing["passthrough"] is True and row.provider == "compat"


def test_unrouted_calls_pass_byte_for_byte_with_routes_configured(routed, upstream):
    raw = b'{"model":"claude-sonnet-4-6","max_tokens":8,\n "messages":[]}'
    headers = {"x-api-key": STRANGER, "content-type": "application/json"}

    answer = httpx.post(
        f"{routed.url}/v1/messages?beta=true", content=raw, headers=headers
    )

    assert answer.status_code == 200
    [sent] = upstream.requests
    assert sent.body == raw and sent.target == "/v1/messages?beta=true"
    assert sent.header("x-api-key") == STRANGER
    [row] = recorded()
    assert (row.route, row.provider, row.routing) == ("", "", {})


def test_a_stream_cut_by_the_provider_ends_with_an_error_event(routed, openai_fake):
    openai_fake.enqueue(Turn(text="one two three four five", cut_after=3))
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 8,
        "stream": True,
        "messages": HI,
    }

    answer = post(routed, body)

    assert answer.status_code == 200
    assert answer.text.rstrip().split("\n\n")[-1].startswith("event: error")
    assert "message_stop" not in answer.text
    [row] = recorded()
    assert row.state == Exchange.State.UPSTREAM_ERROR


def test_it_pings_while_the_provider_is_quiet(routed, openai_fake):
    openai_fake.enqueue(Turn(text="late", first_delay=2.0))
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 8,
        "stream": True,
        "messages": HI,
    }

    answer = post(routed, body)

    before_text = answer.text.split("content_block_start")[0]
    assert before_text.count("event: ping") >= 2  # the first, then while quiet
    assert answer.text.rstrip().endswith('data: {"type": "message_stop"}')
    assert recorded()[0].state == Exchange.State.COMPLETE


def test_health_lists_the_routes_and_each_providers_last_call(routed, openai_fake):
    post(routed, {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": HI})

    health = httpx.get(f"{routed.url}/health").json()

    assert health["routes"]["rules"] == 7 and health["routes"]["error"] == ""
    providers = {p["name"]: p for p in health["providers"]}
    assert set(providers) == {"anthropic", "fake", "keyed", "down", "compat"}
    assert providers["fake"]["last_call"]["answered"] is True
    assert providers["keyed"]["key"] == "env ROUTING_TEST_PROVIDER_KEY"
    recorded()


def test_the_stats_and_the_overview_show_each_route_and_provider(
    routed, openai_fake, upstream, admin_client
):
    haiku = {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": HI}
    for _ in range(2):
        assert post(routed, haiku).status_code == 200
    down = {"model": "down-only-1", "max_tokens": 8, "messages": HI}
    assert post(routed, down).status_code == 502
    unrouted = {"model": "claude-sonnet-4-6", "max_tokens": 8, "messages": HI}
    assert post(routed, unrouted).status_code == 200
    recorded(4)

    rows = admin_client.get("/api/stats/routes").json()

    by_route = {(r["route"], r["provider"]): r for r in rows}
    assert set(by_route) == {("haiku to fake", "fake"), ("routes[5]", "down")}
    fake = by_route["haiku to fake", "fake"]
    assert (fake["requests"], fake["errors"], fake["tokens"]["input"]) == (2, 0, 200)
    assert fake["cost_usd"] == pytest.approx(2 * (100 + 20 * 0.5 + 15 * 2.0) / 1e6)
    assert by_route["routes[5]", "down"]["errors"] == 1
    page = admin_client.get("/").content.decode()
    assert 'id="routes-table"' in page and "haiku to fake" in page
    listed = admin_client.get("/requests/", {"provider": "fake"}).content.decode()
    assert listed.count("via fake") == 2
