"""Fees as charged: each venue's rates for the trading account, and fees paid in BNB valued in KRW.

**Rates.** A `FeeSchedule` row per venue and account label (`FEE_ACCOUNT`, default "default") is
edited in the admin; every change is audited and bumps the controls' version, so every worker
re-reads the rates before its next evaluation (as the guard limits). Binance's rates follow its
published VIP tier table unless set on the row; paying fees in BNB takes the BNB discount off them:

    binance taker = (row's taker rate, else BINANCE_VIP[tier]) x (1 - discount / 100 if in BNB)
                  = 0.1 % x (1 - 25 %) = 0.075 % at VIP 0
    upbit taker   = row's taker rate, else UPBIT_RATES

Without a row the settings' UPBIT_TAKER_FEE / BINANCE_TAKER_FEE apply (the published rates by default).

**Fees in a third asset.** Every fill's fee is stored with its KRW value when filled (`Fill.fee_krw`):
a fee in KRW is itself; in USDT at the pair's KRW/USDT rate; in the coin traded at the fill's price;
in BNB at BNB's price then -- the BNBUSDT mid from the hot state (price record, else book), else a
REST ticker read through the venue's adapter, else not valued at all (`fee_krw` empty, the fill's
note says so). Never at the traded coin's price.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from liveguard.models import AuditLog

from .models import FeeSchedule, Pair
from .signals import Fees

log = logging.getLogger(__name__)

BNB = "BNB"
ZERO = Decimal(0)
HUNDRED = Decimal(100)
QUOTE = {"upbit": "KRW", "binance": "USDT"}

# Published spot rates (maker, taker) as fractions. Binance by VIP tier (regular accounts, paid in
# the asset received); Upbit's KRW market has one rate.
BINANCE_VIP: dict[int, tuple[Decimal, Decimal]] = {
    0: (Decimal("0.001"), Decimal("0.001")),
    1: (Decimal("0.0009"), Decimal("0.001")),
    2: (Decimal("0.0008"), Decimal("0.001")),
    3: (Decimal("0.00042"), Decimal("0.0006")),
    4: (Decimal("0.00042"), Decimal("0.00054")),
    5: (Decimal("0.00036"), Decimal("0.00048")),
    6: (Decimal("0.0003"), Decimal("0.00042")),
    7: (Decimal("0.00024"), Decimal("0.00036")),
    8: (Decimal("0.00018"), Decimal("0.0003")),
    9: (Decimal("0.00012"), Decimal("0.00024")),
}
UPBIT_RATES = (Decimal("0.0005"), Decimal("0.0005"))


def account_label() -> str:
    return getattr(settings, "FEE_ACCOUNT", "") or "default"


@dataclass(frozen=True)
class Rates:
    """One venue's rates for one account, as fractions; `taker`/`maker` are what is charged."""

    venue: str
    taker: Decimal
    maker: Decimal
    in_bnb: bool = False
    full_taker: Decimal | None = None  # before the BNB discount (charged when BNB cannot pay)
    tier: int = 0


def rates(venue: str, schedule: FeeSchedule | None) -> Rates:
    """The effective rates a schedule row gives (the settings' taker rates without a row)."""
    if schedule is None:
        taker = settings.UPBIT_TAKER_FEE if venue == "upbit" else settings.BINANCE_TAKER_FEE
        maker = UPBIT_RATES[0] if venue == "upbit" else BINANCE_VIP[0][0]
        return Rates(venue, taker, maker)
    published = UPBIT_RATES if venue == "upbit" else BINANCE_VIP.get(schedule.vip_tier, BINANCE_VIP[0])
    maker = published[0] if schedule.maker_rate is None else schedule.maker_rate
    taker = published[1] if schedule.taker_rate is None else schedule.taker_rate
    if venue == "binance" and schedule.pay_fees_in_bnb:
        keep = 1 - schedule.bnb_discount_pct / HUNDRED
        return Rates(venue, taker * keep, maker * keep, True, taker, schedule.vip_tier)
    return Rates(venue, taker, maker, tier=schedule.vip_tier)


def load(account: str | None = None) -> Fees:
    """The trading account's effective taker rates, from the database."""
    rows = {row.venue: row for row in FeeSchedule.objects.filter(account=account or account_label())}
    upbit, binance = rates("upbit", rows.get("upbit")), rates("binance", rows.get("binance"))
    return Fees(upbit=upbit.taker, binance=binance.taker, binance_in_bnb=binance.in_bnb,
                binance_undiscounted=binance.full_taker)


_cache: tuple[float, int | None, str, Fees] | None = None
_rest_price: tuple[float, Decimal] | None = None  # (when, BNB in USDT) read from a venue


def current(state=None, max_age: float = 5.0, version: int | None = None) -> Fees:
    """The rates, cached per process: re-read when an edit bumped the controls' version (or every few seconds)."""
    global _cache
    now = time.monotonic()
    if version is None and state is not None:
        try:
            version = state.limits_version()
        except Exception:  # noqa: BLE001 — Redis away: the rates are re-read on age alone
            version = None
    account = account_label()
    if (_cache is None or _cache[2] != account or now - _cache[0] > max_age
            or (version is not None and _cache[1] != version)):
        _cache = (now, version, account, load(account))
    return _cache[3]


def forget() -> None:
    """Drop the per-process caches (the rates, and a BNB price read from a venue)."""
    global _cache, _rest_price
    _cache = _rest_price = None


