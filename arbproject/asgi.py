"""ASGI entry point: HTTP through Django's WSGI handler in one thread hop, WebSockets through Channels.

Django's ASGI handler adapts every middleware between sync and async modes separately; with our
stack that cost ~30 thread hops per request and capped the API at a few hundred requests a second.
Running the (synchronous) middleware and views in one hop per request keeps the API fast; Channels
still serves the WebSockets natively.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arbproject.settings")
django_asgi_app = get_asgi_application()  # sets Django up (apps, settings) before the imports below

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

from dashboard.origin import origin_validator  # noqa: E402
from dashboard.routing import websocket_urlpatterns  # noqa: E402
from dashboard.wsgi_bridge import WsgiBridge  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": WsgiBridge(get_wsgi_application()),
        # A browser's WebSocket carries its page's Origin: one from another site (with a staff's
        # session cookie) is refused; only ALLOWED_HOSTS may open the live streams.
        "websocket": origin_validator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
