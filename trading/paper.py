"""The paper venue: the same interface as the signed adapters, filled against the live books in Redis.

An IOC limit takes the book's levels up to its limit price, a taker at each level; fees as each
venue charges them (Upbit in KRW on both sides; Binance in the asset received, or in BNB at BNB's
price when the fee schedule pays fees in BNB). Orders live in this
process only: after a crash a paper order is simply absent, and since the ledger is the paper
account, nothing else can disagree with it.
"""

from __future__ import annotations

from decimal import Decimal

from marketdata.rules import floor_to_step

from .exchanges.errors import OrderNotFound
from .exchanges.types import (
    DepositAddress,
    LegOrder,
    LegReport,
    LegStatus,
    NetworkInfo,
    OpenOrder,
    TradeFill,
    TransferReport,
    TransferStatus,
)
from .fees import BNB, bnb_price
from .fields import money
from .signals import BINANCE_MIN_NOTIONAL_USDT, UPBIT_MIN_ORDER_KRW, Fees

QUOTE = {"upbit": "KRW", "binance": "USDT"}
DEFAULT_STEP = Decimal("0.00000001")


class PaperVenue:
    remote = False  # its calls cost nothing: the executor sends legs one after the other

    def __init__(self, name: str, state, fees: Fees):
        self.name, self.quote = name, QUOTE[name]
        self.state, self.fee_rate = state, fees.of(name)
        # Binance with fees in BNB: the discounted rate, charged in BNB at BNB's price; without a BNB
        # price the full rate in the asset received (the fill's note says so).
        self.in_bnb = name == "binance" and fees.binance_in_bnb
        self.full_rate = (fees.binance_undiscounted or self.fee_rate) if self.in_bnb else self.fee_rate
        self._orders: dict[str, LegReport] = {}

    def step(self, symbol: str) -> Decimal:
        """Both paper venues trade in the coin's Binance lot step, so any fill can be hedged exactly."""
        rules = self.state.get_rules("binance", symbol)
        return Decimal(rules["step_size"]) if rules.get("step_size") else DEFAULT_STEP

    def submit(self, order: LegOrder) -> LegReport:
        book = self.state.get_book(self.name, order.symbol)
        if book is None:
            return LegReport(self.name, order.symbol, order.side, order.client_id, LegStatus.REJECTED,
                             quantity=order.quantity, error="no book")
        buying = order.side == "buy"
        levels = book.asks if buying else book.bids
        limit = order.limit_price
        wanted = floor_to_step(order.quantity, self.step(order.symbol))
        available = sum((size for price, size in levels
                         if limit is None or (price <= limit if buying else price >= limit)), Decimal(0))
        left = floor_to_step(min(wanted, available), self.step(order.symbol))
        fills = []
        bnb = bnb_price(self.state)[0] if self.in_bnb else None
        for i, (price, size) in enumerate(levels):
            if left <= 0 or (limit is not None and (price > limit if buying else price < limit)):
                break
            part = min(size, left)
            left -= part
            if bnb is not None:
                fee, asset = money(price * part * self.fee_rate / bnb), BNB
            elif self.name == "upbit" or not buying:
                fee, asset = money(price * part * self.full_rate), self.quote
            else:
                fee, asset = money(part * self.full_rate), order.symbol
            fills.append(TradeFill(f"{order.client_id}-{i}", price, part, fee, asset))
        executed = sum((f.quantity for f in fills), Decimal(0))
        report = LegReport(self.name, order.symbol, order.side, order.client_id, LegStatus.DONE, quantity=wanted,
                           executed=executed, quote_amount=sum((f.price * f.quantity for f in fills), Decimal(0)),
                           fills=tuple(fills), exchange_order_id=order.client_id,
                           error="" if executed else "no depth within the limit")
        self._orders[order.client_id] = report
        return report

    def lookup(self, symbol: str, client_id: str, *, side: str = "") -> LegReport:
        if client_id not in self._orders:
            raise OrderNotFound(f"paper order {client_id} unknown", exchange=self.name)
        return self._orders[client_id]

    def resolve(self, symbol: str, side: str, client_id: str, sent_at: float | None, first_error: str = "", *,
                exists: bool = False) -> LegReport:
        try:
            return self.lookup(symbol, client_id)
        except OrderNotFound:
            return LegReport(self.name, symbol, side, client_id, LegStatus.ABSENT, error="not in this process: never filled")

    def cancel(self, symbol: str, client_id: str) -> LegReport:
        return self.resolve(symbol, "", client_id, None)

    def open_orders(self) -> list[OpenOrder]:
        return []

    def cancel_open(self, order: OpenOrder) -> None:
        return None

    def balances(self) -> dict[str, Decimal]:
        return {}

    def tradable(self, symbol: str, quantity: Decimal, price: Decimal) -> Decimal:
        quantity = floor_to_step(quantity, self.step(symbol))
        minimum = UPBIT_MIN_ORDER_KRW if self.name == "upbit" else BINANCE_MIN_NOTIONAL_USDT
        return quantity if quantity > 0 and quantity * price >= minimum else Decimal(0)

    def limit_price(self, symbol: str, side: str, price: Decimal) -> Decimal:
        return price


