from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings


class ProxyConfig(AppConfig):
    name = "apps.proxy"
    label = "proxy"
    verbose_name = "Relay"

    def ready(self) -> None:
        from apps.proxy import checks, pricing  # noqa: F401  (registers checks)

        # Fail at start, with the file named, when a prices override is malformed.
        pricing.price_table()
        # Likewise for a routes file (file, line and field named).
        from apps.proxy.routing.reload import routes_start

        routes_start(getattr(settings, "CLAUDEMON_ROUTES_FILE", ""))
        if getattr(settings, "CLAUDEMON_LEAN_REQUESTS", False):
            _drop_request_signal_receivers()


def _drop_request_signal_receivers() -> None:
    """The relay's request thread never touches the database (recording has its own
    thread and connection), yet Django's request_started receivers are sync: each
    request would hop to a worker thread and back before it could go upstream
    (+0.1 ms to the first byte, measured in-process). The request_finished ones stay:
    they run inside the thread hop Django's handler makes anyway to close the
    response (apps/proxy/handler.py), and one of them is a Django internal.
    """
    from django.core import signals
    from django.db import close_old_connections, reset_queries

    signals.request_started.disconnect(reset_queries)
    signals.request_started.disconnect(close_old_connections)
