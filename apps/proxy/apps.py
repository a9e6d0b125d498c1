from __future__ import annotations

from django.apps import AppConfig


class ProxyConfig(AppConfig):
    name = "apps.proxy"
    label = "proxy"
    verbose_name = "Relay"

    def ready(self) -> None:
        from apps.proxy import checks, pricing  # noqa: F401  (registers checks)

        # Fail at start, with the file named, when a prices override is malformed.
        pricing.price_table()
