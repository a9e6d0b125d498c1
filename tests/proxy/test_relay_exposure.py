"""What web pages and onlookers cannot get from the relay: web pages cannot call it
(Host, Origin, Sec-Fetch-Site), and no credential shows in /health or an error."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from apps.proxy.models import Exchange
from tests.conftest import free_port, wait_for
from tests.proxy.conftest import recorded

pytestmark = pytest.mark.django_db(transaction=True)

CLAUDE_CODE_HEADERS = {
    "user-agent": "claude-cli/2.1.197 (external, cli)",
    "x-app": "cli",
    "x-api-key": "sk-ant-api03-guard",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,oauth-2025-04-20",
    "x-claude-code-session-id": "9f0c6a4e-6a51-4b8e-9a4b-0d3c2f1e5a77",
    "content-type": "application/json",
}
BODY = b'{"model": "claude-sonnet-4-6", "max_tokens": 5, "stream": true}'


def port_of(relay) -> int:
    return int(relay.url.rsplit(":", 1)[1])


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "LOCALHOST"])
@pytest.mark.parametrize("with_port", [True, False])
def test_it_relays_claude_code_shaped_calls_to_its_loopback_names(
    relay, upstream, host, with_port
):
    name = f"{host}:{port_of(relay)}" if with_port else host

    response = httpx.post(
        relay.url + "/v1/messages?beta=true",
        content=BODY,
        headers=CLAUDE_CODE_HEADERS | {"host": name},
    )

    assert response.status_code == 200
    assert b"message_stop" in response.content
    recorded()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_it_relays_the_official_sdk(relay, upstream, host):
    client = anthropic.Anthropic(
        base_url=f"http://{host}:{port_of(relay)}", api_key="sk-ant-sdk"
    )

    message = client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=5,
        messages=[{"role": "user", "content": "hello"}],
    )

    assert message.content[0].text == "You said: hello"


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"host": "attacker.example:8001"}, "Host"),  # DNS rebinding
        ({"host": "attacker.example"}, "Host"),
        ({"origin": "https://attacker.example"}, "Origin"),
        ({"origin": "null"}, "Origin"),  # sandboxed frames, file:// pages
        ({"sec-fetch-site": "cross-site"}, "Sec-Fetch-Site"),
        ({"sec-fetch-site": "same-site"}, "Sec-Fetch-Site"),
        (
            {
                "origin": "http://127.0.0.1:3000",  # another local web app
                "content-type": "text/plain",  # no preflight needed
                "sec-fetch-site": "same-site",
            },
            "Origin",
        ),
    ],
)
def test_it_refuses_what_a_web_page_sends_in_anthropic_shape(
    relay, upstream, headers, named
):
    response = httpx.post(
        relay.url + "/v1/messages?beta=true",
        content=BODY,
        headers=CLAUDE_CODE_HEADERS | headers,
    )

    assert response.status_code == 403
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "permission_error"
    assert named in error["error"]["message"]
    assert upstream.requests == []
    relay.settle()
    assert not Exchange.objects.exists()


def test_it_answers_the_hosts_and_origins_it_is_told_to_allow(relay_factory, upstream):
    relay = relay_factory(
        CLAUDEMON_UPSTREAM_URL=upstream.url,
        CLAUDEMON_RELAY_HOSTS="relay.internal, Monitor.LAN",
        CLAUDEMON_RELAY_ORIGINS="https://tool.example",
    )

    allowed = [
        {"host": "relay.internal"},
        {"host": f"monitor.lan:{port_of(relay)}"},
        {"origin": "https://tool.example", "sec-fetch-site": "cross-site"},
    ]
    statuses = [
        httpx.post(relay.url + "/v1/messages", content=BODY, headers=h).status_code
        for h in allowed
    ]
    refused = httpx.post(
        relay.url + "/v1/messages", content=BODY, headers={"host": "other.lan"}
    )

    assert statuses == [200, 200, 200]
    assert refused.status_code == 403
    recorded(3)


def test_it_shows_no_upstream_credentials_in_health_or_errors(relay_factory, upstream):
    with_password = upstream.url.replace("http://", "http://gateway:hunter2@")
    relay = relay_factory(CLAUDEMON_UPSTREAM_URL=with_password)
    unreachable = relay_factory(
        CLAUDEMON_UPSTREAM_URL=f"http://gateway:hunter2@127.0.0.1:{free_port()}"
    )

    health = httpx.get(relay.url + "/health").text
    relayed = httpx.post(relay.url + "/v1/messages", content=BODY)
    failed = httpx.post(unreachable.url + "/v1/messages", content=BODY)

    assert "hunter2" not in health and upstream.url in health
    assert relayed.status_code == 200
    assert failed.status_code == 502 and "hunter2" not in failed.text
    rows = recorded(2)
    assert all("hunter2" not in row.error_message for row in rows)


def test_it_logs_and_stores_secret_query_parameters_hidden(relay, upstream):
    response = httpx.post(
        relay.url + "/v1/messages?beta=true&key=QUERYSECRET&token=OTHERSECRET",
        content=BODY,
    )

    assert response.status_code == 200
    assert "key=QUERYSECRET" in upstream.requests[0].target  # forwarded as sent
    [row] = recorded()
    assert row.query.startswith("beta=true&key=sha256:")
    log = wait_for(
        lambda: "/v1/messages?beta=true&key=sha256:" in relay.log() and relay.log()
    )
    assert "QUERYSECRET" not in log and "OTHERSECRET" not in log
