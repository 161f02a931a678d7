"""ASGI entry point. Provider paths go to the proxy (its own ASGI app, in front of everything); the rest of
HTTP goes to Django, websockets to channels. Serve with uvicorn (see README) or daphne."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ingate.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from proxy.relay import ProxyApp  # noqa: E402

websocket_urlpatterns: list = []

django_and_channels = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)

application = ProxyApp(fallback=django_and_channels)
