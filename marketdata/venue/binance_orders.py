"""Binance order entry on the venue: POST/GET/DELETE /api/v3/order, GET /api/v3/openOrders and
GET /api/v3/myTrades, matched against the venue's books; GET/POST /sapi/v1/bnbBurn.

Commission is 0.1 % of each fill in the asset received, or, for an account with "spot BNB burn"
on that holds enough BNB, 0.075 % (25 % off) of the fill's USDT notional converted into BNB at the
venue's BNBUSDT mid, reported as `commissionAsset: "BNB"` and taken from the BNB balance.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal, InvalidOperation

import orjson
from aiohttp import web

from .accounts import Account, AuthFailure
from .core import now_ms
from .matching import VenueOrder, match
from .rules import BINANCE_BNB_DISCOUNT as BNB_DISCOUNT
from .rules import BINANCE_FEE as FEE

EIGHT = Decimal("0.00000001")
BNB = "BNB"
QUOTE = "USDT"


def fmt(value: Decimal | None) -> str:
    return f"{(value or Decimal(0)):.8f}"


class BinanceOrders:
    def __init__(self, dialect):
        self.dialect = dialect
        self.orders: dict[int, VenueOrder] = {}
        self.by_client: dict[tuple[str, str], VenueOrder] = {}
        self.fee_assets: dict[int, list[str]] = {}  # order id -> each fill's commission asset

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v3/order", self.new_order)
        app.router.add_get("/api/v3/order", self.query_order)
        app.router.add_delete("/api/v3/order", self.cancel_order)
        app.router.add_get("/api/v3/openOrders", self.open_orders)
        app.router.add_get("/api/v3/myTrades", self.my_trades)
        app.router.add_get("/sapi/v1/bnbBurn", self.bnb_burn)
        app.router.add_post("/sapi/v1/bnbBurn", self.bnb_burn)

    # --- helpers -----------------------------------------------------------------------------
    async def _auth(self, request) -> tuple[Account, dict[str, str]]:
        body = (await request.read()).decode() if request.can_read_body else ""
        account = self.dialect.verify(request, body)
        params = dict((await request.post()) if body else {})
        params.update(request.query)  # the query wins over the body
        return account, params

    def _fail(self, code: int, msg: str, status: int = 400) -> web.Response:
        return self.dialect.error(status, code, msg)

    def _find(self, params, api_key) -> VenueOrder | None:
        if "orderId" in params:
            try:
                order = self.orders.get(int(params["orderId"]))
            except ValueError:
                return None
            return order if order and order.api_key == api_key else None
        client_id = params.get("origClientOrderId")
        return self.by_client.get((api_key, client_id)) if client_id else None

    def _body(self, order: VenueOrder, full: bool) -> dict:
        body = {
            "symbol": order.market, "orderId": order.order_id, "orderListId": -1, "clientOrderId": order.client_id,
            "transactTime": order.created_ms, "price": fmt(order.price), "origQty": fmt(order.quantity),
            "executedQty": fmt(order.executed), "origQuoteOrderQty": fmt(order.quote_amount),
            "cummulativeQuoteQty": fmt(order.quote_spent), "status": order.status, "timeInForce": order.time_in_force,
            "type": order.kind.upper(), "side": order.side.upper(), "workingTime": order.created_ms,
            "selfTradePreventionMode": "NONE",
        }
        if full:
            body["fills"] = [{"price": fmt(p), "qty": fmt(q), "commission": fmt(f),
                              "commissionAsset": self.commission_asset(order, i),
                              "tradeId": trade_id(order, i)} for i, (p, q, f) in enumerate(order.fills)]
        return body

    def _trades(self, order: VenueOrder) -> list[dict]:
        """The order's fills as GET /api/v3/myTrades rows (every venue fill is a taker fill)."""
        return [{"symbol": order.market, "id": trade_id(order, i), "orderId": order.order_id, "orderListId": -1,
                 "price": fmt(p), "qty": fmt(q), "quoteQty": fmt(p * q), "commission": fmt(f),
                 "commissionAsset": self.commission_asset(order, i), "time": order.created_ms,
                 "isBuyer": order.side == "buy", "isMaker": False, "isBestMatch": True}
                for i, (p, q, f) in enumerate(order.fills)]

    def commission_asset(self, order: VenueOrder, i: int) -> str:
        assets = self.fee_assets.get(order.order_id)
        return assets[i] if assets and i < len(assets) else commission_asset(order)

    def bnb_price(self) -> Decimal | None:
        """BNBUSDT's mid on the venue: what a BNB commission is converted at."""
        book = self.dialect.venue.binance_books.get(f"{BNB}{QUOTE}")
        if book is None:
            return None
        bids, asks = book.top(1)
        return (bids[0][0] + asks[0][0]) / 2 if bids and asks else None

    # --- endpoints ---------------------------------------------------------------------------
    async def bnb_burn(self, request: web.Request) -> web.Response:
        """GET/POST /sapi/v1/bnbBurn: read or switch paying spot fees in BNB (`spotBNBBurn=true|false`)."""
        try:
            account, p = await self._auth(request)
        except AuthFailure as exc:
            return self._fail(exc.name, exc.message, exc.status)
        if request.method == "POST":
            value = (p.get("spotBNBBurn") or "").lower()
            if value not in ("true", "false"):
                return self._fail(-1102, "Mandatory parameter 'spotBNBBurn' was not sent, was empty/null, or malformed.")
            account.bnb_burn = value == "true"
        return self.dialect.respond(request, 1, lambda: {"spotBNBBurn": account.bnb_burn, "interestBNBBurn": False})

    async def new_order(self, request: web.Request) -> web.Response:
        headers, refused = self.dialect.admit(request, 1)
        if refused is not None:
            return refused  # refused before anything was done: a retry cannot double the order
        try:
            account, p = await self._auth(request)
        except AuthFailure as exc:
            return self._fail(exc.name, exc.message, exc.status)
        market = p.get("symbol", "")
        for name in ("symbol", "side", "type"):
            if not p.get(name):
                return self._fail(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        if market not in self.dialect.venue.binance_books:
            return self._fail(-1121, "Invalid symbol.")
        side, kind = p["side"].lower(), p["type"].upper()
        if side not in ("buy", "sell"):
            return self._fail(-1117, "Invalid side.")
        if kind not in ("LIMIT", "MARKET"):
            return self._fail(-1116, "Invalid orderType.")
        try:
            qty = Decimal(p["quantity"]) if p.get("quantity") else None
            price = Decimal(p["price"]) if p.get("price") else None
            quote_qty = Decimal(p["quoteOrderQty"]) if p.get("quoteOrderQty") else None
        except InvalidOperation:
            return self._fail(-1100, "Illegal characters found in a parameter.")
        tif = p.get("timeInForce", "GTC" if kind == "LIMIT" else "GTC").upper()
        if kind == "LIMIT" and (qty is None or price is None or "timeInForce" not in p):
            return self._fail(-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")
        if kind == "MARKET" and (qty is None) == (quote_qty is None):
            return self._fail(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but not both.")
        client_id = p.get("newClientOrderId") or f"venue{next_id()}"
        existing = self.by_client.get((request.headers["X-MBX-APIKEY"], client_id))
        if existing is not None and existing.open:
            return self._fail(-2010, "Duplicate order sent.")
        coin = self.dialect.venue.binance_coin(market)
        filters = coin.filters
        book = self.dialect.venue.binance_books[market]
        bids, asks = book.top(1000)
        reference = price or (asks[0][0] if side == "buy" else bids[0][0])
        failure = (filters.price_error(price) if price is not None else None) or \
            (filters.quantity_error(qty) if qty is not None else None) or \
            filters.notional_error(qty * reference if qty is not None else quote_qty)
        if failure:
            return self._fail(-1013, f"Filter failure: {failure}")
        base = coin.symbol
        slices = match(asks if side == "buy" else bids, side, qty, price if kind == "LIMIT" else None, quote_qty,
                       step=filters.step_size)
        want = qty if qty is not None else None
        filled = sum((q for _, q in slices), Decimal(0))
        if tif == "FOK" and want is not None and filled < want:
            slices = []
        cost = sum((px * q for px, q in slices), Decimal(0))
        rest = (want - filled) if (want is not None and kind == "LIMIT" and tif == "GTC") else Decimal(0)
        need_quote = cost + (rest * price if rest > 0 else 0) if side == "buy" else Decimal(0)
        need_base = (filled + rest) if side == "sell" else Decimal(0)
        if account.balances.get(QUOTE, Decimal(0)) < need_quote or account.balances.get(base, Decimal(0)) < need_base:
            return self._fail(-2010, "Account has insufficient balance for requested action.")
        order = VenueOrder("binance", market, side, kind.lower(), qty, price, quote_qty, tif, client_id,
                           request.headers["X-MBX-APIKEY"])
        bnb_price = self.bnb_price() if account.bnb_burn else None
        assets = []
        for px, q in slices:
            # Binance reports and keeps balances to 8 decimals; the commission is charged as reported.
            in_bnb = (px * q * FEE * (1 - BNB_DISCOUNT) / bnb_price).quantize(EIGHT) if bnb_price else None
            if in_bnb is not None and account.balances.get(BNB, Decimal(0)) >= in_bnb:
                fee, asset = in_bnb, BNB
            else:
                fee = ((q * FEE) if side == "buy" else (px * q * FEE)).quantize(EIGHT)
                asset = base if side == "buy" else QUOTE
            order.fills.append((px, q, fee))
            assets.append(asset)
            if side == "buy":
                account.move(QUOTE, -px * q)
                account.move(base, q)
            else:
                account.move(base, -q)
                account.move(QUOTE, px * q)
            account.move(asset, -fee)
        if rest > 0:
            # The remainder rests on the book (it never trades here: the venue's books are the model's).
            account.lock(QUOTE if side == "buy" else base, rest * price if side == "buy" else rest)
            order.status = "PARTIALLY_FILLED" if order.fills else "NEW"
        elif want is not None and order.executed < want or (quote_qty is not None and order.quote_spent < quote_qty and not order.fills):
            order.status = "EXPIRED"
        else:
            order.status = "FILLED" if order.fills else "EXPIRED"
        self.orders[order.order_id] = order
        self.fee_assets[order.order_id] = assets
        self.by_client[(order.api_key, client_id)] = order
        if self.dialect.venue.faults.rest_delay:
            await asyncio.sleep(self.dialect.venue.faults.rest_delay)  # the order stands; the answer is late
        resp_type = p.get("newOrderRespType", "FULL").upper()
        if resp_type == "ACK":
            body = {"symbol": market, "orderId": order.order_id, "orderListId": -1, "clientOrderId": client_id,
                    "transactTime": order.created_ms}
        else:
            body = self._body(order, full=resp_type == "FULL")
        return web.Response(body=orjson.dumps(body), content_type="application/json", headers=headers)

    async def query_order(self, request: web.Request) -> web.Response:
        try:
            _account, p = await self._auth(request)
        except AuthFailure as exc:
            return self._fail(exc.name, exc.message, exc.status)
        order = self._find(p, request.headers["X-MBX-APIKEY"])
        if order is None:
            return self._fail(-2013, "Order does not exist.")
        body = self._body(order, full=False)
        body.update(stopPrice="0.00000000", icebergQty="0.00000000", time=order.created_ms, updateTime=now_ms(),
                    isWorking=order.open)
        return self.dialect.respond(request, 4, lambda: body)

    async def open_orders(self, request: web.Request) -> web.Response:
        try:
            _account, p = await self._auth(request)
        except AuthFailure as exc:
            return self._fail(exc.name, exc.message, exc.status)
        key = request.headers["X-MBX-APIKEY"]
        rows = [self._body(o, full=False) for o in self.orders.values()
                if o.api_key == key and o.open and (not p.get("symbol") or o.market == p["symbol"])]
        return self.dialect.respond(request, 6 if p.get("symbol") else 80, lambda: rows)

    async def my_trades(self, request: web.Request) -> web.Response:
        """GET /api/v3/myTrades: the caller's fills in one symbol, oldest first.

        Supported combinations as on Binance: symbol alone or with orderId, startTime, endTime,
        fromId, startTime+endTime or orderId+fromId; startTime..endTime at most 24 hours. Without
        fromId or startTime the most recent `limit` trades are returned.
        """
        try:
            _account, p = await self._auth(request)
        except AuthFailure as exc:
            return self._fail(exc.name, exc.message, exc.status)
        symbol = p.get("symbol")
        if not symbol:
            return self._fail(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if symbol not in self.dialect.venue.binance_books:
            return self._fail(-1121, "Invalid symbol.")
        numbers: dict[str, int] = {}
        for name in ("orderId", "startTime", "endTime", "fromId", "limit"):
            raw = p.get(name)
            if raw is None or raw == "":
                continue
            if not raw.isdigit() or len(raw) > 20:
                return self._fail(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
            numbers[name] = int(raw)
        timed = "startTime" in numbers or "endTime" in numbers
        if timed and ("orderId" in numbers or "fromId" in numbers):
            return self._fail(-1128, "Combination of optional parameters invalid.")
        if "startTime" in numbers and "endTime" in numbers:
            if numbers["endTime"] < numbers["startTime"]:
                return self._fail(-1128, "Combination of optional parameters invalid.")
            if numbers["endTime"] - numbers["startTime"] > 24 * 3600 * 1000:
                return self._fail(-1127, "More than 24 hours between startTime and endTime.")
        limit = max(1, min(numbers.get("limit", 500), 1000))
        key = request.headers["X-MBX-APIKEY"]

        def build():
            rows = []
            for order in sorted(self.orders.values(), key=lambda o: o.order_id):
                if order.api_key != key or order.market != symbol:
                    continue
                if "orderId" in numbers and order.order_id != numbers["orderId"]:
                    continue
                rows += self._trades(order)
            rows = [r for r in rows if r["id"] >= numbers.get("fromId", 0)
                    and r["time"] >= numbers.get("startTime", 0) and r["time"] <= numbers.get("endTime", r["time"])]
            return rows[:limit] if ("fromId" in numbers or "startTime" in numbers) else rows[-limit:]

        return self.dialect.respond(request, 5 if "orderId" in numbers else 20, build)

    async def cancel_order(self, request: web.Request) -> web.Response:
        headers, refused = self.dialect.admit(request, 1)
        if refused is not None:
            return refused
        try:
            account, p = await self._auth(request)
        except AuthFailure as exc:
            return self._fail(exc.name, exc.message, exc.status)
        order = self._find(p, request.headers["X-MBX-APIKEY"])
        if order is None or not order.open:
            return self._fail(-2011, "Unknown order sent.")
        base = order.market[: -len(QUOTE)]
        rest = order.quantity - order.executed
        account.lock(QUOTE if order.side == "buy" else base, -(rest * order.price if order.side == "buy" else rest))
        order.status = "CANCELED"
        body = self._body(order, full=False)
        body["origClientOrderId"] = order.client_id
        body["clientOrderId"] = p.get("newClientOrderId") or f"cancel{next_id()}"
        return web.Response(body=orjson.dumps(body), content_type="application/json", headers=headers)


_counter = iter(range(1, 10**12))


def trade_id(order: VenueOrder, i: int) -> int:
    """The i-th fill's trade id: the same in the FULL order response and in myTrades."""
    return order.order_id * 100 + i


def commission_asset(order: VenueOrder) -> str:
    """Commission is charged in the asset received: base for a buy, quote for a sell."""
    return order.market[: -len(QUOTE)] if order.side == "buy" else QUOTE


def next_id() -> int:
    return next(_counter)


