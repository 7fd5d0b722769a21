"""The batched screen (trading/evaluation.py): many coins per task, no database before an opportunity
has passed the mirror's checks, one queued pair per coin, and the pair half on its own."""

import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from liveguard.models import GuardEvent
from liveguard.services import set_kill_switch
from tests.conftest import set_limits
from trading import engine, evaluation
from trading.models import Pair, Signal
from trading.state import keys

pytestmark = pytest.mark.django_db

# Upbit bids 3 % above Binance asks at 1,400 KRW/USDT: buy Binance, sell Upbit.
JUMP = dict(upbit_bids=(("143000000", "0.02"), ("142900000", "1")), upbit_asks=(("143100000", "1"),),
            binance_bids=(("99000", "1"),), binance_asks=(("99010", "0.005"), ("99020", "1")))
COINS = [f"C{i:03d}" for i in range(40)]


def screen(state, coins):
    """One batch as the task runs it: the coins marked changed (as a feed's flush does), taken, evaluated."""
    state.write_market((), changed=coins, changed_at=time.time())
    queued = []
    result = evaluation.evaluate_changed(state, queued.append)
    return result, queued


def test_a_batch_evaluates_every_changed_coin_without_the_database(state, market):
    for coin in COINS:
        market(coin)  # the venue's usual premium: not worth the fees
    market("HOT", **JUMP)
    screen(state, ["HOT"])  # warms the per-process caches (limits, fees, strategies read every few seconds)
    with CaptureQueriesContext(connection) as queries:
        result, queued = screen(state, COINS)
    assert queries.captured_queries == []
    assert result.evaluated == len(COINS) and result.signals == 0 and queued == []
    assert {p.symbol for p in state.list_premiums()} >= set(COINS)
    assert result.oldest_change_ms is not None and result.oldest_change_ms >= 0
    [(_, evaluated, age_ms)] = state.batch_samples()[:1]
    assert evaluated == len(COINS) and age_ms >= 0


def test_an_opportunity_is_announced_and_queued_once_per_coin(state, market):
    market("HOT", **JUMP)
    for coin in COINS[:5]:
        market(coin)
    result, queued = screen(state, ["HOT", *COINS[:5]])
    assert (result.signals, result.pairs, queued) == (1, 1, ["HOT"])
    signal = state.get_signal("HOT")
    assert (signal.buy_exchange, signal.sell_exchange) == ("binance", "upbit") and signal.tick_received_at
    # The pair is still queued: a newer tick announces the signal again but queues no second pair.
    assert screen(state, ["HOT"])[1] == []
    assert not Pair.objects.exists()  # the screen sends nothing itself
    state.clear_pair_claim("HOT")  # what the pair task does when it starts
    assert engine.execute_opportunity("HOT", state=state) == "executed"
    assert Pair.objects.get().state == "filled" and Signal.objects.get().outcome == "executed"
    assert state.claim_pairs(["HOT"], 1000) == ["HOT"]  # the claim was the task's to clear


def test_the_mirrors_checks_block_in_the_screen_and_are_recorded_once(state, market):
    market("HOT", **JUMP)
    set_kill_switch(state, True, reason="test")
    for _ in range(5):
        result, queued = screen(state, ["HOT"])
        assert queued == [] and result.signals == 1
    assert GuardEvent.objects.filter(check_name="kill_switch", symbol="HOT").count() == 1
    assert Signal.objects.get().outcome == "rejected"


def test_stale_books_are_blocked_before_the_pair_queue(state, market):
    market("HOT", age_ms=5_000, **JUMP)
    result, queued = screen(state, ["HOT"])
    assert queued == [] and GuardEvent.objects.get().check_name == "stale_quote"


def test_the_pair_half_checks_the_ledger_and_every_limit_again(state, market):
    """The screen passes what the mirror allows; the pair half still refuses on the database's limits."""
    market("HOT", **JUMP)
    _, queued = screen(state, ["HOT"])
    assert queued == ["HOT"]
    set_limits(max_trades_per_hour=0)
    assert engine.execute_opportunity("HOT", state=state) == "rejected:trades_per_hour"
    assert not Pair.objects.exists()


