"""Metrics read from the shared state at scrape time: feeds, books, money, the guard, queues.

Everything here is already in Redis (or the database) because the processes that own it publish
it there, so it is correct across processes by construction and costs the hot path nothing. A
scrape that cannot read Redis says so (kimp_state_up 0) instead of failing the whole exposition.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from functools import cache

import redis
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from liveguard import guard as lg
from liveguard.models import GuardLimits

from .models import Pair
from .state import StateManager, keys, utcnow
from .state.codec import decode_book

log = logging.getLogger(__name__)
VENUES = ("upbit", "binance")
FEED_COUNTERS = (("messages", "Feed messages received"), ("malformed", "Feed messages that could not be parsed"),
                 ("out_of_order", "Feed messages out of sequence"), ("resyncs", "Order book resyncs from a snapshot"),
                 ("reconnects", "Feed reconnections"))
# kombu's Redis transport keeps a priority's messages in "<queue>\x06\x16<priority>" beside "<queue>".
KOMBU_PRIORITY_SEP = "\x06\x16"
KOMBU_PRIORITIES = (3, 6, 9)


@cache
def broker(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def age(moment: datetime | None) -> float:
    """Seconds since moment; +Inf when there is none (an expired heartbeat is infinitely old)."""
    return (utcnow() - moment).total_seconds() if moment else math.inf


def gauge(name: str, documentation: str, value=None, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value, labels=labels or None)


class StateCollector(Collector):
    """Yields the shared state's metrics on every collect()."""

    def __init__(self, state: StateManager):
        self.state = state

    def collect(self):
        try:
            families = [*self.feeds(), *self.books(), *self.heartbeats(), *self.money(), *self.exposure(), *self.guard(),
                        *self.reconciliation()]
            up = 1
        except redis.RedisError as exc:
            log.warning("metrics: state unreadable: %s", exc)
            families, up = [], 0
        yield gauge("kimp_state_up", "1 when the hot state (Redis) could be read for this scrape", up)
        yield from families
        yield from self.queues()
        yield from self.pairs()

    def feeds(self):
        counters = {field: CounterMetricFamily(f"kimp_feed_{field}", text, labels=["venue"]) for field, text in FEED_COUNTERS}
        connected = gauge("kimp_feed_connected", "1 while the feed's connection is up", labels=("venue",))
        stats_age = gauge("kimp_feed_stats_age_seconds", "Age of the feed's last published statistics", labels=("venue",))
        for venue in VENUES:
            stats = self.state.get_feed_stats(venue)
            if stats is None:  # expired: the feed has not flushed for a minute
                continue
            for field, _ in FEED_COUNTERS:
                counters[field].add_metric([venue], getattr(stats, field))
            connected.add_metric([venue], stats.connected)
            stats_age.add_metric([venue], age(stats.timestamp))
        return [*counters.values(), connected, stats_age]

    def books(self):
        family = gauge("kimp_book_age_seconds", "Age of the newest book the feed received, per venue and coin",
                       labels=("venue", "coin"))
        coins = sorted(set(self.state.premium_symbols()) | set(settings.FEED_SYMBOLS))
        pipe = self.state.redis.pipeline(transaction=False)
        for coin in coins:
            for venue in VENUES:
                pipe.get(keys.book_key(venue, coin))
        raws = iter(pipe.execute())
        for coin in coins:
            for venue in VENUES:
                raw = next(raws)
                if raw is not None:
                    book = decode_book(raw)
                    family.add_metric([venue, coin], age(book.received_at or book.timestamp))
        return [family]

    def heartbeats(self):
        family = gauge("kimp_heartbeat_age_seconds", "Seconds since each component's last heartbeat (+Inf: expired)",
                       labels=("component",))
        for component, seen in sorted(self.state.heartbeats().items()):
            family.add_metric([component], age(seen))
        return [family]

    def money(self):
        record = self.state.get_metrics()
        out = []
        try:
            limits = GuardLimits.load()
            out += [gauge("kimp_daily_loss_limit_krw", "GuardLimits.max_daily_loss", float(limits.max_daily_loss)),
                    gauge("kimp_total_exposure_limit_krw", "GuardLimits.max_total_exposure", float(limits.max_total_exposure))]
        except DatabaseError as exc:
            log.warning("metrics: limits unreadable: %s", exc)
        if record is None:  # beat's publish_metrics has not run for TTL_METRICS
            return out
        for name, text, value in (("equity_krw", "Equity at each venue's marks", record.equity),
                                  ("pnl_today_krw", "Equity change since the trading day began, less its flows",
                                   record.pnl_today),
                                  ("pnl_total_krw", "Equity less all flows", record.pnl_total),
                                  ("daily_loss_krw", "Today's loss (0 when today is a gain)", record.daily_loss),
                                  ("available_krw", "Quote balances (KRW and USDT) in KRW", record.available_balance),
                                  ("metrics_age_seconds", "Age of the published equity figures", None)):
            out.append(gauge(f"kimp_{name}", text, float(value) if value is not None else age(record.timestamp)))
        return out

    def exposure(self):
        family = gauge("kimp_exposure_krw", "KRW reserved or held per coin", labels=("coin",))
        for coin in sorted(self.state.exposure_symbols()):
            family.add_metric([coin], self.state.exposure(coin))
        return [family, gauge("kimp_exposure_total_krw", "KRW reserved or held across every coin", self.state.total_exposure())]

    def guard(self):
        engaged = bool(self.state.kill_switch()) or lg.db_kill_switch()  # read only: the mirror is beat's to repair
        breaker = self.state.breaker()
        return [gauge("kimp_kill_switch_engaged", "1 while the kill switch stops trading", int(engaged)),
                gauge("kimp_breaker_tripped", "1 while the circuit breaker halts trading", int(breaker is not None)),
                gauge("kimp_breaker_cooldown_seconds", "Seconds left on the breaker's cool-down", breaker[1] if breaker else 0),
                gauge("kimp_paused_coins", "Coins paused (by an operator or an unresolved pair)", len(self.state.paused_symbols()))]

    def reconciliation(self):
        report = self.state.reconciliation()
        if report is None:  # never run (paper mode does not reconcile against venues)
            return []
        checked = datetime.fromisoformat(report["checked_at"]) if report.get("checked_at") else None
        return [gauge("kimp_reconciliation_age_seconds", "Seconds since the ledger was last reconciled with the venues",
                      age(checked)),
                gauge("kimp_reconciliation_ok", "1 when the last fresh reconciliation found no difference",
                      int(bool(report.get("ok")))),
                gauge("kimp_reconciliation_differences", "Differences the last reconciliation found",
                      len(report.get("differences") or []))]

    def queues(self):
        family = gauge("kimp_celery_queue_length", "Messages waiting in each Celery queue on the broker", labels=("queue",))
        try:
            pipe = broker(settings.CELERY_BROKER_URL).pipeline(transaction=False)
            for queue in settings.METRICS_CELERY_QUEUES:
                pipe.llen(queue)
                for priority in KOMBU_PRIORITIES:
                    pipe.llen(f"{queue}{KOMBU_PRIORITY_SEP}{priority}")
            lengths = iter(pipe.execute())
        except redis.RedisError as exc:
            log.warning("metrics: broker unreadable: %s", exc)
            return
        for queue in settings.METRICS_CELERY_QUEUES:
            family.add_metric([queue], sum(next(lengths) for _ in range(1 + len(KOMBU_PRIORITIES))))
        yield family

    def pairs(self):
        """Pairs not closed, by stage: a flagged one is leg risk a person must settle."""
        family = gauge("kimp_pairs_open", "Pairs not closed, by stage", labels=("stage",))
        try:
            counts = dict.fromkeys([s for s in Pair.Stage.values if s != Pair.Stage.CLOSED], 0)
            counts.update(Pair.objects.exclude(stage=Pair.Stage.CLOSED).values_list("stage").order_by().annotate(n=Count("pk")))
        except DatabaseError as exc:
            log.warning("metrics: pairs unreadable: %s", exc)
            return
        for stage, count in sorted(counts.items()):
            family.add_metric([stage], count)
        yield family
