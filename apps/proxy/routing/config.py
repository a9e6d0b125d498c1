"""The routes file (CLAUDEMON_ROUTES_FILE): its fields, validated, as frozen data.

Every error names the file, the line and the field (`routes[2].to`). Provider keys
are read here (from the environment or a file) and live only in `Provider.key`:
never in a repr, a log line, a recording or a health report.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

BUILTIN = "anthropic"  # the relay's own upstream, with the caller's credentials
KINDS = ("openai", "anthropic")
_PROVIDER_FIELDS = {
    "kind", "base_url", "key_env", "key_file", "connect_timeout", "idle_timeout",
    "max_tokens_field", "reasoning", "free", "ping_interval", "headers",
}  # fmt: skip
_RULE_FIELDS = {"name", "model", "agent", "main", "path", "to", "fallback"}
_TOP_FIELDS = {"providers", "routes", "access", "agent_dirs", "reload_interval"}
_ACCESS_FIELDS = {"callers", "loopback"}
_FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{12}$")
_Default = TypeVar("_Default", float, None)


class RoutesError(ValueError):
    """A routes file that cannot be used; the message names file, line and field."""


@dataclass(frozen=True)
class Provider:
    name: str
    kind: str
    base_url: str
    key: str = field(default="", repr=False)
    key_source: str = ""  # where the key comes from, for /health ("env X", "file")
    connect_timeout: float | None = None  # None: CLAUDEMON_CONNECT_TIMEOUT
    idle_timeout: float | None = None  # None: CLAUDEMON_IDLE_TIMEOUT
    max_tokens_field: str = "max_tokens"
    reasoning: bool = False
    free: bool = False
    ping_interval: float = 10.0
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def builtin(self) -> bool:
        return self.name == BUILTIN


@dataclass(frozen=True)
class Target:
    provider: Provider
    model: str  # "" keeps the model the caller asked for

    def __str__(self) -> str:
        return (
            f"{self.provider.name}:{self.model}" if self.model else self.provider.name
        )


@dataclass(frozen=True)
class Rule:
    name: str
    targets: tuple[Target, ...]  # `to`, then each `fallback` in order
    model: str | None = None  # a glob on the requested model
    agent: str | None = None  # a subagent's name, or "*" for any subagent
    main: bool = False  # the main agent only (no x-claude-code-agent-id)
    path: str | None = None  # a glob on the request path


@dataclass(frozen=True)
class Agent:
    name: str
    prompt: str  # the definition's body: the start of the subagent's system prompt


@dataclass(frozen=True)
class Routes:
    path: Path
    providers: dict[str, Provider]
    rules: tuple[Rule, ...]
    agents: tuple[Agent, ...] = ()
    agent_dirs: tuple[Path, ...] = ()
    callers: frozenset[str] = frozenset()
    loopback: bool = True
    reload_interval: float = 2.0


def routes_load(path: Path) -> Routes:
    """Read and validate a routes file (raises RoutesError)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RoutesError(f"{path}: cannot read the routes file: {exc}") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RoutesError(f"{path}: not valid TOML: {exc}") from exc
    where = _Locator(path, text)
    where.unknown(document, _TOP_FIELDS, "", "")
    providers = {BUILTIN: _builtin_provider()}
    for name, table in _table(document, "providers", where).items():
        providers[name] = _provider(name, table, where)
    access = _table(document, "access", where)
    where.unknown(access, _ACCESS_FIELDS, "access", "access")
    agent_dirs = _agent_dirs(document, path, where)
    rules = tuple(
        _rule(number, table, providers, where)
        for number, table in enumerate(_rule_tables(document, where), start=1)
    )
    needs_agents = any(rule.agent not in (None, "*") for rule in rules)
    return Routes(
        path=path,
        providers=providers,
        rules=rules,
        agents=_agents_load(agent_dirs) if needs_agents else (),
        agent_dirs=agent_dirs,
        callers=frozenset(_callers(access, where)),
        loopback=_typed(access, "loopback", bool, True, where, "access", "access"),
        reload_interval=_number(document, "reload_interval", 2.0, where, "", ""),
    )