def test_a_coin_without_both_books_is_skipped(state, market):
    market("HOT", **JUMP)
    state.redis.delete(keys.book_key("binance", "HOT"), keys.book_top_key("binance", "HOT"))
    result, queued = screen(state, ["HOT", "NOPE"])
    assert (result.evaluated, queued) == (0, [])


def test_a_full_book_gone_since_its_top_was_read_is_not_walked(state, market):
    """The top and the full book are written together and expire together; if the full book is gone
    when the batch reads it, the coin's premium stands but nothing is announced or queued."""
    market("HOT", **JUMP)
    state.redis.delete(keys.book_key("upbit", "HOT"))
    result, queued = screen(state, ["HOT"])
    assert (result.evaluated, result.signals, queued) == (1, 0, [])


def test_the_screen_reads_the_tops_the_feed_wrote(state, market):
    """The top of book the feed stores beside each book is the book's best levels and times."""
    from marketdata.records import decode_top

    market("HOT", **JUMP)
    for exchange in ("upbit", "binance"):
        book = state.get_book(exchange, "HOT")
        top = decode_top(exchange, "HOT", state.redis.get(keys.book_top_key(exchange, "HOT")))
        assert (top.bids, top.asks) == (book.bids[:1], book.asks[:1])
        assert (top.timestamp, top.received_at) == (book.timestamp, book.received_at)
        assert state.redis.ttl(keys.book_top_key(exchange, "HOT")) == state.redis.ttl(keys.book_key(exchange, "HOT"))


def test_the_task_queues_its_blocks_for_housekeeping_and_they_survive_the_broker(state, market):
    """The evaluate task hands its blocks to a housekeeping task: the screen writes nothing to the
    database; the rows pass through Celery's JSON and are stored as the synchronous path stores them."""
    from kombu.utils.json import dumps, loads

    market("HOT", **JUMP)
    screen(state, ["HOT"])  # warms the per-process caches; queues a pair
    set_kill_switch(state, True, reason="test")
    queued_rows = []
    state.write_market((), changed=["HOT"])
    with CaptureQueriesContext(connection) as queries:
        evaluation.evaluate_changed(state, lambda _s: None, queued_rows.append)
    assert queries.captured_queries == [] and len(queued_rows) == 1
    evaluation.record_blocks(loads(dumps(queued_rows[0])))
    event = GuardEvent.objects.get(check_name="kill_switch", symbol="HOT")
    signal = Signal.objects.get(symbol="HOT")
    assert signal.outcome == "rejected" and signal.reason == event.reason and signal.buy_exchange == "binance"


def test_an_unchanged_premium_is_stored_again_only_once_it_is_a_second_old(state, market, monkeypatch):
    """A change that moves no best price leaves the premium as it was: screened, not rewritten at
    once; a changed premium is stored at once; an unchanged one again after PREMIUM_REFRESH_S."""
    monkeypatch.setattr(evaluation, "PREMIUM_REFRESH_S", 0.3)
    market("BTC")
    result, _ = screen(state, ["BTC"])
    first = state.get_premium("BTC")
    market("BTC", upbit_bids=(("139000000", "5"),))  # a size moved, no price
    result, _ = screen(state, ["BTC"])
    assert result.evaluated == 1 and state.get_premium("BTC").timestamp == first.timestamp
    market("BTC", upbit_bids=(("139050000", "1"),))  # the best bid moved
    screen(state, ["BTC"])
    moved = state.get_premium("BTC")
    assert moved.timestamp > first.timestamp and moved.upbit_mid != first.upbit_mid
    time.sleep(0.35)
    market("BTC", upbit_bids=(("139050000", "2"),))
    screen(state, ["BTC"])
    assert state.get_premium("BTC").timestamp > moved.timestamp


