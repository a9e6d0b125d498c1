"""Typed readers of CLAUDEMON_* environment variables, failing loudly on bad values."""

from __future__ import annotations

import ipaddress
import os
import re
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _fail(name: str, value: str, expected: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name}={value!r} is not valid: expected {expected}.")


def env_str(name: str, default: str) -> str:
    """Return a string setting, or the default when unset or blank."""
    return _raw(name) or default


def env_int(
    name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    """Return an integer setting within [minimum, maximum]."""
    value = _raw(name)
    if value is None:
        return default
    bounds = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum else "")
    try:
        number = int(value)
    except ValueError:
        raise _fail(name, value, bounds) from None
    if number < minimum or (maximum is not None and number > maximum):
        raise _fail(name, value, bounds)
    return number


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    """Return a positive number setting (seconds, ratios)."""
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise _fail(name, value, f"a number > {minimum}") from None
    if not number > minimum or number != number or number == float("inf"):
        raise _fail(name, value, f"a number > {minimum}")
    return number


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_bool(name: str, default: bool) -> bool:
    """Return a boolean setting spelled 1/0, true/false, yes/no or on/off."""
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise _fail(name, value, "one of 1/0, true/false, yes/no, on/off")


def env_list(name: str, default: list[str]) -> list[str]:
    """Return a comma-separated list setting with blanks dropped."""
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(name: str, default: str) -> str:
    """Return an http(s) URL setting without a trailing slash."""
    value = _raw(name) or default
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(name, value, "an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise _fail(name, value, "a URL without query string or fragment")
    return value.rstrip("/")


def env_redis_url(name: str) -> str:
    """Return a redis:// or rediss:// URL setting, or '' when unset."""
    value = _raw(name)
    if value is None:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise _fail(name, value, "a URL such as redis://127.0.0.1:6379/0")
    return value


def env_ip(name: str, default: str) -> str:
    """Return an IP address setting (IPv4 or IPv6, no brackets)."""
    value = _raw(name) or default
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise _fail(
            name, value, "an IP address such as 127.0.0.1, 0.0.0.0 or ::1"
        ) from None


_HOST = re.compile(r"(\*|\[[0-9a-f:.]+\]|[a-z0-9_.-]+)\Z")


def env_hosts(name: str, default: list[str]) -> list[str]:
    """Return a comma list of host names (no scheme, port or path), lower case."""
    hosts = [host.lower() for host in env_list(name, default)]
    for host in hosts:
        if not _HOST.match(host):
            raise _fail(
                name, host, "host names or IPs separated by commas, IPv6 in brackets"
            )
    return hosts


def env_origins(name: str, default: list[str]) -> list[str]:
    """Return a comma list of web origins (scheme://host[:port], nothing after)."""
    origins = [origin.rstrip("/") for origin in env_list(name, default)]
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise _fail(name, origin, "origins such as https://tool.example:8443")
    return origins


_PREFIX = re.compile(r"(/[A-Za-z0-9][A-Za-z0-9._~-]*)+\Z")
# First segments a front door sends to the relays: Anthropic's API (/v1/..., a later
# /v2/..., /api/event_logging/...) and the relay's probes.
_RELAY_SEGMENT = re.compile(r"(v[0-9]+|api|health|ready)\Z", re.IGNORECASE)


def env_path_prefix(name: str, default: str) -> str:
    """Return a URL path prefix ("/claudemon"), or "" for none; never one that would
    shadow an Anthropic API path such as /v1/... or /api/..."""
    value = (_raw(name) or default).rstrip("/")
    if not value:
        return ""
    if not _PREFIX.match(value) or _RELAY_SEGMENT.match(value.split("/")[1]):
        raise _fail(
            name, value, "a path such as /claudemon, not under /v1, /api or /health"
        )
    return value


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+\Z")


def env_header_names(name: str, default: list[str]) -> list[str]:
    """Return a comma list of HTTP header names, lower case."""
    names = [header.lower() for header in env_list(name, default)]
    for header in names:
        if not _TOKEN.match(header):
            raise _fail(name, header, "header names such as X-Team-Token")
    return names


def env_database(name: str) -> dict[str, object] | None:
    """Return Django's DATABASES entry for a postgres:// URL, or None when unset.

    postgres://user:password@host:port/name?sslmode=require — every query parameter
    is a libpq connection option passed through to psycopg."""
    value = _raw(name)
    if value is None:
        return None
    parts = urlsplit(value)
    expected = "a URL such as postgres://user:password@127.0.0.1:5432/claudemon"
    if parts.scheme not in ("postgres", "postgresql") or not parts.path.strip("/"):
        raise _fail(name, _without_password(value), expected)
    try:
        port = parts.port
    except ValueError:
        raise _fail(name, _without_password(value), expected) from None
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.strip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
        # A new connection is a server process: 8 ms p50 on the 2-core machine
        # under load, where a page's reads take 2-50 ms. Kept a minute, checked
        # before a request reuses it (it may predate a restart).
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