class PaperTransfers:
    """Transfers between the paper venues: a network fee and a delay, nothing else to go wrong.

    One object plays both venues' wallets (the paper ledger is the only account): a withdrawal is
    accepted at once and its deposit is credited `delay_s` later. The fee is `fee_krw` worth of the
    coin at the sender's mark when asked (`networks` needs a price: `marks(venue, asset)`).
    """

    def __init__(self, name: str, marks, *, fee_krw: Decimal = Decimal("2000"), delay_s: float = 60.0, clock=None):
        import time

        self.name, self.marks, self.fee_krw, self.delay_s = name, marks, fee_krw, delay_s
        self.clock = clock or time.time
        self.peer: PaperTransfers | None = None
        self.withdrawals: dict[str, TransferReport] = {}
        self.incoming: list[tuple[float, TransferReport]] = []

    @classmethod
    def pair(cls, marks, **kwargs) -> dict[str, PaperTransfers]:
        upbit, binance = cls("upbit", marks, **kwargs), cls("binance", marks, **kwargs)
        upbit.peer, binance.peer = binance, upbit
        return {"upbit": upbit, "binance": binance}

    def networks(self, asset: str) -> list[NetworkInfo]:
        mark = self.marks(self.name, asset)
        fee = (self.fee_krw / mark).quantize(Decimal("0.00000001")) if mark else Decimal(0)
        return [NetworkInfo(self.name, asset, asset, True, True, fee, fee * 2, Decimal("0.00000001"), 1)]

    def deposit_address(self, asset: str, network: str) -> DepositAddress:
        return DepositAddress(self.name, asset, network, f"paper-{self.name}-{asset}")

    def registered_addresses(self, asset: str) -> list[DepositAddress]:
        return [self.peer.deposit_address(asset, asset)] if self.peer else []

    def withdraw(self, req) -> TransferReport:
        [info] = self.networks(req.asset)
        report = TransferReport(self.name, req.asset, req.network, "withdrawal", TransferStatus.DONE, amount=req.amount,
                                fee=info.withdraw_fee, transfer_id=req.client_id, client_id=req.client_id,
                                txid=f"paper-{req.client_id}", address=req.address)
        self.withdrawals[req.client_id] = report
        self.peer.incoming.append((self.clock() + self.delay_s, TransferReport(
            self.peer.name, req.asset, req.network, "deposit", TransferStatus.DONE, amount=req.amount, txid=report.txid)))
        return report

    def lookup_withdrawal(self, asset: str, client_id: str, **kwargs) -> TransferReport:
        return self.withdrawals.get(client_id) or TransferReport(self.name, asset, asset, "withdrawal", TransferStatus.ABSENT)

    def deposits(self, asset: str, since_ms: int) -> list[TransferReport]:
        now = self.clock()
        return [d for due, d in self.incoming if d.asset == asset and due <= now]