def test_a_coin_worth_walking_has_its_full_books_read_with_its_top_next_time(state, market, monkeypatch):
    market("HOT", **JUMP)
    reads = []
    mget = state.redis.mget
    monkeypatch.setattr(state.redis, "mget", lambda keys_: reads.append(list(keys_)) or mget(keys_))
    assert screen(state, ["HOT"])[0].signals == 1
    assert reads == [[keys.book_key("upbit", "HOT"), keys.book_key("binance", "HOT")]]  # first time: one more read
    state.clear_pair_claim("HOT")
    assert screen(state, ["HOT"])[0].signals == 1
    assert len(reads) == 1  # since: with its top, in the one read


def _evaluate_announcements(redis_client):
    """A subscriber to the dispatcher's channel (a message there: a task is to be queued)."""
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.EVALUATE_CHANNEL)
    pubsub.get_message(timeout=1)
    return pubsub


def _recording_takes(state, then=lambda _n: None) -> list[list[str]]:
    """Each take's coins from now on, in order; then(number of takes so far) runs after each."""
    taken = []
    original = state.take_changed

    def take(*args, **kwargs):
        changed, contexts = original(*args, **kwargs)
        taken.append([s for s, _ in changed])
        then(len(taken))
        return changed, contexts

    state.take_changed = take
    return taken


def test_the_task_screens_batch_after_batch_while_changes_keep_coming(state, market, redis_client):
    """evaluate_while_changing takes the next batch at once while changes wait, holding the queued
    flag (the feeds queue no task meanwhile); when nothing more comes it ends at the end of its
    budget, with a take that finds nothing and clears the flag."""
    for coin in COINS[:3]:
        market(coin)
    pubsub = _evaluate_announcements(redis_client)

    def then(n):
        if n < 3:  # a change lands during each of the first two batches
            state.write_market((), changed=[COINS[n]])

    taken = _recording_takes(state, then)
    state.write_market((), changed=[COINS[0]])
    assert pubsub.get_message(timeout=1) is not None  # the flag is new: a task is queued
    requeued = []
    assert evaluation.evaluate_while_changing(state, lambda _s: None, requeue=lambda: requeued.append(1), budget_s=0.2) == 3
    # the first empty take waited for a change (none came), the last one cleared the flag
    assert taken == [[COINS[0]], [COINS[1]], [COINS[2]], [], []] and requeued == []
    assert pubsub.get_message(timeout=0.2) is None  # held: the changes during the batches queued nothing
    assert not redis_client.exists(keys.EVALUATING_KEY)  # the empty take cleared it
    state.write_market((), changed=[COINS[0]])
    assert pubsub.get_message(timeout=1) is not None  # so the next change queues a task
    pubsub.close()


def test_a_task_that_finds_nothing_waits_for_the_next_change_with_the_flag_held(state, market, redis_client):
    """An empty take keeps the flag; the next change then leaves one token on the wake list instead of
    queueing a task, and the same task, waiting on that list, takes it."""
    for coin in ("BTC", "ETH"):
        market(coin)
    pubsub = _evaluate_announcements(redis_client)
    held = []

    def later():
        time.sleep(0.05)
        state.write_market((), changed=["ETH"])

    def then(n):
        if n == 2:  # the first empty take: the task now waits on the wake list
            held.append(bool(redis_client.exists(keys.EVALUATING_KEY)))
            threading.Thread(target=later).start()

    taken = _recording_takes(state, then)
    state.write_market((), changed=["BTC"])
    assert pubsub.get_message(timeout=1) is not None  # the flag is new: a task is queued
    assert not redis_client.exists(keys.WAKE_KEY)  # and no token: nobody holds the flag yet
    assert evaluation.evaluate_while_changing(state, lambda _s: None, requeue=lambda: None, budget_s=0.5) == 2
    assert taken[:3] == [["BTC"], [], ["ETH"]] and taken[-2:] == [[], []] and held == [True]
    assert pubsub.get_message(timeout=0.2) is None  # the change reached the waiting task: no task queued
    assert not redis_client.exists(keys.EVALUATING_KEY) and not redis_client.exists(keys.WAKE_KEY)
    pubsub.close()


