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


SCOPE = {"type": "http", "method": "POST", "path": "/control/symbols/BTC/pause", "query_string": b"", "root_path": "",
         "server": ("127.0.0.1", 8001), "client": ("127.0.0.1", 5000), "scheme": "http", "http_version": "1.1"}


def test_a_declared_large_body_is_refused_413_before_it_is_read():
    """An anonymous 300 MB POST used to be buffered whole before Django saw it (issue 11)."""
    reads = []

    async def run():
        sent = []

        async def receive():
            reads.append(1)
            return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

        async def send(message):
            sent.append(message)

        scope = {**SCOPE, "headers": [(b"content-length", str(300 * 2**20).encode()), (b"host", b"localhost")]}
        await WsgiBridge(echo_app, threads=1, max_body=2**20)(scope, receive, send)
        return sent

    start, body = asyncio.run(run())
    assert start["status"] == 413 and b"too large" in body["body"] and not reads


def test_a_chunked_body_is_cut_off_past_the_limit():
    chunks = [b"x" * 65536] * 40  # 2.5 MiB without a Content-Length
    start, body = call(WsgiBridge(echo_app, threads=1, max_body=2**20), {**SCOPE, "headers": [(b"host", b"localhost")]},
                       chunks)
    assert start["status"] == 413
    small = call(WsgiBridge(echo_app, threads=1, max_body=2**20), {**SCOPE, "headers": [(b"host", b"localhost")]}, [b"ok"])
    assert small[0]["status"] == 201
