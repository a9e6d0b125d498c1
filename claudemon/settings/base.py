"""Settings shared by both deployments; every knob of ours is a CLAUDEMON_* variable."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from claudemon.settings.env import (
    env_bool,
    env_database,
    env_float,
    env_header_names,
    env_hosts,
    env_int,
    env_ip,
    env_origins,
    env_redis_url,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent

CLAUDEMON_VAR_DIR = Path(env_str("CLAUDEMON_VAR_DIR", str(BASE_DIR / "var"))).resolve()
CLAUDEMON_DB_PATH = Path(
    env_str("CLAUDEMON_DB_PATH", str(CLAUDEMON_VAR_DIR / "claudemon.sqlite3"))
).resolve()
CLAUDEMON_UPSTREAM_URL = env_url("CLAUDEMON_UPSTREAM_URL", "https://api.anthropic.com")
CLAUDEMON_BIND = env_ip("CLAUDEMON_BIND", "127.0.0.1")
CLAUDEMON_CORE_PORT = env_int("CLAUDEMON_CORE_PORT", 8001, minimum=1, maximum=65535)
CLAUDEMON_DATA_PORT = env_int("CLAUDEMON_DATA_PORT", 8002, minimum=1, maximum=65535)
CLAUDEMON_CONNECT_TIMEOUT = env_float("CLAUDEMON_CONNECT_TIMEOUT", 10.0)
CLAUDEMON_IDLE_TIMEOUT = env_float("CLAUDEMON_IDLE_TIMEOUT", 600.0)
# Calls in flight to one upstream (or provider) at once; one more is answered 503.
CLAUDEMON_UPSTREAM_CONNECTIONS = env_int(
    "CLAUDEMON_UPSTREAM_CONNECTIONS", 100, minimum=1
)
CLAUDEMON_REDACT_HEADERS = env_header_names("CLAUDEMON_REDACT_HEADERS", [])
CLAUDEMON_PRICES_FILE = env_str("CLAUDEMON_PRICES_FILE", "")
# Routing of chosen calls to other models or providers (apps/proxy/routing).
CLAUDEMON_ROUTES_FILE = env_str("CLAUDEMON_ROUTES_FILE", "")
# This relay's name in the record (Exchange.relay): several relays on one database
# each close at start only the calls their own earlier process left open.
CLAUDEMON_RELAY_NAME = env_str(
    "CLAUDEMON_RELAY_NAME", f"{socket.gethostname()}:{CLAUDEMON_CORE_PORT}"
)[:100]
CLAUDEMON_BACKLOG_SIZE = env_int("CLAUDEMON_BACKLOG_SIZE", 1000, minimum=1)
# Bytes of each body the recording keeps (the relay forwards bodies whole). The
# Messages API refuses requests over 32 MB, so every request it takes is kept whole.
CLAUDEMON_RECORD_MAX_BODY = env_int(
    "CLAUDEMON_RECORD_MAX_BODY", 32 * 1024 * 1024, minimum=1024
)
_BIND_HOST = f"[{CLAUDEMON_BIND}]" if ":" in CLAUDEMON_BIND else CLAUDEMON_BIND
# The relay answers only requests whose Host is one of its names: loopback, the bind
# address, and CLAUDEMON_RELAY_HOSTS (a load balancer's or LAN name; "*" for any).
# Anything else is a web page reaching it through DNS rebinding.
CLAUDEMON_RELAY_HOSTS = frozenset(
    ["127.0.0.1", "localhost", "[::1]"]
    + ([] if CLAUDEMON_BIND in ("0.0.0.0", "::") else [_BIND_HOST])
    + env_hosts("CLAUDEMON_RELAY_HOSTS", [])
)
# Web origins allowed to call the relay from a browser; none by default.
CLAUDEMON_RELAY_ORIGINS = frozenset(env_origins("CLAUDEMON_RELAY_ORIGINS", []))
# Days of exchanges `manage.py prune` keeps when run without --before; 0 = keep all.
CLAUDEMON_RETENTION_DAYS = env_int("CLAUDEMON_RETENTION_DAYS", 0, minimum=0)
# Hosts other than loopback must be named explicitly to be served (see README).
CLAUDEMON_ALLOWED_HOSTS = env_hosts(
    "CLAUDEMON_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"]
)
# The live feed across processes: with Redis, the relay's recorder publishes each
# exchange it writes and the dashboard's feed is pushed (apps/proxy/services/feed.py);
# unset, the feed polls the database, which needs nothing beyond the SQLite file.
CLAUDEMON_REDIS_URL = env_redis_url("CLAUDEMON_REDIS_URL")
if CLAUDEMON_REDIS_URL:
    # channels_redis is the channels project's own Redis layer. Connecting fails
    # within a second when Redis is away; reads wait longer than the layer's 5 s
    # BZPOPMIN, which would otherwise time out while a feed merely idles.
    _redis_host = {
        "address": CLAUDEMON_REDIS_URL,
        "socket_connect_timeout": 1,
        "socket_timeout": 10,
    }
    CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_redis_host], "prefix": "claudemon"},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

if CLAUDEMON_CORE_PORT == CLAUDEMON_DATA_PORT:
    raise ImproperlyConfigured(
        "CLAUDEMON_CORE_PORT and CLAUDEMON_DATA_PORT must differ "
        f"(both are {CLAUDEMON_CORE_PORT})."
    )
if CLAUDEMON_PRICES_FILE and not Path(CLAUDEMON_PRICES_FILE).is_file():
    raise ImproperlyConfigured(
        f"CLAUDEMON_PRICES_FILE={CLAUDEMON_PRICES_FILE!r} is not a readable file."
    )


def _owner_only(var_dir: Path, database: Path | None) -> None:
    """Keep prompts and tool output to the user: the var folder 0700, the database
    and its -wal and -shm 0600 (SQLite gives those two the database's own mode, so
    the database is created before SQLite does it with the umask's)."""
    try:
        var_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = var_dir.stat()
        if mode.st_mode & 0o077 and mode.st_uid == os.getuid():
            var_dir.chmod(0o700)
    except OSError as exc:
        raise _unusable("CLAUDEMON_VAR_DIR", var_dir, exc) from None
    if database is None:
        return
    try:
        database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
            if path.exists() and path.stat().st_mode & 0o077:
                path.chmod(0o600)
    except OSError as exc:
        raise _unusable("CLAUDEMON_DB_PATH", database, exc) from None


def _unusable(name: str, path: Path, exc: OSError) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"{name}={str(path)!r} is not usable ({exc.strerror}): expected a path in "
        "a folder this user can create and write."
    )


