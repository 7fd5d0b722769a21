"""The accounts' published view: metrics, equity samples, reconciliation, rebalancing, transfer costs."""

from __future__ import annotations

from decimal import Decimal

import orjson
import redis

from . import keys
from .codec import decode_record, decode_samples, encode_record, encode_sample, text
from .records import MetricsRecord, utcnow


def reconcile_max_age_s() -> int:
    """RECONCILE_MAX_AGE_S from the Django settings when they are configured, else the default."""
    try:
        from django.conf import settings

        return int(getattr(settings, "RECONCILE_MAX_AGE_S", keys.TTL_RECONCILIATION))
    except Exception:  # settings not configured (a script using the state alone)
        return keys.TTL_RECONCILIATION


def fresh_reconciliation(raw) -> dict | None:
    """The stored result while it has not expired, else None."""
    report = orjson.loads(raw) if raw else None
    if report is None or float(report.get("expires_at") or 0) <= utcnow().timestamp():
        return None
    return report


class AccountStore:
    redis: redis.Redis

    EQUITY_HISTORY_KEY = keys.EQUITY_HISTORY_KEY

    @staticmethod
    def metrics_key() -> str:
        return keys.METRICS_KEY

    # metrics --------------------------------------------------------------------------------
    def set_metrics(self, metrics: MetricsRecord) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(keys.METRICS_KEY, mapping=encode_record(metrics))
        pipe.expire(keys.METRICS_KEY, keys.TTL_METRICS)
        pipe.execute()

    def get_metrics(self) -> MetricsRecord | None:
        return decode_record(MetricsRecord, self.redis.hgetall(keys.METRICS_KEY))

    # equity samples (the accounting samples equity about once a second) ------------------------
    def sample_equity(self, ts: float, value: Decimal) -> None:
        """Add an equity sample (KRW) at ts (epoch seconds); a day of samples is kept."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(keys.EQUITY_HISTORY_KEY, {encode_sample(ts, value): ts})
        pipe.zremrangebyscore(keys.EQUITY_HISTORY_KEY, "-inf", ts - keys.EQUITY_HISTORY_SECONDS)
        pipe.expire(keys.EQUITY_HISTORY_KEY, keys.EQUITY_HISTORY_SECONDS)
        pipe.execute()

    def equity_history(self) -> list[tuple[float, Decimal]]:
        return decode_samples(self.redis.zrange(keys.EQUITY_HISTORY_KEY, 0, -1))

    # reconciliation: a result expires, so a stale "ok" never keeps live trading open -------------
    def set_reconciliation(self, report: dict, max_age_s: int | None = None) -> None:
        """Store the result for max_age_s (RECONCILE_MAX_AGE_S, default 180 s); a copy without
        the short expiry is kept for /health to show when the last check ran."""
        max_age_s = max_age_s or reconcile_max_age_s()
        now = utcnow()
        payload = orjson.dumps({**report, "checked_at": now.isoformat(),
                                "expires_at": (now.timestamp() + max_age_s)})
        pipe = self.redis.pipeline()
        pipe.set(keys.RECONCILIATION_KEY, payload, ex=max_age_s)
        pipe.set(keys.RECONCILIATION_LAST_KEY, payload, ex=keys.TTL_COUNTER)
        pipe.execute()

    def reconciliation(self) -> dict | None:
        """The current result; once expired the last one with ok=False and stale=True; None if never run."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.RECONCILIATION_KEY)
        pipe.get(keys.RECONCILIATION_LAST_KEY)
        current, last = pipe.execute()
        report = fresh_reconciliation(current)
        if report is not None:
            return report
        if last:
            return {**orjson.loads(last), "ok": False, "stale": True}
        return None

    # rebalancing and transfer costs -------------------------------------------------------------
    def set_rebalance(self, suggestions: list[dict]) -> None:
        self.redis.set(keys.REBALANCE_KEY, orjson.dumps(suggestions), ex=keys.TTL_METRICS)

    def rebalance(self) -> list[dict]:
        raw = self.redis.get(keys.REBALANCE_KEY)
        return orjson.loads(raw) if raw else []

    def set_transfer_cost(self, asset: str, pct: Decimal) -> None:
        """The last transfer's fee as a share of it (%): the inventory strategy's amortised cost."""
        self.redis.set(keys.transfer_cost_key(asset), str(pct), ex=keys.TTL_TRANSFER_COST)

    def transfer_cost(self, asset: str) -> Decimal | None:
        raw = self.redis.get(keys.transfer_cost_key(asset))
        return Decimal(text(raw)) if raw else None
