"""The fault matrix: every step of a pair x every way a venue call can fail, on both venues.

Each case runs one live pair against the venue over signed HTTP with one fault injected (venue
fault rules, a dead worker between any two steps, Redis away, a clock off the venue's), then
resumes with fresh adapters and a fresh executor (a new process) until nothing is open, and
checks the invariant against the venue's own books:

* every order the venue holds for the account is in the ledger exactly once, its fills booked;
* no client id was sent twice;
* ledger balances equal the venue's balances exactly, per venue and asset;
* each pair's net coin is zero, declared dust, or flagged (kill switch, guard event, stage).

The venue is shared by all cases; each case trades on an account of its own.
"""

from __future__ import annotations

import itertools
from decimal import Decimal as D

import pytest
import requests

from liveguard.models import GuardEvent
from marketdata.venue.accounts import Accounts
from marketdata.venue.core import Venue
from marketdata.venue.market import MarketModel
from marketdata.venue.server import VenueServer, VenueThread
from trading import ledger
from trading.exchanges.binance import BinanceAdapter
from trading.exchanges.upbit import UpbitAdapter
from trading.execution import PairExecutor, PairRequest, resume_pending
from trading.models import Fill, Order, Pair
from trading.signals import Fees

pytestmark = pytest.mark.django_db
SECRET = "m" * 64
FEES = Fees(upbit=D("0.0005"), binance=D("0.001"))
START = {"binance": {"USDT": D("100000"), "BTC": D("1")}, "upbit": {"KRW": D("1000000000"), "BTC": D("1")}}
QUOTE = {"binance": "USDT", "upbit": "KRW"}
ORDER_PATH = {"binance": "/api/v3/order", "upbit": "/v1/orders"}
LOOKUP_PATH = {"binance": "/api/v3/order", "upbit": "/v1/order"}
_keys = itertools.count(1)


def _leaks(text: str) -> list[str]:
    """What in this text would give a secret away: the accounts' secret, a signed query, a JWT."""
    return [m for m in (SECRET, "signature=", "eyJ") if m in text]


@pytest.fixture(autouse=True)
def _no_secret_in_logs_or_errors(caplog):
    """Every fault case's captured log (DEBUG and up, every logger) and every error text it stored."""
    import logging

    from liveguard.models import GuardEvent as Event
    from trading.exchanges.redact import RedactSecrets

    caplog.set_level(logging.DEBUG)
    yield
    raw = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert not _leaks(raw), f"a secret in the captured log: {_leaks(raw)}"
    stored = " ".join(str(v) for v in [*Pair.objects.values_list("note", flat=True),
                                        *Event.objects.values_list("reason", flat=True)])
    assert not _leaks(stored), f"a secret in a stored error: {_leaks(stored)}"
    # and the handlers' filter masks what a library might still write
    record = logging.LogRecord("x", logging.ERROR, "", 0, "GET %s", ("/api/v3/order?timestamp=1&signature=ab12",), None)
    RedactSecrets().filter(record)
    assert not _leaks(record.getMessage())


class WorkerKilled(BaseException):
    """Stands for SIGKILL: nothing after it runs in that worker (not even `except Exception`)."""


@pytest.fixture(scope="module")
def venue():
    thread = VenueThread(VenueServer(Venue(MarketModel(seed=21)), accounts=Accounts(), binance_weight_limit=10**9,
                                     upbit_rate_limit=10**6)).start()
    thread.call(thread.server.control, None, "pause")  # books hold still
    yield thread
    thread.stop()


def control(venue, exchange, action, **params):
    return venue.call(venue.server.control, exchange, action, **params)


def adapters(venue, key):
    bn = BinanceAdapter(venue.server.binance_url, key, SECRET, timeout=0.4, recv_window=1000, lookup_budget_s=2.5)
    up = UpbitAdapter(venue.server.upbit_url, key, SECRET, timeout=0.4, lookup_budget_s=2.5)
    up.absent_after_s = 1.0
    return {"binance": bn, "upbit": up}


def executor(state, venue, key, **kwargs):
    return PairExecutor(state, FEES, adapters(venue, key), mode="live", flag_after_s=30, **kwargs)


def new_account(venue, empty: tuple[str, str] | None = None) -> str:
    key = f"fm{next(_keys)}"
    balances = {v: dict(b) for v, b in START.items()}
    if empty:
        balances[empty[0]][empty[1]] = D(0)
    for v in ("binance", "upbit"):
        venue.server.accounts.add(v, key, SECRET, {a: str(x) for a, x in balances[v].items()})
    for v, assets in balances.items():  # the ledger starts where the venue does
        for asset, amount in assets.items():
            if amount:
                ledger.deposit(v, asset, amount)
    return key


def tops(venue):
    bn = requests.get(f"{venue.server.binance_url}/api/v3/ticker/bookTicker", params={"symbol": "BTCUSDT"}, timeout=5).json()
    up = requests.get(f"{venue.server.upbit_url}/v1/orderbook", params={"markets": "KRW-BTC"}, timeout=5).json()[0]["orderbook_units"][0]
    return {"binance": (D(bn["bidPrice"]), D(bn["askPrice"])), "upbit": (D(str(up["bid_price"])), D(str(up["ask_price"])))}


def request(venue, buy: str, sell: str, quantity=D("0.01")) -> PairRequest:
    t = tops(venue)
    return PairRequest("BTC", buy, sell, quantity, t[buy][1], t[sell][0], D("1400"), D("0.00001"))


def run_pair(state, venue, key, buy, sell, *, die_at=None, quantity=D("0.01"), **kwargs) -> Pair:
    ex = executor(state, venue, key, **kwargs)
    if die_at:
        def checkpoint(step, pair):
            if step == die_at:
                raise WorkerKilled(step)
        ex.checkpoint = checkpoint
    pair = Pair.objects.create(symbol="BTC", buy_exchange=buy, sell_exchange=sell, mode="live")
    try:
        ex.execute(pair, request(venue, buy, sell, quantity))
    except WorkerKilled:
        pass
    return pair


def settle(state, venue, key, rounds=4):
    """Resume as a new process would, until no pair is open (its lease run out each time)."""
    control(venue, None, "clear_faults")
    for _ in range(rounds):
        if not Pair.objects.filter(stage__in=("planned", "sending", "unwinding", "flagged")).exists():
            return
        Pair.objects.update(lease_until=None)
        resume_pending(state, executor(state, venue, key))


def venue_orders(venue, key):
    out = []
    for book, exchange in ((venue.server.binance.orders.orders, "binance"), (venue.server.upbit.orders.orders, "upbit")):
        out += [(exchange, o) for o in list(book.values()) if o.api_key == key]
    return out


def assert_invariant(venue, key):
    seen: dict[tuple[str, str], int] = {}
    for exchange, order in venue_orders(venue, key):
        seen[(exchange, order.client_id)] = seen.get((exchange, order.client_id), 0) + 1
        row = Order.objects.filter(client_order_id=order.client_id, exchange=exchange)
        assert row.count() == 1, f"{exchange} order {order.client_id} is not in the ledger exactly once"
        row = row.get()
        booked = sum((f.quantity for f in Fill.objects.filter(order=row)), D(0))
        assert row.filled_quantity == order.executed == booked, (
            f"{exchange} {order.client_id}: venue executed {order.executed}, ledger {row.filled_quantity}, fills {booked}")
    doubled = {k: n for k, n in seen.items() if n > 1}
    assert not doubled, f"orders sent twice: {doubled}"
    ours = ledger.balances()
    for exchange in ("binance", "upbit"):
        account = getattr(venue.server.accounts, exchange)[key]
        for asset in set(account.balances) | {a for v, a in ours if v == exchange}:
            theirs = account.balances.get(asset, D(0))
            assert theirs == ours.get((exchange, asset), D(0)), f"{exchange} {asset}: venue {theirs} vs ledger {ours.get((exchange, asset))}"
    for pair in Pair.objects.all():
        net = sum(((o.filled_quantity if o.side == "buy" else -o.filled_quantity) for o in Order.objects.filter(pair=pair)), D(0))
        if net == 0:
            continue
        if "dust " in pair.note:
            assert abs(net) < D("0.0001"), f"dust {net} too large"
            continue
        assert pair.stage == "flagged" and GuardEvent.objects.filter(check_name="leg_risk").exists(), (
            f"pair {pair.id} holds {net} BTC unflagged ({pair.stage}: {pair.note})")


DIRECTIONS = [("binance", "upbit"), ("upbit", "binance")]
KINDS = ["delay_after", "timeout_before", "unavailable_before", "error_5xx_after", "html_after", "reset_before",
         "reset_after", "refuse_429", "refuse_418"]


def fault(venue, exchange, path, kind, method="POST", skip=0, count=1):
    params = {"method": method, "path": path, "kind": kind, "skip": skip, "count": count}
    if kind in ("delay_after", "timeout_before"):
        params["seconds"] = 0.9
    if kind in ("refuse_429", "refuse_418"):
        params["retry_after"] = 1 if kind == "refuse_429" else 30
    control(venue, exchange, "fault", **params)


@pytest.mark.parametrize("buy, sell", DIRECTIONS)
@pytest.mark.parametrize("step", ["first_leg", "second_leg"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_leg_fails(state, venue, buy, sell, step, kind):
    key = new_account(venue)
    target = buy if step == "first_leg" else sell
    fault(venue, target, ORDER_PATH[target], kind)
    run_pair(state, venue, key, buy, sell)
    settle(state, venue, key)
    assert_invariant(venue, key)


@pytest.mark.parametrize("buy, sell", DIRECTIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_the_unwind_fails(state, venue, buy, sell, kind):
    key = new_account(venue, empty=(sell, "BTC"))  # the sell leg is refused, so the buy must be unwound
    fault(venue, buy, ORDER_PATH[buy], kind, skip=1)  # the second order on the buy venue: the hedge
    pair = run_pair(state, venue, key, buy, sell)
    settle(state, venue, key)
    assert_invariant(venue, key)
    pair.refresh_from_db()
    assert Order.objects.filter(pair=pair, role="hedge").exists()


@pytest.mark.parametrize("buy, sell", DIRECTIONS)
@pytest.mark.parametrize("kind", ["timeout_before", "unavailable_before", "error_5xx_after", "html_after",
                                  "reset_before", "refuse_429", "refuse_418"])
def test_the_look_up_fails_after_an_unknown_placement(state, venue, buy, sell, kind):
    key = new_account(venue)
    fault(venue, sell, ORDER_PATH[sell], "delay_after")  # placed, answer lost: it must be looked up
    fault(venue, sell, LOOKUP_PATH[sell], kind, method="GET", count=2)
    if sell == "binance":
        fault(venue, sell, "/api/v3/myTrades", kind, method="GET", count=1)
    run_pair(state, venue, key, buy, sell)
    settle(state, venue, key)
    assert_invariant(venue, key)


STEPS = ["legs_recorded", "legs_sent", "legs_booked", "hedge_recorded", "hedge_sent", "hedge_booked", "close"]


@pytest.mark.parametrize("buy, sell", DIRECTIONS)
@pytest.mark.parametrize("die_at", STEPS)
def test_a_worker_dies_between_any_two_steps(state, venue, buy, sell, die_at):
    hedging = die_at.startswith("hedge")
    key = new_account(venue, empty=(sell, "BTC") if hedging else None)
    pair = run_pair(state, venue, key, buy, sell, die_at=die_at)
    pair.refresh_from_db()
    assert pair.stage != "closed" or die_at == "close"  # nothing closed behind the dead worker's back
    settle(state, venue, key)
    pair.refresh_from_db()
    assert pair.stage == "closed", pair.note
    assert_invariant(venue, key)


@pytest.mark.parametrize("buy, sell", DIRECTIONS)
def test_partial_fills_on_both_legs(state, venue, buy, sell):
    key = new_account(venue)
    run_pair(state, venue, key, buy, sell, quantity=D("3"), slippage=D(0))  # each IOC takes only its top level
    settle(state, venue, key)
    assert_invariant(venue, key)


@pytest.mark.parametrize("buy, sell", DIRECTIONS)
@pytest.mark.parametrize("empty_side", ["buy", "sell"])
def test_insufficient_balance_on_one_venue(state, venue, buy, sell, empty_side):
    """As when another coin's pair spent the quote first (or the coin ran out): refused, the other leg unwound."""
    empty = (buy, QUOTE[buy]) if empty_side == "buy" else (sell, "BTC")
    key = new_account(venue, empty=empty)
    pair = run_pair(state, venue, key, buy, sell)
    settle(state, venue, key)
    assert_invariant(venue, key)
    pair.refresh_from_db()
    assert (pair.state, pair.stage) == ("failed", "closed")


@pytest.mark.parametrize("offset_ms", [2000, -2000])
def test_the_local_clock_two_seconds_off_the_venue(state, venue, offset_ms):
    key = new_account(venue)
    control(venue, "binance", "clock_offset", ms=offset_ms)
    try:
        pair = run_pair(state, venue, key, "binance", "upbit")
    finally:
        control(venue, "binance", "clock_offset", ms=0)
    settle(state, venue, key)
    assert_invariant(venue, key)
    pair.refresh_from_db()
    assert pair.state == "filled"


def test_redis_unavailable_for_two_seconds_while_a_leg_is_unknown(state, venue, monkeypatch):
    """The coin's pause and the kill switch cannot reach Redis: the database still records them, and
    the pair stays open until resume settles it."""
    import time

    import redis as redis_lib

    key = new_account(venue)
    fault(venue, "upbit", ORDER_PATH["upbit"], "timeout_before", count=0)  # every Upbit order times out
    fault(venue, "upbit", LOOKUP_PATH["upbit"], "timeout_before", method="GET", count=0)
    down_until = time.monotonic() + 2
    real = state.redis.execute_command

    def flaky(*args, **kwargs):
        if time.monotonic() < down_until:
            raise redis_lib.ConnectionError("Redis is restarting")
        return real(*args, **kwargs)

    monkeypatch.setattr(state.redis, "execute_command", flaky)
    pair = run_pair(state, venue, key, "binance", "upbit")
    pair.refresh_from_db()
    assert pair.stage in ("sending", "flagged") and pair.state == "pending"
    from liveguard.models import SymbolPause

    assert SymbolPause.objects.filter(symbol="BTC").exists()  # committed even though Redis was away
    monkeypatch.setattr(state.redis, "execute_command", real)
    settle(state, venue, key)
    assert_invariant(venue, key)


CANCEL_PATH = {"binance": "/api/v3/order", "upbit": "/v1/order"}


@pytest.mark.parametrize("exchange", ["binance", "upbit"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_cancel_of_an_orphan_fails(state, venue, exchange, kind):
    """Reconciliation cancels an order no ledger row knows; a cancel that fails is reported, never
    assumed, and the next run finishes the job."""
    from trading.reconcile import reconcile

    key = new_account(venue)
    ads = adapters(venue, key)
    bid, ask = tops(venue)[exchange]
    far = ads[exchange].limit_price("BTC", "sell", ask * 2)  # rests: nobody buys at twice the ask
    if exchange == "binance":
        ads[exchange].place_order("BTCUSDT", "SELL", D("0.01"), price=far, time_in_force="GTC", client_id=f"stray-{key}")
    else:
        ads[exchange].place_order("KRW-BTC", "ask", "limit", volume=D("0.01"), price=far, identifier=f"stray-{key}")
    fault(venue, exchange, CANCEL_PATH[exchange], kind, method="DELETE")
    first = reconcile(state, ads)
    assert first["ok"] is False or first["cancelled"]  # never a silent "ok" while the orphan may stand
    control(venue, None, "clear_faults")
    second = reconcile(state, ads)
    assert second["ok"], second["differences"]
    assert not any(o.open for _, o in venue_orders(venue, key))
