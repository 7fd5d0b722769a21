"""The read API's response shapes: each view's schema and its response come from these.

Field names are the Redis records' (docs/redis-keys.md). Money is a decimal string, never a float;
times are ISO 8601 as Python writes them (the hot state stores them so, and the WebSocket frames
carry them so).
"""

from rest_framework import serializers


class Money(serializers.DecimalField):
    """A decimal string exactly as str(Decimal) writes it (what the hot state stores)."""

    def __init__(self, **kwargs):
        super().__init__(max_digits=None, decimal_places=None, coerce_to_string=True, **kwargs)

    def to_representation(self, value):
        return str(value)


class Timestamp(serializers.DateTimeField):
    """An aware time as datetime.isoformat() writes it ("+00:00", not DRF's "Z")."""

    def to_representation(self, value):
        return value.isoformat() if value else None


class SignalSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    buy_exchange = serializers.CharField()
    sell_exchange = serializers.CharField()
    buy_price = Money()
    sell_price = Money()
    spread = Money()
    spread_pct = Money()
    timestamp = Timestamp()
    quantity = Money(required=False, allow_null=True)
    net_spread_pct = Money(required=False, allow_null=True)
    tick_received_at = Timestamp(required=False, allow_null=True,
                                 help_text="when the feed received the newer of the two books")


class SignalHistorySerializer(serializers.Serializer):
    symbol = serializers.CharField()
    buy_exchange = serializers.CharField()
    sell_exchange = serializers.CharField()
    buy_price = Money()
    sell_price = Money()
    quantity = Money()
    spread = Money()
    spread_pct = Money()
    net_spread_pct = Money()
    outcome = serializers.CharField()
    reason = serializers.CharField()
    timestamp = Timestamp(source="created_at")


class OrderSerializer(serializers.Serializer):
    order_id = serializers.CharField()
    exchange = serializers.CharField()
    symbol = serializers.CharField()
    side = serializers.CharField()
    quantity = Money()
    price = Money()
    status = serializers.CharField()
    filled_quantity = Money()
    fill_rate = Money()
    created_at = Timestamp()
    updated_at = Timestamp()


class PositionSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    quantity = Money()
    entry_price = Money()
    current_price = Money()
    side = serializers.CharField()
    pnl = Money()
    pnl_pct = Money()
    timestamp = Timestamp()


class ExecutionSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    buy_order_id = serializers.CharField()
    sell_order_id = serializers.CharField()
    buy_price = Money()
    sell_price = Money()
    quantity = Money()
    gross_pnl = Money()
    net_pnl = Money()
    fees = Money()
    pnl_pct = Money()
    timestamp = Timestamp()


class MetricsSerializer(serializers.Serializer):
    total_balance = Money()
    available_balance = Money()
    positions_count = serializers.IntegerField()
    orders_count = serializers.IntegerField()
    daily_loss = Money()
    total_loss = Money()
    trades_today = serializers.IntegerField()
    timestamp = Timestamp()
    equity = Money(help_text="KRW: every balance at its own venue's mark (docs/ACCOUNTING.md)")
    flows = Money(help_text="KRW: deposits less withdrawals, each valued when booked; never performance")
    pnl_today = Money(help_text="KRW: equity change since 00:00 KST less the day's flows (unrealized included)")
    pnl_total = Money(help_text="KRW: equity less all flows")
    realized = Money(help_text="KRW: average cost per venue and asset")
    unrealized = Money(help_text="KRW: equity less cost basis")


class PnlPeriodSerializer(serializers.Serializer):
    since = Timestamp(allow_null=True, help_text="the baseline snapshot (null: since the first flow)")
    pnl = Money(help_text="equity change less flows; = trading + fx + inventory")
    trading = Money(help_text="Σ net PnL of the pairs closed in the period = spread_captured + slippage + hedges + fees")
    spread_captured = Money(help_text="at the signal's volume-weighted prices")
    slippage = Money(help_text="fill prices versus the signal's")
    hedges = Money(help_text="unwinds of unequal fills")
    fees = Money(help_text="negative: every fee at its value when charged")
    fx = Money(help_text="the KRW/USDT move on USDT-priced holdings at the period's start")
    inventory = Money(help_text="every other mark move on what is held, the premium carried by open positions included")


class PnlSerializer(serializers.Serializer):
    equity = Money()
    flows = Money()
    realized = Money()
    unrealized = Money()
    fees_realized = Money(help_text="part of realized: fee units at their cost")
    unpriced = serializers.ListField(child=serializers.CharField(), help_text="holdings with no mark, kept at cost")
    today = PnlPeriodSerializer()
    total = PnlPeriodSerializer()
    timestamp = Timestamp()


class PairPnlSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    symbol = serializers.CharField()
    kind = serializers.CharField(help_text="open | close")
    buy_exchange = serializers.CharField()
    sell_exchange = serializers.CharField()
    quantity = Money()
    closed_at = Timestamp()
    spread_captured = Money(help_text="(expected sell - expected buy) x quantity, at the signal's prices")
    slippage = Money(help_text="fills versus the signal")
    hedges = Money(help_text="unwinds of unequal fills")
    fees = Money(help_text="negative")
    net_pnl = Money(help_text="= spread_captured + slippage + hedges + fees")


class EquityPointSerializer(serializers.Serializer):
    timestamp = Timestamp()
    equity = Money()
    flows = Money()
    pnl = Money(help_text="equity less flows")


class PremiumSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    premium_pct = Money()
    upbit_mid = Money()
    binance_mid = Money()
    fx_rate = Money()
    net_upbit_to_binance = Money(allow_null=True)
    net_binance_to_upbit = Money(allow_null=True)
    timestamp = Timestamp()


class PremiumHistorySerializer(serializers.Serializer):
    symbol = serializers.CharField()
    points = serializers.ListField(child=serializers.ListField(), help_text="[unix seconds, premium %] pairs")


class LivezSerializer(serializers.Serializer):
    status = serializers.CharField()


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded", "unsafe"])
    trading_safe = serializers.BooleanField()
    problems = serializers.ListField(child=serializers.CharField())
    redis = serializers.DictField()
    database = serializers.DictField()
    feeds = serializers.DictField()
    components = serializers.DictField()
    kill_switch = serializers.BooleanField(allow_null=True)
    circuit_breaker = serializers.DictField(allow_null=True)
    reconciliation = serializers.DictField(required=False, help_text="absent while Redis is unreachable")
    live_mode = serializers.BooleanField()
