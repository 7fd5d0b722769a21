"""One evaluation end to end inside the process: books in Redis -> guard -> paper pair -> ledger."""

import random
import threading
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from liveguard.guard import trading_day_keys
from liveguard.models import GuardEvent, KillSwitch
from tests.conftest import balances_from_deposits_and_fills, set_limits
from trading import engine, ledger
from trading.models import Balance, EquitySnapshot, Fill, LedgerEntry, Order, Pair, Position, Signal

pytestmark = pytest.mark.django_db

# Upbit bids 3 % above Binance asks at 1,400 KRW/USDT: buy Binance, sell Upbit.
JUMP = dict(upbit_bids=(("143000000", "0.02"), ("142900000", "1")), upbit_asks=(("143100000", "1"),),
            binance_bids=(("99000", "1"),), binance_asks=(("99010", "0.005"), ("99020", "1")))


limits = set_limits


def test_premium_jump_becomes_a_filled_pair_with_exact_pnl(state, market):
    market("BTC", **JUMP)
    assert engine.evaluate_symbol("BTC", state=state) == "executed"
    pair = Pair.objects.get()
    assert (pair.buy_exchange, pair.sell_exchange, pair.state) == ("binance", "upbit", "filled")
    # Sized by the 1,000,000 KRW position limit: 1,000,000 / (99,010 x 1,400) -> floor to 0.00001.
    # Upbit's 0.02 BTC at 143,000,000 covers it, and so do Binance's 0.005 @ 99,010 + the rest @ 99,020.
    q = pair.quantity
    assert q == D("0.00721")
    # The leg's average price is kept to the ledger's 1e-8, then converted at the pair's rate.
    buy_usdt = ((D("99010") * D("0.005") + D("99020") * (q - D("0.005"))) / q).quantize(D("1e-8"))
    buy_krw = buy_usdt * D("1400")
    sell_krw = D("143000000")
    assert pair.buy_price == buy_krw.quantize(D("1e-8"))
    assert pair.gross_pnl == ((sell_krw - buy_krw) * q).quantize(D("1e-8"))
    # Binance takes 0.1 % of the coin bought; Upbit 0.05 % of the KRW received.
    binance_fee_krw = (q * D("0.001")).quantize(D("1e-8")) * buy_usdt * D("1400")
    upbit_fee = (sell_krw * q * D("0.0005")).quantize(D("1e-8"))
    assert pair.fees == (binance_fee_krw + upbit_fee).quantize(D("1e-8"))
    assert pair.net_pnl == pair.gross_pnl - pair.fees
    assert Order.objects.count() == 2 and Fill.objects.count() == 3
    assert Signal.objects.get().outcome == "executed"
    position = Position.objects.get()
    assert position.side == "long_binance" and position.quantity == q
    # Hot state mirrors the ledger.
    assert state.get_signal("BTC").buy_exchange == "binance"
    [execution] = state.list_executions("BTC")
    assert execution.net_pnl == pair.net_pnl
    assert state.get_position("BTC").quantity == q
    assert len(state.list_orders()) == 2
    assert state.get_premium("BTC").premium_pct > D("2.9")


def test_no_signal_without_a_premium(state, market):
    market("ETH")
    assert engine.evaluate_symbol("ETH", state=state) == "none"
    assert state.get_premium("ETH") is not None and state.get_signal("ETH") is None