class _Locator:
    """Finds the line of a field in the file, so that errors point at it."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line(self, section: str, key: str) -> int:
        """Line of `key` under [section] (or [[section]] number n as 'routes#n')."""
        header, wanted_count = section, 0
        if "#" in section:
            header, count = section.split("#")
            wanted_count = int(count)
        current, seen, header_line = "", 0, 0
        for number, raw in enumerate(self.lines, start=1):
            line = raw.strip()
            if line.startswith("["):
                current = line.strip("[] ")
                seen += current == header and line.startswith("[[")
                if current == header and (not wanted_count or seen == wanted_count):
                    header_line = number
                continue
            matches_section = current == header and (
                not wanted_count or seen == wanted_count
            )
            if matches_section and key and re.match(rf'"?{re.escape(key)}"?\s*=', line):
                return number
        return header_line or 1

    def error(self, section: str, label: str, key: str, message: str) -> RoutesError:
        field_name = f"{label}.{key}" if label and key else (label or key)
        return RoutesError(
            f"{self.path}:{self.line(section, key)}: {field_name}: {message}"
        )

    def unknown(self, table: dict, known: set, section: str, label: str) -> None:
        for key in table:
            if key not in known:
                raise self.error(
                    section,
                    label,
                    key,
                    f"unknown field (known: {', '.join(sorted(known))})",
                )


def _table(document: dict, key: str, where: _Locator) -> dict:
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise where.error("", "", key, "must be a table")
    return value


def _typed(
    table: dict, key: str, kind: type, default: Any, where: _Locator, section: str,
    label: str,
) -> Any:  # fmt: skip
    value = table.get(key, default)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise where.error(section, label, key, f"must be a {kind.__name__}")
    return value


def _number(
    table: dict, key: str, default: _Default, where: _Locator, section: str,
    label: str,
) -> float | _Default:  # fmt: skip
    value = table.get(key, default)
    if value is None:  # absent, with no default (TOML has no null)
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise where.error(section, label, key, "must be a number of seconds > 0")
    return float(value)


def _builtin_provider() -> Provider:
    return Provider(name=BUILTIN, kind="anthropic", base_url="")  # upstream set later


def _provider(name: str, table: Any, where: _Locator) -> Provider:
    # One check per field, in the order the README lists them: kept whole.
    section, label = f"providers.{name}", f"providers.{name}"
    if not isinstance(table, dict):
        raise where.error(section, label, "", "must be a table")
    if name == BUILTIN:
        raise where.error(
            section, label, "", f'"{BUILTIN}" is the relay\'s own upstream'
        )
    where.unknown(table, _PROVIDER_FIELDS, section, label)
    kind = _typed(table, "kind", str, "", where, section, label)
    if kind not in KINDS:
        raise where.error(section, label, "kind", f"must be one of {', '.join(KINDS)}")
    base_url = _typed(table, "base_url", str, "", where, section, label).rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise where.error(
            section, label, "base_url", "must be an http(s) URL with a host"
        )
    key, source = _provider_key(table, where, section, label)
    field_name = _typed(
        table, "max_tokens_field", str, "max_tokens", where, section, label
    )
    if field_name not in ("max_tokens", "max_completion_tokens"):
        raise where.error(
            section, label, "max_tokens_field",
            'must be "max_tokens" or "max_completion_tokens"',
        )  # fmt: skip
    return Provider(
        name=name,
        kind=kind,
        base_url=base_url,
        key=key,
        key_source=source,
        connect_timeout=_number(table, "connect_timeout", None, where, section, label),
        idle_timeout=_number(table, "idle_timeout", None, where, section, label),
        max_tokens_field=field_name,
        reasoning=_typed(table, "reasoning", bool, False, where, section, label),
        free=_typed(table, "free", bool, False, where, section, label),
        ping_interval=_number(table, "ping_interval", 10.0, where, section, label),
        headers=_headers(table, where, section, label),
    )


def _provider_key(
    table: dict, where: _Locator, section: str, label: str
) -> tuple[str, str]:
    """Read the provider's key from the environment or a file ('' when it has none)."""
    env_name = _typed(table, "key_env", str, "", where, section, label)
    file_name = _typed(table, "key_file", str, "", where, section, label)
    if env_name and file_name:
        raise where.error(
            section, label, "key_file", "give key_env or key_file, not both"
        )
    if env_name:
        key = os.environ.get(env_name, "").strip()
        if not key:
            raise where.error(
                section,
                label,
                "key_env",
                f"the environment variable {env_name} is not set",
            )
        return key, f"env {env_name}"
    if file_name:
        key_path = Path(file_name).expanduser()
        try:
            key = key_path.read_text().strip()
        except OSError as exc:
            raise where.error(
                section, label, "key_file", f"cannot read: {exc}"
            ) from exc
        if not key:
            raise where.error(section, label, "key_file", f"{key_path} is empty")
        return key, f"file {key_path}"
    return "", ""


