"""The ledger's replay goes on from where it was (accounting.replay): the same book as a replay from the
start, whatever was booked, committed late, rolled back or revalued in between."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading import accounting, ledger
from trading.accounting import Marks
from trading.models import Balance, Fill, LedgerEntry, Order, Pair, Transfer

from .test_accounting import fill

pytestmark = pytest.mark.django_db
LATER = datetime.now(UTC) + timedelta(days=3650)


def from_the_start() -> accounting.Book:
    return accounting.replay(until=LATER)  # a bounded replay never goes on from a previous one


def same(a: accounting.Book, b: accounting.Book) -> bool:
    def held(d):
        return {k: v for k, v in d.items() if v}

    return (held(a.quantity), held(a.basis), a.flows, a.realized, a.realized_fees, a.unvalued) == \
        (held(b.quantity), held(b.basis), b.flows, b.realized, b.realized_fees, b.unvalued)


def test_only_the_entries_booked_since_are_read(django_assert_max_num_queries):
    for _ in range(30):
        ledger.deposit("upbit", "KRW", D("1000"), value_krw=D("1000"))
    accounting.replay()
    ledger.deposit("binance", "USDT", D("10"), value_krw=D("14000"))
    with django_assert_max_num_queries(3):  # the check of what was read (2), and what is new
        book = accounting.replay()
    assert book.flows == D("44000") and same(book, from_the_start())


def test_an_entry_committed_late_with_a_lower_id_is_not_missed():
    """Two bookings take ids 1 and 2; the one with 2 commits first and is read; then 1 commits."""
    first = ledger.post("upbit", "KRW", D("1000"), LedgerEntry.Kind.DEPOSIT, value_krw=D("1000"))
    LedgerEntry.objects.create(id=first.id + 10, venue="upbit", asset="KRW", amount=D("5"), kind="deposit",
                               value_krw=D("5"))
    assert accounting.replay().flows == D("1005")
    LedgerEntry.objects.create(id=first.id + 5, venue="upbit", asset="KRW", amount=D("7"), kind="deposit",
                               value_krw=D("7"))
    assert accounting.replay().flows == D("1012")


def test_a_transaction_with_ids_on_both_sides_of_the_last_read_is_read_whole(monkeypatch):
    """It took an id below the last one read and one above, and committed just before the entries
    booked since were read: those include only its upper half, so the book is rebuilt from the start,
    never with one leg of a pair."""
    first = ledger.post("upbit", "KRW", D("1000"), LedgerEntry.Kind.DEPOSIT, value_krw=D("1000"))
    LedgerEntry.objects.create(id=first.id + 10, venue="upbit", asset="KRW", amount=D("5"), kind="deposit", value_krw=D("5"))
    assert accounting.replay().flows == D("1005")
    original = accounting._Replay.feed
    committed = []

    def commit_first(self, entries):
        if not committed:  # the other transaction commits now, between any check and this read
            committed.append(1)
            for offset, amount in ((5, "7"), (12, "11")):
                LedgerEntry.objects.create(id=first.id + offset, venue="upbit", asset="KRW", amount=D(amount),
                                           kind="deposit", value_krw=D(amount))
        return original(self, entries)

    monkeypatch.setattr(accounting._Replay, "feed", commit_first)
    assert accounting.replay().flows == D("1023")


def test_an_update_cut_short_leaves_nothing_behind(monkeypatch):
    """A time limit or an error while the entries booked since are applied: the next replay is right."""
    ledger.deposit("upbit", "KRW", D("1000"), value_krw=D("1000"))
    accounting.replay()
    ledger.deposit("upbit", "KRW", D("50"), value_krw=D("50"))
    ledger.deposit("upbit", "KRW", D("7"), value_krw=D("7"))
    applied = []
    original = accounting.Book.apply_flow

    def once_then_fail(self, *args):
        applied.append(args)
        if len(applied) == 2:
            raise RuntimeError("soft time limit")
        return original(self, *args)

    monkeypatch.setattr(accounting.Book, "apply_flow", once_then_fail)
    with pytest.raises(RuntimeError):
        accounting.replay()
    monkeypatch.setattr(accounting.Book, "apply_flow", original)
    assert accounting.replay().flows == D("1057") and same(accounting.replay(), from_the_start())


def test_a_fill_left_unvalued_does_not_turn_the_going_on_off(monkeypatch):
    """Only flows are ever valued later (value_flows); a fee no price could value stays as it is."""
    ledger.deposit("binance", "USDT", D("1000"), value_krw=D("1400000"))
    pair = Pair.objects.create(symbol="BTC", buy_exchange="binance", sell_exchange="upbit", fx_rate=D("1400"))
    fill(pair, "binance", "buy", "100000", "0.001", "0.0001", "BNB")  # a BNB fee without a value
    assert accounting.replay().unvalued
    ledger.deposit("upbit", "KRW", D("1000"), value_krw=D("1000"))
    fed = []
    original = accounting._Replay.feed
    monkeypatch.setattr(accounting._Replay, "feed", lambda self, entries: original(self, fed.extend(e := list(entries)) or e))
    book = accounting.replay()
    assert len(fed) == 1 and same(book, from_the_start())


def test_entries_rolled_back_after_they_were_read_are_forgotten():
    ledger.deposit("upbit", "KRW", D("1000"), value_krw=D("1000"))
    with pytest.raises(RuntimeError), transaction.atomic():
        ledger.deposit("upbit", "KRW", D("50"), value_krw=D("50"))
        assert accounting.replay().flows == D("1050")  # read inside the transaction
        raise RuntimeError
    assert accounting.replay().flows == D("1000")


def test_flows_valued_after_they_were_read_are_read_again():
    ledger.deposit("binance", "USDT", D("100"))  # no value yet
    assert accounting.replay().unvalued
    accounting.value_flows(Marks(D("1400")))
    book = accounting.replay()
    assert book.flows == D("140000") and not book.unvalued


def test_a_book_handed_out_does_not_change_afterwards():
    ledger.deposit("upbit", "KRW", D("1000"), value_krw=D("1000"))
    book = accounting.replay()
    ledger.deposit("upbit", "KRW", D("1000"), value_krw=D("1000"))
    accounting.replay()
    assert book.flows == D("1000") and book.quantity[("upbit", "KRW")] == D("1000")


def depart(amount: D, fee: D = D("0.0001")) -> Transfer:
    """A withdrawal from Binance booked as the transfer service books it: out, in transit, the fee."""

    t = Transfer.objects.create(asset="BTC", amount=amount, fee=fee, from_venue="binance", to_venue="upbit",
                                network="BTC", address="ours", client_id=f"t{Transfer.objects.count()}",
                                stage="in_transit")
    ledger.post_many([LedgerEntry(venue="binance", asset="BTC", amount=-amount, kind="transfer", transfer=t),
                      LedgerEntry(venue="to_upbit", asset="BTC", amount=amount, kind="transfer", transfer=t),
                      LedgerEntry(venue="binance", asset="BTC", amount=-fee, kind="fee", transfer=t)])
    return t


def arrive(t) -> None:
    ledger.post_many([LedgerEntry(venue="to_upbit", asset="BTC", amount=-t.amount, kind="transfer", transfer=t),
                      LedgerEntry(venue="upbit", asset="BTC", amount=t.amount, kind="transfer", transfer=t)])
    type(t).objects.filter(pk=t.pk).update(stage="arrived")


def test_a_transfer_booked_out_and_in_with_nothing_between_carries_its_cost_to_the_coins_that_arrived():
    """1 BTC on Binance at a cost of 140,000,000 KRW; 0.5 leaves (fee 0.0001) and arrives on Upbit. Its
    two bookings share the transfer and, with no other entry between them, neighbouring ids."""
    ledger.deposit("binance", "BTC", D("1"), value_krw=D("140000000"))
    arrive(depart(D("0.5")))
    book = from_the_start()
    assert book.quantity[("to_upbit", "BTC")] == 0 and book.basis[("to_upbit", "BTC")] == 0
    assert book.quantity[("upbit", "BTC")] == D("0.5") and book.basis[("upbit", "BTC")] == D("70000000")
    assert book.quantity[("binance", "BTC")] == D("0.4999") and book.basis[("binance", "BTC")] == D("69986000")
    assert book.realized == book.realized_fees == D("-14000")  # 0.0001 BTC at 140,000,000 a coin
    assert book.total_basis() == book.flows + book.realized


def test_a_transfer_booking_split_by_another_sessions_entry_still_carries_its_cost():
    """A multi-row insert's ids can interleave with another session's: the departure's entries are
    not neighbours. The coins' cost still travels with them, none of it realized."""
    ledger.deposit("binance", "BTC", D("1"), value_krw=D("140000000"))
    t = Transfer.objects.create(asset="BTC", amount=D("0.5"), fee=D("0.0001"), from_venue="binance", to_venue="upbit",
                                network="BTC", address="ours", client_id="split", stage="in_transit")
    base = LedgerEntry.objects.order_by("-id").first().id + 10
    rows = [(0, "binance", "BTC", "-0.5", "transfer", t), (1, "upbit", "KRW", "1000", "deposit", None),  # the other session's
            (2, "to_upbit", "BTC", "0.5", "transfer", t), (3, "binance", "BTC", "-0.0001", "fee", t),
            (7, "to_upbit", "BTC", "-0.5", "transfer", t), (8, "upbit", "ETH", "1", "deposit", None),
            (9, "upbit", "BTC", "0.5", "transfer", t)]
    for offset, venue, asset, amount, kind, transfer in rows:
        LedgerEntry.objects.create(id=base + offset, venue=venue, asset=asset, amount=D(amount), kind=kind,
                                   transfer=transfer, value_krw=D(amount) if kind == "deposit" else None)
    for book in (from_the_start(), accounting.replay()):
        assert book.basis[("upbit", "BTC")] == D("70000000") and book.basis[("to_upbit", "BTC")] == 0
        assert book.realized == book.realized_fees == D("-14000")
        assert book.total_basis() == book.flows + book.realized


