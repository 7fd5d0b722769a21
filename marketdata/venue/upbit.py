"""The Upbit dialect: WebSocket /websocket/v1 and the quotation REST API, as Upbit speaks them."""

from __future__ import annotations

import base64
import logging
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import orjson
from aiohttp import WSMsgType, web

from .accounts import Accounts, AuthFailure, verify_upbit
from .core import Connection, Venue, VenueBook, now_ms
from .limits import UPBIT_EXCHANGE_LIMITS, UPBIT_QUOTATION_GROUPS, RateWindow, remaining_req, upbit_group
from .rules import upbit_tick
from .transfers import Transfers
from .upbit_orders import UpbitOrders
from .upbit_wallet import UpbitWallet

log = logging.getLogger(__name__)

DEFAULT_UNITS = 30
VALID_UNITS = {1, 5, 15, 30}
QUOTATION_LIMIT_PER_SEC = 10

_SIMPLE = {
    "type": "ty", "code": "cd", "timestamp": "tms", "total_ask_size": "tas", "total_bid_size": "tbs",
    "orderbook_units": "obu", "ask_price": "ap", "bid_price": "bp", "ask_size": "as", "bid_size": "bs",
    "level": "lv", "stream_type": "st", "opening_price": "op", "high_price": "hp", "low_price": "lp",
    "trade_price": "tp", "prev_closing_price": "pcp", "change": "c", "change_price": "cp",
    "signed_change_price": "scp", "change_rate": "cr", "signed_change_rate": "scr", "trade_volume": "tv",
    "acc_trade_volume": "atv", "acc_trade_volume_24h": "atv24h", "acc_trade_price": "atp",
    "acc_trade_price_24h": "atp24h", "trade_date": "tdt", "trade_time": "ttm", "trade_timestamp": "ttms",
    "ask_bid": "ab", "acc_ask_volume": "aav", "acc_bid_volume": "abv", "highest_52_week_price": "h52wp",
    "highest_52_week_date": "h52wdt", "lowest_52_week_price": "l52wp", "lowest_52_week_date": "l52wdt",
    "market_state": "ms", "is_trading_suspended": "its", "delisting_date": "dd", "market_warning": "mw",
    "sequential_id": "sid", "best_ask_price": "bap", "best_ask_size": "bas", "best_bid_price": "bbp",
    "best_bid_size": "bbs",
}
# The trade type abbreviates trade_date as "td", unlike the ticker's "tdt".
_SIMPLE_TRADE = {**_SIMPLE, "trade_date": "td"}

ERRORS = {
    "WRONG_FORMAT": "요청 형식이 올바르지 않습니다.",
    "NO_TICKET": "티켓이 존재하지 않습니다.",
    "NO_TYPE": "타입이 존재하지 않습니다.",
    "NO_CODES": "코드가 존재하지 않습니다.",
    "INVALID_PARAM": "파라미터가 올바르지 않습니다.",
}


_NUMS: dict[Decimal, int | float] = {}  # a book's prices and sizes repeat from frame to frame
_NUMS_MAX = 200_000


def num(value: Decimal) -> int | float:
    """Upbit quotation payloads carry JSON numbers: integral values without a fraction."""
    out = _NUMS.get(value)
    if out is None:
        if len(_NUMS) >= _NUMS_MAX:
            _NUMS.clear()
        out = _NUMS[value] = int(value) if value == value.to_integral_value() else float(value)
    return out


def _encode(payload: dict | list, fmt: str, mapping=_SIMPLE) -> bytes:
    if fmt.startswith("SIMPLE"):
        payload = _abbreviate(payload, mapping)
    if fmt.endswith("_LIST"):
        payload = [payload]
    return orjson.dumps(payload)


def _abbreviate(obj, mapping):
    if isinstance(obj, dict):
        return {mapping.get(k, k): _abbreviate(v, mapping) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_abbreviate(v, mapping) for v in obj]
    return obj


_ORDERBOOK_KEYS = ("type", "code", "timestamp", "total_ask_size", "total_bid_size", "orderbook_units", "level",
                   "stream_type", "ask_price", "bid_price", "ask_size", "bid_size")
_ORDERBOOK_SIMPLE_KEYS = tuple(_SIMPLE[k] for k in _ORDERBOOK_KEYS)
_EMPTY_LEVEL = (Decimal(0), Decimal(0))
_ROWS: dict[tuple, dict] = {}  # (ask level, bid level, simple) -> its row