def _headers(
    table: dict, where: _Locator, section: str, label: str
) -> tuple[tuple[str, str], ...]:
    headers = _typed(table, "headers", dict, {}, where, section, label)
    if not all(isinstance(v, str) for v in headers.values()):
        raise where.error(section, label, "headers", "values must be strings")
    return tuple(headers.items())


def _rule_tables(document: dict, where: _Locator) -> list[dict]:
    rules = document.get("routes", [])
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise where.error("", "", "routes", "must be an array of tables ([[routes]])")
    return rules


def _rule(number: int, table: dict, providers: dict, where: _Locator) -> Rule:
    section, label = f"routes#{number}", f"routes[{number}]"
    where.unknown(table, _RULE_FIELDS, section, label)
    text = {
        key: _typed(table, key, str, None, where, section, label)
        if key in table
        else None
        for key in ("name", "model", "agent", "path", "to")
    }
    main = _typed(table, "main", bool, False, where, section, label)
    if text["to"] is None:
        raise where.error(section, label, "to", 'is required ("provider:model")')
    if main and text["agent"]:
        raise where.error(section, label, "main", "cannot be combined with agent")
    if not (text["model"] or text["agent"] or main or text["path"]):
        raise where.error(
            section, label, "", "needs at least one of model, agent, main, path"
        )
    fallback = table.get("fallback", [])
    fallback = [fallback] if isinstance(fallback, str) else fallback
    if not isinstance(fallback, list) or not all(isinstance(f, str) for f in fallback):
        raise where.error(
            section, label, "fallback", "must be a target or a list of them"
        )
    targets = tuple(
        _target(spec, key, providers, where, section, label)
        for spec, key in [(text["to"], "to"), *((f, "fallback") for f in fallback)]
    )
    return Rule(
        name=text["name"] or f"routes[{number}]",
        targets=targets,
        model=text["model"],
        agent=text["agent"],
        main=main,
        path=text["path"],
    )


def _target(
    spec: str, key: str, providers: dict, where: _Locator, section: str, label: str
) -> Target:
    name, _, model = spec.partition(":")
    if name not in providers:
        known = ", ".join(sorted(providers))
        raise where.error(
            section, label, key, f'unknown provider "{name}" (known: {known})'
        )
    if not model and not providers[name].builtin:
        raise where.error(
            section, label, key, f'"{spec}" needs a model: "{name}:MODEL"'
        )
    return Target(providers[name], model)


def _agent_dirs(document: dict, path: Path, where: _Locator) -> tuple[Path, ...]:
    """~/.claude/agents (or each CLAUDE_CONFIG_DIR root's), plus `agent_dirs`."""
    extra = document.get("agent_dirs", [])
    if not isinstance(extra, list) or not all(isinstance(d, str) for d in extra):
        raise where.error("", "", "agent_dirs", "must be a list of folders")
    roots = os.environ.get("CLAUDE_CONFIG_DIR", "")
    config_roots = [Path(r).expanduser() for r in roots.split(",") if r.strip()]
    dirs = [
        root / "agents" for root in config_roots or [Path("~/.claude").expanduser()]
    ]
    dirs += [(path.parent / Path(d).expanduser()).resolve() for d in extra]
    return tuple(dirs)


def _callers(access: dict, where: _Locator) -> list[str]:
    callers = _typed(access, "callers", list, [], where, "access", "access")
    for caller in callers:
        if not isinstance(caller, str) or not _FINGERPRINT.match(caller):
            raise where.error(
                "access", "access", "callers",
                f"{caller!r} is not a key fingerprint (sha256: and 12 hex digits, "
                "as the dashboard shows it)",
            )  # fmt: skip
    return callers


def _agents_load(dirs: tuple[Path, ...]) -> tuple[Agent, ...]:
    """Read agent definitions (*.md with YAML-like frontmatter); later dirs win."""
    agents: dict[str, Agent] = {}
    for folder in dirs:
        for file in sorted(folder.glob("*.md")) if folder.is_dir() else []:
            agent = _agent_read(file)
            if agent is not None:
                agents[agent.name] = agent
    return tuple(agents.values())


def _agent_read(file: Path) -> Agent | None:
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    name, body = file.stem, text
    if text.startswith("---"):
        front, _, body = text[3:].partition("\n---")
        body = body.partition("\n")[2] if body else ""
        for line in front.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "name" and value.strip():
                name = value.strip().strip("\"'")
    body = body.strip()
    return Agent(name, body) if body else None
