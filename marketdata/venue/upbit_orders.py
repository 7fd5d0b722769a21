"""Upbit order entry on the venue: POST /v1/orders, GET and DELETE /v1/order (docs/venue.md)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import orjson
from aiohttp import web

from .accounts import AuthFailure, verify_upbit
from .matching import VenueOrder, match
from .rules import UPBIT_KRW_FEE as FEE
from .rules import UPBIT_MIN_TOTAL_KRW, upbit_tick

EIGHT = Decimal("0.00000001")
KST = timedelta(hours=9)


def kst(ms: int) -> str:
    return (datetime.fromtimestamp(ms / 1000, UTC) + KST).strftime("%Y-%m-%dT%H:%M:%S+09:00")


def s(value: Decimal | None) -> str | None:
    return None if value is None else f"{value.normalize():f}"


class UpbitOrders:
    def __init__(self, dialect):
        self.dialect = dialect
        self.orders: dict[str, VenueOrder] = {}
        self.by_identifier: dict[tuple[str, str], VenueOrder] = {}
        self.used_identifiers: dict[str, set[str]] = {}

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/orders", self.new_order)
        app.router.add_get("/v1/order", self.get_order)
        app.router.add_delete("/v1/order", self.cancel_order)
        app.router.add_get("/v1/orders/open", self.open_orders)

    def _err(self, status: int, name: str, message: str) -> web.Response:
        return self.dialect.error(status, name, message)

    def _key(self, request) -> str:
        import jwt

        return jwt.decode(request.headers["Authorization"][7:], options={"verify_signature": False})["access_key"]

    def _body(self, o: VenueOrder, with_trades: bool = False) -> dict:
        state = {"NEW": "wait", "PARTIALLY_FILLED": "wait", "FILLED": "done"}.get(o.status, "cancel")
        volume = o.quantity
        executed = o.executed
        body = {
            "uuid": o.uuid, "side": "bid" if o.side == "buy" else "ask", "ord_type": o.kind, "price": s(o.price if o.kind != "price" else o.quote_amount),
            "state": state, "market": o.market, "created_at": kst(o.created_ms), "volume": s(volume),
            "remaining_volume": s(volume - executed) if volume is not None else None, "reserved_fee": s(o.reserved_fee),
            "remaining_fee": s(max(Decimal(0), o.reserved_fee - o.fee_paid)), "paid_fee": s(o.fee_paid),
            "locked": s(o.locked), "executed_volume": s(executed), "trades_count": len(o.fills),
            "prevented_volume": "0", "prevented_locked": "0",
        }
        if o.time_in_force:
            body["time_in_force"] = o.time_in_force
        if o.client_id:
            body["identifier"] = o.client_id
        if with_trades:
            body["trades"] = [{"market": o.market, "uuid": f"{o.uuid[:-4]}{i:04d}", "price": s(p), "volume": s(q),
                               "funds": s((p * q).quantize(EIGHT)), "trend": "up", "created_at": kst(o.created_ms), "side": body["side"]}
                              for i, (p, q, _f) in enumerate(o.fills)]
        return body

    async def new_order(self, request: web.Request) -> web.Response:
        try:
            data = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            return self._err(400, "invalid_parameter", "잘못된 파라미터")
        try:
            account = verify_upbit(self.dialect.accounts, request.headers, request.query_string, data)
        except AuthFailure as exc:
            return self._err(exc.status, exc.name, exc.message)
        key = self._key(request)
        market, side, kind = data.get("market"), data.get("side"), data.get("ord_type")
        if market not in self.dialect.venue.upbit_books:
            return self._err(400, "notfoundmarket", f"다음 마켓에 없는 종목입니다: {market}")
        if side not in ("bid", "ask") or kind not in ("limit", "price", "market", "best"):
            return self._err(400, "validation_error", "side is missing, side does not have a valid value")
        identifier = data.get("identifier") or ""
        used = self.used_identifiers.setdefault(key, set())
        if identifier and identifier in used:
            return self._err(400, "duplicated_identifier", "중복된 identifier 입니다.")
        if identifier:
            used.add(identifier)  # taken forever, even if this request fails below
        tif = data.get("time_in_force")
        try:
            volume = Decimal(str(data["volume"])) if data.get("volume") is not None else None
            price = Decimal(str(data["price"])) if data.get("price") is not None else None
        except InvalidOperation:
            return self._err(400, "invalid_parameter", "잘못된 파라미터")
        shape_ok = {"limit": volume is not None and price is not None,
                    "price": side == "bid" and price is not None and volume is None,
                    "market": side == "ask" and volume is not None and price is None,
                    "best": tif in ("ioc", "fok") and ((side == "bid" and price is not None) or (side == "ask" and volume is not None))}
        if kind == "best" and tif not in ("ioc", "fok"):
            return self._err(400, "invalid_time_in_force", "주문조건을 다시 확인해 주세요.")
        if not shape_ok[kind]:
            return self._err(400, "invalid_parameter", "잘못된 파라미터")
        suffix = "bid" if side == "bid" else "ask"
        if kind == "limit" and price % upbit_tick(price, market) != 0:
            return self._err(400, f"invalid_price_{suffix}", "주문가격 단위를 잘못 입력하셨습니다. 확인 후 시도해주세요.")
        book = self.dialect.venue.upbit_books[market]
        bids, asks = book.top(30)
        reference = price if kind == "limit" else (asks[0][0] if side == "bid" else bids[0][0])
        total = price if kind in ("price",) or (kind == "best" and side == "bid") else volume * reference
        if total < UPBIT_MIN_TOTAL_KRW:
            return self._err(400, f"under_min_total_{suffix}", f"최소주문금액 이상으로 주문해주세요. ({UPBIT_MIN_TOTAL_KRW} KRW)")
        coin = market.split("-", 1)[1]
        buying = side == "bid"
        quote_amount = price if kind == "price" or (kind == "best" and buying) else None
        limit = price if kind == "limit" else None
        slices = match(asks if buying else bids, "buy" if buying else "sell", volume if quote_amount is None else None,
                       limit, quote_amount / (1 + FEE) if quote_amount is not None else None)
        filled = sum((q for _, q in slices), Decimal(0))
        if tif == "fok" and ((volume is not None and filled < volume) or (quote_amount is not None and not slices)):
            slices, filled = [], Decimal(0)
        funds = sum((p * q for p, q in slices), Decimal(0))
        rest = volume - filled if (kind == "limit" and tif is None) else Decimal(0)
        need_krw = (funds + funds * FEE + (rest * price * (1 + FEE) if rest > 0 else 0)) if buying else Decimal(0)
        if buying and account.balances.get("KRW", Decimal(0)) < max(need_krw, total * (1 + FEE) if kind == "limit" else need_krw):
            return self._err(400, "insufficient_funds_bid", "주문가능한 금액(KRW)이 부족합니다.")
        if not buying and account.balances.get(coin, Decimal(0)) < (volume or Decimal(0)):
            return self._err(400, "insufficient_funds_ask", f"주문가능한 금액({coin})이 부족합니다.")
        order = VenueOrder("upbit", market, "buy" if buying else "sell", kind, volume, limit, quote_amount, tif or "",
                           identifier, key)
        order.reserved_fee = (total * FEE) if buying else Decimal(0)
        order.locked = Decimal(0)
        for p, q in slices:
            fee = (p * q * FEE).quantize(EIGHT)  # kept, like every amount here, to 8 decimals
            funds = (p * q).quantize(EIGHT)  # a trade's `funds`, as reported
            order.fills.append((p, q, fee))
            if buying:
                account.move("KRW", -(funds + fee))
                account.move(coin, q)
            else:
                account.move(coin, -q)
                account.move("KRW", funds - fee)
        if rest > 0:
            order.locked = rest * price * (1 + FEE) if buying else rest
            account.lock("KRW" if buying else coin, order.locked)
            order.status = "PARTIALLY_FILLED" if order.fills else "NEW"
        elif volume is not None and order.executed < volume or (quote_amount is not None and order.fills and funds < quote_amount / (1 + FEE) - asks[0][0]):
            order.status = "CANCELED"  # ioc/fok/best/market residue: Upbit reports "cancel" with trades
        else:
            order.status = "FILLED" if order.fills else "CANCELED"
        self.orders[order.uuid] = order
        if identifier:
            self.by_identifier[(key, identifier)] = order
        if self.dialect.venue.faults.rest_delay:
            await asyncio.sleep(self.dialect.venue.faults.rest_delay)
        return web.Response(status=201, body=orjson.dumps(self._body(order)), content_type="application/json")

    def _find(self, request, key) -> VenueOrder | None:
        if "uuid" in request.query:
            order = self.orders.get(request.query["uuid"])
            return order if order and order.api_key == key else None
        if "identifier" in request.query:
            return self.by_identifier.get((key, request.query["identifier"]))
        return None

    async def get_order(self, request: web.Request) -> web.Response:
        try:
            verify_upbit(self.dialect.accounts, request.headers, request.query_string)
        except AuthFailure as exc:
            return self._err(exc.status, exc.name, exc.message)
        order = self._find(request, self._key(request))
        if order is None:
            return self._err(404, "order_not_found", "주문을 찾지 못했습니다.")
        return self.dialect.ok(self._body(order, with_trades=True))

    async def open_orders(self, request: web.Request) -> web.Response:
        try:
            verify_upbit(self.dialect.accounts, request.headers, request.query_string)
        except AuthFailure as exc:
            return self._err(exc.status, exc.name, exc.message)
        key = self._key(request)
        market = request.query.get("market")
        return self.dialect.ok([self._body(o) for o in self.orders.values()
                                if o.api_key == key and o.open and (not market or o.market == market)])

    async def cancel_order(self, request: web.Request) -> web.Response:
        if await request.read():
            return self._err(400, "QUERY_PARAMETER_NOT_SUPPORTED",
                             "이 API는 쿼리 파라미터 형식의 요청만 지원합니다. 요청 본문에 값을 포함할 수 없습니다.")
        try:
            account = verify_upbit(self.dialect.accounts, request.headers, request.query_string)
        except AuthFailure as exc:
            return self._err(exc.status, exc.name, exc.message)
        order = self._find(request, self._key(request))
        if order is None or not order.open:
            return self._err(404, "order_not_found", "주문을 찾지 못했습니다.")
        accepted = self._body(order)  # Upbit answers with the order as accepted (state still "wait")
        account.lock("KRW" if order.side == "buy" else order.market.split("-", 1)[1], -order.locked)
        order.locked = Decimal(0)
        order.status = "CANCELED"
        return self.dialect.ok(accepted)

