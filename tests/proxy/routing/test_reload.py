"""A running relay picks up routes file edits, refuses bad ones, and a bad file
stops it at start."""

from __future__ import annotations

import json
import os
import signal

import httpx
import pytest

from tests.conftest import wait_for
from tests.proxy.conftest import recorded

pytestmark = pytest.mark.django_db(transaction=True)

ROUTES = """\
reload_interval = {interval}

[providers.fake]
kind = "openai"
base_url = "{url}"

[[routes]]
model = "claude-haiku-*"
to = "fake:{model}"
"""


def served_model(relay, openai_fake) -> str:
    """Make a routed call; return the model the fake OpenAI server was asked for."""
    openai_fake.reset()
    body = {"model": "claude-haiku-4-5", "max_tokens": 8}
    body["messages"] = [{"role": "user", "content": "hi"}]
    answer = httpx.post(f"{relay.url}/v1/messages", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return json.loads(openai_fake.requests[0].body)["model"]


def test_it_reloads_an_edited_routes_file_and_keeps_the_last_good_one(
    relay_factory, openai_fake, tmp_path
):
    routes = tmp_path / "routes.toml"
    write = lambda model, interval=0.1: routes.write_text(  # noqa: E731
        ROUTES.format(interval=interval, url=openai_fake.url, model=model)
    )
    write("gpt-one")
    relay = relay_factory(CLAUDEMON_ROUTES_FILE=str(routes))
    assert served_model(relay, openai_fake) == "gpt-one"

    write("gpt-two")
    wait_for(lambda: served_model(relay, openai_fake) == "gpt-two")

    routes.write_text(
        routes.read_text() + '\n[[routes]]\nmodel = "x"\nto = "nowhere:m"\n'
    )
    error = wait_for(lambda: httpx.get(f"{relay.url}/health").json()["routes"]["error"])
    assert f"{routes}:13: routes[2].to: unknown provider" in error
    assert served_model(relay, openai_fake) == "gpt-two"

    write("gpt-three", interval=3600)  # seen by the 0.1 s check, then none for an hour
    wait_for(lambda: served_model(relay, openai_fake) == "gpt-three")
    write("gpt-four", interval=3600)
    os.kill(relay.process.pid, signal.SIGHUP)
    wait_for(lambda: served_model(relay, openai_fake) == "gpt-four")
    assert httpx.get(f"{relay.url}/health").json()["routes"]["error"] == ""
    recorded(4)


def test_a_bad_routes_file_stops_the_relay_at_start_naming_line_and_field(
    relay_factory, tmp_path
):
    routes = tmp_path / "routes.toml"
    routes.write_text('[providers.local]\nkind = "openai"\nbase_url = "localhost"\n')

    with pytest.raises(RuntimeError) as error:
        relay_factory(CLAUDEMON_ROUTES_FILE=str(routes))

    assert (
        f"CLAUDEMON_ROUTES_FILE: {routes}:3: providers.local.base_url: "
        "must be an http(s) URL with a host"
    ) in str(error.value)