# A team's shared PostgreSQL (postgres://…); unset means the SQLite file.
CLAUDEMON_DATABASE = env_database("CLAUDEMON_DATABASE_URL")
_owner_only(
    CLAUDEMON_VAR_DIR, CLAUDEMON_DB_PATH if CLAUDEMON_DATABASE is None else None
)


def _secret_key() -> str:
    """Use CLAUDEMON_SECRET_KEY, else a key generated once into var/ (mode 0600)."""
    configured = env_str("CLAUDEMON_SECRET_KEY", "")
    if configured:
        return configured
    path = CLAUDEMON_VAR_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(50)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its key
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


SECRET_KEY = _secret_key()
DEBUG = env_bool("CLAUDEMON_DEBUG", False)
ALLOWED_HOSTS = CLAUDEMON_ALLOWED_HOSTS

_SQLITE: dict[str, Any] = {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": str(CLAUDEMON_DB_PATH),
    "OPTIONS": {
        # Both deployments, the indexer and the relay's writer share this file:
        # WAL lets readers run beside the one writer; IMMEDIATE takes the write
        # lock at BEGIN so a busy database waits (timeout) instead of failing
        # halfway through a transaction.
        "transaction_mode": "IMMEDIATE",
        "timeout": 5,
        "init_command": (
            "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;"
            "PRAGMA temp_store=MEMORY;PRAGMA mmap_size=268435456;"
            "PRAGMA cache_size=-32000"
        ),
    },
}
DATABASES: dict[str, dict[str, Any]] = {"default": CLAUDEMON_DATABASE or _SQLITE}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "claudemon": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "apps": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
