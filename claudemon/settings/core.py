"""The relay deployment: only the streaming proxy view and /health."""

from __future__ import annotations

from claudemon.settings.base import *  # noqa: F403

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
# so apps.proxy drops Django's per-request connection and cache cleanup receivers.
CLAUDEMON_LEAN_REQUESTS = True
