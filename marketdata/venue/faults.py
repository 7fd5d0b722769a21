"""Per-endpoint fault rules: make one specific REST call fail in one specific way, in either dialect.

A rule matches on dialect, method and path and applies to its next `count` matching requests
(None: until cleared). The kind's name says whether the request takes effect:

- ``*_before`` and ``refuse_*``: answered (or dropped) before the real handler runs; nothing happens.
- ``*_after``: the real handler runs first (the order is booked, the balance moves), then the
  answer is spoiled.

The middleware sits outermost on each dialect's app, so every endpoint (and the dialects' own rate
limits) is behind it. The venue runs on one event loop, and matching and counting a rule is one
synchronous step, so a rule with count N applies to exactly N requests however many race.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import asdict, dataclass

import orjson
from aiohttp import web

from .core import Venue, now_ms
from .limits import upbit_group

BEFORE = ("refuse_429", "refuse_418", "unavailable_before", "timeout_before", "reset_before")
AFTER = ("delay_after", "error_5xx_after", "html_after", "reset_after")
KINDS = BEFORE + AFTER
METHODS = ("GET", "POST", "DELETE", "PUT", "*")
EXCHANGES = ("upbit", "binance")

GATEWAY_HTML = {
    502: "<html><body>502 Bad Gateway</body></html>",
    503: "<html><body>503 Service Temporarily Unavailable</body></html>",
    504: "<html><body>504 Gateway Time-out</body></html>",
}
_UPBIT_QUOTATION = ("/v1/market", "/v1/orderbook", "/v1/ticker", "/v1/trades", "/v1/candles")


@dataclass
class FaultRule:
    exchange: str | None  # None: either dialect
    method: str  # GET/POST/DELETE/PUT or "*"
    path: str  # exact, "*" (any), or a prefix ending in "*"
    kind: str
    remaining: int | None = 1  # requests still to spoil; None: until cleared
    seconds: float | None = None  # timeout_before (default 10), delay_after (default 1)
    retry_after: int | None = None  # Binance refuse_429 (default 1) / refuse_418 (default 120)
    status: int = 500  # error_5xx_after: 500 = the dialect's JSON error; 502/503/504 = a gateway's HTML
    skip: int = 0  # let this many matching requests through untouched first (e.g. fault the 2nd order)
    hits: int = 0

    def matches(self, exchange: str, method: str, path: str) -> bool:
        if self.exchange not in (None, exchange) or self.method not in ("*", method):
            return False
        if self.path == "*":
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def view(self) -> dict:
        return asdict(self)


def make_rule(exchange: str | None, params: dict) -> FaultRule:
    """Build a rule from the control API's params; ValueError on anything malformed."""
    kind = params.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")
    if exchange not in (None, *EXCHANGES):
        raise ValueError(f"exchange must be upbit or binance, not {exchange!r}")
    method = str(params.get("method", "*")).upper()
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    path = str(params.get("path", "*"))
    if path != "*" and not path.startswith("/"):
        raise ValueError("path must start with / (or be *)")
    count = params.get("count", 1)
    count = None if count in (None, 0) else int(count)
    if count is not None and count < 0:
        raise ValueError("count must be >= 0 (0 or null: until cleared)")
    seconds = params.get("seconds")
    seconds = None if seconds is None else max(0.0, float(seconds))
    retry_after = params.get("retry_after")
    retry_after = None if retry_after is None else max(0, int(retry_after))
    status = int(params.get("status", 500))
    if kind == "error_5xx_after" and status not in (500, *GATEWAY_HTML):
        raise ValueError("status must be 500, 502, 503 or 504")
    skip = int(params.get("skip", 0) or 0)
    if skip < 0:
        raise ValueError("skip must be >= 0")
    return FaultRule(exchange, method, path, kind, count, seconds, retry_after, status, skip)


def take(rules: list[FaultRule], exchange: str, method: str, path: str) -> FaultRule | None:
    """The first rule matching this request, charged one use (and dropped when used up)."""
    for rule in rules:
        if rule.matches(exchange, method, path):
            if rule.skip > 0:
                rule.skip -= 1
                return None
            rule.hits += 1
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    rules.remove(rule)
            return rule
    return None


