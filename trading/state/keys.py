"""Every Redis key name, TTL and channel of the hot state (docs/redis-keys.md); the market data's come from
marketdata.store, which owns them.

A key is built here and nowhere else, so a rename or a new TTL is one edit.
"""

from decimal import Decimal

from marketdata.store import (  # noqa: F401  (the market data's keys, re-exported for one place to look)
    DIRTY_KEY,
    EVALUATE_CHANNEL,
    EVALUATING_KEY,
    EVALUATING_MS,
    HEARTBEATS_INDEX_KEY,
    PREFIX,
    REFRESH_S,
    TICKS_CHANNEL,
    TTL_BOOK,
    TTL_DIRTY,
    TTL_FEED_STATS,
    TTL_FX,
    TTL_HEARTBEAT,
    TTL_PRICE,
    TTL_RULES,
    TTL_WALKING,
    WAKE_KEY,
    WALKING_KEY,
    WALKING_S,
    book_key,
    book_top_key,
    feed_stats_key,
    fx_history_key,
    fx_key,
    heartbeat_key,
    price_key,
    rules_key,
)

TTL_SIGNAL = 300
TTL_ORDER = 86400
TTL_POSITION = 86400
TTL_EXECUTION = 86400
TTL_METRICS = 300
TTL_PREMIUM = 300
TTL_WARNINGS = 3600
TTL_COUNTER = 2 * 86400
TTL_TRANSFER_COST = 86400
TTL_RISK = 3600
# A reconciliation result is trusted this long (reconcile runs every 60 s in live mode); after
# that it is stale and live trading waits (RECONCILE_MAX_AGE_S overrides).
TTL_RECONCILIATION = 180
# A pair's quote reservation is held at most this long: a worker that dies mid-pair cannot keep
# the venue's quote blocked for ever. Longer than any pair takes to send and book.
QUOTE_HOLD_MS = 300_000
# Quote reservations are integers in hundredths of the venue's quote currency (KRW or USDT):
# what a pair needs is rounded up, what the ledger holds rounded down.
QUOTE_UNIT = Decimal("0.01")
# A day of equity samples is kept.
EQUITY_HISTORY_SECONDS = 86400

# Announcements of stored signals and executions (JSON of the record), for dashboards and benchmarks.
SIGNALS_CHANNEL = f"{PREFIX}:signals"
EXECUTIONS_CHANNEL = f"{PREFIX}:executions"


def index_key(kind: str) -> str:
    """Sorted set of one kind of record's members, scored by when they were stored."""
    return f"{PREFIX}:index:{kind}"


# signals and premiums -------------------------------------------------------------------------
PREMIUMS_INDEX_KEY = index_key("premiums")


def signal_key(symbol: str) -> str:
    return f"{PREFIX}:signal:{symbol}"


def premium_key(symbol: str) -> str:
    return f"{PREFIX}:premium:{symbol}"


def premium_history_key(symbol: str) -> str:
    return f"{PREFIX}:premium:history:{symbol}"


def premium_sampled_key(symbol: str) -> str:
    """Held for one sampling period after a premium was sampled into the history."""
    return f"{premium_history_key(symbol)}:sampled"


def mids_key(symbol: str) -> str:
    return f"{PREFIX}:mids:{symbol}"


# orders, positions, executions ----------------------------------------------------------------
def order_key(order_id: str) -> str:
    return f"{PREFIX}:orders:{order_id}"


def position_key(symbol: str) -> str:
    return f"{PREFIX}:positions:{symbol}"


def execution_key(symbol: str, timestamp) -> str:
    return f"{PREFIX}:execution:{symbol}:{timestamp.isoformat()}"


# accounts: metrics, reconciliation, rebalance, transfer costs, equity ---------------------------
METRICS_KEY = f"{PREFIX}:metrics:live"
RECONCILIATION_KEY = f"{PREFIX}:reconciliation"
RECONCILIATION_LAST_KEY = f"{PREFIX}:reconciliation:last"
REBALANCE_KEY = f"{PREFIX}:rebalance"
EQUITY_HISTORY_KEY = f"{PREFIX}:equity:history"


def transfer_cost_key(asset: str) -> str:
    return f"{PREFIX}:transfer_cost:{asset}"


# risk model: arbitrage:risk (hash, an hour): timestamp, horizon_s, weighted (number of weighted
# coins), var_95_krw (the breaker's VaR budget, KRW over one day), var_source (equity or book),
# book_var_95_krw, equity_var_95_krw, and per coin vol:<coin> (premium volatility over the
# horizon, percentage points) and weight:<coin>. arbitrage:risk:report: the refit's detail (JSON).
RISK_KEY = f"{PREFIX}:risk"
RISK_REPORT_KEY = f"{PREFIX}:risk:report"


# batched evaluation (trading/state/evaluation.py) -------------------------------------------------
# The changed coins (DIRTY_KEY) and the queued-batch flag are the feeds' (marketdata.store).
BATCHES_KEY = f"{PREFIX}:stats:batches"  # list of "<finished at>:<coins>:<age of the oldest change, ms>"
BATCH_SAMPLES = 20_000


def pair_claim_key(symbol: str) -> str:
    """Set while a pair of the coin is queued on the pairs queue (the task clears it when it starts)."""
    return f"{PREFIX}:pending:pair:{symbol}"


def rejected_key(symbol: str, check: str) -> str:
    """Set for a few seconds after a block of the coin by a check was recorded (a block repeats every tick)."""
    return f"{PREFIX}:rejected:{symbol}:{check}"


# coordination: locks ------------------------------------------------------------------------------


def lock_key(name: str) -> str:
    return f"{PREFIX}:lock:{name}"


# guard mirror and reservations ------------------------------------------------------------------
KILL_KEY = f"{PREFIX}:guard:kill"
PAUSED_KEY = f"{PREFIX}:guard:paused"
MIRRORED_KEY = f"{PREFIX}:guard:mirrored"
BREAKER_KEY = f"{PREFIX}:guard:breaker"
LIMITS_VERSION_KEY = f"{PREFIX}:guard:limits_version"
WARNINGS_KEY = f"{PREFIX}:warnings"
WARNINGS_CHECKED_KEY = f"{PREFIX}:warnings:checked"
EXPOSURE_PREFIX = f"{PREFIX}:guard:exposure:"  # + coin: KRW reserved or held; + "coins": the set of coins
EXPOSURE_COINS_KEY = f"{EXPOSURE_PREFIX}coins"


def exposure_key(symbol: str) -> str:
    return f"{EXPOSURE_PREFIX}{symbol}"


def trades_hour_key(hour: str) -> str:
    return f"{PREFIX}:guard:trades:hour:{hour}"


def trades_day_key(day: str) -> str:
    return f"{PREFIX}:guard:trades:day:{day}"


def quote_key(venue: str) -> str:
    """Hash of the quote reserved by pairs in flight on a venue: reservation id -> "units:expires_ms"."""
    return f"{PREFIX}:guard:quote:{venue}"


def quote_version_key(venue: str) -> str:
    """Bumped each time settled fills changed the ledger's quote of a venue."""
    return f"{PREFIX}:guard:quote_version:{venue}"
