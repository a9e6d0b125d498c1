import gc

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "apps.dashboard"
    label = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        # A month-long page or series builds ~30,000 short-lived objects, so
        # CPython runs a full collection every few requests, and each walked
        # every object Django, the admin and the models had loaded (~70 ms on
        # the development machine: most of the long ranges' p95). What startup
        # loaded stays for the life of the process: leave it out of collections.
        gc.collect()
        gc.freeze()