@pytest.mark.parametrize(
    "setup, check",
    [
        (lambda state, market: KillSwitch.objects.update_or_create(pk=1, defaults={"engaged": True}) and state.redis.delete("arbitrage:guard:kill"), "kill_switch"),
        (lambda state, market: state.trip_breaker("test", 60), "circuit_breaker"),
        (lambda state, market: market("BTC", age_ms=900, **JUMP), "stale_quote"),
        (lambda state, market: market("BTC", skew_ms=400, **JUMP), "stale_quote"),
        (lambda state, market: state.set_market_warnings(["BTC"]), "market_warning"),
        (lambda state, market: limits(max_slippage_pct=D("0.001")), "slippage"),
        (lambda state, market: limits(max_trades_per_hour=0), "trades_per_hour"),
        (lambda state, market: limits(max_trades_per_day=0), "trades_per_day"),
        # Equity today started 600,000 KRW above where it is now (flows excluded): the daily loss limit.
        (lambda state, market: EquitySnapshot.objects.create(
            taken_at=datetime.now(UTC), equity=D("600000"), flows=0, realized=0, unrealized=0, fx_rate=D("1400")),
         "daily_loss"),
    ],
)
def test_each_guard_check_blocks_and_records_its_reason(state, market, setup, check):
    market("BTC", **JUMP)
    setup(state, market)
    assert engine.evaluate_symbol("BTC", state=state) == f"rejected:{check}"
    assert not Pair.objects.filter(symbol="BTC").exists()
    signal = Signal.objects.get(symbol="BTC")
    assert signal.outcome == "rejected" and signal.reason
    assert GuardEvent.objects.filter(check_name=check, symbol="BTC").exists()


def test_fx_jump_against_the_reference_rate_blocks(state, market):
    from datetime import UTC, datetime

    from trading.state import FxRecord

    market("BTC", **JUMP)
    state.set_fx(FxRecord("reference", D("1370"), None, None, datetime.now(UTC)))  # 2.2 % away from 1,400
    assert engine.evaluate_symbol("BTC", state=state) == "rejected:fx"


def test_breaker_recovers_after_the_cooldown(state, market):
    market("BTC", **JUMP)
    state.trip_breaker("test", 1)
    assert engine.evaluate_symbol("BTC", state=state) == "rejected:circuit_breaker"
    state.reset_breaker()  # what the cooldown's expiry does
    market("BTC", **JUMP)
    assert engine.evaluate_symbol("BTC", state=state) == "executed"


def test_loss_over_threshold_trips_the_breaker(state):
    from liveguard.guard import Guard

    limits(circuit_breaker_threshold_pct=D("1"), circuit_breaker_cooldown=60)
    guard = Guard(state)
    assert guard.maybe_trip_breaker(D("1000000"), pnl_today=D("-9999")) is None  # under 1 % of equity
    assert guard.maybe_trip_breaker(D("1000000"), pnl_today=D("-20000")) is not None  # 20,000 >= 1 % of 1,000,000
    assert state.breaker() is not None
    assert GuardEvent.objects.filter(check_name="circuit_breaker").exists()


def test_concurrent_workers_cannot_both_pass_a_limit_one_trade_fits(state, redis_url):
    import redis as redis_lib

    from trading.state import StateManager

    results = []
    barrier = threading.Barrier(8)

    def worker():
        own = StateManager(redis_lib.Redis.from_url(redis_url))
        barrier.wait()
        results.append(own.reserve_trade("BTC", "h", "d", 600_000, max_per_hour=100, max_per_day=100,
                                         max_exposure_krw=1_000_000))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok"] + ["position_size"] * 7


def test_ledger_balances_equal_deposits_fills_and_fees_after_many_random_trades(state, market):
    rng = random.Random(5)
    limits(max_trades_per_hour=1000, max_trades_per_day=1000, max_position_size=D("1e12"), min_spread_pct=D("0.1"),
           max_slippage_pct=D("5"))
    executed = 0
    for _ in range(40):
        premium = D(rng.choice([-1, 1])) * D(str(rng.uniform(0.5, 3)))
        binance_mid = D(str(round(rng.uniform(90000, 100000), 2)))
        upbit_mid = (binance_mid * 1400 * (1 + premium / 100)).quantize(D("1000"))
        market("BTC", upbit_bids=((str(upbit_mid - 1000), str(rng.uniform(0.001, 0.05))[:8]),),
               upbit_asks=((str(upbit_mid + 1000), str(rng.uniform(0.001, 0.05))[:8]),),
               binance_bids=((str(binance_mid - D("0.5")), str(rng.uniform(0.001, 0.05))[:8]),),
               binance_asks=((str(binance_mid + D("0.5")), str(rng.uniform(0.001, 0.05))[:8]),))
        state.set_exposure("BTC", 0)
        executed += engine.evaluate_symbol("BTC", state=state) == "executed"
    assert executed >= 10
    actual = {(b.venue, b.asset): b.amount for b in Balance.objects.all()}
    assert actual == balances_from_deposits_and_fills()
    assert ledger.ledger_sums() == actual


