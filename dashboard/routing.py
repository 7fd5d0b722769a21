from django.urls import path

from .consumers import MetricsConsumer, SignalsConsumer

websocket_urlpatterns = [
    path("ws/metrics", MetricsConsumer.as_asgi()),
    path("ws/signals", SignalsConsumer.as_asgi()),
]