def orderbook_payload(book: VenueBook, units: int, stream_type: str | None, *, simple: bool = False) -> dict:
    """The orderbook message, its fields named as the format asks (SIMPLE: the short names). Built
    with the names directly: this renders on every book change, for every subscribed format."""
    ty, cd, tms, tas, tbs, obu, lv, st, ap, bp, as_, bs = _ORDERBOOK_SIMPLE_KEYS if simple else _ORDERBOOK_KEYS
    bids, asks = book.top(units)
    rows = []
    for i in range(max(len(bids), len(asks))):
        ask = asks[i] if i < len(asks) else _EMPTY_LEVEL
        bid = bids[i] if i < len(bids) else _EMPTY_LEVEL
        # A change touches a level or two: the other rows are as they were (never mutated, so shared).
        key = (ask, bid, simple)
        row = _ROWS.get(key)
        if row is None:
            if len(_ROWS) >= _NUMS_MAX:
                _ROWS.clear()
            row = _ROWS[key] = {ap: num(ask[0]), bp: num(bid[0]), as_: num(ask[1]), bs: num(bid[1])}
        rows.append(row)
    payload = {
        ty: "orderbook",
        cd: book.market,
        tms: book.timestamp_ms,
        tas: num(sum((q for _, q in asks), Decimal(0))),
        tbs: num(sum((q for _, q in bids), Decimal(0))),
        obu: rows,
        lv: 0,
    }
    if stream_type:
        payload[st] = stream_type
    return payload


class UpbitClient(Connection):
    def __init__(self, ws, venue, transport=None):
        super().__init__(ws, venue, transport)
        self.format = "DEFAULT"
        # type -> {market: units}; only markets wanting realtime updates are kept.
        self.realtime: dict[str, dict[str, int]] = {}


