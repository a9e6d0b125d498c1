"""Which rule, if any, takes a call: the only routing code an unrouted call meets.

Cost for a call no rule matches: a clock read (reload check), the method and path,
then per rule only what it asks for, cheapest first: the path, the subagent header,
the requested model (read from the body's first key, where Claude Code puts it; the
whole body is parsed only when `model` is not first), and last a subagent's name
(the system prompt), parsed only for calls that carry x-claude-code-agent-id.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any

from apps.proxy.recorder import Call, header_value
from apps.proxy.routing.config import Routes, Rule
from apps.proxy.routing.reload import routes_live

_MESSAGES = "/v1/messages"
_COUNT_TOKENS = "/v1/messages/count_tokens"
_FIRST_MODEL = re.compile(rb'\A\s*\{\s*"model"\s*:\s*("(?:[^"\\]|\\.)*")')


@dataclass(frozen=True, slots=True)
class Route:
    """A call taken by a rule: which rule, which endpoint, which subagent."""

    rule: Rule
    routes: Routes
    endpoint: str  # "messages" | "count_tokens"
    agent: str = ""  # the recognised subagent's name, if any


def route_for(call: Call) -> Route | None:
    """Return the route of a call, or None to relay it as it is."""
    live = routes_live()
    if live is None or call.method != "POST":
        return None
    routes = live.current()
    path = call.path
    if path.endswith(_MESSAGES):
        endpoint = "messages"
    elif path.endswith(_COUNT_TOKENS):
        endpoint = "count_tokens"
    else:
        return None
    facts = _Facts(call, routes)
    for rule in routes.rules:
        if _matches(rule, facts):
            return Route(rule, routes, endpoint, facts.agent_name() or "")
    return None


def _matches(rule: Rule, facts: _Facts) -> bool:
    if rule.path is not None and not fnmatch.fnmatchcase(facts.call.path, rule.path):
        return False
    if rule.main and facts.agent_id():
        return False
    if rule.agent is not None and not facts.agent_id():
        return False
    if rule.model is not None and not fnmatch.fnmatchcase(facts.model(), rule.model):
        return False
    if rule.agent not in (None, "*") and facts.agent_name() != rule.agent:
        return False
    return True


class _Facts:
    """What rules ask of a call, each read at most once and only when asked."""

    def __init__(self, call: Call, routes: Routes) -> None:
        self.call = call
        self.routes = routes
        self._agent_id: str | None = None
        self._model: str | None = None
        self._body: Any = None
        self._agent_name: str | None = None

    def agent_id(self) -> str:
        if self._agent_id is None:
            headers = self.call.request_headers
            self._agent_id = header_value(headers, b"x-claude-code-agent-id")
        return self._agent_id

    def model(self) -> str:
        if self._model is None:
            first = _FIRST_MODEL.match(self.call.request_body)
            if first:
                self._model = str(json.loads(first.group(1)))
            else:
                model = self.body().get("model")
                self._model = model if isinstance(model, str) else ""
        return self._model

    def body(self) -> dict:
        if self._body is None:
            try:
                body = json.loads(self.call.request_body)
            except ValueError:
                body = None
            self._body = body if isinstance(body, dict) else {}
        return self._body

    def agent_name(self) -> str:
        if self._agent_name is None:
            self._agent_name = ""
            if self.routes.agents and self.agent_id():
                self._agent_name = agent_recognise(self.body(), self.routes)
        return self._agent_name


def agent_recognise(body: dict, routes: Routes) -> str:
    """Name the subagent whose definition's body starts a block of the system prompt.

    Claude Code sends a subagent's definition (the .md file after its frontmatter)
    as the start of a system block, followed by notes and the environment.
    """
    system = body.get("system")
    if isinstance(system, str):
        texts = [system]
    elif isinstance(system, list):
        texts = [b.get("text", "") for b in system if isinstance(b, dict)]
    else:
        return ""
    for text in texts:
        text = text.lstrip() if isinstance(text, str) else ""
        for agent in routes.agents:
            if text.startswith(agent.prompt):
                return agent.name
    return ""
