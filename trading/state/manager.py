"""StateManager: the one entry point to the hot state, composed of a store per concern."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from marketdata.store import MarketStore

from . import keys
from .accounts import AccountStore, fresh_reconciliation
from .codec import decode_book, decode_record, decode_sample_value, text
from .coordination import CoordinationStore
from .evaluation import EvaluationStore
from .guard import GuardStore
from .orders import OrderStore
from .records import EvaluationContext, FxRecord, utcnow
from .risk import RiskStore
from .signals import SignalStore


class StateManager(EvaluationStore, SignalStore, OrderStore, GuardStore, CoordinationStore, RiskStore, AccountStore,
                   MarketStore):
    """Typed reads and writes of the hot state; key strings are built only in keys (and marketdata.store)."""

    def __init__(self, client):
        super().__init__(client)
        self._books = {}
        self._steps = {}
        self._save_premiums = client.register_script(self._SAVE_PREMIUMS)

    def evaluation_context(self, symbol: str, fx_source: str) -> EvaluationContext:
        """Everything one evaluation reads from Redis, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.book_key("upbit", symbol))
        pipe.get(keys.book_key("binance", symbol))
        pipe.hgetall(keys.fx_key(fx_source))
        pipe.hgetall(keys.fx_key("reference"))
        pipe.get(keys.LIMITS_VERSION_KEY)
        pipe.get(keys.KILL_KEY)
        pipe.get(keys.BREAKER_KEY)
        pipe.ttl(keys.BREAKER_KEY)
        pipe.sismember(keys.WARNINGS_KEY, symbol)
        pipe.sismember(keys.PAUSED_KEY, symbol)
        pipe.hget(keys.rules_key("binance", symbol), "step_size")
        pipe.hmget(keys.METRICS_KEY, "total_balance", "pnl_today", "pnl_total", "timestamp")
        pipe.hmget(keys.RISK_KEY, f"vol:{symbol}", f"weight:{symbol}", "weighted")
        # The oldest rate of the last minute: the baseline for the FX jump check.
        now = utcnow().timestamp()
        pipe.zrangebyscore(keys.fx_history_key(fx_source), now - 60, "+inf", start=0, num=1)
        pipe.get(keys.RECONCILIATION_KEY)
        pipe.get(keys.exposure_key(symbol))
        (upbit, binance, fx, reference, version, kill, breaker, breaker_ttl, warning, paused, step, total, risk,
         fx_before, reconciliation, exposure) = pipe.execute()
        return EvaluationContext(
            upbit=decode_book(upbit) if upbit else None,
            binance=decode_book(binance) if binance else None,
            fx=decode_record(FxRecord, fx),
            reference_fx=decode_record(FxRecord, reference),
            limits_version=int(version or 0),
            kill_switch=None if kill is None else text(kill) == "1",
            breaker=(text(breaker), max(int(breaker_ttl), 0)) if breaker is not None else None,
            market_warning=bool(warning),
            paused=bool(paused),
            reconciled=bool((fresh_reconciliation(reconciliation) or {}).get("ok")),
            lot_step=Decimal(text(step)) if step else None,
            total_balance=Decimal(text(total[0])) if total[0] else None,
            pnl=(Decimal(text(total[1])), Decimal(text(total[2])), datetime.fromisoformat(text(total[3])))
            if total[1] and total[2] and total[3] else None,
            volatility=float(text(risk[0])) if risk[0] else None,
            weight=float(text(risk[1])) if risk[1] else None,
            weighted_symbols=int(text(risk[2])) if risk[2] else 0,
            exposure_krw=int(exposure or 0),
            fx_minute_ago=decode_sample_value(fx_before[0]) if fx_before else None,
        )