def test_fx_jump_over_the_last_minute_blocks(state, market):
    from datetime import UTC, datetime, timedelta

    from trading.state import FxRecord

    market("BTC", **JUMP)
    state.sample_fx(FxRecord("upbit", D("1370"), None, None, datetime.now(UTC) - timedelta(seconds=30)))
    assert engine.evaluate_symbol("BTC", state=state) == "rejected:fx"
    assert "last minute" in Signal.objects.get().reason


def test_stale_fx_blocks(state, market):
    from datetime import UTC, datetime, timedelta

    from trading.state import FxRecord

    market("BTC", **JUMP)
    state.set_fx(FxRecord("upbit", D("1400"), None, None, datetime.now(UTC) - timedelta(seconds=10)))
    assert engine.evaluate_symbol("BTC", state=state) == "rejected:fx"
    assert "old" in Signal.objects.get().reason


def test_a_crash_after_the_legs_were_sent_keeps_the_pair_open_stops_the_coin_and_resume_books_it(state, market):
    from liveguard.models import SymbolPause
    from trading.execution import resume_pending

    executor = engine.default_executor(state, engine.fees())

    def die(step, pair):
        if step == "legs_sent":
            raise ConnectionError("worker lost between sending and booking")

    executor.checkpoint = die
    market("BTC", **JUMP)
    with pytest.raises(ConnectionError):
        engine.evaluate_symbol("BTC", state=state, executor=executor)
    pair = Pair.objects.get()
    # Never booked as failed while its legs may exist: open for resume, the coin stopped and said why.
    assert (pair.state, pair.stage) == ("pending", "sending") and "UNRESOLVED" in pair.note
    assert set(Order.objects.values_list("status", flat=True)) == {"new"}
    assert Signal.objects.get().outcome == "executed"
    assert SymbolPause.objects.filter(symbol="BTC").exists() and "BTC" in state.paused_symbols()
    assert GuardEvent.objects.filter(check_name="leg_risk", symbol="BTC").exists()
    assert engine.evaluate_symbol("BTC", state=state, executor=executor) in ("rejected:paused", "none")  # stopped
    # Resume looks both legs up (the paper venue still has them), books them once, and closes.
    executor.checkpoint = lambda step, pair: None
    [settled] = resume_pending(state, executor)
    assert (settled.state, settled.stage) == ("filled", "closed")
    assert Fill.objects.count() == 3 and Position.objects.get().quantity == settled.quantity
    assert not SymbolPause.objects.filter(symbol="BTC").exists()  # its own pause is lifted
    assert resume_pending(state, executor) == []  # settled once
    assert Fill.objects.count() == 3


def test_a_crash_before_anything_was_sent_fails_the_pair_and_frees_the_limit(state, market):
    executor = engine.default_executor(state, engine.fees())

    def die(step, pair):
        raise ConnectionError("worker lost before sending")

    executor.checkpoint = die
    market("BTC", **JUMP)
    with pytest.raises(ConnectionError):
        engine.evaluate_symbol("BTC", state=state, executor=executor)
    # The legs were recorded, never sent: resume proves them absent and closes the pair as failed.
    executor.checkpoint = lambda step, pair: None
    executor.venues = {name: type(v)(name, state, engine.fees()) for name, v in executor.venues.items()}  # a new process
    from trading.execution import resume_pending

    [settled] = resume_pending(state, executor)
    assert (settled.state, settled.stage) == ("failed", "closed")
    assert set(Order.objects.values_list("status", flat=True)) == {"absent"}
    assert Fill.objects.count() == 0 and not Position.objects.exists()
    assert not LedgerEntry.objects.exclude(kind="deposit").exists()  # deposits only
    assert engine.evaluate_symbol("BTC", state=state) == "executed"


