"""ASGI entry point for both deployments; DJANGO_SETTINGS_MODULE picks which."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claudemon.settings.core")
django_asgi = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

if "channels" in settings.INSTALLED_APPS:  # the data deployment: pages and live feed
    from apps.dashboard.routing import websocket_application  # noqa: E402

    routes = {"http": django_asgi, "websocket": websocket_application}
else:  # the relay: no websocket branch, no per-request thread (apps/proxy/handler.py)
    from apps.proxy.handler import relay_application  # noqa: E402

    routes = {"http": relay_application()}
application = ProtocolTypeRouter(routes)
