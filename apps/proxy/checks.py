"""System checks of the relay (ids claudemon.E001 ...)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Warning, register

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@register()
def check_database_path(app_configs: object, **kwargs: object) -> list:
    """The SQLite file's folder must exist and be writable: the relay records there."""
    folder = settings.CLAUDEMON_DB_PATH.parent
    if folder.is_dir() and os.access(folder, os.W_OK):
        return []
    return [
        Error(
            f"The database folder {folder} is missing or not writable.",
            hint="Set CLAUDEMON_DB_PATH to a file in a writable folder.",
            id="claudemon.E001",
        )
    ]


@register()
def check_upstream_scheme(app_configs: object, **kwargs: object) -> list:
    """Plain http to a non-loopback upstream would send API keys in clear text."""
    parts = urlsplit(settings.CLAUDEMON_UPSTREAM_URL)
    if parts.scheme == "https" or parts.hostname in _LOOPBACK:
        return []
    return [
        Warning(
            f"CLAUDEMON_UPSTREAM_URL {settings.CLAUDEMON_UPSTREAM_URL} is plain http: "
            "API keys would cross the network unencrypted.",
            hint="Use https:// for any upstream that is not on this machine.",
            id="claudemon.W001",
        )
    ]