def fault_middleware(venue: Venue, exchange: str, dialect):
    """The aiohttp middleware that applies the venue's fault rules to one dialect's requests."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.path.startswith("/_venue/") or not venue.faults.rules:
            return await handler(request)
        rule = take(venue.faults.rules, exchange, request.method, request.path)
        if rule is None:
            return await handler(request)
        kind = rule.kind
        if kind in ("refuse_429", "refuse_418"):
            return _refusal(exchange, dialect, request, rule)
        if kind == "unavailable_before":
            return _unavailable(exchange)
        if kind == "timeout_before":
            await asyncio.sleep(10.0 if rule.seconds is None else rule.seconds)
            return _drop(request)
        if kind == "reset_before":
            return _drop(request)
        # The "after" kinds: the request takes effect first.
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # an unknown path's 404, say: still "taken effect"
            response = exc
        if isinstance(response, web.WebSocketResponse):
            return response  # the session has already run its course; nothing left to spoil
        if kind == "delay_after":
            await asyncio.sleep(1.0 if rule.seconds is None else rule.seconds)
            if isinstance(response, web.HTTPException):
                raise response
            return response
        if kind == "error_5xx_after":
            answer = _server_error(exchange, rule.status)
            if exchange == "upbit" and rule.status == 500 and "Remaining-Req" in response.headers:
                # Upbit's own error still carries the request's group count; a gateway's page does not.
                answer.headers["Remaining-Req"] = response.headers["Remaining-Req"]
            return answer
        if kind == "html_after":
            return web.Response(status=200, text=GATEWAY_HTML[502], content_type="text/html")
        return _drop(request)  # reset_after

    return middleware


# --- answers ---------------------------------------------------------------------------------
def _refusal(exchange: str, dialect, request: web.Request, rule: FaultRule) -> web.Response:
    status = 429 if rule.kind == "refuse_429" else 418
    if exchange == "binance":
        retry_after = rule.retry_after if rule.retry_after is not None else (1 if status == 429 else 120)
        headers = {"Retry-After": str(retry_after),
                   "X-MBX-USED-WEIGHT-1M": str(dialect.weights.used(request.remote))}
        if status == 429:
            msg = (f"Too much request weight used; current limit is {dialect.weight_limit} request weight per "
                   "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.")
        else:
            msg = (f"Way too much request weight used; IP banned until {now_ms() + retry_after * 1000}. "
                   "Please use WebSocket Streams for live updates to avoid bans.")
        return _json(status, {"code": -1003, "msg": msg}, headers)
    group = upbit_group(request.method, request.path)
    headers = {"Remaining-Req": f"group={group}; min=0; sec=0"}
    # Upbit documents no error name for 429/418: the Exchange API answers with a string name
    # like its other errors, the Quotation API with the integer status, as the quotation limiter does.
    quotation = request.path.startswith(_UPBIT_QUOTATION)
    name = status if quotation else "too_many_requests"
    message = "Too many API requests." if status == 429 else "Too many API requests; temporarily blocked."
    return _json(status, {"error": {"name": name, "message": message}}, headers)


def _unavailable(exchange: str) -> web.Response:
    if exchange == "binance":
        return _json(503, {"code": -1008, "msg": "Server is currently overloaded with other requests. "
                                                 "Please try again in a few minutes."})
    return web.Response(status=503, text=GATEWAY_HTML[503], content_type="text/html")


def _server_error(exchange: str, status: int) -> web.Response:
    if status != 500:
        return web.Response(status=status, text=GATEWAY_HTML[status], content_type="text/html")
    if exchange == "binance":
        return _json(500, {"code": -1000, "msg": "An unknown error occurred while processing the request."})
    return _json(500, {"error": {"name": "server_error", "message": "Internal server error."}})


def _drop(request: web.Request) -> web.Response:
    """Reset the connection (RST, no answer). The returned response is never written."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=500)  # writing it fails quietly: aiohttp ignores ConnectionError here


def _json(status: int, body: dict, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)
