"""Binance Spot REST, signed with HMAC-SHA256 (EXCHANGES.md A3)."""

from __future__ import annotations

import hashlib
import hmac
import time
from decimal import Decimal
from urllib.parse import urlencode

from marketdata.rules import BinanceFilters, ceil_to_step, floor_to_step

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


def sign(secret: str, payload: str) -> str:
    """hex(HMAC-SHA256(secret, payload)); payload = percent-encoded query string + body."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class BinanceAdapter(ExchangeAdapter):
    name = "binance"

    def __init__(self, *args, recv_window: int = 5000, **kwargs):
        super().__init__(*args, **kwargs)
        self.recv_window = recv_window
        self.clock_offset_ms = 0
        self.used_weight: dict[str, int] = {}
        self._filters: dict[str, BinanceFilters] = {}

    def sync_clock(self) -> int:
        """Measure the server clock's offset so signed timestamps stay inside recvWindow (no -1021 storms)."""
        before = time.time() * 1000
        server = self._public("GET", "/api/v3/time")["serverTime"]
        after = time.time() * 1000
        self.clock_offset_ms = int(server - (before + after) / 2)
        return self.clock_offset_ms

    def account(self) -> dict:
        return self._signed("GET", "/api/v3/account", {"omitZeroBalances": "true"})

    def balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        """asset -> (free, locked)."""
        return {b["asset"]: (Decimal(b["free"]), Decimal(b["locked"])) for b in self.account()["balances"]}

    # --- orders ------------------------------------------------------------------------------
    def filters(self, market: str) -> BinanceFilters:
        """PRICE_FILTER / LOT_SIZE / NOTIONAL of a symbol, read once per adapter."""
        if market not in self._filters:
            info = self._public("GET", "/api/v3/exchangeInfo", {"symbol": market})
            self._filters[market] = BinanceFilters.from_exchange_info(info["symbols"][0]["filters"])
        return self._filters[market]

    def prepare(self, market: str, side: str, quantity: Decimal, price: Decimal | None) -> tuple[Decimal, Decimal | None]:
        """Round to the exchange's rules the safe way (buy price down, sell price up, size down), or refuse."""
        f = self.filters(market)
        quantity = floor_to_step(quantity, f.step_size) if f.step_size else quantity
        if price is not None and f.tick_size:
            price = floor_to_step(price, f.tick_size) if side == "BUY" else ceil_to_step(price, f.tick_size)
        problem = f.quantity_error(quantity) or (f.price_error(price) if price is not None else None)
        if not problem and price is not None:
            problem = f.notional_error(price * quantity)
        if problem:
            raise InvalidOrder(f"{market} {side} {quantity} @ {price}: would fail {problem}", exchange=self.name)
        return quantity, price

    def place_order(self, market: str, side: str, quantity: Decimal, *, price: Decimal | None = None,
                    time_in_force: str = "IOC", client_id: str) -> dict:
        """A LIMIT (with price) or MARKET order; FULL response."""
        quantity, price = self.prepare(market, side, quantity, price)
        params = {"symbol": market, "side": side, "type": "LIMIT" if price is not None else "MARKET",
                  "quantity": f"{quantity:f}", "newClientOrderId": client_id, "newOrderRespType": "FULL"}
        if price is not None:
            params.update(price=f"{price:f}", timeInForce=time_in_force)
        return self._signed("POST", "/api/v3/order", params)

    def get_order(self, market: str, client_id: str) -> dict:
        return self._signed("GET", "/api/v3/order", {"symbol": market, "origClientOrderId": client_id})

    def open_orders(self) -> list[dict]:
        return self._signed("GET", "/api/v3/openOrders", {})

    def cancel_order(self, market: str, client_id: str) -> dict:
        return self._signed("DELETE", "/api/v3/order", {"symbol": market, "origClientOrderId": client_id})

    def place_order_safely(self, market: str, side: str, quantity: Decimal, *, client_id: str,
                           price: Decimal | None = None, time_in_force: str = "IOC", lookups: int = 5) -> dict:
        """Place once, whatever the network does: after an unknown outcome, look the order up by its
        client id before anything else, and never send it again while it may exist."""
        try:
            return self._with_backoff(lambda: self.place_order(market, side, quantity, price=price,
                                                               time_in_force=time_in_force, client_id=client_id))
        except UnknownOutcome as first:
            return self._recover(client_id, lambda: self.get_order(market, client_id), first, lookups)

    # --- plumbing ----------------------------------------------------------------------------
    def _public(self, method: str, path: str, params: dict | None = None):
        response = self._send(method, path, params=params)
        self._track(response)
        if response.status_code != 200:
            raise self._error(response)
        return response.json()

    def _signed(self, method: str, path: str, params: dict):
        query = dict(params)
        query["recvWindow"] = self.recv_window
        query["timestamp"] = int(time.time() * 1000) + self.clock_offset_ms
        encoded = urlencode(query)
        url = f"{path}?{encoded}&signature={sign(self._secret, encoded)}"
        response = self._send(method, url, headers={"X-MBX-APIKEY": self.api_key}, allow_redirects=False)
        self._track(response)
        if response.status_code != 200:
            raise self._error(response)
        return response.json()

    def _track(self, response) -> None:
        for header, value in response.headers.items():
            if header.upper().startswith("X-MBX-USED-WEIGHT-"):
                self.used_weight[header.upper().removeprefix("X-MBX-USED-WEIGHT-")] = int(value)

    def _error(self, response) -> ExchangeError:
        try:
            body = response.json()
            code, msg = body.get("code"), body.get("msg", "")
        except ValueError:
            code, msg = None, response.text[:200]
        kwargs = {"exchange": self.name, "status": response.status_code, "code": code}
        if response.status_code in (418, 429) or code == -1003:
            return RateLimited(msg or "rate limited", retry_after=float(response.headers.get("Retry-After", 1)), **kwargs)
        if code in (-1021, -1022, -2014, -2015):
            return AuthError(msg, **kwargs)
        if code == -2010 and "insufficient balance" in msg.lower():
            return InsufficientFunds(msg, **kwargs)
        if code == -2010 and "duplicate" in msg.lower():
            return DuplicateClientOrderId(msg, **kwargs)
        if code in (-2011, -2013):
            return OrderNotFound(msg, **kwargs)
        if code in (-1013, -1100, -1102, -1121, -2010):
            return InvalidOrder(msg, **kwargs)
        return ExchangeError(msg or f"HTTP {response.status_code}", **kwargs)
