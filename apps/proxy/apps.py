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
    """The relay's request thread never touches the database or a cache (recording
    has its own thread and connection), yet Django's receivers of request_started
    and request_finished are sync: each would cost a thread hop per relayed call.
    reset_urlconf goes too: get_response_async sets the urlconf at the start of every
    request, and the relay never sets one of its own.
    """
    from django.core import signals
    from django.core.cache import close_caches
    from django.core.handlers.base import reset_urlconf
    from django.db import close_old_connections, reset_queries

    signals.request_started.disconnect(reset_queries)
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_caches)
    signals.request_finished.disconnect(reset_urlconf)
