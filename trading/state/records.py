"""The trading core's records: signals, orders, positions, executions, metrics, premiums, and the
one-round-trip snapshot an evaluation reads. The market data's records live in marketdata.records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from marketdata.records import BookRecord, FxRecord, utcnow


@dataclass(frozen=True, slots=True)
class SignalRecord:
    symbol: str
    buy_exchange: str
    sell_exchange: str
    buy_price: Decimal
    sell_price: Decimal
    spread: Decimal
    spread_pct: Decimal
    timestamp: datetime
    quantity: Decimal | None = None
    net_spread_pct: Decimal | None = None
    tick_received_at: datetime | None = None  # when the feed received the newer of the two books


@dataclass(frozen=True, slots=True)
class OrderRecord:
    order_id: str
    exchange: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    status: str
    filled_quantity: Decimal
    fill_rate: Decimal
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PositionRecord:
    symbol: str
    quantity: Decimal
    entry_price: Decimal
    current_price: Decimal
    side: str
    pnl: Decimal
    pnl_pct: Decimal
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    symbol: str
    buy_order_id: str
    sell_order_id: str
    buy_price: Decimal
    sell_price: Decimal
    quantity: Decimal
    gross_pnl: Decimal
    net_pnl: Decimal
    fees: Decimal
    pnl_pct: Decimal
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class MetricsRecord:
    total_balance: Decimal
    available_balance: Decimal
    positions_count: int
    orders_count: int
    daily_loss: Decimal
    total_loss: Decimal
    trades_today: int
    timestamp: datetime = field(default_factory=utcnow)
    # The accounting model (trading/accounting.py): KRW, equity at each venue's marks, flows excluded.
    equity: Decimal = Decimal(0)
    flows: Decimal = Decimal(0)
    pnl_today: Decimal = Decimal(0)  # equity change since 00:00 KST less the day's flows
    pnl_total: Decimal = Decimal(0)  # equity less all flows
    realized: Decimal = Decimal(0)
    unrealized: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class PremiumRecord:
    symbol: str
    premium_pct: Decimal
    upbit_mid: Decimal
    binance_mid: Decimal
    fx_rate: Decimal
    net_upbit_to_binance: Decimal | None
    net_binance_to_upbit: Decimal | None
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    upbit: BookRecord | None
    binance: BookRecord | None
    fx: FxRecord | None
    reference_fx: FxRecord | None
    limits_version: int
    kill_switch: bool | None
    breaker: tuple[str, int] | None
    market_warning: bool
    lot_step: Decimal | None
    total_balance: Decimal | None
    pnl: tuple[Decimal, Decimal, datetime] | None  # (today, total, as of) from the metrics record
    volatility: float | None
    weight: float | None
    weighted_symbols: int
    fx_minute_ago: Decimal | None = None
    paused: bool = False
    reconciled: bool = False
    exposure_krw: int = 0  # the coin's exposure (reserved or held), for sizing what the limit leaves
