"""Upbit REST, authenticated with an HS512 JWT carrying a SHA512 hash of the query (EXCHANGES.md B3)."""

from __future__ import annotations

import hashlib
import time
import uuid
from decimal import Decimal
from urllib.parse import unquote, urlencode

import jwt

from marketdata.rules import UPBIT_MIN_ORDER_KRW, UPBIT_VOLUME_STEP, ceil_to_step, floor_to_step, upbit_krw_tick

from .base import ExchangeAdapter
from .errors import (
    AuthError,
    DuplicateClientOrderId,
    ExchangeError,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    RateLimited,
    UnknownOutcome,
)
from .types import LegOrder, LegReport, LegStatus, OpenOrder, TradeFill


def query_string(params: dict | None) -> str:
    """The exact, unencoded k=v&... string Upbit hashes (arrays as key[]=a&key[]=b)."""
    if not params:
        return ""
    pairs = []
    for key, value in params.items():
        if isinstance(value, list | tuple):
            pairs += [(f"{key}[]", v) for v in value]
        else:
            pairs.append((key, value))
    return unquote(urlencode(pairs))


def token(access_key: str, secret_key: str, params: dict | None = None, nonce: str | None = None) -> str:
    """A fresh JWT for one request."""
    payload = {"access_key": access_key, "nonce": nonce or str(uuid.uuid4())}
    query = query_string(params)
    if query:
        payload["query_hash"] = hashlib.sha512(query.encode()).hexdigest()
        payload["query_hash_alg"] = "SHA512"
    return jwt.encode(payload, secret_key, algorithm="HS512")


FEE_QUANTUM = Decimal("0.00000001")