events = st.lists(st.one_of(
    st.tuples(st.just("deposit"), st.sampled_from([("upbit", "KRW"), ("binance", "USDT"), ("binance", "BTC")]),
              st.integers(1, 10_000)),
    st.tuples(st.just("fill"), st.sampled_from(["upbit", "binance"]), st.sampled_from(["buy", "sell"]),
              st.integers(1, 1000), st.booleans()),
    st.tuples(st.just("transfer"), st.integers(1, 100)),
    st.just(("arrive",)),
    st.just(("replay",)),
    st.just(("rollback",)),
), min_size=1, max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(events=events)
def test_going_on_gives_the_book_a_replay_from_the_start_gives(events):

    for model in (LedgerEntry, Fill, Order, Transfer, Pair, Balance):
        model.objects.all().delete()
    pair = Pair.objects.create(symbol="BTC", buy_exchange="binance", sell_exchange="upbit", fx_rate=D("1400"))

    def book(event):
        if event[0] == "deposit":
            _, (venue, asset), amount = event
            ledger.deposit(venue, asset, D(amount), value_krw=D(amount) * 1400)
        elif event[0] == "fill":
            _, venue, side, milli, fee_in_coin = event
            quote = "KRW" if venue == "upbit" else "USDT"
            price = "140000000" if venue == "upbit" else "100000"
            qty = D(milli) / 100000
            fill(pair, venue, side, price, str(qty), str(qty / 1000), "BTC" if fee_in_coin else quote)
        elif event[0] == "transfer":
            depart(D(event[1]) / 1000)
        elif event[0] == "arrive":
            moving = Transfer.objects.filter(stage="in_transit").first()
            if moving is not None:
                arrive(moving)

    for event in events:
        if event[0] == "replay":
            assert same(accounting.replay(), from_the_start())
        elif event[0] == "rollback":
            with pytest.raises(RuntimeError), transaction.atomic():
                book(("deposit", ("upbit", "KRW"), 3))
                accounting.replay()
                raise RuntimeError
        else:
            book(event)
    assert same(accounting.replay(), from_the_start())
