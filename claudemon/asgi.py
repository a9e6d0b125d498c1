"""ASGI entry point for both deployments; DJANGO_SETTINGS_MODULE picks which."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claudemon.settings.core")
django_asgi = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

routes = {"http": django_asgi}
if "channels" in settings.INSTALLED_APPS:  # only the data deployment has a live feed
    from apps.dashboard.routing import websocket_application  # noqa: E402

    routes["websocket"] = websocket_application
application = ProtocolTypeRouter(routes)
