"""Every API error is a JSON body with an `error` message (and `detail` where DRF has one)."""

from rest_framework.views import exception_handler as drf_handler


def exception_handler(exc, context):
    response = drf_handler(exc, context)
    if response is not None:
        detail = response.data.get("detail") if isinstance(response.data, dict) else None
        message = str(detail) if detail is not None else "invalid request"
        response.data = {"error": message, **({"fields": response.data} if detail is None else {})}
    return response
