"""Open premium trades per coin: updated by each pair, marked to market, closed by reverse pairs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db import transaction

from .fields import money
from .models import Pair, Position
from .signals import Fees, vwap
from .state import BookRecord, PositionRecord, StateManager

HUNDRED = Decimal(100)


def side_of(buy_exchange: str) -> str:
    return "long_upbit" if buy_exchange == "upbit" else "long_binance"


def apply_pair(pair: Pair) -> Position | None:
    """Add a filled pair to its coin's position: same direction adds, the reverse closes."""
    if pair.quantity <= 0:
        return Position.objects.filter(symbol=pair.symbol).first()
    with transaction.atomic(savepoint=False):  # inside the pair's close: its transaction is the unit
        position = Position.objects.select_for_update().filter(symbol=pair.symbol).first()
        side = side_of(pair.buy_exchange)
        if position is None or position.quantity == 0:
            position = position or Position(symbol=pair.symbol)
            position.side, position.quantity = side, Decimal(0)
            position.entry_buy_price = position.entry_sell_price = position.entry_fees = Decimal(0)
        if position.side == side:
            total = position.quantity + pair.quantity
            position.entry_buy_price = money((position.entry_buy_price * position.quantity + pair.buy_price * pair.quantity) / total)
            position.entry_sell_price = money((position.entry_sell_price * position.quantity + pair.sell_price * pair.quantity) / total)
            position.entry_fees += pair.fees
            position.quantity = total
        else:
            closed = min(position.quantity, pair.quantity)
            share = closed / position.quantity
            position.entry_fees = money(position.entry_fees * (1 - share))
            position.quantity -= closed
            left = pair.quantity - closed
            if position.quantity == 0 and left > 0:
                position.side, position.quantity = side, left
                position.entry_buy_price, position.entry_sell_price = pair.buy_price, pair.sell_price
                position.entry_fees = money(pair.fees * left / pair.quantity)
        if position.quantity == 0:
            if position.pk:
                position.delete()
            return None
        position.save()
        return position


@dataclass(frozen=True)
class Mark:
    current_price: Decimal  # KRW mid of the coin on the venue we hold it long
    pnl: Decimal  # KRW, entry spread + cost of closing now, after all fees
    pnl_pct: Decimal
    close_buy_price: Decimal | None
    close_sell_price: Decimal | None


def mark(position: Position, upbit: BookRecord, binance: BookRecord, fx: Decimal, fees: Fees) -> Mark | None:
    """Mark a position to market: what closing it with the reverse pair now would realise."""
    books = {"upbit": upbit, "binance": binance}
    conv = {"upbit": Decimal(1), "binance": fx}
    # Closing buys back on the venue we sold and sells on the venue we bought.
    close_buy_venue, close_sell_venue = position.sell_exchange, position.buy_exchange
    buy = vwap(books[close_buy_venue].asks, position.quantity)
    sell = vwap(books[close_sell_venue].bids, position.quantity)
    long_book = books[position.buy_exchange]
    current = (long_book.bids[0][0] + long_book.asks[0][0]) / 2 * conv[position.buy_exchange]
    if buy is None or sell is None:
        return Mark(current, Decimal(0), Decimal(0), None, None)
    buy_krw, sell_krw = buy * conv[close_buy_venue], sell * conv[close_sell_venue]
    q = position.quantity
    close_fees = buy_krw * q * fees.of(close_buy_venue) + sell_krw * q * fees.of(close_sell_venue)
    pnl = (position.entry_sell_price - position.entry_buy_price) * q - position.entry_fees + (sell_krw - buy_krw) * q - close_fees
    basis = position.entry_buy_price * q
    return Mark(current, money(pnl), money(pnl / basis * HUNDRED) if basis else Decimal(0), buy_krw, sell_krw)


def square_by_transfer(symbol: str, from_venue: str, quantity: Decimal) -> Position | None:
    """Coins moved from the venue a position is long on to the venue it is short on square it:
    the inventory strategy's pairs close this way, not by reverse pairs."""
    with transaction.atomic():
        position = Position.objects.select_for_update().filter(symbol=symbol).first()
        if position is None or position.buy_exchange != from_venue or quantity <= 0:
            return position
        closed = min(position.quantity, quantity)
        position.entry_fees = money(position.entry_fees * (1 - closed / position.quantity))
        position.quantity -= closed
        if position.quantity == 0:
            position.delete()
            return None
        position.save()
        return position


def sync_exposure(state: StateManager, symbol: str, position: Position | None) -> None:
    """The guard's exposure counter follows the position's entry notional."""
    exposure = position.entry_buy_price * position.quantity if position else Decimal(0)
    state.set_exposure(symbol, int(exposure.to_integral_value(rounding="ROUND_CEILING")))


def publish(state: StateManager, position: Position | None, symbol: str, m: Mark | None = None) -> None:
    if position is None:
        state.delete_position(symbol)
        return
    state.save_position(PositionRecord(
        symbol=symbol, quantity=position.quantity, entry_price=position.entry_buy_price,
        current_price=m.current_price if m else position.entry_buy_price, side=position.side,
        pnl=m.pnl if m else Decimal(0), pnl_pct=m.pnl_pct if m else Decimal(0), timestamp=datetime.now(UTC),
    ))
