"""The ledger: signals acted on or rejected, pairs, orders, fills, positions and balances.

The database is the record of truth; Redis holds the hot copy. Money is Decimal throughout.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import models

from .fields import MoneyField


class Venue(models.TextChoices):
    UPBIT = "upbit"
    BINANCE = "binance"
    # Coins on their way between the venues: ledger holdings of ours, valued at the destination's mark.
    TO_UPBIT = "to_upbit"
    TO_BINANCE = "to_binance"


def transit(to_venue: str) -> str:
    return f"to_{to_venue}"


class Side(models.TextChoices):
    BUY = "buy"
    SELL = "sell"


class Signal(models.Model):
    """An opportunity the engine acted on, or that a guard check rejected (with the reason)."""

    class Outcome(models.TextChoices):
        EXECUTED = "executed"
        REJECTED = "rejected"
        FAILED = "failed"

    symbol = models.CharField(max_length=20, db_index=True)
    buy_exchange = models.CharField(max_length=10, choices=Venue.choices)
    sell_exchange = models.CharField(max_length=10, choices=Venue.choices)
    buy_price = MoneyField(help_text="KRW, volume-weighted for the size")
    sell_price = MoneyField(help_text="KRW, volume-weighted for the size")
    quantity = MoneyField()
    spread = MoneyField()
    spread_pct = MoneyField()
    net_spread_pct = MoneyField()
    fx_rate = MoneyField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices, db_index=True)
    reason = models.CharField(max_length=300, blank=True)
    detected_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.symbol} {self.buy_exchange}->{self.sell_exchange} {self.net_spread_pct}% {self.outcome}"


class Pair(models.Model):
    """Two legs sent together: buy on one venue, sell on the other. One row per attempt."""

    class Kind(models.TextChoices):
        OPEN = "open"
        CLOSE = "close"

    class State(models.TextChoices):
        """The outcome. PENDING until the lifecycle closes; a live pair is never FAILED while a leg may exist."""

        PENDING = "pending"
        FILLED = "filled"
        PARTIAL = "partial"  # legs filled unequally; the imbalance is recorded and hedged
        FAILED = "failed"  # nothing traded (both legs refused, or never arrived)

    class Stage(models.TextChoices):
        """Where the lifecycle stands; each stage is committed before the external calls it leads to,
        so a resume after any crash knows which calls may have happened."""

        PLANNED = "planned"  # recorded; no order sent
        SENDING = "sending"  # leg orders recorded; they may have been sent
        UNWINDING = "unwinding"  # legs known; a hedge order is recorded and may have been sent
        CLOSED = "closed"  # every order known and booked; exposure zero or declared dust
        FLAGGED = "flagged"  # an order's outcome is still unknown, or an unwind fell short: exposure named

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    symbol = models.CharField(max_length=20, db_index=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.OPEN)
    signal = models.ForeignKey(Signal, null=True, blank=True, on_delete=models.SET_NULL)
    buy_exchange = models.CharField(max_length=10, choices=Venue.choices)
    sell_exchange = models.CharField(max_length=10, choices=Venue.choices)
    mode = models.CharField(max_length=10, default="paper")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    stage = models.CharField(max_length=10, choices=Stage.choices, default=Stage.PLANNED, db_index=True)
    lease_until = models.DateTimeField(null=True, blank=True, help_text="the executing worker owns the pair until then")
    requested_quantity = MoneyField(default=0)
    quantity = MoneyField(default=0)
    buy_price = MoneyField(default=0, help_text="KRW average")
    sell_price = MoneyField(default=0, help_text="KRW average")
    expected_buy_price = MoneyField(default=0)
    expected_sell_price = MoneyField(default=0)
    hedge_pnl = MoneyField(default=0, help_text="KRW: the unwinds' price difference, part of gross_pnl")
    gross_pnl = MoneyField(default=0, help_text="KRW")
    fees = MoneyField(default=0, help_text="KRW")
    net_pnl = MoneyField(default=0, help_text="KRW")
    pnl_pct = MoneyField(default=0)
    fx_rate = MoneyField(default=0)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.kind} {self.symbol} {self.buy_exchange}->{self.sell_exchange} {self.state}"


class Order(models.Model):
    class Role(models.TextChoices):
        LEG = "leg"  # one of the pair's two legs
        HEDGE = "hedge"  # unwinds an unequal fill

    class Status(models.TextChoices):
        NEW = "new"  # recorded before sending: it may or may not have reached the venue
        FILLED = "filled"
        PARTIALLY_FILLED = "partially_filled"
        REJECTED = "rejected"  # refused before it took effect
        ABSENT = "absent"  # looked up after it could have arrived, and never there
        CANCELED = "canceled"  # finished with nothing executed (an IOC that found no depth)
        UNKNOWN = "unknown"  # may exist; to be looked up again

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client_order_id = models.CharField(max_length=64, unique=True)
    exchange_order_id = models.CharField(max_length=64, blank=True)
    pair = models.ForeignKey(Pair, related_name="orders", null=True, blank=True, on_delete=models.PROTECT)
    exchange = models.CharField(max_length=10, choices=Venue.choices)
    symbol = models.CharField(max_length=20, db_index=True)
    side = models.CharField(max_length=4, choices=Side.choices)
    role = models.CharField(max_length=5, choices=Role.choices, default=Role.LEG)
    quantity = MoneyField()
    price = MoneyField(help_text="limit price in the venue's quote (0: at market)")
    sent_at = models.DateTimeField(null=True, blank=True, help_text="when the order was (about to be) sent")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.NEW, db_index=True)
    filled_quantity = MoneyField(default=0)
    average_price = MoneyField(default=0)
    fee = MoneyField(default=0)
    fee_asset = models.CharField(max_length=10, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.exchange} {self.side} {self.quantity} {self.symbol} ({self.status})"


class Fill(models.Model):
    order = models.ForeignKey(Order, related_name="fills", on_delete=models.PROTECT)
    trade_id = models.CharField(max_length=64, blank=True, help_text="the venue's trade id: each is booked once")
    price = MoneyField()
    quantity = MoneyField()
    fee = MoneyField()
    fee_asset = models.CharField(max_length=10)
    fee_krw = MoneyField(null=True, blank=True,
                         help_text="the fee in KRW when filled (a BNB fee at BNB's price then); empty: it could not be valued")
    fee_note = models.CharField(max_length=200, blank=True, help_text="how the fee was charged and valued, when not plainly")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["order", "trade_id"], condition=~models.Q(trade_id=""),
                                               name="one_fill_per_trade")]

    def __str__(self):
        return f"{self.quantity} @ {self.price} (fee {self.fee} {self.fee_asset})"


class Position(models.Model):
    """An open premium trade: bought on one venue, sold on the other; closed by the reverse pair."""

    symbol = models.CharField(max_length=20, unique=True)
    side = models.CharField(max_length=20, help_text="long_upbit (bought Upbit, sold Binance) or long_binance")
    quantity = MoneyField(default=0)
    entry_buy_price = MoneyField(default=0, help_text="KRW")
    entry_sell_price = MoneyField(default=0, help_text="KRW")
    entry_fees = MoneyField(default=0, help_text="KRW")
    opened_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.symbol} {self.side} {self.quantity}"

    @property
    def buy_exchange(self) -> str:
        return Venue.UPBIT if self.side == "long_upbit" else Venue.BINANCE

    @property
    def sell_exchange(self) -> str:
        return Venue.BINANCE if self.side == "long_upbit" else Venue.UPBIT


class LedgerEntry(models.Model):
    """Every change to a balance: starting funds, each fill's two sides, each fee."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit"  # a flow in: never performance
        WITHDRAWAL = "withdrawal"  # a flow out
        TRADE = "trade"
        FEE = "fee"
        TRANSFER = "transfer"  # our own coins moving between the venues: never PnL

    venue = models.CharField(max_length=10, choices=Venue.choices)
    asset = models.CharField(max_length=10)
    amount = MoneyField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    value_krw = MoneyField(null=True, blank=True,
                           help_text="KRW value of the amount when booked (flows at the marks, trades at the fill's rate)")
    fill = models.ForeignKey(Fill, null=True, blank=True, on_delete=models.PROTECT)
    transfer = models.ForeignKey("Transfer", null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["venue", "asset"])]

    def __str__(self):
        return f"{self.venue} {self.asset} {self.amount} ({self.kind})"