def test_changes_while_the_flag_is_held_leave_one_token_until_a_take(state, market, redis_client):
    market("BTC")
    state.write_market((), changed=["BTC"])  # the flag is new: published, no token
    assert not redis_client.exists(keys.WAKE_KEY)
    state.write_market((), changed=["BTC"])
    state.write_market((), changed=["ETH"])
    assert redis_client.llen(keys.WAKE_KEY) == 1  # one token however many changes
    assert 0 < redis_client.pttl(keys.WAKE_KEY) <= keys.EVALUATING_MS  # hot state lapses
    assert state.wait_for_change(0.5) and not state.wait_for_change(0.01)
    state.write_market((), changed=["BTC"])
    state.take_changed("upbit", hold_ms=2000)
    assert not redis_client.exists(keys.WAKE_KEY)  # what it announced is taken


def test_a_take_takes_the_oldest_changes_first_and_leaves_the_rest_changed(state, market, redis_client):
    for coin in COINS[:3]:
        market(coin)
    for age, coin in ((3, COINS[2]), (2, COINS[0]), (1, COINS[1])):
        state.write_market((), changed=[coin], changed_at=time.time() - age)
    first, _ = state.take_changed("upbit", hold_ms=2000, limit=2)
    assert [c for c, _ in first] == [COINS[2], COINS[0]]  # oldest first
    assert redis_client.zrange(keys.DIRTY_KEY, 0, -1) == [COINS[1].encode()]  # the rest still changed
    assert redis_client.exists(keys.EVALUATING_KEY)
    second, _ = state.take_changed("upbit", hold_ms=2000, limit=2)
    assert [c for c, _ in second] == [COINS[1]] and not redis_client.exists(keys.DIRTY_KEY)


def test_a_take_takes_the_coins_worth_walking_first_up_to_half_the_batch(state, market, redis_client):
    """A coin near a signal (worth walking lately: its full book comes with its top) is taken before
    older changes of coins far from one; at most half a batch goes to them, so the oldest never starve."""
    for coin in COINS[:6]:
        market(coin)
    for age, coin in enumerate(COINS[:6]):  # COINS[5] is the oldest change, COINS[0] the newest
        state.write_market((), changed=[coin], changed_at=time.time() - 1 - age)
    near = [COINS[0], COINS[1], COINS[2], "NOTCHANGED"]
    first, contexts = state.take_changed("upbit", near, hold_ms=2000, limit=4)
    # two of the near ones (half of 4), then the two oldest changes
    assert [c for c, _ in first] == [COINS[0], COINS[1], COINS[5], COINS[4]]
    assert state.full_books([COINS[0]])[COINS[0]][0] is not None
    second, _ = state.take_changed("upbit", near, hold_ms=2000, limit=4)
    assert [c for c, _ in second] == [COINS[2], COINS[3]]  # the third near one, then what is left
    assert not redis_client.exists(keys.DIRTY_KEY)
    state.write_market((), changed=[COINS[0], COINS[1]], changed_at=time.time())
    everything, _ = state.take_changed("upbit", [COINS[1]], hold_ms=2000)  # no limit: all, the near one first
    assert [c for c, _ in everything] == [COINS[1], COINS[0]]


def test_a_burst_of_changes_is_screened_in_batches_of_at_most_batch_max_coins(state, market, monkeypatch):
    monkeypatch.setattr(evaluation, "BATCH_MAX_COINS", 2)
    for coin in COINS[:5]:
        market(coin)
    taken = _recording_takes(state)
    state.write_market((), changed=COINS[:5])
    assert evaluation.evaluate_while_changing(state, lambda _s: None, requeue=lambda: None, budget_s=0.1) == 5
    sizes = [len(coins) for coins in taken]
    assert sizes[:3] == [2, 2, 1] and not any(sizes[3:])


