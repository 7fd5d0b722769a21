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


class WsgiBridge:
    def __init__(self, wsgi_application, threads: int = 8):
        self.wsgi_application = wsgi_application
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"WsgiBridge serves http, not {scope['type']}")
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
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
