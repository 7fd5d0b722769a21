"""Binance Spot REST, signed with HMAC-SHA256 (docs/venue.md, Binance authentication)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import time
from decimal import Decimal
from urllib.parse import urlencode

from marketdata.rules import BinanceFilters, ceil_to_step, floor_to_step

from .base import ExchangeAdapter, _NotSent, retry_after_seconds
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
from .types import (
    DepositAddress,
    LegOrder,
    LegReport,
    LegStatus,
    NetworkInfo,
    OpenOrder,
    TradeFill,
    TransferReport,
    TransferStatus,
    WithdrawalRequest,
)


def _retry_after(response) -> float:
    default = 120.0 if response.status_code == 418 else 1.0
    try:
        return retry_after_seconds(response.headers.get("Retry-After"), default)
    except Exception:  # noqa: BLE001 - a header is never an error of its own
        return default


def sign(secret: str, payload: str) -> str:
    """hex(HMAC-SHA256(secret, payload)); payload = percent-encoded query string + body."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


log = logging.getLogger(__name__)


class BinanceAdapter(ExchangeAdapter):
    name = "binance"
    quote = "USDT"

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

    @property
    def absent_after_s(self) -> float:
        """Binance refuses a request that arrives more than recvWindow after its signed timestamp, so a
        look-up that finds nothing after that (plus a second of margin) proves the order never arrived."""
        return self.recv_window / 1000 + 1.0

    def account(self) -> dict:
        return self._signed("GET", "/api/v3/account", {"omitZeroBalances": "true"})

    def balance_detail(self) -> dict[str, tuple[Decimal, Decimal]]:
        """asset -> (free, locked)."""
        return {b["asset"]: (Decimal(b["free"]), Decimal(b["locked"])) for b in self.account()["balances"]}

    def balances(self) -> dict[str, Decimal]:
        return {asset: free + locked for asset, (free, locked) in self.balance_detail().items()}

    # --- the venue-neutral interface -----------------------------------------------------------
    @staticmethod
    def market(symbol: str) -> str:
        return f"{symbol}USDT"

    def tradable(self, symbol: str, quantity: Decimal, price: Decimal) -> Decimal:
        f = self.filters(self.market(symbol))
        quantity = floor_to_step(quantity, f.step_size) if f.step_size else quantity
        if quantity <= 0 or f.quantity_error(quantity) or (f.min_notional and quantity * price < f.min_notional):
            return Decimal(0)
        return quantity

    def limit_price(self, symbol: str, side: str, price: Decimal) -> Decimal:
        """On the tick, never beyond the bound: a buy rounds down, a sell up."""
        tick = self.filters(self.market(symbol)).tick_size
        if not tick:
            return price
        return floor_to_step(price, tick) if side == "buy" else ceil_to_step(price, tick)

    def _place(self, order: LegOrder) -> LegReport:
        body = self.place_order(self.market(order.symbol), order.side.upper(), order.quantity, price=order.limit_price,
                                time_in_force=order.time_in_force.upper(), client_id=order.client_id)
        fills = tuple(TradeFill(str(f.get("tradeId", "")), Decimal(f["price"]), Decimal(f["qty"]), Decimal(f["commission"]),
                                f["commissionAsset"]) for f in body.get("fills") or ())
        return self._to_report(order.symbol, body, fills)

    def lookup(self, symbol: str, client_id: str, *, side: str = "") -> LegReport:
        """The order by client id; its fills (with their fees) from myTrades when anything executed."""
        body = self.get_order(self.market(symbol), client_id)
        fills: tuple[TradeFill, ...] = ()
        if Decimal(body.get("executedQty") or 0):
            trades = self._signed("GET", "/api/v3/myTrades", {"symbol": self.market(symbol), "orderId": body["orderId"]},
                                  expect=list)
            fills = tuple(TradeFill(str(t["id"]), Decimal(t["price"]), Decimal(t["qty"]), Decimal(t["commission"]),
                                    t["commissionAsset"]) for t in trades if t.get("orderId") == body["orderId"])
        return self._to_report(symbol, body, fills)

    def _to_report(self, symbol: str, body: dict, fills: tuple[TradeFill, ...]) -> LegReport:
        try:
            status = LegStatus.OPEN if body["status"] in self.OPEN_STATES else LegStatus.DONE
            executed = Decimal(body["executedQty"])
            return LegReport(self.name, symbol, body["side"].lower(), body["clientOrderId"], status,
                             quantity=Decimal(body["origQty"]), executed=executed,
                             quote_amount=sum((f.price * f.quantity for f in fills), Decimal(0)), fills=fills,
                             exchange_order_id=str(body["orderId"]))
        except (KeyError, TypeError, AttributeError, ArithmeticError) as exc:
            raise UnknownOutcome(f"binance order answer without {exc}", exchange=self.name) from None

    OPEN_STATES = frozenset({"NEW", "PARTIALLY_FILLED", "PENDING_NEW", "PENDING_CANCEL"})

    def _cancel(self, symbol: str, client_id: str) -> None:
        self.cancel_order(self.market(symbol), client_id)

    def cancel_open(self, order: OpenOrder) -> None:
        self._signed("DELETE", "/api/v3/order", {"symbol": self.market(order.symbol), "orderId": order.exchange_order_id})

    def open_orders(self) -> list[OpenOrder]:
        return [OpenOrder(self.name, o["symbol"].removesuffix("USDT"), o.get("clientOrderId", ""), str(o["orderId"]))
                for o in self.raw_open_orders()]

    # --- the wire calls ------------------------------------------------------------------------
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

    def raw_open_orders(self) -> list[dict]:
        return self._signed("GET", "/api/v3/openOrders", {}, expect=list)

    def cancel_order(self, market: str, client_id: str) -> dict:
        return self._signed("DELETE", "/api/v3/order", {"symbol": market, "origClientOrderId": client_id})

    # --- transfers (issue 10) -----------------------------------------------------------------
    # Withdrawal status: 0 email sent, 2 awaiting approval, 4 processing, 6 completed; 1 cancelled,
    # 3 rejected, 5 failure. Deposit status: 0 pending, 6 credited but locked, 1 success, 2 rejected,
    # 7 wrong deposit, 8 waiting for the user's confirmation.
    WITHDRAWAL_STATUS = {0: TransferStatus.PENDING, 2: TransferStatus.PENDING, 4: TransferStatus.PENDING,
                         6: TransferStatus.DONE, 1: TransferStatus.FAILED, 3: TransferStatus.FAILED, 5: TransferStatus.FAILED}
    DEPOSIT_STATUS = {0: TransferStatus.PENDING, 6: TransferStatus.HELD, 8: TransferStatus.HELD, 1: TransferStatus.DONE,
                      2: TransferStatus.FAILED, 7: TransferStatus.FAILED}

    def networks(self, asset: str) -> list[NetworkInfo]:
        """From GET /sapi/v1/capital/config/getall (every coin; weight 10). withdraw_min, withdraw_step
        and the fee are Binance's own: the minimum and the multiple apply to the requested amount,
        which here includes the fee (see withdraw)."""
        coins = self._signed("GET", "/sapi/v1/capital/config/getall", {}, expect=list)
        coin = next((c for c in coins if c.get("coin") == asset), None)
        if coin is None:
            return []
        try:
            return [NetworkInfo(self.name, asset, n["network"], bool(n["withdrawEnable"]), bool(n["depositEnable"]),
                                Decimal(n["withdrawFee"]), Decimal(n["withdrawMin"]), Decimal(n["withdrawIntegerMultiple"]),
                                int(n.get("minConfirm") or 0)) for n in coin.get("networkList") or ()]
        except (KeyError, TypeError, ArithmeticError, ValueError) as exc:
            raise UnknownOutcome(f"binance coin config without {exc}", exchange=self.name) from None

    def deposit_address(self, asset: str, network: str) -> DepositAddress:
        body = self._signed("GET", "/sapi/v1/capital/deposit/address", {"coin": asset, "network": network})
        if not body.get("address"):
            raise UnknownOutcome(f"binance deposit address answer without an address for {asset}/{network}", exchange=self.name)
        return DepositAddress(self.name, asset, network, body["address"], body.get("tag") or "")

    def deposits(self, asset: str, since_ms: int) -> list[TransferReport]:
        rows = self._signed("GET", "/sapi/v1/capital/deposit/hisrec", {"coin": asset, "startTime": int(since_ms)}, expect=list)
        return [self._deposit_report(r) for r in rows if int(r.get("insertTime") or 0) >= since_ms]

    def _withdraw(self, req: WithdrawalRequest) -> TransferReport:
        """POST /sapi/v1/capital/withdraw/apply with `withdrawOrderId` = the request's client id.

        Binance's `amount` is taken as the amount to debit, fee included (the venue's convention: the
        receiver gets amount - fee; history reports the two apart), so the adapter asks for
        req.amount + the network's current fee, read just before, and req.amount arrives. Signed
        once: a -1021 here is a refusal (FAILED), never re-signed and resent.
        """
        if not req.client_id:
            raise _NotSent("a Binance withdrawal needs a client id (withdrawOrderId) to be looked up by")
        try:
            info = next((n for n in self.networks(req.asset) if n.network == req.network), None)
        except Exception as exc:  # noqa: BLE001 — nothing has been sent yet
            raise _NotSent(f"the {req.asset} network fee could not be read ({type(exc).__name__}: {exc})") from None
        if info is None:
            raise _NotSent(f"binance has no {req.network} network for {req.asset}")
        params = {"coin": req.asset, "network": req.network, "address": req.address,
                  "amount": f"{req.amount + info.withdraw_fee:f}", "withdrawOrderId": req.client_id}
        if req.tag:
            params["addressTag"] = req.tag
        body = self._signed("POST", "/sapi/v1/capital/withdraw/apply", params, resynced=True)
        transfer_id = body.get("id")
        if not isinstance(transfer_id, str) or not transfer_id:
            raise UnknownOutcome("binance withdraw answer without an id", exchange=self.name)
        return TransferReport(self.name, req.asset, req.network, "withdrawal", TransferStatus.PENDING, amount=req.amount,
                              fee=info.withdraw_fee, transfer_id=transfer_id, client_id=req.client_id, address=req.address)

    def _find_withdrawal(self, asset: str, client_id: str, transfer_id: str, sent_at: float | None,
                         amount: Decimal | None, address: str) -> TransferReport | None:
        """GET /sapi/v1/capital/withdraw/history by id (idList) or by withdrawOrderId (last 7 days)."""
        if transfer_id:
            params = {"coin": asset, "idList": transfer_id}
        elif client_id:
            params = {"coin": asset, "withdrawOrderId": client_id}
        else:
            raise ExchangeError("neither an id nor a client id to look a Binance withdrawal up by", exchange=self.name)
        rows = [r for r in self._signed("GET", "/sapi/v1/capital/withdraw/history", params, expect=list)
                if (r.get("id") == transfer_id if transfer_id else r.get("withdrawOrderId") == client_id)]
        if not rows:
            return None
        report = self._withdrawal_report(rows[-1])  # newest first: the last is the first sent
        if len(rows) > 1:
            log.error("binance: %d withdrawals carry withdrawOrderId %s", len(rows), client_id)
            report = dataclasses.replace(report, error=f"{len(rows)} withdrawals carry this client id")
        return report

    def _withdrawal_report(self, row: dict) -> TransferReport:
        try:
            status = self.WITHDRAWAL_STATUS.get(int(row["status"]), TransferStatus.UNKNOWN)
            return TransferReport(self.name, row["coin"], row.get("network") or "", "withdrawal", status,
                                  amount=Decimal(row["amount"]), fee=Decimal(row.get("transactionFee") or "0"),
                                  transfer_id=str(row["id"]), client_id=row.get("withdrawOrderId") or "",
                                  txid=row.get("txId") or "", address=row.get("address") or "",
                                  error="" if status in (TransferStatus.PENDING, TransferStatus.DONE)
                                  else (row.get("info") or f"status {row['status']}"))
        except (KeyError, TypeError, ArithmeticError, ValueError) as exc:
            raise UnknownOutcome(f"binance withdrawal record without {exc}", exchange=self.name) from None

    def _deposit_report(self, row: dict) -> TransferReport:
        try:
            status = self.DEPOSIT_STATUS.get(int(row["status"]), TransferStatus.UNKNOWN)
            return TransferReport(self.name, row["coin"], row.get("network") or "", "deposit", status,
                                  amount=Decimal(row["amount"]), transfer_id=str(row.get("id") or ""),
                                  txid=row.get("txId") or "", address=row.get("address") or "",
                                  error="" if status in (TransferStatus.PENDING, TransferStatus.DONE) else f"status {row['status']}")
        except (KeyError, TypeError, ArithmeticError, ValueError) as exc:
            raise UnknownOutcome(f"binance deposit record without {exc}", exchange=self.name) from None

    # --- plumbing ----------------------------------------------------------------------------
    def _public(self, method: str, path: str, params: dict | None = None, expect: type = dict):
        response = self._send(method, path, params=params)
        self._track(response)
        if response.status_code != 200:
            raise self._error(response)
        return self._json(response, expect)

    def _signed(self, method: str, path: str, params: dict, expect: type = dict, *, resynced: bool = False):
        query = dict(params)
        query["recvWindow"] = self.recv_window
        query["timestamp"] = int(time.time() * 1000) + self.clock_offset_ms
        encoded = urlencode(query)
        url = f"{path}?{encoded}&signature={sign(self._secret, encoded)}"
        response = self._send(method, url, headers={"X-MBX-APIKEY": self.api_key}, allow_redirects=False)
        self._track(response)
        if response.status_code != 200:
            error = self._error(response)
            if error.code == -1021 and not resynced:
                # Our clock left the receive window; the request was not processed. Measure and retry once.
                self.sync_clock()
                return self._signed(method, path, params, expect, resynced=True)
            raise error
        return self._json(response, expect)

    def _track(self, response) -> None:
        # Bookkeeping only: a garbage header is logged and ignored, never raised (the answer is
        # classified by status and body, so an order that may exist stays "unknown", not "rejected").
        try:
            headers = list(response.headers.items())
        except Exception:  # noqa: BLE001
            return
        for header, value in headers:
            try:
                if str(header).upper().startswith("X-MBX-USED-WEIGHT-"):
                    text = str(value).strip()
                    if not (text.isascii() and text.isdigit() and len(text) <= 9):
                        raise ValueError("not a small decimal integer")
                    weight = int(text)
                    self.used_weight[str(header).upper().removeprefix("X-MBX-USED-WEIGHT-")] = weight
            except Exception:  # noqa: BLE001
                log.warning("binance: unreadable %s header", str(header)[:60])

    def _error(self, response) -> ExchangeError:
        try:
            body = response.json()
            code, msg = body.get("code"), str(body.get("msg", ""))
        except (ValueError, AttributeError):
            code, msg = None, response.text[:200]
        kwargs = {"exchange": self.name, "status": response.status_code, "code": code}
        if response.status_code in (418, 429) or code == -1003:
            return RateLimited(msg or "rate limited", retry_after=_retry_after(response), **kwargs)
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