class UpbitAdapter(ExchangeAdapter):
    name = "upbit"
    quote = "KRW"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.remaining_req: dict[str, int] = {}

    def accounts(self) -> list[dict]:
        return self._private("GET", "/v1/accounts", expect=list)

    def balance_detail(self) -> dict[str, tuple[Decimal, Decimal]]:
        """currency -> (balance, locked)."""
        return {a["currency"]: (Decimal(a["balance"]), Decimal(a["locked"])) for a in self.accounts()}

    def balances(self) -> dict[str, Decimal]:
        return {asset: free + locked for asset, (free, locked) in self.balance_detail().items()}

    # --- the venue-neutral interface -----------------------------------------------------------
    @staticmethod
    def market(symbol: str) -> str:
        return f"KRW-{symbol}"

    def tradable(self, symbol: str, quantity: Decimal, price: Decimal) -> Decimal:
        quantity = floor_to_step(quantity, UPBIT_VOLUME_STEP)
        return quantity if quantity > 0 and quantity * price >= UPBIT_MIN_ORDER_KRW else Decimal(0)

    def limit_price(self, symbol: str, side: str, price: Decimal) -> Decimal:
        """On Upbit's tick, never beyond the bound: a bid rounds down, an ask up."""
        tick = upbit_krw_tick(price, self.market(symbol))
        return floor_to_step(price, tick) if side == "buy" else ceil_to_step(price, tick)

    def _place(self, order: LegOrder) -> LegReport:
        side = "bid" if order.side == "buy" else "ask"
        if order.limit_price is not None:
            body = self.place_order(self.market(order.symbol), side, "limit", identifier=order.client_id,
                                    volume=order.quantity, price=order.limit_price, time_in_force=order.time_in_force)
        elif order.side == "sell":
            body = self.place_order(self.market(order.symbol), side, "market", identifier=order.client_id,
                                    volume=order.quantity)
        else:
            raise InvalidOrder("an Upbit buy needs a limit price (a market buy spends KRW, not a quantity)",
                               exchange=self.name)
        # The placement answer carries no trades: the look-up that follows collects them.
        return self._to_report(order.symbol, body)

    def lookup(self, symbol: str, client_id: str, *, side: str = "") -> LegReport:
        return self._to_report(symbol, self.get_order(client_id))

    def _to_report(self, symbol: str, body: dict) -> LegReport:
        try:
            trades = body.get("trades")
            paid = Decimal(body.get("paid_fee") or "0")
            funds = [Decimal(t["funds"]) for t in trades or ()]
            total = sum(funds, Decimal(0))
            fills, booked = [], Decimal(0)
            for i, (trade, amount) in enumerate(zip(trades or (), funds, strict=True)):
                # Upbit reports one fee per order: spread over the trades by their funds, the last
                # taking the remainder, so the fills add up to the fee paid exactly.
                fee = paid - booked if i == len(funds) - 1 else (paid * amount / total).quantize(FEE_QUANTUM) if total else Decimal(0)
                booked += fee
                fills.append(TradeFill(trade["uuid"], Decimal(trade["price"]), Decimal(trade["volume"]), fee, "KRW"))
            state = body["state"]
            status = LegStatus.OPEN if state in ("wait", "watch") else LegStatus.DONE
            volume = body.get("volume")
            return LegReport(self.name, symbol, "buy" if body["side"] == "bid" else "sell", body.get("identifier", ""),
                             status, quantity=Decimal(volume) if volume else Decimal(0),
                             executed=Decimal(body.get("executed_volume") or "0"),
                             quote_amount=sum((f.price * f.quantity for f in fills), Decimal(0)), fills=tuple(fills),
                             exchange_order_id=body["uuid"])
        except (KeyError, TypeError, AttributeError, ArithmeticError, ValueError) as exc:
            raise UnknownOutcome(f"upbit order answer without {exc}", exchange=self.name) from None

    def _cancel(self, symbol: str, client_id: str) -> None:
        self.cancel_order(client_id)

    def cancel_open(self, order: OpenOrder) -> None:
        self.cancel_by_uuid(order.exchange_order_id)

    def open_orders(self) -> list[OpenOrder]:
        return [OpenOrder(self.name, o["market"].removeprefix("KRW-"), o.get("identifier") or "", o["uuid"])
                for o in self.raw_open_orders()]

    # --- the wire calls ------------------------------------------------------------------------
    def prepare(self, market: str, side: str, volume: Decimal | None, price: Decimal | None) -> tuple[Decimal | None, Decimal | None]:
        """Round to Upbit's tick (bid down, ask up) and 1e-8 volume; refuse below the 5,000 KRW minimum."""
        if price is not None and volume is not None:
            tick = upbit_krw_tick(price, market)
            price = floor_to_step(price, tick) if side == "bid" else ceil_to_step(price, tick)
        if volume is not None:
            volume = floor_to_step(volume, UPBIT_VOLUME_STEP)
        total = price * volume if price is not None and volume is not None else price
        if total is not None and total < UPBIT_MIN_ORDER_KRW:
            raise InvalidOrder(f"{market} {side}: {total} KRW is under Upbit's {UPBIT_MIN_ORDER_KRW} KRW minimum", exchange=self.name)
        return volume, price

    def place_order(self, market: str, side: str, ord_type: str, *, identifier: str, volume: Decimal | None = None,
                    price: Decimal | None = None, time_in_force: str | None = None) -> dict:
        """limit (volume+price), price (market buy: KRW to spend), market (sell volume), best (+ioc/fok)."""
        if ord_type == "limit":
            volume, price = self.prepare(market, side, volume, price)
        body = {"market": market, "side": side}
        if volume is not None:
            body["volume"] = f"{volume:f}"
        if price is not None:
            body["price"] = f"{price:f}"
        body["ord_type"] = ord_type
        body["identifier"] = identifier
        if time_in_force:
            body["time_in_force"] = time_in_force
        return self._private("POST", "/v1/orders", body=body)

    def get_order(self, identifier: str) -> dict:
        return self._private("GET", "/v1/order", {"identifier": identifier})

    def raw_open_orders(self) -> list[dict]:
        return self._private("GET", "/v1/orders/open", expect=list)

    def cancel_by_uuid(self, uuid_: str) -> dict:
        return self._private("DELETE", "/v1/order", {"uuid": uuid_})

    def cancel_order(self, identifier: str) -> dict:
        return self._private("DELETE", "/v1/order", {"identifier": identifier})

    def _private(self, method: str, path: str, params: dict | None = None, body: dict | None = None, expect: type = dict):
        group = "order" if path == "/v1/orders" and method == "POST" else "default"
        if self.remaining_req.get(group) == 0:
            # Upbit's budget is per second: the last answer said none is left, so wait for the next one.
            time.sleep(1.0 - (time.time() % 1.0))
            self.remaining_req.pop(group, None)
        signed = body if body is not None else params
        headers = {"Authorization": f"Bearer {token(self.api_key, self._secret, signed)}"}
        if body is not None:
            response = self._send(method, path, json=body, headers=headers)
        else:
            response = self._send(method, path, params=query_string(params) or None, headers=headers)
        self._track(response)
        if response.status_code not in (200, 201):
            raise self._error(response)
        return self._json(response, expect)

    def _track(self, response) -> None:
        header = response.headers.get("Remaining-Req")
        if header:
            parts = dict(p.strip().split("=", 1) for p in header.split(";") if "=" in p)
            if "sec" in parts and "group" in parts and parts["sec"].strip().isdigit():
                self.remaining_req[parts["group"]] = int(parts["sec"])

    def _error(self, response) -> ExchangeError:
        try:
            error = response.json()["error"]
            name, message = error.get("name"), error.get("message", "")
        except (ValueError, KeyError, TypeError):
            name, message = None, response.text[:200]
        kwargs = {"exchange": self.name, "status": response.status_code, "code": name}
        if response.status_code in (418, 429):
            # 429: wait for the next second; 418: Upbit's escalating block, so wait longer.
            return RateLimited(message or "rate limited", retry_after=1.0 if response.status_code == 429 else 30.0, **kwargs)
        if response.status_code == 401 or name in ("out_of_scope",):
            return AuthError(f"{name}: {message}", **kwargs)
        if name in ("insufficient_funds_ask", "insufficient_funds_bid"):
            return InsufficientFunds(message, **kwargs)
        if name == "duplicated_identifier":
            return DuplicateClientOrderId(message, **kwargs)
        if name == "order_not_found":
            return OrderNotFound(message, **kwargs)
        if response.status_code == 400:
            return InvalidOrder(f"{name}: {message}", **kwargs)
        return ExchangeError(f"{name}: {message}", **kwargs)
