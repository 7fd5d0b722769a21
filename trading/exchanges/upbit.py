"""Upbit REST, authenticated with an HS512 JWT carrying a SHA512 hash of the query (docs/venue.md, Upbit authentication)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import unquote, urlencode

import jwt

from marketdata.rules import UPBIT_MIN_ORDER_KRW, UPBIT_VOLUME_STEP, ceil_to_step, floor_to_step, upbit_krw_tick

from .base import ExchangeAdapter, _NotSent
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

log = logging.getLogger(__name__)


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

    # --- transfers (issue 10) -----------------------------------------------------------------
    # Upbit signs no timestamp, so nothing bounds how late a request could still be processed: a
    # withdrawal is called absent only this long after it was sent (well past any client timeout).
    transfer_absent_after_s = 30.0
    WITHDRAWAL_STATE = {
        "WAITING": TransferStatus.PENDING, "PROCESSING": TransferStatus.PENDING, "DONE": TransferStatus.DONE,
        "FAILED": TransferStatus.FAILED, "CANCELLED": TransferStatus.FAILED, "REJECTED": TransferStatus.FAILED,
        # the legacy lower-case vocabulary
        "submitting": TransferStatus.PENDING, "submitted": TransferStatus.PENDING, "almost_accepted": TransferStatus.PENDING,
        "processing": TransferStatus.PENDING, "accepted": TransferStatus.DONE, "done": TransferStatus.DONE,
        "rejected": TransferStatus.FAILED, "canceled": TransferStatus.FAILED,
    }
    DEPOSIT_STATE = {
        "PROCESSING": TransferStatus.PENDING, "ACCEPTED": TransferStatus.DONE, "TRAVEL_RULE_SUSPECTED": TransferStatus.HELD,
        "WARNING": TransferStatus.HELD, "REFUNDING": TransferStatus.HELD, "CANCELLED": TransferStatus.FAILED,
        "REJECTED": TransferStatus.FAILED, "REFUNDED": TransferStatus.FAILED,
        "submitting": TransferStatus.PENDING, "submitted": TransferStatus.PENDING, "almost_accepted": TransferStatus.PENDING,
        "processing": TransferStatus.PENDING, "accepted": TransferStatus.DONE, "rejected": TransferStatus.FAILED,
        "canceled": TransferStatus.FAILED,
    }

    def networks(self, asset: str) -> list[NetworkInfo]:
        """The asset's net_types from GET /v1/status/wallet, each with GET /v1/withdraws/chance (fee,
        minimum, decimal places, "withdraw" in wallet_support) and GET /v1/deposits/chance/coin."""
        out = []
        for wallet in self._private("GET", "/v1/status/wallet", expect=list):
            if wallet.get("currency") != asset or not wallet.get("net_type"):
                continue
            params = {"currency": asset, "net_type": wallet["net_type"]}
            chance = self._private("GET", "/v1/withdraws/chance", params)
            deposit = self._private("GET", "/v1/deposits/chance/coin", params)
            try:
                limit, currency = chance["withdraw_limit"], chance["currency"]
                fixed = limit.get("fixed")
                out.append(NetworkInfo(
                    self.name, asset, wallet["net_type"],
                    "withdraw" in (currency.get("wallet_support") or ()) and limit.get("can_withdraw", True) is not False,
                    bool(deposit.get("is_deposit_possible")), Decimal(currency["withdraw_fee"]),
                    Decimal(limit.get("minimum") or "0"), Decimal(1).scaleb(-int(fixed)) if fixed is not None else Decimal(0),
                    int(deposit.get("minimum_deposit_confirmations") or 0)))
            except (KeyError, TypeError, ArithmeticError, ValueError) as exc:
                raise UnknownOutcome(f"upbit withdrawal chance without {exc}", exchange=self.name) from None
        return out

    def deposit_address(self, asset: str, network: str) -> DepositAddress:
        """The existing address, else POST /v1/deposits/generate_coin_address until it is made
        (Upbit makes it asynchronously), within the look-up budget."""
        params = {"currency": asset, "net_type": network}
        try:
            body = self._private("GET", "/v1/deposits/coin_address", params)
        except ExchangeError as exc:
            if exc.status != 404:
                raise
            body = {}
        deadline = time.monotonic() + self.lookup_budget_s
        attempt = 0
        while not body.get("deposit_address"):
            if attempt and not self._sleep_within(deadline, min(0.2 * 2 ** (attempt - 1), 1.5)):
                raise ExchangeError(f"upbit: the {asset}/{network} deposit address is still being made", exchange=self.name)
            body = self._private("POST", "/v1/deposits/generate_coin_address", body=dict(params))
            attempt += 1
        return DepositAddress(self.name, asset, body.get("net_type") or network, body["deposit_address"],
                              body.get("secondary_address") or "")

    def registered_addresses(self, asset: str) -> list[DepositAddress]:
        """The withdrawal allow-list (registered on Upbit's website, never by API)."""
        return [DepositAddress(self.name, r["currency"], r.get("net_type") or "", r["withdraw_address"],
                               r.get("secondary_address") or "")
                for r in self._private("GET", "/v1/withdraws/coin_addresses", expect=list) if r.get("currency") == asset]

    def deposits(self, asset: str, since_ms: int, *, max_pages: int = 10) -> list[TransferReport]:
        """GET /v1/deposits newest first, page by page. Upbit's created_at has whole seconds, so the
        deposits of since_ms's own second are all included."""
        since = since_ms // 1000 * 1000
        out = []
        for page in range(1, max_pages + 1):
            rows = self._private("GET", "/v1/deposits", {"currency": asset, "limit": 100, "page": page, "order_by": "desc"},
                                 expect=list)
            for row in rows:
                if _epoch_ms(row.get("created_at")) >= since:
                    out.append(self._transfer(row, "deposit"))
            if len(rows) < 100 or (rows and _epoch_ms(rows[-1].get("created_at")) < since):
                break
        return out

    def _withdraw(self, req: WithdrawalRequest) -> TransferReport:
        """POST /v1/withdraws/coin: `amount` arrives, Upbit's fee is charged on top. The address
        must be on the account's allow-list. Upbit takes no client id: the report's is ours."""
        if not req.network:
            raise _NotSent("an Upbit withdrawal needs its net_type")
        body = {"currency": req.asset, "net_type": req.network, "amount": f"{req.amount:f}", "address": req.address}
        if req.tag:
            body["secondary_address"] = req.tag
        body["transaction_type"] = "default"
        report = self._transfer(self._private("POST", "/v1/withdraws/coin", body=body), "withdrawal")
        return dataclasses.replace(report, client_id=req.client_id, address=req.address)

    def _find_withdrawal(self, asset: str, client_id: str, transfer_id: str, sent_at: float | None,
                         amount: Decimal | None, address: str) -> TransferReport | None:
        """By uuid (GET /v1/withdraw) when known; else the one recent withdrawal of the currency with
        that amount created after `sent_at` (Upbit reports neither a client id nor the address, and
        `created_at` in whole seconds, hence a second of slack). Several such: not decidable here."""
        if transfer_id:
            try:
                row = self._private("GET", "/v1/withdraw", {"uuid": transfer_id})
            except ExchangeError as exc:
                if exc.status == 404:
                    return None
                raise
            return dataclasses.replace(self._transfer(row, "withdrawal"), client_id=client_id, address=address)
        if amount is None:
            raise ExchangeError("neither a uuid nor an amount to find an Upbit withdrawal by", exchange=self.name)
        rows = self._private("GET", "/v1/withdraws", {"currency": asset, "limit": 100, "order_by": "desc"}, expect=list)
        since = None if sent_at is None else (sent_at - 1.0) * 1000
        matches = [r for r in rows if _decimal(r.get("amount")) == amount
                   and (since is None or _epoch_ms(r.get("created_at")) >= since)]
        if len(matches) > 1:
            raise ExchangeError(f"{len(matches)} {asset} withdrawals of {amount} since the send: cannot tell which",
                                exchange=self.name)
        if not matches:
            return None
        return dataclasses.replace(self._transfer(matches[0], "withdrawal"), client_id=client_id, address=address)

    def _transfer(self, row: dict, kind: str) -> TransferReport:
        try:
            states = self.WITHDRAWAL_STATE if kind == "withdrawal" else self.DEPOSIT_STATE
            state = row["state"]
            status = states.get(state, TransferStatus.UNKNOWN)
            return TransferReport(self.name, row["currency"], row.get("net_type") or "", kind, status,
                                  amount=Decimal(row["amount"]), fee=Decimal(row.get("fee") or "0"),
                                  transfer_id=row["uuid"], txid=row.get("txid") or "",
                                  error="" if status in (TransferStatus.PENDING, TransferStatus.DONE) else f"state {state}")
        except (KeyError, TypeError, ArithmeticError, ValueError) as exc:
            raise UnknownOutcome(f"upbit {kind} answer without {exc}", exchange=self.name) from None

    def _private(self, method: str, path: str, params: dict | None = None, body: dict | None = None, expect: type = dict):
        """One signed call. A read refused for rate (429, not a 418 ban) waits for the next second and asks again
        (twice at most): reading twice changes nothing; anything else is the caller's to judge."""
        for attempt in range(3):
            try:
                return self._private_once(method, path, params, body, expect)
            except RateLimited as exc:
                if method != "GET" or exc.status != 429 or attempt == 2:
                    raise  # a 418 is a ban: waiting a second would only prolong it
                time.sleep(1.0 - (time.time() % 1.0) + 0.01)

    def _private_once(self, method: str, path: str, params: dict | None, body: dict | None, expect: type):
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
        # Bookkeeping only: a garbage header is logged and ignored, never raised (the answer is
        # classified by status and body, so an order that may exist stays "unknown", not "rejected").
        try:
            header = response.headers.get("Remaining-Req")
            if not header:
                return
            parts = {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in str(header).split(";") if "=" in p)}
            sec, group = parts.get("sec", ""), parts.get("group", "")
            if group and sec.isascii() and sec.isdigit() and len(sec) <= 6:
                self.remaining_req[group] = int(sec)
        except Exception:  # noqa: BLE001
            log.warning("upbit: unreadable Remaining-Req header")

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


KST = timezone(timedelta(hours=9))


def _epoch_ms(text) -> float:
    """An Upbit timestamp in ms (KR answers carry +09:00, SG ones Z; one without an offset is KST)."""
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=KST)
    return moment.timestamp() * 1000


def _decimal(text) -> Decimal | None:
    try:
        return Decimal(str(text))
    except ArithmeticError:
        return None
