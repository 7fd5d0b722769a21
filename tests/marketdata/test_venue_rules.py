"""The venue's rules (marketdata/venue/rules.py) and the adapters' (marketdata/rules.py, trading/fees.py)
are written separately from the exchanges' docs; here they must agree on a grid of prices, so that a
wrong rule in one is caught by the other."""

import ast
from decimal import Decimal as D
from pathlib import Path

import pytest

from marketdata import rules as adapters
from marketdata.venue import rules as venue
from marketdata.venue.market import MarketModel, make_coins
from trading import fees
from trading.models import FeeSchedule

MARKETS = ("KRW-BTC", "KRW-XRP", "KRW-USDT", "KRW-USDC")
# Every band edge of the KRW table, and the USDT/USDC half-won band's.
EDGES = [D(10) ** e * m for e in range(-9, 7) for m in (1, 2, 5)]


def price_grid():
    prices = set()
    for edge in EDGES:
        for factor in ("0.9999", "0.999", "1", "1.0001", "1.37", "2.4", "3.99", "4.999"):
            prices.add(edge * D(factor))
        prices.add(edge - D("0.00000001"))
        prices.add(edge - D("0.5"))
    return sorted(p for p in prices if p > 0)


def test_upbit_tick_table_agrees_on_a_grid_of_prices():
    checked = 0
    for market in MARKETS:
        for price in price_grid():
            tick = venue.upbit_tick(price, market)
            assert tick == adapters.upbit_krw_tick(price, market), (market, price)
            # Snapped to the grid, both accept it; half a tick off, both refuse it.
            on_grid = (price // tick) * tick
            if on_grid > 0 and venue.upbit_tick(on_grid, market) == tick:
                assert venue.on_upbit_tick(on_grid, market)
                assert on_grid % adapters.upbit_krw_tick(on_grid, market) == 0
                off = on_grid + tick / 2
                if venue.upbit_tick(off, market) == tick:
                    assert not venue.on_upbit_tick(off, market)
                    assert off % adapters.upbit_krw_tick(off, market) != 0
            checked += 1
    assert checked > 1000


def test_upbit_table_matches_the_documented_rows():
    # Upbit's published tick table (docs/venue.md, Market rules): a few rows, typed in from the doc rather than derived from either table.
    for price, tick in (("2500000", "1000"), ("1000000", "1000"), ("999999", "500"), ("500000", "500"), ("100000", "100"),
                        ("50000", "50"), ("10000", "10"), ("5000", "5"), ("4999", "1"), ("100", "1"), ("99.9", "0.1"),
                        ("10", "0.1"), ("9.99", "0.01"), ("1", "0.01"), ("0.5", "0.001"), ("0.0000001", "0.00000001")):
        assert venue.upbit_tick(D(price), "KRW-BTC") == D(tick), price
    assert venue.upbit_tick(D("1375"), "KRW-USDT") == D("0.5")
    assert venue.upbit_tick(D("1375"), "KRW-BTC") == D("1")
    assert venue.upbit_tick(D("10000"), "KRW-USDT") == D("10")


def test_upbit_minimum_and_fees_agree():
    assert venue.UPBIT_MIN_TOTAL_KRW == adapters.UPBIT_MIN_ORDER_KRW == D(5000)
    assert venue.UPBIT_KRW_FEE == fees.UPBIT_RATES[0] == fees.UPBIT_RATES[1]


def test_binance_fees_agree():
    assert fees.BINANCE_VIP[0] == (venue.BINANCE_FEE, venue.BINANCE_FEE)
    default_discount = FeeSchedule._meta.get_field("bnb_discount_pct").default
    assert D(default_discount) == venue.BINANCE_BNB_DISCOUNT * 100


@pytest.mark.parametrize("coin", MarketModel(coins=make_coins(12)).coins.values(), ids=lambda state: state.coin.symbol)
def test_binance_filters_as_published_agree_with_the_adapters_reading(coin):
    """The adapters read the filters from exchangeInfo as the venue publishes them; both then judge
    the same prices, quantities and notionals the same way."""
    ours = coin.coin.filters
    theirs = adapters.BinanceFilters.from_exchange_info(ours.to_exchange_info())
    for field in ("tick_size", "step_size", "min_price", "max_price", "min_qty", "max_qty", "min_notional", "max_notional"):
        assert getattr(ours, field) == getattr(theirs, field), field
    price = D(repr(coin.usd))
    tick, step = ours.tick_size, ours.step_size
    base = (price // tick) * tick
    prices = [base + k * tick for k in range(-3, 4)] + [base + tick / 2, base + tick / 3, base * 10, base / 10,
                                                        ours.min_price, ours.min_price - tick, ours.max_price, ours.max_price + tick, D(0)]
    for p in prices:
        assert ours.price_error(p) == theirs.price_error(p), p
    quantities = [k * step for k in range(0, 5)] + [step / 2, step * D("1.5"), D(1), ours.max_qty, ours.max_qty + step]
    for q in quantities:
        assert ours.quantity_error(q) == theirs.quantity_error(q), q
    for notional in (D(0), D("4.99999999"), D(5), D("5.00000001"), D(100), ours.max_notional, ours.max_notional + 1):
        assert ours.notional_error(notional) == theirs.notional_error(notional), notional
    # And the grid itself is non-trivial: each verdict occurs.
    assert any(ours.price_error(p) for p in prices) and not all(ours.price_error(p) for p in prices)


def test_the_venue_imports_no_rule_from_the_adapters():
    """The point of the venue's own copy: nothing under marketdata/venue/ reads marketdata/rules.py
    (or the adapters, or trading/fees.py)."""
    offenders = []
    for path in sorted(Path(venue.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n == "marketdata.rules" or n.startswith(("marketdata.rules.", "trading")) for n in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders
