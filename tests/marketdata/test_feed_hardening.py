"""Issue 11 (feed part): hostile exchange input must be a counted, skipped message, never a frozen
book, a dead thread, an unusable price or a snapshot storm."""

import copy
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketdata.books import DiffDepthBook, LevelBook
from marketdata.exceptions import BookGapError, FeedMessageError
from marketdata.feeds.binance import BinanceFeed, retry_after_seconds
from marketdata.feeds.upbit import UpbitFeed
from marketdata.parsers import (
    BookSnapshot,
    DepthDiff,
    parse_binance_depth_snapshot,
    parse_binance_message,
    parse_upbit_message,
)
from tests.conftest import RunningFeed, feed_kwargs, wait_for
from tests.exchange_fixtures import load

YEAR_2100_MS = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1000)


def now_ms(offset: float = 0.0) -> int:
    return int((time.time() + offset) * 1000)


def upbit_frame(tms, bid=100, ask=101, code="KRW-BTC") -> bytes:
    return orjson.dumps({"ty": "orderbook", "cd": code, "tms": tms,
                         "obu": [{"ap": ask, "bp": bid, "as": 1.0, "bs": 1.0}]})


def offline_upbit(state):
    return UpbitFeed(state, ["BTC"], ws_url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:9")


# --- 1. timestamps bounded against the local clock --------------------------------------------


def test_future_timestamp_is_a_feed_message_error():
    with pytest.raises(FeedMessageError, match="future"):
        parse_upbit_message(upbit_frame(YEAR_2100_MS))
    with pytest.raises(FeedMessageError, match="future"):
        parse_binance_message(orjson.dumps({"e": "depthUpdate", "E": now_ms(60), "s": "BTCUSDT", "U": 1, "u": 2,
                                            "b": [], "a": []}))
    parse_upbit_message(upbit_frame(now_ms(1)))  # small skew is tolerated


def test_year_2100_snapshot_does_not_freeze_the_upbit_book(state):
    feed = offline_upbit(state)
    assert feed.handle_raw(upbit_frame(now_ms(), 100, 101))
    assert feed.handle_raw(upbit_frame(YEAR_2100_MS, 1, 2))
    assert feed.counts["malformed"] == 1
    assert feed.handle_raw(upbit_frame(now_ms(), 110, 111))  # newer snapshots still apply
    assert feed.counts["out_of_order"] == 0
    assert feed.books["BTC"].top(1)[0][0][0] == Decimal(110)
    feed.flush()
    price = state.get_price("upbit", "BTC")
    assert price.bid == Decimal(110)
    assert price.received_at >= price.timestamp  # the quote's age is never negative


def test_received_at_is_local_time_and_age_never_negative(state):
    feed = offline_upbit(state)
    # Within the tolerated skew the exchange clock may run ahead; the written stamp is capped.
    feed.handle_raw(upbit_frame(now_ms(4)))
    before = datetime.now(UTC)
    feed.flush()
    price = state.get_price("upbit", "BTC")
    assert abs(price.received_at - before) < timedelta(seconds=1)
    assert price.received_at - price.timestamp >= timedelta(0)


# --- 2. no message kills the thread; a crashed loop is restarted ---------------------------------


def test_huge_tms_is_counted_and_skipped(state):
    feed = offline_upbit(state)
    assert feed.handle_raw(b'{"ty":"orderbook","cd":"KRW-BTC","tms":9.9e18,"obu":[{"ap":2,"bp":1,"as":1,"bs":1}]}')
    assert feed.handle_raw(upbit_frame(9_900_000_000_000_000_000 // 1000 * 1000))  # ValueError before issue 11
    assert feed.handle_raw(upbit_frame(2**63 - 1))
    assert feed.counts["malformed"] == 3


def test_any_exception_while_handling_a_message_is_contained(state, monkeypatch):
    feed = offline_upbit(state)

    def explode(raw):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(feed, "handle_message", explode)
    assert feed.handle_raw(b"{}") is True
    assert feed.counts["malformed"] == 1


def test_crashed_feed_loop_is_restarted_and_counted(state):
    feed = offline_upbit(state)
    feed.max_backoff = 0.01
    calls = []

    def run_once():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("unexpected")
        feed.stop_event.set()

    feed.run_once = run_once
    thread = threading.Thread(target=feed.run, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive() and len(calls) == 3
    assert feed.counts["restarts"] == 2
    assert feed.stats().reconnects == 2


# --- 3. numbers bounded in size and precision ---------------------------------------------------


@pytest.mark.parametrize("price", ["1E+999999", "NaN", "Infinity", "-Infinity", "sNaN", "1e15", "1e-40",
                                   "0.0000000000000000001", "0", "-1", "1" * 70, " ", "0x10"])
def test_absurd_binance_numbers_are_rejected(price):
    msg = {"e": "depthUpdate", "E": now_ms(), "s": "BTCUSDT", "U": 1, "u": 2, "b": [[price, "1"]], "a": []}
    with pytest.raises(FeedMessageError):
        parse_binance_message(orjson.dumps(msg))


@pytest.mark.parametrize("price", [1e300, 10**18, 0, -5, 1e-30])
def test_absurd_upbit_numbers_are_rejected(price):
    with pytest.raises(FeedMessageError):
        parse_upbit_message(upbit_frame(now_ms(), bid=price, ask=2 * 10**18 if price == 10**18 else 101))


def test_ordinary_numbers_still_parse():
    [book] = parse_upbit_message(upbit_frame(now_ms(), bid=0.00000123, ask=148880000))
    assert book.bids[0][0] == Decimal("0.00000123")
    diff = parse_binance_message(orjson.dumps({"e": "depthUpdate", "E": now_ms(), "s": "BTCUSDT", "U": 1, "u": 2,
                                               "b": [["0.000000000000000001", "12345678901234.5"]], "a": []}))
    assert diff.bids[0][0] == Decimal("1E-18")


# --- 4. snapshot requests obey 429/418 and buffers are bounded ----------------------------------


def test_retry_after_header_reading():
    assert retry_after_seconds("60", 1) == 60
    assert retry_after_seconds(None, 7) == 7
    for garbage in ("soon", "nan", "-3", "", "1e9999x"):
        assert retry_after_seconds(garbage, 5) == 5
    assert retry_after_seconds("inf", 5) == 600 and retry_after_seconds("1e400", 5) == 600


def test_diff_buffer_is_bounded_and_resyncs_from_a_newer_snapshot():
    book = DiffDepthBook(max_buffer=10)
    for i in range(1, 101):
        book.on_event(DepthDiff("BTCUSDT", i, i, [(Decimal(100 + i), Decimal(1))], [], None))
    assert len(book.buffer) == 10 and book.buffer[0].first_id == 91 and book.dropped == 90
    assert not book.load_snapshot(BookSnapshot("BTCUSDT", [], [], None, last_update_id=50))  # too old
    assert book.load_snapshot(BookSnapshot("BTCUSDT", [(Decimal(1), Decimal(1))], [], None, last_update_id=95))
    assert book.last_update_id == 100


def venue_control(venue, **body):
    response = requests.post(f"{venue.server.binance_url}/_venue/control", json=body, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def depth_rule_hits(venue) -> int:
    rules = requests.get(f"{venue.server.binance_url}/_venue/state", timeout=5).json()["fault_rules"]
    return sum(r["hits"] for r in rules if r["path"] == "/api/v3/depth")


@pytest.mark.parametrize("kind", ["refuse_429", "refuse_418"])
def test_refused_snapshots_are_not_hammered(venue, state, kind):
    venue_control(venue, action="fault", exchange="binance", method="GET", path="/api/v3/depth", kind=kind,
                  retry_after=60, count=0)
    feed = BinanceFeed(state, ["BTC", "ETH", "XRP"], max_backoff=0.2, max_buffer=50, **feed_kwargs(venue, "binance"))
    with RunningFeed(feed):
        wait_for(lambda: feed.counts["snapshot_refused"] >= 1)
        time.sleep(3.0)
        # One refused request, then nothing for any coin until Retry-After has passed.
        assert depth_rule_hits(venue) == 1
        assert feed.counts["snapshot_refused"] == 1
        assert all(len(b.buffer) <= 50 for b in feed.books.values())
        assert any(b.dropped for b in feed.books.values())


def test_snapshot_is_fetched_again_after_a_short_retry_after(venue, state):
    venue_control(venue, action="fault", exchange="binance", method="GET", path="/api/v3/depth",
                  kind="refuse_429", retry_after=1, count=2)
    feed = BinanceFeed(state, ["BTC"], max_backoff=0.2, **feed_kwargs(venue, "binance"))
    started = time.monotonic()
    with RunningFeed(feed):
        wait_for(lambda: state.get_price("binance", "BTC"), timeout=8)
    assert time.monotonic() - started >= 1.9  # two refusals, each waited out
    assert feed.counts["snapshot_refused"] == 2 and feed.books["BTC"].synced


# --- 6. property-based: only the typed error, never a corrupt book ------------------------------

INT64 = st.integers(-(2**63), 2**63 - 1)  # what JSON-from-the-wire can hold (orjson)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
json_scalars = st.none() | st.booleans() | INT64 | st.floats(allow_nan=False) | TEXT
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(TEXT, inner, max_size=4), max_leaves=20)
numberish = (INT64 | st.floats(allow_nan=False, allow_infinity=False)
             | st.sampled_from(["1E+999999", "NaN", "Infinity", "-0", "1e-50", "0.1", "100", "1e14", "", "x"])
             | st.decimals(allow_nan=False, allow_infinity=False).map(str))
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

UPBIT_FIXTURES = ["upbit_ws_orderbook_default_krweth", "upbit_ws_orderbook_simple_list_docexample",
                  "upbit_ws_orderbook_default_docexample"]
BINANCE_FIXTURES = ["binance_ws_depth_diff_docexample", "binance_ws_combined_depth20_wrapper_constructed",
                    "binance_ws_bookticker_docexample", "binance_ws_bookticker_combined_ethusdt_recorded"]


def parse_any(raw):
    for parse in (parse_upbit_message, parse_binance_message):
        try:
            parse(raw)
        except FeedMessageError:
            pass


def check_levels(levels):
    for price, qty in levels:
        assert price.is_finite() and qty.is_finite() and price > 0 and qty >= 0
        assert price < Decimal("1e15") and qty < Decimal("1e15")


def mutate(obj, path_choice, value):
    """Replace one leaf (chosen by index) of a JSON document with value."""
    leaves = []

    def walk(node, parent, key):
        if isinstance(node, dict):
            for k in node:
                walk(node[k], node, k)
        elif isinstance(node, list):
            for i in range(len(node)):
                walk(node[i], node, i)
        if parent is not None:
            leaves.append((parent, key))

    walk(obj, None, None)
    if leaves:
        parent, key = leaves[path_choice % len(leaves)]
        parent[key] = value
    return obj


@FAST
@given(json_values)
def test_arbitrary_json_raises_only_the_typed_error(value):
    parse_any(orjson.dumps(value))


@FAST
@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_the_typed_error(raw):
    parse_any(raw)


@FAST
@given(st.sampled_from(UPBIT_FIXTURES + BINANCE_FIXTURES), st.integers(0, 10_000), json_values | numberish)
def test_mutated_fixtures_raise_only_the_typed_error(name, where, value):
    doc = mutate(copy.deepcopy(load(name)), where, value)
    raw = orjson.dumps(doc)
    for parse in (parse_upbit_message, parse_binance_message):
        try:
            result = parse(raw)
        except FeedMessageError:
            continue
        for event in result if isinstance(result, list) else [result]:
            if isinstance(event, BookSnapshot | DepthDiff):
                check_levels(event.bids)
                check_levels(event.asks)


@FAST
@given(st.integers(0, 10_000), json_values | numberish)
def test_mutated_rest_depth_snapshot_raises_only_the_typed_error(where, value):
    doc = mutate(copy.deepcopy(load("binance_rest_depth_docexample")), where, value)
    try:
        snapshot = parse_binance_depth_snapshot("BTCUSDT", doc)
    except FeedMessageError:
        return
    check_levels(snapshot.bids)
    check_levels(snapshot.asks)


def check_book(book: LevelBook):
    bids, asks = book.top(10_000)
    assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
    assert [p for p, _ in asks] == sorted(p for p, _ in asks)
    assert len(set(p for p, _ in bids)) == len(bids)
    check_levels(bids)
    check_levels(asks)
    assert all(q > 0 for _, q in bids + asks)
    assert book._bid_prices == sorted(book.bids) and book._ask_prices == sorted(book.asks)


level = st.tuples(numberish, numberish).map(list)
diff_msgs = st.builds(lambda u, n, b, a, ts: {"e": "depthUpdate", "E": ts, "s": "BTCUSDT", "U": u, "u": u + n,
                                              "b": b, "a": a},
                      st.integers(0, 50), st.integers(0, 3), st.lists(level, max_size=4), st.lists(level, max_size=4),
                      st.just(now_ms()) | st.integers(-5, 2**63 - 1) | st.just(YEAR_2100_MS))


@FAST
@given(st.lists(diff_msgs, max_size=30), st.integers(0, 20))
def test_diff_sequences_never_corrupt_the_binance_book(msgs, snapshot_id):
    book = DiffDepthBook(max_buffer=8)
    loaded = False
    for i, msg in enumerate(msgs):
        try:
            event = parse_binance_message(orjson.dumps(msg))
        except FeedMessageError:
            continue
        try:
            book.on_event(event)
            if not loaded and i == len(msgs) // 2:
                loaded = True
                book.load_snapshot(BookSnapshot("BTCUSDT", [(Decimal(1), Decimal(1))], [(Decimal(2), Decimal(1))],
                                                None, last_update_id=snapshot_id))
        except BookGapError:
            book.reset()
        assert len(book.buffer) <= 8
        check_book(book)


upbit_units = st.lists(st.fixed_dictionaries({"ap": numberish, "bp": numberish, "as": numberish, "bs": numberish}),
                       max_size=5)


@FAST
@given(st.lists(upbit_units, max_size=10))
def test_upbit_snapshot_sequences_never_corrupt_the_book(units_list):
    book = LevelBook()
    for units in units_list:
        raw = orjson.dumps({"ty": "orderbook", "cd": "KRW-BTC", "tms": now_ms(), "obu": units})
        try:
            [event] = parse_upbit_message(raw)
        except FeedMessageError:
            continue
        book.replace(event.bids, event.asks)
        check_book(book)
        bids, asks = book.top(1)
        if bids and asks:
            assert bids[0][0] < asks[0][0]  # the parser refuses crossed books


NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(10**20), max_value=10**20),
    st.decimals(allow_nan=True, allow_infinity=True).map(str), st.text(alphabet="0123456789.eE-+naif", max_size=40),
    st.booleans(), st.none(),
)


@settings(max_examples=3000, deadline=None)
@given(NUMBERS)
def test_the_fast_number_path_answers_exactly_as_the_checked_one(value):
    """parsers._number checks the common shapes first; for every input it must agree with the full check."""
    from marketdata.parsers import _number, _number_checked

    def outcome(parse):
        try:
            number = parse(value, "x")
        except FeedMessageError:
            return "refused"
        return (str(number), number.as_tuple())

    assert outcome(_number) == outcome(_number_checked)


@settings(max_examples=1000, deadline=None)
@given(st.lists(NUMBERS, min_size=2, max_size=6))
def test_a_remembered_number_is_the_number_sent(values):
    """_number remembers what it parsed; asked again (in any order, -0.0 after 0.0, 1 after 1.0, "1.0"
    after 1.0), it answers as the full check does for each value itself."""
    from marketdata.parsers import _number, _number_checked

    def outcome(parse, value):
        try:
            number = parse(value, "x")
        except FeedMessageError:
            return "refused"
        return (str(number), number.as_tuple())

    for value in [*values, 0.0, -0.0, 1.0, 1, "1.0", "1", *reversed(values)]:
        assert outcome(_number, value) == outcome(_number_checked, value)


UNIT_VALUES = st.one_of(st.floats(min_value=0, max_value=1e6), st.integers(min_value=0, max_value=10**6),
                        st.sampled_from([0, 0.0, -0.0, 1, 1.0, float("nan")]))
UNIT = st.fixed_dictionaries({"ap": UNIT_VALUES, "bp": UNIT_VALUES, "as": UNIT_VALUES, "bs": UNIT_VALUES})


@settings(max_examples=500, deadline=None)
@given(st.lists(st.lists(UNIT, max_size=4), min_size=1, max_size=5), st.randoms())
def test_upbit_frames_parse_the_same_with_the_memo_of_units(frames, rng):
    """The Upbit parser reuses a unit's levels when it equals the one at the same place in the
    market's last frame; a run of frames (units kept, changed, reordered) parses as it does without."""
    import orjson

    from marketdata.parsers import parse_upbit_message

    def outcome(raw, memo):
        try:
            return [(s.bids, s.asks) for s in parse_upbit_message(raw, memo)]
        except FeedMessageError:
            return "refused"

    memo = {}
    previous = []
    for units in frames:
        if previous and rng.random() < 0.5:  # most frames repeat most of the last one's units
            units = previous[: len(units)] + units[len(previous):] if units else previous
        raw = orjson.dumps({"ty": "orderbook", "cd": "KRW-BTC", "tms": 1, "obu": units}, option=orjson.OPT_SERIALIZE_NUMPY)
        assert outcome(raw, memo) == outcome(raw, None)
        previous = units