def test_a_task_at_the_end_of_its_budget_hands_over_with_the_flag_held(state, market, redis_client):
    market("BTC")
    original = state.take_changed

    def take(*args, **kwargs):
        state.write_market((), changed=["BTC"])  # changes never stop
        return original(*args, **kwargs)

    state.take_changed = take
    state.write_market((), changed=["BTC"])
    requeued = []
    assert evaluation.evaluate_while_changing(state, lambda _s: None, requeue=lambda: requeued.append(1), budget_s=0.05) >= 1
    assert requeued == [1] and redis_client.exists(keys.EVALUATING_KEY)


def test_a_batch_that_is_behind_lets_another_worker_take_the_next(state, market, redis_client, monkeypatch):
    """Behind (its oldest change waited more than BEHIND_MS), the next take does not hold the flag:
    a change then queues a task another evaluate worker can run beside this one."""
    monkeypatch.setattr(evaluation, "BEHIND_MS", -1.0)  # every batch is behind
    market("BTC")
    holds = []
    original = state.take_changed

    def take(*args, **kwargs):
        holds.append(kwargs.get("hold_ms"))
        if len(holds) == 1:
            state.write_market((), changed=["BTC"])
        return original(*args, **kwargs)

    state.take_changed = take
    state.write_market((), changed=["BTC"])
    evaluation.evaluate_while_changing(state, lambda _s: None, requeue=lambda: None)
    assert holds == [2000, None]  # the second take, after a batch that was behind, holds nothing


@pytest.mark.parametrize("queues, waits", [(None, False), ({"evaluate"}, True)])
def test_only_a_worker_of_the_evaluate_queue_alone_waits_for_the_next_change(state, market, monkeypatch, queues, waits):
    """On a worker that also serves pairs (no -Q: every queue), a take that finds nothing ends the
    task at once: waiting would hold its pool slot, and a pair behind it."""
    from trading import tasks

    amqp_queues = tasks.evaluate_changed.app.amqp.queues
    if queues is not None:
        monkeypatch.setattr(amqp_queues, "_consume_from", {name: amqp_queues[name] for name in queues})
    monkeypatch.setattr(engine, "get_state", lambda: state)
    waited = []
    monkeypatch.setattr(state, "wait_for_change", lambda timeout_s: waited.append(timeout_s) or False)
    market("BTC")
    state.write_market((), changed=["BTC"])
    assert tasks.evaluate_changed.run() == 1
    assert bool(waited) is waits
    assert not state.redis.exists(keys.EVALUATING_KEY)  # either way the flag is cleared at the end


def test_a_coin_worth_walking_is_marked_for_the_feeds(state, market, redis_client):
    """A batch stores which coins were worth walking (arbitrage:walking), so that the feeds mark them
    on any change of their books, not only of their best levels."""
    market("HOT", **JUMP)
    market("COLD")
    screen(state, ["HOT", "COLD"])
    assert redis_client.zscore(keys.WALKING_KEY, "HOT") is not None
    assert redis_client.zscore(keys.WALKING_KEY, "COLD") is None
    assert 0 < redis_client.ttl(keys.WALKING_KEY) <= keys.TTL_WALKING


def test_the_evaluate_loop_checks_its_real_time_budget_once_a_batch(state, market):
    """A hot thread's CPU budget (marketdata/realtime.py) is checked from the loop it guards: once
    before every take, so a task that screens batch after batch cannot hold a core unchecked."""
    market("BTC")
    checks = []

    class Budget:
        def check(self):
            checks.append(1)

    takes = _recording_takes(state, lambda n: state.write_market((), changed=["BTC"]) if n < 3 else None)
    state.write_market((), changed=["BTC"])
    evaluation.evaluate_while_changing(state, lambda _s: None, requeue=lambda: None, budget_s=0.05, realtime=Budget())
    assert len(checks) == len(takes) >= 3