@pytest.mark.parametrize("failure", ["soft_time_limit", "html_body", "bug"])
def test_any_failure_once_orders_may_exist_leaves_the_pair_open_never_failed(state, market, failure):
    """Celery's soft time limit, a body that is not JSON, a plain bug: all the same to the money."""
    from celery.exceptions import SoftTimeLimitExceeded

    errors = {"soft_time_limit": SoftTimeLimitExceeded(), "html_body": ValueError("Expecting value: line 1 column 1"),
              "bug": KeyError("fills")}
    executor = engine.default_executor(state, engine.fees())

    def fail(step, pair):
        if step == "legs_booked":
            raise errors[failure]

    executor.checkpoint = fail
    market("BTC", **JUMP)
    with pytest.raises(type(errors[failure])):
        engine.evaluate_symbol("BTC", state=state, executor=executor)
    pair = Pair.objects.get()
    assert pair.state == "pending" and pair.stage == "sending" and pair.lease_until is None
    assert Signal.objects.get().outcome == "executed"
    hour, day = trading_day_keys()
    assert state.trades_counted(hour, day) == (1, 1)  # the limit still counts it: it may have traded
    assert state.exposure("BTC") > 0
    assert engine.evaluate_symbol("BTC", state=state) in ("rejected:paused", "none")  # the coin is stopped


def test_the_coin_lock_is_held_for_the_whole_pair_however_long_it_takes(state):
    import time

    from trading.execution import held_lock

    token = state.acquire_lock("symbol:BTC", 300)
    with held_lock(state, "symbol:BTC", token, 300):
        time.sleep(1.0)  # three TTLs
        assert state.acquire_lock("symbol:BTC", 300) is None  # still ours
    assert state.release_lock("symbol:BTC", token)


def test_the_total_exposure_across_coins_is_capped(state, market):
    """Premiums move together: each coin under its own limit can still be too much in sum."""
    limits(max_total_exposure=D("1500000"))
    state.set_exposure("ETH", 900_000)  # another coin already holds most of the total
    market("BTC", **JUMP)
    assert engine.evaluate_symbol("BTC", state=state) == "rejected:total_exposure"
    assert "across every coin" in Signal.objects.get().reason
    state.set_exposure("ETH", 0)
    assert engine.evaluate_symbol("BTC", state=state) == "executed"


def test_a_pair_is_sized_to_what_the_coins_exposure_limit_still_leaves(state, market):
    market("BTC", **JUMP)
    state.set_exposure("BTC", 999_000)  # 1,000 KRW left under the 1,000,000 limit: no pair fits
    assert engine.evaluate_symbol("BTC", state=state) == "none"
    state.set_exposure("BTC", 500_000)
    assert engine.evaluate_symbol("BTC", state=state) == "executed"
    pair = Pair.objects.get()
    assert pair.buy_price * pair.quantity <= D("500000")


def test_paper_mode_funds_each_account_once_the_first_time_it_is_traded(state):
    """The quotes once, each coin on both venues once; a new process (no memory) deposits nothing again."""
    engine.ensure_paper_funds(state, "BTC", D("143000000"), D("100000"), D("1400"))
    engine.ensure_paper_funds(state, "BTC", D("143000000"), D("100000"), D("1400"))
    engine.forget_limits()  # a process that has funded nothing itself
    engine.ensure_paper_funds(state, "ETH", D("5000000"), D("3500"), D("1400"))
    engine.forget_limits()
    engine.ensure_paper_funds(state, "ETH", D("5000000"), D("3500"), D("1400"))
    deposits = sorted(LedgerEntry.objects.filter(kind="deposit").values_list("venue", "asset"))
    assert deposits == [("binance", "BTC"), ("binance", "ETH"), ("binance", "USDT"),
                        ("upbit", "BTC"), ("upbit", "ETH"), ("upbit", "KRW")]