class Balance(models.Model):
    """The running sum of the ledger per venue and asset, updated in the same transaction."""

    venue = models.CharField(max_length=10, choices=Venue.choices)
    asset = models.CharField(max_length=10)
    amount = MoneyField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["venue", "asset"], name="one_balance_per_venue_asset")]

    def __str__(self):
        return f"{self.venue} {self.asset} {self.amount}"


class EquitySnapshot(models.Model):
    """Equity and flows at a moment, per the accounting model (docs/ACCOUNTING.md); the daily figures
    start from the first snapshot of the trading day."""

    taken_at = models.DateTimeField(db_index=True)
    equity = MoneyField(help_text="KRW: every balance at its mark")
    flows = MoneyField(help_text="KRW: deposits less withdrawals, each at its value when booked")
    realized = MoneyField(help_text="KRW")
    unrealized = MoneyField(help_text="KRW")
    fx_rate = MoneyField()
    usdt_exposure = MoneyField(default=0, help_text="USDT-priced holdings in USDT (for the FX part of revaluation)")
    trading_pnl = MoneyField(default=0, help_text="KRW: sum of net PnL of the pairs closed so far")

    class Meta:
        ordering = ["-taken_at"]

    def __str__(self):
        return f"{self.taken_at:%Y-%m-%d %H:%M:%S} equity {self.equity} flows {self.flows}"