class UpbitDialect:
    """Renders venue state in Upbit's shapes and serves Upbit's endpoints."""

    def __init__(self, venue: Venue, *, rate_limit: int = QUOTATION_LIMIT_PER_SEC, accounts: Accounts | None = None,
                 transfers: Transfers | None = None):
        self.venue = venue
        self.accounts = accounts or Accounts()
        self.orders = UpbitOrders(self)
        self.wallet = UpbitWallet(self, transfers or Transfers(self.accounts))
        self.quotation_limit = RateWindow(1.0, rate_limit)
        # Remaining-Req's deprecated `min`: what is left of the minute, counted but not enforced.
        self.quotation_minute = RateWindow(60.0, rate_limit * 60)
        self.exchange_limits = {group: (RateWindow(seconds, n), RateWindow(60.0, int(n * 60 / seconds)))
                                for group, (n, seconds) in UPBIT_EXCHANGE_LIMITS.items()}
        self.tickers: dict[str, dict] = {}
        self.sequential_id = int(time.time() * 1000) * 1000
        venue.listeners.append(self.on_book)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.rate_limit_middleware])
        app.router.add_get("/websocket/v1", self.websocket)
        app.router.add_get("/v1/market/all", self.market_all)
        app.router.add_get("/v1/orderbook", self.orderbook)
        app.router.add_get("/v1/orderbook/instruments", self.instruments)
        app.router.add_get("/v1/ticker", self.ticker)
        # A USD/KRW reference in the shape of Dunamu's forex quotation API, which Korean traders
        # use beside the KRW-USDT book.
        app.router.add_get("/v1/forex/recent", self.forex)
        app.router.add_get("/v1/accounts", self.accounts_view)
        self.orders.routes(app)
        self.wallet.routes(app)
        return app

    async def accounts_view(self, request: web.Request) -> web.Response:
        try:
            account = verify_upbit(self.accounts, request.headers, request.query_string)
        except AuthFailure as exc:
            return self.error(exc.status, exc.name, exc.message)
        out = [{
            "currency": currency, "balance": f"{amount:f}", "locked": f"{account.locked.get(currency, Decimal(0)):f}",
            "avg_buy_price": "0", "avg_buy_price_modified": False, "unit_currency": "KRW",
        } for currency, amount in sorted(account.balances.items())]
        return self.ok(out)

    async def forex(self, request: web.Request) -> web.Response:
        codes = request.query.get("codes", "")
        if codes != "FRX.KRWUSD":
            return self.error(404, 404, "Code not found")
        rate = round(self.venue.model.usd_krw, 2)
        now = now_ms()
        return self.ok([{
            "code": "FRX.KRWUSD", "currencyCode": "USD", "currencyName": "달러", "country": "미국", "name": "미국 (KRW/USD)",
            "date": datetime.fromtimestamp(now / 1000, UTC).strftime("%Y-%m-%d"), "time": datetime.fromtimestamp(now / 1000, UTC).strftime("%H:%M:%S"),
            "basePrice": rate, "openingPrice": rate, "highPrice": rate, "lowPrice": rate, "change": "EVEN",
            "changePrice": 0.0, "cashBuyingPrice": round(rate * 1.0175, 2), "cashSellingPrice": round(rate * 0.9825, 2),
            "ttBuyingPrice": round(rate * 0.99, 2), "ttSellingPrice": round(rate * 1.01, 2), "currencyUnit": 1,
            "provider": "SIMULATED", "timestamp": now,
        }])

    # --- REST ----------------------------------------------------------------------------------
    @staticmethod
    def error(status: int, name, message: str, headers=None) -> web.Response:
        return web.json_response({"error": {"name": name, "message": message}}, status=status, headers=headers, dumps=lambda o: orjson.dumps(o).decode())

    @staticmethod
    def ok(payload, headers=None) -> web.Response:
        return web.Response(body=orjson.dumps(payload), content_type="application/json", charset="utf-8", headers=headers)

    @web.middleware
    async def rate_limit_middleware(self, request: web.Request, handler):
        """Meter every /v1/* request in its group before any work, and put `Remaining-Req` on every
        answer, errors included: Quotation groups per IP, Exchange API groups per pocket."""
        if not request.path.startswith("/v1/"):
            return await handler(request)
        group = upbit_group(request.method, request.path)
        quotation = group in UPBIT_QUOTATION_GROUPS
        if quotation:
            key, (second, minute) = (request.remote, group), (self.quotation_limit, self.quotation_minute)
        else:
            key, (second, minute) = (_pocket(request), group), self.exchange_limits[group]
        remaining = second.take(key)
        header = remaining_req(group, remaining, minute.take(key))
        if remaining < 0:
            # Upbit documents no error name for 429: the Quotation API answers with the integer
            # status, as its other errors; the Exchange API with a string name, as its others.
            return self.error(429, 429 if quotation else "too_many_requests", "Too many API requests.", headers=header)
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # an unknown path's 404, a wrong method's 405
            exc.headers.update(header)
            raise
        response.headers.update(header)
        return response

    def _markets_param(self, request: web.Request) -> list[str] | web.Response:
        raw = request.query.get("markets", "")
        markets = [m.strip() for m in raw.split(",") if m.strip()]
        if not markets:
            return self.error(400, 400, "Missing request parameter error. Check the required parameters!")
        unknown = [m for m in markets if m not in self.venue.upbit_books]
        if unknown:
            return self.error(404, 404, "Code not found")
        return markets

    async def market_all(self, request: web.Request) -> web.Response:
        details = request.query.get("is_details", "false").lower() == "true"
        coins = {c.symbol: c for c in self.venue.coins}
        out = []
        for market in self.venue.upbit_markets():
            symbol = market.split("-", 1)[1]
            coin = coins.get(symbol)
            item = {
                "market": market,
                "korean_name": coin.korean_name if coin else "테더",
                "english_name": coin.english_name if coin else "Tether",
            }
            if details:
                cautions = self.venue.market_cautions.get(market, set())
                item["market_event"] = {
                    "warning": False,
                    "caution": {
                        flag: flag in cautions
                        for flag in ("PRICE_FLUCTUATIONS", "TRADING_VOLUME_SOARING", "DEPOSIT_AMOUNT_SOARING",
                                     "GLOBAL_PRICE_DIFFERENCES", "CONCENTRATION_OF_SMALL_ACCOUNTS")
                    },
                }
            out.append(item)
        return self.ok(out)

    async def orderbook(self, request: web.Request) -> web.Response:
        markets = self._markets_param(request)
        if isinstance(markets, web.Response):
            return markets
        try:
            count = int(request.query.get("count", DEFAULT_UNITS))
        except ValueError:
            return self.error(400, 400, "Invalid parameter: count")
        count = max(1, min(count, DEFAULT_UNITS))
        out = []
        for market in markets:
            payload = orderbook_payload(self.venue.upbit_books[market], count, None)
            out.append({
                "market": market,
                "timestamp": payload["timestamp"],
                "total_ask_size": payload["total_ask_size"],
                "total_bid_size": payload["total_bid_size"],
                "orderbook_units": payload["orderbook_units"],
                "level": 0,
            })
        return self.ok(out)

    async def instruments(self, request: web.Request) -> web.Response:
        markets = self._markets_param(request)
        if isinstance(markets, web.Response):
            return markets
        out = []
        for market in markets:
            book = self.venue.upbit_books[market]
            best = max(book.bids) if book.bids else Decimal(1)
            out.append({
                "market": market,
                "quote_currency": "KRW",
                "tick_size": f"{upbit_tick(best, market).normalize():f}",
                "supported_levels": ["0"],
            })
        return self.ok(out)

    async def ticker(self, request: web.Request) -> web.Response:
        markets = self._markets_param(request)
        if isinstance(markets, web.Response):
            return markets
        out = []
        for market in markets:
            t = dict(self._ticker(market))
            for key in ("type", "code", "ask_bid", "acc_ask_volume", "acc_bid_volume", "market_state",
                        "is_trading_suspended", "delisting_date", "market_warning", "stream_type"):
                t.pop(key, None)
            t["market"] = market
            ts = datetime.fromtimestamp(t["trade_timestamp"] / 1000, UTC)
            kst = datetime.fromtimestamp(t["trade_timestamp"] / 1000 + 9 * 3600, UTC)
            t.update(trade_date_kst=kst.strftime("%Y%m%d"), trade_time_kst=kst.strftime("%H%M%S"),
                     trade_date=ts.strftime("%Y%m%d"), trade_time=ts.strftime("%H%M%S"))
            out.append(t)
        return self.ok(out)

    # --- WebSocket -----------------------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        client = UpbitClient(ws, self.venue, request.transport)
        self.venue.upbit_clients.add(client)
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    data = msg.data if isinstance(msg.data, str) else msg.data.decode("utf-8", "replace")
                    if data.strip() == "PING":
                        client.send(b'{"status":"UP"}')
                        continue
                    self._on_request(client, data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.venue.upbit_clients.discard(client)
            client.close()
        return ws

    def _send_error(self, client: UpbitClient, name: str) -> None:
        client.send(orjson.dumps({"error": {"name": name, "message": ERRORS[name]}}))

    def _on_request(self, client: UpbitClient, data: str) -> None:
        try:
            request = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self._send_error(client, "WRONG_FORMAT")
        if not isinstance(request, list) or not all(isinstance(item, dict) for item in request):
            return self._send_error(client, "WRONG_FORMAT")
        if not any("ticket" in item for item in request):
            return self._send_error(client, "NO_TICKET")
        types = [item for item in request if "type" in item]
        if not types:
            return self._send_error(client, "NO_TYPE")
        fmt = next((item["format"] for item in request if "format" in item), "DEFAULT")
        if fmt not in {"DEFAULT", "SIMPLE", "JSON_LIST", "SIMPLE_LIST"}:
            return self._send_error(client, "INVALID_PARAM")
        realtime: dict[str, dict[str, int]] = {}
        snapshots = []
        for item in types:
            kind, codes = item["type"], item.get("codes")
            if kind not in {"orderbook", "ticker", "trade"}:
                return self._send_error(client, "INVALID_PARAM")
            if not codes or not isinstance(codes, list):
                return self._send_error(client, "NO_CODES")
            wanted = {}
            for code in codes:
                if not isinstance(code, str):
                    return self._send_error(client, "INVALID_PARAM")
                market, _, unit = code.upper().partition(".")
                units = int(unit) if unit.isdigit() and int(unit) in VALID_UNITS else DEFAULT_UNITS
                if market in self.venue.upbit_books:
                    wanted[market] = units
            if not item.get("is_only_realtime"):
                snapshots += [(kind, market, units) for market, units in wanted.items()]
            if not item.get("is_only_snapshot"):
                # Several objects of one type (ccxt pro sends one per market) add up.
                realtime.setdefault(kind, {}).update(wanted)
        # A new request on a connection replaces what it asked for before.
        client.format = fmt
        client.realtime = realtime
        for kind, market, units in snapshots:
            client.send(self._render(kind, market, units, fmt, "SNAPSHOT"))

    # --- rendering -------------------------------------------------------------------------------
    def _render(self, kind: str, market: str, units: int, fmt: str, stream_type: str) -> bytes:
        if kind == "orderbook":
            payload = orderbook_payload(self.venue.upbit_books[market], units, stream_type, simple=fmt.startswith("SIMPLE"))
            return orjson.dumps([payload] if fmt.endswith("_LIST") else payload)
        if kind == "ticker":
            return _encode({**self._ticker(market), "stream_type": stream_type}, fmt)
        return _encode({**self._trade(market, record=False), "stream_type": stream_type}, fmt, _SIMPLE_TRADE)

    def on_book(self, exchange: str, book: VenueBook, changed_bids, changed_asks) -> None:
        if exchange != "upbit":
            return
        market = book.market
        cache: dict = {}
        trade = None
        if self.venue.model.rng.random() < 0.3:
            trade = self._trade(market, record=True)
        for client in list(self.venue.upbit_clients):
            for kind, markets in client.realtime.items():
                units = markets.get(market)
                if units is None:
                    continue
                if kind == "trade" and trade is None:
                    continue
                if kind == "ticker" and trade is None:
                    continue
                key = (kind, units, client.format)
                if key not in cache:
                    if kind == "trade":
                        cache[key] = _encode({**trade, "stream_type": "REALTIME"}, client.format, _SIMPLE_TRADE)
                    else:
                        cache[key] = self._render(kind, market, units, client.format, "REALTIME")
                client.send(cache[key])

    def _ticker(self, market: str) -> dict:
        ticker = self.tickers.get(market)
        if ticker is None:
            self._trade(market, record=True)
            ticker = self.tickers[market]
        return ticker

    def _trade(self, market: str, *, record: bool) -> dict:
        """Make a trade at the touch; with record=True it also moves the ticker."""
        book = self.venue.upbit_books[market]
        rng = self.venue.model.rng
        bids, asks = book.top(1)
        side = "BID" if rng.random() < 0.5 else "ASK"
        level = (asks if side == "BID" else bids) or bids or asks
        price, size = level[0]
        volume = min(size, max(size / 10, Decimal("0.0001"))).quantize(Decimal("0.00000001"))
        ts = now_ms()
        dt = datetime.fromtimestamp(ts / 1000, UTC)
        self.sequential_id += 1
        ticker = self.tickers.get(market)
        if ticker is None:
            ticker = {
                "type": "ticker", "code": market, "opening_price": num(price), "high_price": num(price),
                "low_price": num(price), "prev_closing_price": num(price), "acc_trade_price": 0.0,
                "acc_trade_volume": 0.0, "acc_trade_price_24h": 0.0, "acc_trade_volume_24h": 0.0,
                "acc_ask_volume": 0.0, "acc_bid_volume": 0.0, "highest_52_week_price": num(price),
                "highest_52_week_date": dt.strftime("%Y-%m-%d"), "lowest_52_week_price": num(price),
                "lowest_52_week_date": dt.strftime("%Y-%m-%d"), "market_state": "ACTIVE",
                "is_trading_suspended": False, "delisting_date": None, "market_warning": "NONE",
            }
            self.tickers[market] = ticker
        trade = {
            "type": "trade", "code": market, "timestamp": ts, "trade_date": dt.strftime("%Y-%m-%d"),
            "trade_time": dt.strftime("%H:%M:%S"), "trade_timestamp": ts, "trade_price": num(price),
            "trade_volume": num(volume), "ask_bid": side, "prev_closing_price": ticker["prev_closing_price"],
            "change": "EVEN", "change_price": 0, "sequential_id": self.sequential_id,
            "best_ask_price": num(asks[0][0]) if asks else 0, "best_ask_size": num(asks[0][1]) if asks else 0,
            "best_bid_price": num(bids[0][0]) if bids else 0, "best_bid_size": num(bids[0][1]) if bids else 0,
        }
        if record:
            prev = Decimal(str(ticker["prev_closing_price"]))
            change = price - prev
            rate = (change / prev) if prev else Decimal(0)
            notional = float(price * volume)
            ticker.update(
                trade_price=num(price), high_price=max(ticker["high_price"], num(price)),
                low_price=min(ticker["low_price"], num(price)), trade_volume=num(volume),
                change="RISE" if change > 0 else "FALL" if change < 0 else "EVEN",
                change_price=num(abs(change)), signed_change_price=num(change),
                change_rate=float(abs(rate)), signed_change_rate=float(rate),
                trade_date=dt.strftime("%Y%m%d"), trade_time=dt.strftime("%H%M%S"), trade_timestamp=ts,
                ask_bid=side, timestamp=ts,
                acc_trade_volume=ticker["acc_trade_volume"] + float(volume),
                acc_trade_volume_24h=ticker["acc_trade_volume_24h"] + float(volume),
                acc_trade_price=ticker["acc_trade_price"] + notional,
                acc_trade_price_24h=ticker["acc_trade_price_24h"] + notional,
            )
            ticker["acc_ask_volume" if side == "ASK" else "acc_bid_volume"] += float(volume)
            trade["change"] = ticker["change"]
            trade["change_price"] = ticker["change_price"]
        return trade


def _pocket(request: web.Request):
    """Whom an Exchange API request is counted against: the JWT's access key (read, not verified:
    a forged token is metered under the key it names), else the IP."""
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    parts = token.split(".")
    if len(parts) == 3:
        try:
            access_key = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))).get("access_key")
        except (ValueError, TypeError, AttributeError):
            access_key = None
        if isinstance(access_key, str) and access_key:
            return "key", access_key
    return "ip", request.remote


def new_ticket() -> str:
    return str(uuid.uuid4())
