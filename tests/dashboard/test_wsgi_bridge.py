import asyncio

from dashboard.wsgi_bridge import WsgiBridge


def echo_app(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("201 Created", [("Content-Type", "text/plain"), ("X-Method", environ["REQUEST_METHOD"]),
                                   ("X-Query", environ["QUERY_STRING"]), ("X-Token", environ.get("HTTP_X_TOKEN", ""))])
    return [b"got:", body]


def call(bridge, scope, chunks):
    sent = []

    async def run():
        messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

        async def receive():
            return messages.pop(0)

        async def send(message):
            sent.append(message)

        await bridge(scope, receive, send)

    asyncio.run(run())
    return sent


def test_bridge_passes_method_query_headers_and_chunked_body_and_returns_the_response():
    scope = {"type": "http", "method": "POST", "path": "/x", "query_string": b"a=1", "root_path": "",
             "headers": [(b"x-token", b"t"), (b"host", b"localhost")], "server": ("127.0.0.1", 8001),
             "client": ("127.0.0.1", 5000), "scheme": "http", "http_version": "1.1"}
    start, body = call(WsgiBridge(echo_app, threads=2), scope, [b"hel", b"lo"])
    assert start["status"] == 201
    headers = dict(start["headers"])
    assert headers[b"x-method"] == b"POST" and headers[b"x-query"] == b"a=1" and headers[b"x-token"] == b"t"
    assert body["body"] == b"got:hello"
