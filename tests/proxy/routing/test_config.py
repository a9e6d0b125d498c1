"""The routes file: validation messages, provider keys, agents, hot reload."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from apps.proxy.routing.config import RoutesError, routes_load
from apps.proxy.routing.reload import RoutesFile
from tests.conftest import wait_for

GOOD = """\
agent_dirs = ["agents"]

[providers.local]
kind = "openai"                      # or "anthropic"
base_url = "http://127.0.0.1:8080/v1"
key_env = "LOCAL_LLM_KEY"            # optional

[[routes]]
model = "claude-haiku-*"
to = "local:qwen2.5-coder"

[[routes]]
agent = "code-reviewer"
to = "local:gpt-oss-20b"
fallback = "anthropic"
"""


PROVIDER_X = '[providers.x]\nkind = "openai"\nbase_url = "http://h"\n'


def write(folder: Path, text: str, name: str = "routes.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(autouse=True)
def keys_and_agents(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_LLM_KEY", "sk-local-secret-123")
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude"))
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "code-reviewer.md").write_text(
        "---\nname: code-reviewer\ndescription: Reviews code.\n---\n\n"
        "You are a meticulous code reviewer.\n"
    )


def test_it_loads_the_issue_example_as_written(tmp_path):
    routes = routes_load(write(tmp_path, GOOD))

    local = routes.providers["local"]
    assert (local.kind, local.base_url, local.key) == (
        "openai",
        "http://127.0.0.1:8080/v1",
        "sk-local-secret-123",
    )
    first, second = routes.rules
    assert (first.model, str(first.targets[0])) == (
        "claude-haiku-*",
        "local:qwen2.5-coder",
    )
    assert second.agent == "code-reviewer"
    assert [str(t) for t in second.targets] == ["local:gpt-oss-20b", "anthropic"]
    assert [(a.name, a.prompt) for a in routes.agents] == [
        ("code-reviewer", "You are a meticulous code reviewer.")
    ]
    assert routes.loopback is True and routes.callers == frozenset()


def test_it_never_shows_a_provider_key_in_a_repr(tmp_path):
    routes = routes_load(write(tmp_path, GOOD))

    assert "sk-local-secret-123" not in repr(routes)
    assert routes.providers["local"].key_source == "env LOCAL_LLM_KEY"


def test_it_reads_a_key_from_a_file(tmp_path):
    (tmp_path / "key").write_text("sk-from-file\n")
    text = GOOD.replace('key_env = "LOCAL_LLM_KEY"', f'key_file = "{tmp_path / "key"}"')

    assert routes_load(write(tmp_path, text)).providers["local"].key == "sk-from-file"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[routes]\n", "not valid TOML"),
        ('colour = "blue"\n', "routes.toml:1: colour: unknown field"),
        (
            '[providers.x]\nkind = "grpc"\nbase_url = "http://h"\n',
            "routes.toml:2: providers.x.kind: must be one of openai, anthropic",
        ),
        (
            '[providers.x]\nkind = "openai"\nbase_url = "ftp://h"\n',
            "routes.toml:3: providers.x.base_url: must be an http(s) URL",
        ),
        (
            PROVIDER_X + 'key_env = "NOPE_X"\n',
            "routes.toml:4: providers.x.key_env: the environment variable NOPE_X",
        ),
        (
            '[providers.x]\nkind = "openai"\nbase_url = "http://h"\ntimeout = 3\n',
            "routes.toml:4: providers.x.timeout: unknown field",
        ),
        (
            PROVIDER_X + "idle_timeout = -1\n",
            "routes.toml:4: providers.x.idle_timeout: must be a number of seconds > 0",
        ),
        (
            '[providers.anthropic]\nkind = "openai"\nbase_url = "http://h"\n',
            'routes.toml:1: providers.anthropic: "anthropic" is the relay\'s own',
        ),
        (
            '[providers.x]\nkind = "openai"\nbase_url = "http://h"\n\n'
            '[[routes]]\nmodel = "a*"\nto = "x:m"\n\n[[routes]]\nmodel = "b*"\n'
            'to = "y:m"\n',
            'routes.toml:11: routes[2].to: unknown provider "y" (known: anthropic, x)',
        ),
        (
            '[providers.x]\nkind = "openai"\nbase_url = "http://h"\n\n'
            '[[routes]]\nmodel = "a*"\nto = "x"\n',
            'routes.toml:7: routes[1].to: "x" needs a model',
        ),
        (
            '[[routes]]\nto = "anthropic:claude-haiku-4-5"\n',
            "routes.toml:1: routes[1]: needs at least one of model, agent, main, path",
        ),
        (
            '[[routes]]\nmain = true\nagent = "x"\nto = "anthropic"\n',
            "routes.toml:2: routes[1].main: cannot be combined with agent",
        ),
        (
            '[[routes]]\nmodel = "x"\nto = "anthropic"\nfallback = [1]\n',
            "routes.toml:4: routes[1].fallback: must be a target or a list of them",
        ),
        (
            '[[routes]]\nmodel = 3\nto = "anthropic"\n',
            "routes.toml:2: routes[1].model: must be a str",
        ),
        (
            '[access]\ncallers = ["sk-ant-raw-key"]\n',
            "routes.toml:2: access.callers: 'sk-ant-raw-key' is not a key fingerprint",
        ),
    ],
)
def test_it_names_file_line_and_field_of_each_error(tmp_path, text, message):
    with pytest.raises(RoutesError) as error:
        routes_load(write(tmp_path, text))

    assert message in str(error.value)
    assert str(error.value).startswith(str(tmp_path / "routes.toml"))


def test_it_reloads_a_changed_file_and_keeps_the_last_good_routes_on_a_bad_edit(
    tmp_path,
):
    path = write(tmp_path, "reload_interval = 0.01\n" + GOOD)
    live = RoutesFile(path)
    assert len(live.current().rules) == 2

    path.write_text(path.read_text() + '\n[[routes]]\nmain = true\nto = "local:m"\n')
    _bump(path)
    wait_for(lambda: len(live.current().rules) == 3)
    assert live.error == ""

    path.write_text(path.read_text() + '\n[[routes]]\nmodel = "x"\nto = "nowhere:m"\n')
    _bump(path)
    wait_for(lambda: live.current() and live.error)
    assert len(live.current().rules) == 3  # the last good ones
    assert 'routes[4].to: unknown provider "nowhere"' in live.error

    path.write_text("reload_interval = 0.01\n" + GOOD)
    _bump(path)
    wait_for(lambda: len(live.current().rules) == 2)
    assert live.error == ""


def test_it_reloads_on_hangup_even_before_the_interval(tmp_path):
    path = write(tmp_path, "reload_interval = 3600\n" + GOOD)
    live = RoutesFile(path)
    path.write_text("reload_interval = 3600\n" + GOOD.split("[[routes]]")[0])
    _bump(path)
    assert len(live.current().rules) == 2  # not due yet

    live.hangup()

    assert live.current().rules == ()


def test_it_reloads_when_an_agent_definition_changes(tmp_path):
    live = RoutesFile(write(tmp_path, "reload_interval = 0.01\n" + GOOD))
    definition = tmp_path / "agents" / "code-reviewer.md"
    definition.write_text("---\nname: code-reviewer\n---\nYou review tersely.\n")
    _bump(definition)

    wait_for(lambda: live.current().agents[0].prompt == "You review tersely.")


def _bump(path: Path) -> None:
    """Move the mtime on, so that a change within one clock tick is seen."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
