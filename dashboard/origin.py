"""WebSockets from another site's page are refused.

A browser always sends its page's Origin with a WebSocket handshake, and sends our session cookie
with it whatever that page is; so an Origin outside ALLOWED_HOSTS is refused (channels'
AllowedHostsOriginValidator). A handshake without an Origin is not from a browser page and carries
no victim's cookie: it is let through to the consumer, which still demands a session or a token.
"""

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    def valid_origin(self, parsed_origin):
        if parsed_origin is None:
            return True
        return super().valid_origin(parsed_origin)


def origin_validator(application):
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed)
