"""The Binance Spot dialect: market streams (raw and combined) and the public REST API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from decimal import Decimal

import orjson
from aiohttp import WSMsgType, web

from .accounts import Accounts, AuthFailure, verify_binance
from .binance_orders import BinanceOrders
from .binance_wallet import BinanceWallet
from .core import Connection, Venue, VenueBook, now_ms, now_us
from .limits import RateWindow
from .transfers import Transfers

log = logging.getLogger(__name__)

WEIGHT_LIMIT_PER_MINUTE = 6000
MAX_INCOMING_PER_SECOND = 5
MAX_STREAMS = 1024
PONG_TIMEOUT = 60.0
MAX_CONNECTION_AGE = 24 * 3600.0

_STREAM = re.compile(r"^([a-z0-9]+)@(depth(5|10|20)?(@100ms|@1000ms)?|bookTicker|trade)$")


def fmt(value: Decimal) -> str:
    return f"{value:.8f}"


def levels(rows) -> list[list[str]]:
    return [[fmt(p), fmt(q)] for p, q in rows]


def error_body(code: int, msg: str) -> bytes:
    return orjson.dumps({"code": code, "msg": msg})


class BinanceClient(Connection):
    opcode = WSMsgType.TEXT
    def __init__(self, ws, venue, transport=None, *, combined: bool, micro: bool):
        super().__init__(ws, venue, transport)
        self.combined = combined
        self.micro = micro  # timeUnit=MICROSECOND
        self.streams: set[str] = set()
        self.by_market: dict[str, list[tuple[str, str]]] = {}  # BTCUSDT -> [(stream, kind)]
        self.incoming = RateWindow(1.0, MAX_INCOMING_PER_SECOND)
        self.last_pong = time.monotonic()

    def set_streams(self, streams: set[str]) -> None:
        self.streams = streams
        self.by_market = {}
        for stream in streams:
            match = _STREAM.match(stream)
            self.by_market.setdefault(match.group(1).upper(), []).append((stream, match.group(2)))


class BinanceDialect:
    """Renders venue state in Binance's shapes and serves Binance's endpoints."""

    def __init__(self, venue: Venue, *, weight_limit: int = WEIGHT_LIMIT_PER_MINUTE,
                 pong_timeout: float = PONG_TIMEOUT, max_connection_age: float = MAX_CONNECTION_AGE,
                 accounts: Accounts | None = None, transfers: Transfers | None = None):
        self.venue = venue
        self.accounts = accounts or Accounts()
        self.orders = BinanceOrders(self)
        self.wallet = BinanceWallet(self, transfers or Transfers(self.accounts))
        self.weights = RateWindow(60.0, weight_limit)
        self.weight_limit = weight_limit
        self.pong_timeout = pong_timeout
        self.max_connection_age = max_connection_age
        self.firehose_sent = 0
        venue.listeners.append(self.on_book)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ws", self.websocket_raw)
        app.router.add_get("/ws/{streams:.*}", self.websocket_raw)
        app.router.add_get("/stream", self.websocket_combined)
        app.router.add_get("/api/v3/ping", self.ping)
        app.router.add_get("/api/v3/time", self.time)
        app.router.add_get("/api/v3/exchangeInfo", self.exchange_info)
        app.router.add_get("/api/v3/depth", self.depth)
        app.router.add_get("/api/v3/ticker/bookTicker", self.book_ticker)
        app.router.add_get("/api/v3/account", self.account)
        self.orders.routes(app)
        self.wallet.routes(app)
        return app

    async def account(self, request):
        try:
            account = self.verify(request)
        except AuthFailure as exc:
            return self.error(exc.status, exc.name, exc.message)

        def build():
            balances = [{"asset": a, "free": fmt(v), "locked": fmt(account.locked.get(a, Decimal(0)))}
                        for a, v in sorted(account.balances.items())]
            if request.query.get("omitZeroBalances") == "true":
                balances = [b for b in balances if Decimal(b["free"]) or Decimal(b["locked"])]
            return {
                "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
                "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000", "seller": "0.00000000"},
                "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
                "requireSelfTradePrevention": False, "preventSor": False, "updateTime": now_ms(), "accountType": "SPOT",
                "balances": balances, "permissions": ["SPOT"], "uid": 354937868,
            }

        return self.respond(request, 20, build)

    # --- REST ----------------------------------------------------------------------------------
    def verify(self, request: web.Request, body: str = ""):
        """Authenticate a signed request against the venue's clock (shifted by clock_offset).

        The signature covers the query exactly as sent (`idList=a%2Cb`), not as the URL parser
        re-normalises it, so the raw request target is used."""
        raw_query = request.raw_path.partition("?")[2]
        return verify_binance(self.accounts, request.headers, raw_query, body, now_ms=self.venue.clock_ms())

    def admit(self, request: web.Request, weight: int) -> tuple[dict, web.Response | None]:
        """Charge the request's weight to its IP before any work, as Binance does; a refusal means
        nothing was processed."""
        remaining = self.weights.take(request.remote, weight)
        headers = {"X-MBX-USED-WEIGHT-1M": str(self.weight_limit - remaining)}
        if remaining < 0:
            headers["Retry-After"] = str(max(1, int(self.weights.seconds_left())))
            return headers, self.error(429, -1003, f"Too much request weight used; current limit is {self.weight_limit} "
                                       "request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.", headers)
        return headers, None

    def respond(self, request: web.Request, weight: int, build) -> web.Response:
        """Admit the request, then answer with what build() returns (a payload or a Response)."""
        headers, refused = self.admit(request, weight)
        if refused is not None:
            return refused
        result = build()
        if isinstance(result, web.Response):
            result.headers.update(headers)
            return result
        return web.Response(body=orjson.dumps(result), content_type="application/json", headers=headers)

    @staticmethod
    def error(status: int, code: int, msg: str, headers=None) -> web.Response:
        return web.Response(status=status, body=error_body(code, msg), content_type="application/json", headers=headers)

    def _symbol(self, request: web.Request, required: bool = True):
        symbol = request.query.get("symbol")
        if not symbol:
            if required:
                return self.error(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
            return None
        if symbol not in self.venue.binance_books:
            return self.error(400, -1121, "Invalid symbol.")
        return symbol

    async def ping(self, request):
        return self.respond(request, 1, dict)

    async def time(self, request):
        return self.respond(request, 1, lambda: {"serverTime": self.venue.clock_ms()})

    async def exchange_info(self, request):
        def build():
            markets = self.venue.binance_markets()
            if "symbol" in request.query:
                symbol = self._symbol(request)
                if isinstance(symbol, web.Response):
                    return symbol
                markets = [symbol]
            elif "symbols" in request.query:
                try:
                    wanted = orjson.loads(request.query["symbols"])
                except orjson.JSONDecodeError:
                    return self.error(400, -1100, "Illegal characters found in parameter 'symbols'; legal range is '^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.")
                if any(s not in self.venue.binance_books for s in wanted):
                    return self.error(400, -1121, "Invalid symbol.")
                markets = wanted
            return {
                "timezone": "UTC",
                "serverTime": self.venue.clock_ms(),
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": self.weight_limit},
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
                ],
                "exchangeFilters": [],
                "symbols": [self._symbol_info(m) for m in markets],
                "sors": [],
            }

        return self.respond(request, 20, build)

    def _symbol_info(self, market: str) -> dict:
        coin = self.venue.binance_coin(market)
        return {
            "symbol": market,
            "status": "TRADING",
            "baseAsset": coin.symbol,
            "baseAssetPrecision": 8,
            "quoteAsset": "USDT",
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "opoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "amendAllowed": True,
            "pegInstructionsAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": coin.filters.to_exchange_info(),
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    async def depth(self, request):
        raw_limit = request.query.get("limit", "100")
        if not raw_limit.isdigit():
            return self.error(400, -1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.")
        limit = max(1, min(int(raw_limit), 5000))
        weight = 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250

        def build():
            symbol = self._symbol(request)
            if isinstance(symbol, web.Response):
                return symbol
            book = self.venue.binance_books[symbol]
            bids, asks = book.top(limit)
            return {"lastUpdateId": book.update_id, "bids": levels(bids), "asks": levels(asks)}

        return self.respond(request, weight, build)

    async def book_ticker(self, request):
        def build():
            symbol = self._symbol(request, required=False)
            if isinstance(symbol, web.Response):
                return symbol
            if symbol:
                return self._ticker(symbol)
            return [self._ticker(m) for m in self.venue.binance_markets()]

        return self.respond(request, 2 if "symbol" in request.query else 4, build)

    def _ticker(self, market: str) -> dict:
        bids, asks = self.venue.binance_books[market].top(1)
        bid = bids[0] if bids else (Decimal(0), Decimal(0))
        ask = asks[0] if asks else (Decimal(0), Decimal(0))
        return {"symbol": market, "bidPrice": fmt(bid[0]), "bidQty": fmt(bid[1]), "askPrice": fmt(ask[0]), "askQty": fmt(ask[1])}

    # --- WebSocket -----------------------------------------------------------------------------
    async def websocket_raw(self, request: web.Request):
        streams = [s for s in request.match_info.get("streams", "").split("/") if s]
        return await self._websocket(request, streams, combined=False)

    async def websocket_combined(self, request: web.Request):
        streams = [s for s in request.query.get("streams", "").split("/") if s]
        return await self._websocket(request, streams, combined=True)

    async def _websocket(self, request: web.Request, streams: list[str], *, combined: bool):
        if len(streams) > MAX_STREAMS:
            return web.Response(status=400, body=error_body(-1121, "Invalid symbol."), content_type="application/json")
        # Binance opens the connection whatever the path names (`/ws/1`, as ccxt pro connects, or a
        # stream with an unknown or upper-case symbol) and streams only what it knows: an unknown
        # name is silently never served; SUBSCRIBE adds streams later.
        streams = [s for s in streams if self._valid_stream(s)]
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 16)
        await ws.prepare(request)
        micro = request.query.get("timeUnit", "").upper() in {"MICROSECOND", "MICRO"}
        client = BinanceClient(ws, self.venue, request.transport, combined=combined, micro=micro)
        client.set_streams(set(streams))
        self.venue.binance_clients.add(client)
        pinger = asyncio.get_running_loop().create_task(self._keepalive(client))
        try:
            async for msg in ws:
                if client.incoming.take(None) < 0:
                    log.info("venue: binance client sent more than %d messages/s; disconnecting", MAX_INCOMING_PER_SECOND)
                    break
                if msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    client.last_pong = time.monotonic()
                elif msg.type == WSMsgType.TEXT:
                    self._on_control(client, msg.data)
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            pinger.cancel()
            self.venue.binance_clients.discard(client)
            client.close()
        return ws

    def _valid_stream(self, stream: str) -> bool:
        match = _STREAM.match(stream)
        return bool(match) and match.group(1).upper() in self.venue.binance_books

    async def _keepalive(self, client: BinanceClient) -> None:
        """Ping every interval; drop clients that stop answering or outlive 24 hours."""
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError, RuntimeError):
            while True:
                await asyncio.sleep(self.venue.ping_interval)
                now = time.monotonic()
                if now - client.last_pong > self.pong_timeout or now - client.opened > self.max_connection_age:
                    client.close()
                    return
                await client.ws.ping(os.urandom(4).hex().encode())

    def _on_control(self, client: BinanceClient, data: str) -> None:
        try:
            request = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            client.send(orjson.dumps({"code": 3, "msg": f"Invalid JSON: {exc}"}))
            return
        if not isinstance(request, dict) or "method" not in request:
            client.send(orjson.dumps({"code": 3, "msg": "Invalid JSON: expected an object with a method"}))
            return
        req_id = request.get("id")
        if req_id is not None and not (isinstance(req_id, int) and req_id >= 0) and not (
            isinstance(req_id, str) and re.fullmatch(r"[A-Za-z0-9]{1,36}", req_id)
        ):
            client.send(orjson.dumps({"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}))
            return
        method = request["method"]
        params = request.get("params", [])
        if method in {"SUBSCRIBE", "UNSUBSCRIBE"}:
            if not isinstance(params, list) or not all(isinstance(p, str) and self._valid_stream(p) for p in params):
                client.send(orjson.dumps({"code": 2, "msg": "Invalid request: invalid stream name", "id": req_id}))
                return
            streams = set(client.streams)
            streams = streams | set(params) if method == "SUBSCRIBE" else streams - set(params)
            if len(streams) > MAX_STREAMS:
                client.send(orjson.dumps({"code": 2, "msg": "Invalid request: too many streams", "id": req_id}))
                return
            client.set_streams(streams)
            client.send(orjson.dumps({"result": None, "id": req_id}))
        elif method == "LIST_SUBSCRIPTIONS":
            client.send(orjson.dumps({"result": sorted(client.streams), "id": req_id}))
        elif method == "SET_PROPERTY":
            if params[:1] != ["combined"] or len(params) != 2:
                client.send(orjson.dumps({"code": 0, "msg": "Unknown property", "id": req_id}))
            elif not isinstance(params[1], bool):
                client.send(orjson.dumps({"code": 1, "msg": "Invalid value type: expected Boolean"}))
            else:
                client.combined = params[1]
                client.send(orjson.dumps({"result": None, "id": req_id}))
        elif method == "GET_PROPERTY":
            if params[:1] != ["combined"]:
                client.send(orjson.dumps({"code": 0, "msg": "Unknown property", "id": req_id}))
            else:
                client.send(orjson.dumps({"result": client.combined, "id": req_id}))
        else:
            client.send(orjson.dumps({"code": 2, "msg": f"Invalid request: unknown method {method}", "id": req_id}))

    def server_shutdown(self) -> int:
        """Announce a shutdown to every client, as Binance does before maintenance."""
        for client in list(self.venue.binance_clients):
            event = {"e": "serverShutdown", "E": now_us() if client.micro else now_ms()}
            client.send(orjson.dumps({"stream": "!serverShutdown", "data": event} if client.combined else event))
        return len(self.venue.binance_clients)

    # --- streaming -----------------------------------------------------------------------------
    def on_book(self, exchange: str, book: VenueBook, changed_bids, changed_asks) -> None:
        if exchange != "binance":
            return
        market = book.market
        first = book.update_id + 1
        if market in self.venue.faults.skip_update_id:
            self.venue.faults.skip_update_id.discard(market)
            first += 1  # as if one event was lost on the way
        # Several exchange-side updates are folded into one 100 ms event, as on Binance.
        book.update_id = first + max(0, len(changed_bids) + len(changed_asks) - 1)
        trade = None
        if self.venue.model.rng.random() < 0.3:
            trade = self._trade(book)
        # Render each stream once per update, however many clients follow it.
        payloads: dict[tuple[str, bool, bool], bytes | None] = {}
        for client in list(self.venue.binance_clients):
            for stream, kind in client.by_market.get(market, ()):
                key = (stream, client.combined, client.micro)
                if key not in payloads:
                    payloads[key] = self._render(stream, kind, book, first, changed_bids, changed_asks, trade,
                                                 combined=client.combined, micro=client.micro)
                if payloads[key] is not None:
                    client.send(payloads[key])

    def _render(self, stream, kind, book, first, changed_bids, changed_asks, trade, *, combined, micro) -> bytes | None:
        if kind.startswith("depth") and kind[5:7] in ("", "@1"):
            data = {"e": "depthUpdate", "E": None, "s": book.market, "U": first, "u": book.update_id,
                    "b": levels(changed_bids), "a": levels(changed_asks)}
        elif kind.startswith("depth"):
            depth = int(re.match(r"depth(\d+)", kind).group(1))
            bids, asks = book.top(depth)
            data = {"lastUpdateId": book.update_id, "bids": levels(bids), "asks": levels(asks)}
        elif kind == "bookTicker":
            data = {"u": book.update_id, "s": book.market, **_ticker_fields(book)}
        elif trade is not None:
            data = dict(trade)
        else:
            return None
        if "E" in data:
            data["E"] = now_us() if micro else now_ms()
            if "T" in data:
                data["T"] = data["E"]
        return orjson.dumps({"stream": stream, "data": data} if combined else data)

    async def firehose(self, rate: float, batch_ms: float = 1.0) -> None:
        """Stream diff-depth events at `rate` per second over all markets (benchmarks).

        Each event changes one bid and one ask level and is applied to the venue's own book,
        so update ids stay contiguous and REST snapshots stay consistent with the stream.
        """
        self.venue.paused = True
        books = [self.venue.binance_books[m] for m in self.venue.binance_markets()]
        prices = {b.market: (list(b.bids), list(b.asks)) for b in books}
        sizes = [Decimal(f"{i}.{i:02d}") for i in range(1, 40)]
        rng = self.venue.model.rng
        self.firehose_sent = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        i = 0
        while True:
            due = int((loop.time() - started) * rate) - self.firehose_sent
            for _ in range(min(due, int(rate * 0.05) + 1)):
                book = books[i % len(books)]
                i += 1
                bid_prices, ask_prices = prices[book.market]
                bid = (rng.choice(bid_prices), rng.choice(sizes))
                ask = (rng.choice(ask_prices), rng.choice(sizes))
                book.bids[bid[0]] = bid[1]
                book.asks[ask[0]] = ask[1]
                book.update_id += 1
                for client in self.venue.binance_clients:
                    for stream, kind in client.by_market.get(book.market, ()):
                        if kind.startswith("depth") and kind[5:7] in ("", "@1"):
                            data = {"e": "depthUpdate", "E": now_us() if client.micro else now_ms(), "s": book.market,
                                    "U": book.update_id, "u": book.update_id, "b": levels((bid,)), "a": levels((ask,))}
                            client.send(orjson.dumps({"stream": stream, "data": data} if client.combined else data))
                self.firehose_sent += 1
            await asyncio.sleep(batch_ms / 1000)

    def _trade(self, book: VenueBook) -> dict:
        self.venue.trade_id += 1
        rng = self.venue.model.rng
        bids, asks = book.top(1)
        buyer_maker = rng.random() < 0.5
        level = (bids if buyer_maker else asks) or bids or asks
        price, size = level[0]
        return {"e": "trade", "E": 0, "s": book.market, "t": self.venue.trade_id, "p": fmt(price),
                "q": fmt(size), "T": 0, "m": buyer_maker, "M": True}


def _ticker_fields(book: VenueBook) -> dict:
    bids, asks = book.top(1)
    bid = bids[0] if bids else (Decimal(0), Decimal(0))
    ask = asks[0] if asks else (Decimal(0), Decimal(0))
    return {"b": fmt(bid[0]), "B": fmt(bid[1]), "a": fmt(ask[0]), "A": fmt(ask[1])}
