"""The risk model (refitted on a schedule): premium volatilities, weights and the VaR budget."""

from __future__ import annotations

from decimal import Decimal

import orjson
import redis

from . import keys
from .records import utcnow


class RiskStore:
    redis: redis.Redis

    def set_risk_model(self, var_95_krw: float | None, vols: dict[str, float], weights: dict[str, float], *,
                       horizon_seconds: int = 3600, var_source: str | None = None, book_var_krw: float | None = None,
                       equity_var_krw: float | None = None, report: dict | None = None) -> None:
        """Replace the model (see keys.RISK_KEY for its fields) and, when given, the refit's report."""
        optional = lambda v: "" if v is None else repr(float(v))  # noqa: E731
        mapping = {"timestamp": utcnow().isoformat(), "horizon_s": str(int(horizon_seconds)), "weighted": str(len(weights)),
                   "var_95_krw": optional(var_95_krw), "var_source": var_source or "",
                   "book_var_95_krw": optional(book_var_krw), "equity_var_95_krw": optional(equity_var_krw)}
        mapping.update({f"vol:{s}": repr(float(v)) for s, v in vols.items()})
        mapping.update({f"weight:{s}": repr(float(w)) for s, w in weights.items()})
        pipe = self.redis.pipeline()
        pipe.delete(keys.RISK_KEY)
        pipe.hset(keys.RISK_KEY, mapping=mapping)
        pipe.expire(keys.RISK_KEY, keys.TTL_RISK)
        if report is not None:
            pipe.set(keys.RISK_REPORT_KEY, orjson.dumps(report, option=orjson.OPT_NON_STR_KEYS, default=str), ex=keys.TTL_RISK)
        pipe.execute()

    def risk_model(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.redis.hgetall(keys.RISK_KEY).items()}

    def risk_report(self) -> dict | None:
        raw = self.redis.get(keys.RISK_REPORT_KEY)
        return orjson.loads(raw) if raw else None

    def var_budget_krw(self) -> Decimal | None:
        """The VaR budget in KRW over one day (equity or premium book VaR at 95 %); None without one."""
        raw = self.redis.hget(keys.RISK_KEY, "var_95_krw")
        return Decimal(raw.decode()) if raw else None

    def var_budget(self) -> Decimal | None:
        """The VaR budget as a share of the published total balance (what maybe_trip_breaker
        multiplies the balance by): var_95_krw / total_balance; None without either."""
        var_krw, total = self.redis.pipeline(transaction=False).hget(keys.RISK_KEY, "var_95_krw") \
            .hget(keys.METRICS_KEY, "total_balance").execute()
        if not var_krw or not total or Decimal(total.decode()) <= 0:
            return None
        return Decimal(var_krw.decode()) / Decimal(total.decode())
