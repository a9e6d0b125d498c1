"""The relay deployment: only the streaming proxy view and /health."""

from __future__ import annotations

from claudemon.settings.base import *  # noqa: F403
from claudemon.settings.base import DATABASES

INSTALLED_APPS = ["apps.proxy"]
ROOT_URLCONF = "claudemon.urls_core"
# Nothing may buffer, redirect or rewrite relayed traffic: no CommonMiddleware
# (APPEND_SLASH), no GZip, no security redirects.
MIDDLEWARE: list[str] = []
APPEND_SLASH = False
# Claude Code bodies reach many megabytes (whole conversations, images).
DATA_UPLOAD_MAX_MEMORY_SIZE = None
DATA_UPLOAD_MAX_NUMBER_FIELDS = None
FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024 * 1024
TEMPLATES = []  # noqa: F811
# The request thread never touches the database (recording has its own thread),
# so apps.proxy drops Django's request_started receivers (a thread hop each call).
CLAUDEMON_LEAN_REQUESTS = True
# The relay only appends rows: a small page cache and no memory map keep its
# resident memory low and flat (the shared 32 MB cache suits the readers).
# (SQLite only: PostgreSQL's driver refuses an unknown connection option.)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"]["init_command"] = (
        "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA cache_size=-4000"
    )
else:
    # As SQLite's 5 s busy timeout: a write that waits longer for a lock (a
    # migration, a VACUUM FULL) fails, and the recorder says so and retries.
    _options = DATABASES["default"]["OPTIONS"]
    _options["options"] = f"{_options.get('options', '')} -c lock_timeout=5000".strip()
    _options.setdefault("connect_timeout", 5)
