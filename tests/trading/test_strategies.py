"""Per-coin strategies: the stop-loss cool-down, and premium convergence (open far from the mean,
close on reversion)."""

import time
from decimal import Decimal as D

import pytest

from liveguard.models import GuardLimits, SymbolPause
from trading import engine, exits, strategies
from trading.models import CoinStrategy, Pair, Position

pytestmark = pytest.mark.django_db


def book(upbit_bid: str, upbit_ask: str, binance_bid="99000", binance_ask="99010"):
    return dict(upbit_bids=((upbit_bid, "1"),), upbit_asks=((upbit_ask, "1"),),
                binance_bids=((binance_bid, "1"),), binance_asks=((binance_ask, "1"),))


@pytest.fixture(autouse=True)
def _fresh():
    strategies.forget()
    yield
    strategies.forget()


def test_a_stop_loss_puts_the_coin_in_a_cool_down_so_a_widening_premium_cannot_churn_it(state, market):
    """The finding: on a premium path 2 -> 2.8 -> ... -> 6 %, each stop-loss was followed by an
    immediate re-entry, and the position churned. Now one stop-loss, then no re-entry until the
    cool-down has run out."""
    market("BTC", **book("143000000", "143100000"))  # ~3 %
    assert engine.evaluate_symbol("BTC", state=state) == "executed"
    outcomes = []
    for upbit in ("147000000", "149000000", "151000000", "153000000"):  # the premium keeps widening
        market("BTC", **book(upbit, str(int(upbit) + 100000)))
        exits.check_positions(state)
        outcomes.append(engine.evaluate_symbol("BTC", state=state))
    assert Pair.objects.filter(kind="close").count() == 1 and "stop-loss" in Pair.objects.get(kind="close").note
    assert Pair.objects.filter(kind="open", quantity__gt=0).count() == 1  # never re-entered
    assert set(outcomes[1:]) == {"rejected:paused"}
    pause = SymbolPause.objects.get(symbol="BTC")
    assert pause.until is not None and "cool-down" in pause.reason
    # When the cool-down has run out (the mirror drops it), trading resumes.
    SymbolPause.objects.filter(symbol="BTC").update(until=pause.created_at)
    from liveguard.services import mirror_guard_state

    mirror_guard_state(state)
    assert engine.evaluate_symbol("BTC", state=state) == "executed"


def test_no_cool_down_when_it_is_set_to_zero(state, market):
    limits = GuardLimits.load()
    limits.stop_loss_cooldown = 0
    limits.save()
    engine.forget_limits()
    market("BTC", **book("143000000", "143100000"))
    engine.evaluate_symbol("BTC", state=state)
    market("BTC", **book("151000000", "151100000"))
    assert exits.check_positions(state) == ["BTC"]
    assert not SymbolPause.objects.exists()


def history(values, step=1.0, now=None):
    now = time.time() if now is None else now
    return [(now - (len(values) - i) * step, D(v)) for i, v in enumerate(values)]


def test_convergence_entry_and_exit_by_hand():
    s = strategies.Strategy("convergence", D("0.5"), D("0.1"), 3600, 3)
    h = history(["2.0", "2.0", "2.0", "2.0"])  # mean 2.0
    assert strategies.convergence_entry(s, h, D("2.4")) is None
    assert strategies.convergence_entry(s, h, D("2.6"))[:2] == ("binance", "upbit")  # dear: sell Upbit
    assert strategies.convergence_entry(s, h, D("1.4"))[:2] == ("upbit", "binance")  # cheap: buy Upbit
    assert strategies.convergence_entry(s, h[:2], D("9")) is None  # too little history
    assert strategies.convergence_exit(s, h, D("2.3"), "long_binance") is None
    assert strategies.convergence_exit(s, h, D("2.1"), "long_binance") == D("0.1")
    assert strategies.convergence_exit(s, h, D("1.95"), "long_upbit") == D("-0.05")


def test_the_strategy_is_chosen_per_coin_in_admin(admin_client):
    CoinStrategy.objects.create(symbol="*", strategy="spread")
    CoinStrategy.objects.create(symbol="XRP", strategy="convergence", entry_deviation_pct=D("0.8"))
    assert strategies.for_symbol("XRP").name == "convergence"
    assert strategies.for_symbol("XRP").entry_deviation_pct == D("0.8")
    assert strategies.for_symbol("BTC").name == "spread"
    response = admin_client.get("/admin/trading/coinstrategy/")
    assert response.status_code == 200 and b"XRP" in response.content


def test_a_convergence_position_closes_when_the_premium_reverts(state, market):
    CoinStrategy.objects.create(symbol="BTC", strategy="convergence", min_samples=3)
    market("BTC", **book("143000000", "143100000"))
    assert engine.evaluate_symbol("BTC", state=state) in ("executed", "none")  # history builds up
    now = time.time()
    for i, value in enumerate(["1.0", "1.0", "1.0", "1.0"]):  # the usual premium: 1 %
        state.redis.zadd("arbitrage:premium:history:BTC", {f"{now - 10 + i}:{value}": now - 10 + i})
    Position.objects.all().delete()
    Pair.objects.all().delete()
    strategies.forget()
    # 3 % now: 2 points above its mean -> sell Upbit, buy Binance.
    result = engine.evaluate_symbol("BTC", state=state)
    assert result == "executed", result
    position = Position.objects.get(symbol="BTC")
    assert position.side == "long_binance"
    # The premium comes back to ~1 %: the position closes on reversion, not on take-profit.
    market("BTC", **book("140200000", "140300000"))
    assert engine.evaluate_symbol("BTC", state=state) == "none"  # no second position; the premium is sampled
    assert exits.check_positions(state) == ["BTC"]
    assert "back within" in Pair.objects.get(kind="close").note