class FeeSchedule(models.Model):
    """What a venue charges one account: edited in the admin, every change audited (trading/fees.py).

    Binance's rates follow the VIP tier unless set here; paying fees in BNB takes the BNB discount
    off them (0.1 % -> 0.075 % at VIP 0). Without a row the settings' taker rates apply.
    """

    venue = models.CharField(max_length=10, choices=Venue.choices)
    account = models.CharField(max_length=40, default="default", help_text="the account label (FEE_ACCOUNT)")
    vip_tier = models.PositiveSmallIntegerField(default=0, help_text="Binance VIP tier (0-9); Upbit has none (0)")
    taker_rate = models.DecimalField(max_digits=10, decimal_places=8, null=True, blank=True,
                                     help_text="fraction (0.001 = 0.1 %); empty: the venue's published rate for the tier")
    maker_rate = models.DecimalField(max_digits=10, decimal_places=8, null=True, blank=True,
                                     help_text="fraction; empty: the published rate for the tier")
    pay_fees_in_bnb = models.BooleanField(default=False, help_text="Binance: fees paid in BNB (spot BNB burn)")
    bnb_discount_pct = models.DecimalField(max_digits=6, decimal_places=3, default=25,
                                           help_text="Binance: discount when fees are paid in BNB, in %")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["venue", "account"], name="one_fee_schedule_per_account")]
        ordering = ["venue", "account"]

    def __str__(self):
        return f"{self.venue} fees ({self.account})"

    def clean(self):
        from django.core.exceptions import ValidationError

        errors = {}
        if self.venue == Venue.UPBIT and self.vip_tier:
            errors["vip_tier"] = "Upbit has no VIP tiers"
        if self.venue == Venue.UPBIT and self.pay_fees_in_bnb:
            errors["pay_fees_in_bnb"] = "only Binance takes fees in BNB"
        if self.vip_tier > 9:
            errors["vip_tier"] = "Binance's tiers are VIP 0 to VIP 9"
        for name in ("taker_rate", "maker_rate"):
            rate = getattr(self, name)
            if rate is not None and not 0 <= rate < 1:
                errors[name] = "a fraction of the notional, at least 0 and below 1"
        if self.bnb_discount_pct is not None and not 0 <= self.bnb_discount_pct < 100:
            errors["bnb_discount_pct"] = "a percentage from 0 to below 100"
        if errors:
            raise ValidationError(errors)


class CoinStrategy(models.Model):
    """How a coin is traded, chosen in admin per coin ("*" is the default for every other coin)."""

    class Name(models.TextChoices):
        SPREAD = "spread", "spread: take a net spread at once; close on stop-loss / take-profit"
        CONVERGENCE = "convergence", "convergence: open far from the premium's rolling mean, close on reversion"
        INVENTORY = "inventory", "inventory: buy cheap, sell dear from inventory; the rebalancer moves coins back"

    symbol = models.CharField(max_length=20, unique=True, default="*")
    strategy = models.CharField(max_length=20, choices=Name.choices, default=Name.SPREAD)
    entry_deviation_pct = models.DecimalField(default=Decimal("0.5"), max_digits=8, decimal_places=4,
                                              help_text="convergence: open when the premium is this far from its mean")
    exit_deviation_pct = models.DecimalField(default=Decimal("0.1"), max_digits=8, decimal_places=4,
                                             help_text="convergence: close when it is back within this")
    lookback_seconds = models.PositiveIntegerField(default=3600, help_text="the rolling mean's window")
    min_samples = models.PositiveIntegerField(default=60, help_text="no convergence trade on less history")
    transfer_cost_pct = models.DecimalField(default=Decimal("0.05"), max_digits=8, decimal_places=4,
                                            help_text="inventory: the transfers' cost per pair (amortised), added to "
                                                      "the minimum net spread; the rebalancer's measured cost wins if higher")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "coin strategies"

    def __str__(self):
        return f"{self.symbol}: {self.strategy}"


class Transfer(models.Model):
    """Coins moved from one venue to the other: a withdrawal there, a deposit here.

    planned -> sent (the withdrawal is recorded and may exist) -> in_transit (the sender took it:
    ledger moved to the transit holding) -> arrived (credited here: ledger moved on), or failed
    (nothing left the account), or flagged (unknown, or stuck past its expected time).
    """

    class Stage(models.TextChoices):
        PLANNED = "planned"
        SENT = "sent"
        IN_TRANSIT = "in_transit"
        ARRIVED = "arrived"
        FAILED = "failed"
        FLAGGED = "flagged"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    asset = models.CharField(max_length=10)
    from_venue = models.CharField(max_length=10, choices=Venue.choices)
    to_venue = models.CharField(max_length=10, choices=Venue.choices)
    network = models.CharField(max_length=20)
    amount = MoneyField(help_text="what arrives at the destination")
    fee = MoneyField(default=0, help_text="the sending venue's network fee, in the asset")
    value_krw = MoneyField(default=0, help_text="the amount at the marks when planned (for the caps)")
    address = models.CharField(max_length=200, help_text="our own deposit address there, read from its API")
    tag = models.CharField(max_length=100, blank=True)
    client_id = models.CharField(max_length=40, unique=True)
    withdrawal_id = models.CharField(max_length=80, blank=True)
    txid = models.CharField(max_length=200, blank=True)
    stage = models.CharField(max_length=12, choices=Stage.choices, default=Stage.PLANNED, db_index=True)
    reason = models.CharField(max_length=300, blank=True, help_text="why it was made (the rebalancer's words)")
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    arrived_at = models.DateTimeField(null=True, blank=True)
    expected_by = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.amount} {self.asset} {self.from_venue}->{self.to_venue} ({self.stage})"
