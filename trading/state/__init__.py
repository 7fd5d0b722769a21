"""Redis hot state (docs/redis-keys.md): StateManager and the records, keys and codec behind it.

records (the trading core's records), keys (every key name, TTL and channel), codec (values as
Redis strings), indexes (bounded record indexes) and a store per concern, composed in manager.
The market data's records and keys live below, in marketdata.records and marketdata.store.
"""

from marketdata.records import BookRecord, FeedStats, FxRecord, Level, PriceRecord

from .accounts import reconcile_max_age_s
from .codec import decode_record, encode_record
from .indexes import INDEX_MAX_MEMBERS
from .keys import (
    EVALUATE_CHANNEL,
    EXECUTIONS_CHANNEL,
    EXPOSURE_PREFIX,
    PREFIX,
    QUOTE_HOLD_MS,
    QUOTE_UNIT,
    SIGNALS_CHANNEL,
    TICKS_CHANNEL,
    TTL_BOOK,
    TTL_COUNTER,
    TTL_EXECUTION,
    TTL_FEED_STATS,
    TTL_FX,
    TTL_HEARTBEAT,
    TTL_METRICS,
    TTL_ORDER,
    TTL_POSITION,
    TTL_PREMIUM,
    TTL_PRICE,
    TTL_RECONCILIATION,
    TTL_RULES,
    TTL_SIGNAL,
    TTL_WARNINGS,
)
from .manager import StateManager
from .records import (
    EvaluationContext,
    ExecutionRecord,
    MetricsRecord,
    OrderRecord,
    PositionRecord,
    PremiumRecord,
    SignalRecord,
    utcnow,
)

__all__ = [
    "EVALUATE_CHANNEL", "EXECUTIONS_CHANNEL", "EXPOSURE_PREFIX", "INDEX_MAX_MEMBERS", "PREFIX", "QUOTE_HOLD_MS", "QUOTE_UNIT",
    "SIGNALS_CHANNEL", "TICKS_CHANNEL", "TTL_BOOK", "TTL_COUNTER", "TTL_EXECUTION", "TTL_FEED_STATS", "TTL_FX",
    "TTL_HEARTBEAT", "TTL_METRICS", "TTL_ORDER", "TTL_POSITION", "TTL_PREMIUM", "TTL_PRICE", "TTL_RECONCILIATION",
    "TTL_RULES", "TTL_SIGNAL", "TTL_WARNINGS",
    "BookRecord", "EvaluationContext", "ExecutionRecord", "FeedStats", "FxRecord", "Level", "MetricsRecord",
    "OrderRecord", "PositionRecord", "PremiumRecord", "PriceRecord", "SignalRecord", "StateManager",
    "decode_record", "encode_record", "reconcile_max_age_s", "utcnow",
]
