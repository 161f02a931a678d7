"""ASGI entry point. Provider paths go to the proxy (its own ASGI app, in front of everything); the rest of
HTTP goes to Django, websockets to channels. Serve with uvicorn (see README) or daphne."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ingate.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from evals.consumers import RunProgressConsumer  # noqa: E402
from observability.consumers import LiveRecordsConsumer  # noqa: E402
from proxy.relay import ProxyApp  # noqa: E402

websocket_urlpatterns = [
    path("ingate/ws/live/", LiveRecordsConsumer.as_asgi()),
    path("ingate/ws/evals/runs/<int:run_id>/", RunProgressConsumer.as_asgi()),
]

django_and_channels = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

application = ProxyApp(fallback=django_and_channels)