def save_schedule(state, schedule: FeeSchedule, user=None) -> FeeSchedule:
    """Validate, save with an audit trail, and make every worker re-read the rates at once."""
    schedule.full_clean()
    label = f"FeeSchedule {schedule.venue}/{schedule.account}"[:60]
    with transaction.atomic():
        before = FeeSchedule.objects.select_for_update().filter(pk=schedule.pk).first() if schedule.pk else None
        entries = []
        for f in FeeSchedule._meta.concrete_fields:
            if f.name in {"id", "updated_at"}:
                continue
            old = getattr(before, f.attname) if before else None
            new = getattr(schedule, f.attname)
            if before is None or old != new:
                entries.append(AuditLog(model=label, field=f.name, old_value="" if old is None else str(old),
                                        new_value="" if new is None else str(new),
                                        user=user if user is not None and user.is_authenticated else None))
        schedule.save()
        AuditLog.objects.bulk_create(entries)
    forget()
    if state is not None:
        state.bump_limits_version()
    return schedule


def update_schedule(venue: str, account: str | None = None, *, state, user=None, **changes) -> FeeSchedule:
    """Change (or create) one venue's schedule for an account, audited; `state` is told so every worker re-reads it."""
    account = account or account_label()
    schedule = FeeSchedule.objects.filter(venue=venue, account=account).first() or FeeSchedule(venue=venue, account=account)
    for name, value in changes.items():
        if not hasattr(schedule, name):
            raise ValueError(f"unknown fee field {name!r}")
        setattr(schedule, name, value)
    return save_schedule(state, schedule, user)


# --- BNB's price ----------------------------------------------------------------------------------
REST_PRICE_TTL_S = 5.0


def bnb_price(state, adapter=None) -> tuple[Decimal | None, str]:
    """BNB in USDT now, and where the figure came from: the hot state's price record or book, else a
    REST ticker through the venue's adapter (when it has one), else (None, why)."""
    global _rest_price
    try:
        record = state.get_price("binance", BNB)
        if record is not None and record.mid > 0:
            return record.mid, "price record"
        book = state.get_book("binance", BNB)
        if book is not None and book.bids and book.asks:
            return (book.bids[0][0] + book.asks[0][0]) / 2, "book"
    except Exception as exc:  # noqa: BLE001 — Redis away: try the venue
        log.warning("BNB price not read from the hot state: %s", exc)
    public = getattr(adapter, "_public", None)
    if public is None:
        return None, "no BNB price known"
    if _rest_price is not None and time.monotonic() - _rest_price[0] < REST_PRICE_TTL_S:
        return _rest_price[1], "REST ticker"
    try:
        body = public("GET", "/api/v3/ticker/bookTicker", {"symbol": f"{BNB}USDT"})
        price = (Decimal(body["bidPrice"]) + Decimal(body["askPrice"])) / 2
    except Exception as exc:  # noqa: BLE001 — unreachable, refused, malformed: not valued
        log.warning("BNB price not read from the venue: %s", exc)
        return None, f"no BNB price: {type(exc).__name__}"
    if price <= 0:
        return None, "no BNB price: empty ticker"
    _rest_price = (time.monotonic(), price)
    return price, "REST ticker"


# --- valuing fills' fees ----------------------------------------------------------------------------
class FeeValuer:
    """Values each fill's fee of one order in KRW when it is booked.

    `quote_rate` is KRW per unit of the order's venue quote (1 on Upbit, the pair's KRW/USDT rate on
    Binance); without it the pair's rate is looked up (else the hot state's).
    """

    def __init__(self, state, adapter, order, fees: Fees | None = None, quote_rate: Decimal | None = None):
        self.state, self.adapter, self.order = state, adapter, order
        self.quote = QUOTE[order.exchange]
        self.in_bnb = bool(fees and fees.binance_in_bnb and order.exchange == "binance")
        self._rate = quote_rate if quote_rate else (Decimal(1) if self.quote == "KRW" else None)

    @property
    def rate(self) -> Decimal | None:
        if self._rate is None:
            rate = Pair.objects.filter(pk=self.order.pair_id).values_list("fx_rate", flat=True).first()
            if not rate:
                try:
                    record = self.state.get_fx("upbit")
                    rate = record.rate if record else None
                except Exception:  # noqa: BLE001 — Redis away: not valued
                    rate = None
            self._rate = rate or None
        return self._rate

    def _krw(self, amount_in_quote: Decimal) -> Decimal | None:
        return None if self.rate is None else amount_in_quote * self.rate

    def value(self, price: Decimal, fee: Decimal, fee_asset: str) -> tuple[Decimal | None, str]:
        """(the fee in KRW, or None when it cannot be valued; a note when it is not plain)."""
        order = self.order
        note = f"BNB fees on, charged in {fee_asset} (no BNB price or balance)" if self.in_bnb and fee and fee_asset != BNB else ""
        if not fee:
            return ZERO, note
        if fee_asset == "KRW":
            return fee, note
        if fee_asset == self.quote:
            return self._krw(fee), note
        if fee_asset == order.symbol:
            return self._krw(fee * price), note  # the coin traded, at this fill's price
        if fee_asset == BNB and self.quote == "USDT":
            usdt, source = bnb_price(self.state, self.adapter)
            if usdt is None:
                return None, f"BNB fee not valued: {source}"
            return self._krw(fee * usdt), f"BNB at {usdt.normalize():f} USDT ({source})"
        return None, f"fee in {fee_asset} not valued: no price for it"
