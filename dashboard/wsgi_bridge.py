"""Serve Django's WSGI handler from an ASGI server: one thread hop per request.

asgiref's WsgiToAsgi shares a thread-sensitive executor between concurrent requests and fails
under load ("CurrentThreadExecutor already quit"); this bridge runs each request whole in a plain
thread pool and sends the buffered response from the event loop. Our responses are small JSON or
HTML pages, so buffering costs nothing; streaming responses are buffered too.
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor

from asgiref.wsgi import WsgiToAsgiInstance

TOO_LARGE = b'{"error": "request body too large"}'


class WsgiBridge:
    """`max_body`: the largest request body read (bytes); a larger one is answered 413 before it is
    buffered — by its Content-Length at once, or as soon as a chunked body passes the limit."""

    def __init__(self, wsgi_application, threads: int = 8, max_body: int | None = None):
        self.wsgi_application = wsgi_application
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")
        if max_body is None:
            from django.conf import settings

            max_body = settings.MAX_REQUEST_BODY_BYTES
        self.max_body = max_body

    async def _too_large(self, send) -> None:
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": TOO_LARGE})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"WsgiBridge serves http, not {scope['type']}")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_body + 1
                if declared > self.max_body:
                    await self._too_large(send)
                    return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await self._too_large(send)
                return
            if not message.get("more_body"):
                break
        builder = WsgiToAsgiInstance(self.wsgi_application)
        builder.scope = scope  # build_environ reads the headers from the instance's scope
        environ = builder.build_environ(scope, io.BytesIO(bytes(body)))
        status, headers, content = await asyncio.get_running_loop().run_in_executor(self.pool, self._run, environ)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _run(self, environ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        started: dict = {}

        def start_response(status, response_headers, exc_info=None):
            started["status"] = int(status.split(" ", 1)[0])
            started["headers"] = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response_headers]

        result = self.wsgi_application(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()  # fires request_finished: Django closes the request's DB connection
        return started["status"], started["headers"], content
