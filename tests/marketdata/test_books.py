from decimal import Decimal as D

import pytest

from marketdata.books import DiffDepthBook
from marketdata.exceptions import BookGapError
from marketdata.parsers import BookSnapshot, DepthDiff


def diff(first, final, bids=(), asks=()):
    return DepthDiff("BTCUSDT", first, final, [(D(p), D(q)) for p, q in bids], [(D(p), D(q)) for p, q in asks], None)


def snapshot(last, bids, asks):
    return BookSnapshot("BTCUSDT", [(D(p), D(q)) for p, q in bids], [(D(p), D(q)) for p, q in asks], None, last)


def test_buffers_until_snapshot_then_drops_events_the_snapshot_contains():
    book = DiffDepthBook()
    assert book.on_event(diff(98, 100, bids=[("9", "1")])) is False  # buffered
    assert book.on_event(diff(101, 103, bids=[("10", "2")], asks=[("11", "0")])) is False
    assert book.load_snapshot(snapshot(100, [("9", "5")], [("11", "3"), ("12", "4")]))
    # The first event (u=100) was inside the snapshot and is ignored; the second applies.
    assert book.bids == {D("9"): D("5"), D("10"): D("2")}
    assert book.asks == {D("12"): D("4")}
    assert book.last_update_id == 103


def test_refuses_a_snapshot_older_than_the_first_buffered_event():
    book = DiffDepthBook()
    book.on_event(diff(200, 205))
    assert book.load_snapshot(snapshot(150, [("1", "1")], [("2", "1")])) is False
    assert not book.synced


def test_detects_a_gap_in_update_ids():
    book = DiffDepthBook()
    book.load_snapshot(snapshot(10, [("1", "1")], [("2", "1")]))
    book.on_event(diff(11, 12, bids=[("1.5", "1")]))
    with pytest.raises(BookGapError, match="jump from 12 to 14"):
        book.on_event(diff(14, 15))
    # The book was not touched by the event after the gap.
    assert book.last_update_id == 12


def test_zero_quantity_removes_a_level_and_removing_an_unknown_level_is_harmless():
    book = DiffDepthBook()
    book.load_snapshot(snapshot(1, [("1", "1"), ("0.9", "2")], [("2", "1")]))
    book.on_event(diff(2, 2, bids=[("1", "0"), ("0.5", "0")]))
    assert book.bids == {D("0.9"): D("2")}


def test_top_returns_best_levels_in_order():
    book = DiffDepthBook()
    book.load_snapshot(snapshot(1, [("1", "1"), ("3", "1"), ("2", "1")], [("6", "1"), ("4", "1"), ("5", "1")]))
    bids, asks = book.top(2)
    assert [p for p, _ in bids] == [D("3"), D("2")]
    assert [p for p, _ in asks] == [D("4"), D("5")]


def test_stale_events_after_sync_are_ignored():
    book = DiffDepthBook()
    book.load_snapshot(snapshot(50, [("1", "1")], [("2", "1")]))
    assert book.on_event(diff(40, 45, bids=[("1", "9")])) is False
    assert book.bids[D("1")] == D("1")


def test_sorted_sides_stay_consistent_with_the_levels_under_random_updates():
    import random

    rng = random.Random(1)
    book = DiffDepthBook()
    book.load_snapshot(snapshot(0, [], []))
    truth_bids, truth_asks = {}, {}
    for i in range(1, 3000):
        bids = [(D(rng.randint(90, 99)), D(rng.choice([0, 0, 1, 2, 3]))) for _ in range(3)]
        asks = [(D(rng.randint(100, 110)), D(rng.choice([0, 1, 2]))) for _ in range(3)]
        book.on_event(diff(i, i, [(str(p), str(q)) for p, q in bids], [(str(p), str(q)) for p, q in asks]))
        for side, levels in ((truth_bids, bids), (truth_asks, asks)):
            for p, q in levels:
                if q:
                    side[p] = q
                else:
                    side.pop(p, None)
    top_bids, top_asks = book.top(5)
    assert top_bids == sorted(truth_bids.items(), reverse=True)[:5]
    assert top_asks == sorted(truth_asks.items())[:5]
