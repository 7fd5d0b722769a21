"""The whole paper loop across real processes: venue -> feeds -> Redis -> dispatcher -> Celery worker
(its own process) -> LiveGuard -> paper pair -> ledger, positions and hot state."""

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from arbproject.celery import app as celery_app
from liveguard.models import GuardEvent
from liveguard.services import set_kill_switch, update_limits
from marketdata.feeds.binance import BinanceFeed
from marketdata.feeds.upbit import UpbitFeed
from tests.conftest import RunningFeed, feed_kwargs, wait_for
from tests.support import database_url, stop_processes
from trading.dispatcher import Dispatcher
from trading.models import Pair, Position, Signal
from trading.state import BookRecord, FxRecord, PriceRecord
from trading.tasks import evaluate_changed, execute_pair

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = ["BTC", "ETH", "XRP"]


def start_workers(redis_url, count):
    """Real Celery worker processes on the private broker and the shared test database."""
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": database_url()}
    procs = [subprocess.Popen(
        [str(Path(sys.executable).parent / "celery"), "-A", "arbproject", "worker", "-P", "solo", "-l", "warning",
         "--without-mingle", "--without-gossip", "--without-heartbeat", "-n", f"e2e-{os.getpid()}-{i}@%h"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) for i in range(count)]
    wait_for(lambda: len(celery_app.control.ping(timeout=0.5)) >= count, timeout=30, interval=0.2)
    return procs


def stop_workers(procs):
    stop_processes(procs)


@pytest.fixture
def worker(redis_url):
    procs = start_workers(redis_url, 1)
    yield procs[0]
    stop_workers(procs)


@pytest.fixture
def venue():
    """The venue without its random premium jumps: here only the test moves the premium."""
    from marketdata.venue.core import Venue
    from marketdata.venue.market import MarketModel, ModelParams
    from marketdata.venue.server import VenueServer, VenueThread

    thread = VenueThread(VenueServer(Venue(MarketModel(seed=11, params=ModelParams(jump_rate=0)), step_hz=20))).start()
    yield thread
    thread.stop()


@pytest.fixture
def loop(venue, state, worker):
    """Feeds and the dispatcher running against the venue, enqueueing to the worker."""
    feeds = [UpbitFeed(state, SYMBOLS, max_backoff=0.2, **feed_kwargs(venue, "upbit")),
             BinanceFeed(state, SYMBOLS, max_backoff=0.2, **feed_kwargs(venue, "binance"))]
    dispatcher = Dispatcher(state, lambda: evaluate_changed.apply_async(expires=10))
    thread = threading.Thread(target=dispatcher.run, daemon=True)
    with RunningFeed(feeds[0]), RunningFeed(feeds[1]):
        thread.start()
        wait_for(lambda: all(state.get_premium(s) for s in SYMBOLS), timeout=20)
        yield venue
        dispatcher.stop()
        thread.join(5)


def force_premium(venue, symbol, premium):
    venue.call(venue.server.control, None, "premium", symbol=symbol, premium=premium)


def test_premium_jump_becomes_signal_pair_execution_and_position(loop, state):
    assert not Pair.objects.exists()  # the venue's normal premium is not worth the fees
    force_premium(loop, "ETH", 0.03)
    pair = wait_for(lambda: Pair.objects.filter(symbol="ETH", state="filled").first(), timeout=10)
    assert (pair.buy_exchange, pair.sell_exchange) == ("binance", "upbit")
    assert pair.net_pnl > 0 and pair.fees > 0 and pair.gross_pnl == pair.net_pnl + pair.fees
    assert pair.orders.count() == 2
    assert Signal.objects.filter(symbol="ETH", outcome="executed").exists()
    assert Position.objects.get(symbol="ETH").side == "long_binance"
    execution = wait_for(lambda: state.list_executions("ETH"))[0]
    assert execution.net_pnl == pair.net_pnl
    assert state.get_signal("ETH").sell_exchange == "upbit"
    assert wait_for(lambda: state.get_position("ETH")) is not None  # mirrored after the execution, a moment later


def test_kill_switch_stops_trading_within_one_tick(loop, state):
    set_kill_switch(state, True, reason="test")
    force_premium(loop, "XRP", 0.03)
    event = wait_for(lambda: GuardEvent.objects.filter(check_name="kill_switch", symbol="XRP").first(), timeout=10)
    assert "kill switch" in event.reason
    time.sleep(0.5)
    assert not Pair.objects.filter(symbol="XRP").exists()
    assert Signal.objects.filter(symbol="XRP", outcome="rejected").exists()
    set_kill_switch(state, False)
    wait_for(lambda: Pair.objects.filter(symbol="XRP", state="filled").exists(), timeout=10)


def test_breaker_halts_then_trading_resumes_after_the_cooldown(loop, state):
    update_limits(state, circuit_breaker_cooldown=2)
    state.trip_breaker("test", 2)
    force_premium(loop, "BTC", -0.03)  # Upbit 3 % cheap: buy Upbit, sell Binance
    wait_for(lambda: GuardEvent.objects.filter(check_name="circuit_breaker", symbol="BTC").exists(), timeout=10)
    assert not Pair.objects.filter(symbol="BTC").exists()
    pair = wait_for(lambda: Pair.objects.filter(symbol="BTC", state="filled").first(), timeout=10)
    assert (pair.buy_exchange, pair.sell_exchange) == ("upbit", "binance")


def test_a_low_limit_blocks_with_its_reason_through_the_worker(loop, state):
    update_limits(state, max_trades_per_hour=0)
    force_premium(loop, "ETH", 0.03)
    event = wait_for(lambda: GuardEvent.objects.filter(check_name="trades_per_hour").first(), timeout=10)
    assert "trades this hour" in event.reason
    time.sleep(0.5)
    assert not Pair.objects.exists()


def test_two_worker_processes_never_both_pass_a_one_trade_limit(redis_url, state):
    """Six coins with a premium, evaluated at once by two worker processes, under a one-trade limit."""
    from datetime import UTC, datetime
    from decimal import Decimal as D

    from trading.state import BookRecord, FxRecord, PriceRecord

    coins = ["BTC", "ETH", "XRP", "SOL", "ADA", "DOT"]
    procs = start_workers(redis_url, 2)
    try:
        update_limits(state, max_trades_per_hour=1)
        now = datetime.now(UTC)
        books, prices = [], []
        for coin in coins:
            books += [BookRecord("upbit", coin, [(D("143000"), D("100"))], [(D("143100"), D("100"))], now, now),
                      BookRecord("binance", coin, [(D("99"), D("100"))], [(D("99.01"), D("100"))], now, now)]
        prices = [PriceRecord(b.exchange, b.symbol, b.bids[0][0], b.asks[0][0], b.bids[0][0], now, now) for b in books]
        state.write_market(prices, books, [FxRecord("upbit", D("1400"), None, None, now)])
        for coin in coins:
            execute_pair.delay(coin)
        wait_for(lambda: GuardEvent.objects.filter(check_name="trades_per_hour").count()
                 + Pair.objects.count() >= len(coins), timeout=20)
        assert Pair.objects.count() == 1
        assert GuardEvent.objects.filter(check_name="trades_per_hour").count() == len(coins) - 1
    finally:
        stop_workers(procs)


def test_two_worker_processes_with_their_own_names_share_the_evaluations(redis_url, state):
    """Scale-out: two workers (distinct node names, the same broker and database) both take batches,
    and every coin ends evaluated on its newest book."""
    coins = [f"S{i:02d}" for i in range(30)]
    procs = start_workers(redis_url, 2)
    dispatcher = Dispatcher(state, lambda: evaluate_changed.apply_async(expires=10))
    thread = threading.Thread(target=dispatcher.run, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)  # subscribed
        last_mid = {}
        for round_ in range(150):
            now = datetime.now(UTC)
            books, prices = [], []
            for coin in coins[round_ % 3::3]:  # a third of the coins change each round, as on a real feed
                bid = D(100_000 + round_)
                last_mid[coin] = bid + D("0.5")
                books += [BookRecord("upbit", coin, [(bid, D(1))], [(bid + 1, D(1))], now, now),
                          BookRecord("binance", coin, [(D("70"), D(1))], [(D("70.01"), D(1))], now, now)]
            prices = [PriceRecord(b.exchange, b.symbol, b.bids[0][0], b.asks[0][0], b.bids[0][0], now, now) for b in books]
            state.write_market(prices, books, [FxRecord("upbit", D("1430"), None, None, now)],
                               notify=[f"{b.exchange}:{b.symbol}" for b in books], changed=coins[round_ % 3::3])
            time.sleep(0.01)
        wait_for(lambda: all((p := state.get_premium(c)) and p.upbit_mid == last_mid[c] for c in coins), timeout=20)
        stats = celery_app.control.inspect(timeout=2).stats() or {}
        done = {node: info.get("total", {}).get("trading.tasks.evaluate_changed", 0) for node, info in stats.items()
                if node.startswith(f"e2e-{os.getpid()}-")}
        assert len(done) == 2 and all(count > 0 for count in done.values()), done
    finally:
        dispatcher.stop()
        thread.join(5)
        stop_workers(procs)