def _age_caches(seconds: float) -> None:
    """Make this process's cached fee rates, limits and strategies look `seconds` older."""
    from trading import fees, strategies, wiring

    wiring._limits_cache = (wiring._limits_cache[0] - seconds, *wiring._limits_cache[1:])
    fees._cache = (fees._cache[0] - seconds, *fees._cache[1:])
    strategies._cache = (strategies._cache[0] - seconds, *strategies._cache[1:])
    evaluation._refreshed_at -= seconds


def test_the_screen_reads_no_database_for_caches_a_few_seconds_old_and_an_idle_take_refreshes_them(state, market):
    """A screen re-read the limits, fees and strategies every 5 s, in line: a 10-35 ms stall of the
    ticks in flight. Now a take that finds nothing re-reads what is 5 s old; a screen only what is
    CACHE_MAX_AGE_S old, or what an edit changed (the version)."""
    market("HOT", **JUMP)
    screen(state, ["HOT"])  # warms the caches
    _age_caches(engine.CACHE_AGE_S + 1)
    with CaptureQueriesContext(connection) as queries:
        screen(state, ["HOT"])
    assert queries.captured_queries == []
    with CaptureQueriesContext(connection) as queries:  # the same task, now finding nothing: it refreshes
        evaluation.evaluate_while_changing(state, lambda _s: None, requeue=lambda: None, budget_s=0.5, wait=False)
    assert queries.captured_queries == []  # a take that found nothing first: no version seen yet, nothing read
    state.write_market((), changed=["HOT"], changed_at=time.time())
    with CaptureQueriesContext(connection) as queries:
        evaluation.evaluate_while_changing(state, lambda _s: None, requeue=lambda: None, budget_s=0.5, wait=False)
    tables = " ".join(q["sql"] for q in queries.captured_queries)
    assert "guardlimits" in tables and "feeschedule" in tables and "coinstrategy" in tables
    with CaptureQueriesContext(connection) as queries:  # fresh again: the next screen and idle take read nothing
        screen(state, ["HOT"])
        evaluation.evaluate_while_changing(state, lambda _s: None, requeue=lambda: None, budget_s=0.5, wait=False)
    assert queries.captured_queries == []


def test_an_edit_of_the_limits_reaches_the_next_screen_at_once(state, market):
    market("HOT", **JUMP)
    assert screen(state, ["HOT"])[0].signals == 1
    state.clear_pair_claim("HOT")
    from decimal import Decimal

    from liveguard.services import update_limits

    update_limits(state, min_spread_pct=Decimal("50"))  # bumps the version; no cache is forgotten by hand
    assert screen(state, ["HOT"])[0].signals == 0


def test_a_screen_rereads_caches_older_than_its_maximum_age(state, market):
    market("HOT", **JUMP)
    screen(state, ["HOT"])
    _age_caches(evaluation.CACHE_MAX_AGE_S + 1)
    with CaptureQueriesContext(connection) as queries:
        screen(state, ["HOT"])
    assert len(queries.captured_queries) == 3  # the limits, the fee rates, the strategies


def test_a_take_due_to_refresh_the_caches_lets_go_of_the_flag_first(state, market, redis_client):
    """The re-read is idle time, but a change during it must not wait for it: the take before it does
    not linger, so the change queues a task for another worker; this one ends after the re-read."""
    market("HOT", **JUMP)
    screen(state, ["HOT"])
    _age_caches(engine.CACHE_AGE_S + 1)
    state.write_market((), changed=["HOT"], changed_at=time.time())
    started = time.monotonic()
    with CaptureQueriesContext(connection) as queries:
        evaluation.evaluate_while_changing(state, lambda _s: None, requeue=lambda: None, budget_s=2.0)
    assert time.monotonic() - started < 1.0  # it did not linger until its budget's end
    assert len(queries.captured_queries) == 3 and not redis_client.exists(keys.EVALUATING_KEY)
    # Fresh: the next task lingers with the flag held, as always.
    state.write_market((), changed=["HOT"], changed_at=time.time())
    started = time.monotonic()
    evaluation.evaluate_while_changing(state, lambda _s: None, requeue=lambda: None, budget_s=0.3)
    assert time.monotonic() - started >= 0.3
