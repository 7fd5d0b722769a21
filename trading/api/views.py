"""Read endpoints (README.md, *Dashboard, API and WebSockets*): hot state from Redis, history from the database."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from liveguard.clock import start_of_trading_day
from trading import accounting, engine, ledger
from trading.fields import money
from trading.guard_mirror import known_symbol
from trading.models import EquitySnapshot, Order, Pair, Position, Signal

from . import serializers as s
from .permissions import ReadAccess

FEED_STALE_SECONDS = 5
COMPONENT_STALE_SECONDS = 15


def parse_limit(request, default: int = 100) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise ValidationError({"limit": f"must be a positive integer, got {raw!r}"}) from None
    if limit < 1 or limit > settings.API_MAX_LIMIT:
        raise ValidationError({"limit": f"must be between 1 and {settings.API_MAX_LIMIT}"})
    return limit


def require_symbol(symbol: str) -> str:
    symbol = symbol.upper()
    if not known_symbol(engine.get_state(), symbol):
        raise NotFound(f"unknown symbol {symbol!r}")
    return symbol


class ReadView(APIView):
    permission_classes = [ReadAccess]

    @property
    def state(self):
        return engine.get_state()


LIMIT = OpenApiParameter("limit", int, description=f"1 to API_MAX_LIMIT (default {1000})")
SYMBOL = OpenApiParameter("symbol", str, description="base asset, e.g. BTC")


class MetricsView(ReadView):
    @extend_schema(responses=s.MetricsSerializer)
    def get(self, request):
        record = self.state.get_metrics()
        if record is None:
            return Response({"error": "metrics are not available yet (is celery beat running?)"}, status=503)
        return Response(s.MetricsSerializer(record).data)


class PnlView(ReadView):
    @extend_schema(responses=s.PnlSerializer, description="Equity, realized and unrealized PnL, and today's and the "
                   "total PnL decomposed, all per the accounting model in docs/ACCOUNTING.md (KRW).")
    def get(self, request):
        fx = engine.fx_rate(self.state)
        if fx is None:
            return Response({"error": "no KRW/USDT rate yet: nothing can be valued"}, status=503)
        book = accounting.replay()
        marks = accounting.current_marks(self.state, fx.rate, list(ledger.balances()))
        current = accounting.valuation(marks, book)
        return Response(s.PnlSerializer({
            "equity": money(current.equity), "flows": money(current.flows), "realized": money(current.realized),
            "unrealized": money(current.unrealized), "fees_realized": money(current.fees_realized),
            "unpriced": list(current.unpriced),
            "today": accounting.period_pnl(current, fx.rate, start_of_trading_day()),
            "total": accounting.period_pnl(current, fx.rate, None),
            "timestamp": datetime.now(UTC),
        }).data)


class PairPnlView(ReadView):
    @extend_schema(responses=s.PairPnlSerializer(many=True), parameters=[LIMIT, SYMBOL],
                   description="Each closed pair's PnL decomposed (docs/ACCOUNTING.md, trading part), newest first.")
    def get(self, request):
        pairs = Pair.objects.filter(stage=Pair.Stage.CLOSED, quantity__gt=0).order_by("-updated_at")
        if request.query_params.get("symbol"):
            pairs = pairs.filter(symbol=request.query_params["symbol"].upper())
        rows = []
        for p in pairs[:parse_limit(request)]:
            parts = accounting.pair_components([p])
            rows.append({"id": p.id, "symbol": p.symbol, "kind": p.kind, "buy_exchange": p.buy_exchange,
                         "sell_exchange": p.sell_exchange, "quantity": p.quantity, "closed_at": p.updated_at,
                         **parts, "net_pnl": p.net_pnl})
        return Response(s.PairPnlSerializer(rows, many=True).data)


class EquityHistoryView(ReadView):
    @extend_schema(responses=s.EquityPointSerializer(many=True), parameters=[LIMIT],
                   description="Equity snapshots (every minute, newest last).")
    def get(self, request):
        limit = parse_limit(request, default=min(1440, settings.API_MAX_LIMIT))
        rows = list(EquitySnapshot.objects.order_by("-taken_at")[:limit])[::-1]
        points = [{"timestamp": r.taken_at, "equity": r.equity, "flows": r.flows, "pnl": r.equity - r.flows} for r in rows]
        return Response(s.EquityPointSerializer(points, many=True).data)


class PositionsView(ReadView):
    @extend_schema(responses=s.PositionSerializer(many=True))
    def get(self, request):
        return Response(s.PositionSerializer(self.state.list_positions(), many=True).data)


class PositionDetailView(ReadView):
    @extend_schema(responses=s.PositionSerializer)
    def get(self, request, symbol: str):
        symbol = require_symbol(symbol)
        record = self.state.get_position(symbol)
        if record is None:
            position = Position.objects.filter(symbol=symbol).first()
            if position is None:
                raise NotFound(f"no open position in {symbol}")
            record = {"symbol": symbol, "quantity": position.quantity, "entry_price": position.entry_buy_price,
                      "current_price": position.entry_buy_price, "side": position.side, "pnl": Decimal(0),
                      "pnl_pct": Decimal(0), "timestamp": position.updated_at}
        return Response(s.PositionSerializer(record).data)


class SignalsView(ReadView):
    @extend_schema(
        parameters=[LIMIT, OpenApiParameter("history", bool, description="signals acted on or rejected, from the database "
                                                                           "(each a SignalHistory: also outcome and reason)")],
        responses=s.SignalSerializer(many=True),
    )
    def get(self, request):
        limit = parse_limit(request)
        if request.query_params.get("history") in ("1", "true", "yes"):
            return Response(s.SignalHistorySerializer(Signal.objects.all()[:limit], many=True).data)
        return Response(s.SignalSerializer(self.state.list_signals()[:limit], many=True).data)


class SignalDetailView(ReadView):
    @extend_schema(responses=s.SignalSerializer)
    def get(self, request, symbol: str):
        symbol = require_symbol(symbol)
        record = self.state.get_signal(symbol)
        if record is None:
            raise NotFound(f"no live signal for {symbol} (signals live {300} s)")
        return Response(s.SignalSerializer(record).data)


def order_record(order: Order) -> dict:
    return {
        "order_id": str(order.id), "exchange": order.exchange, "symbol": order.symbol, "side": order.side,
        "quantity": order.quantity, "price": order.average_price or order.price, "status": order.status,
        "filled_quantity": order.filled_quantity,
        "fill_rate": (order.filled_quantity / order.quantity).quantize(Decimal("1e-8")) if order.quantity else Decimal(0),
        "created_at": order.created_at, "updated_at": order.updated_at,
    }


class OrdersView(ReadView):
    @extend_schema(parameters=[LIMIT, SYMBOL], responses=s.OrderSerializer(many=True))
    def get(self, request):
        limit = parse_limit(request)
        orders = Order.objects.all()
        if "symbol" in request.query_params:
            orders = orders.filter(symbol=require_symbol(request.query_params["symbol"]))
        return Response(s.OrderSerializer([order_record(o) for o in orders[:limit]], many=True).data)


class OrderDetailView(ReadView):
    @extend_schema(responses=s.OrderSerializer)
    def get(self, request, order_id: str):
        record = self.state.get_order(order_id)
        if record is not None:
            return Response(s.OrderSerializer(record).data)
        try:
            order = Order.objects.filter(pk=uuid.UUID(order_id)).first()
        except ValueError:
            order = None
        if order is None:
            order = Order.objects.filter(client_order_id=order_id).first()
        if order is None:
            raise NotFound(f"unknown order {order_id!r}")
        return Response(s.OrderSerializer(order_record(order)).data)


def execution_record(pair: Pair) -> dict:
    orders = {o.side: o for o in pair.orders.all() if not o.client_order_id.endswith("h")}
    return {
        "symbol": pair.symbol, "buy_order_id": str(orders["buy"].id) if "buy" in orders else "",
        "sell_order_id": str(orders["sell"].id) if "sell" in orders else "", "buy_price": pair.buy_price,
        "sell_price": pair.sell_price, "quantity": pair.quantity, "gross_pnl": pair.gross_pnl, "net_pnl": pair.net_pnl,
        "fees": pair.fees, "pnl_pct": pair.pnl_pct, "timestamp": pair.updated_at,
    }


class ExecutionsView(ReadView):
    @extend_schema(parameters=[SYMBOL, LIMIT], responses=s.ExecutionSerializer(many=True))
    def get(self, request):
        limit = parse_limit(request)
        symbol = request.query_params.get("symbol")
        if symbol is not None:
            symbol = require_symbol(symbol)
        hot = self.state.list_executions(symbol, limit)
        if len(hot) >= limit:
            return Response(s.ExecutionSerializer(hot, many=True).data)
        # Older than Redis keeps (24 h), or across all coins: the ledger has every one.
        pairs = Pair.objects.exclude(state=Pair.State.PENDING).filter(quantity__gt=0).prefetch_related("orders")
        if symbol is not None:
            pairs = pairs.filter(symbol=symbol)
        return Response(s.ExecutionSerializer([execution_record(p) for p in pairs[:limit]], many=True).data)


class PremiumsView(ReadView):
    @extend_schema(responses=s.PremiumSerializer(many=True))
    def get(self, request):
        return Response(s.PremiumSerializer(sorted(self.state.list_premiums(), key=lambda p: p.symbol), many=True).data)


class PremiumHistoryView(ReadView):
    @extend_schema(responses=s.PremiumHistorySerializer)
    def get(self, request, symbol: str):
        symbol = require_symbol(symbol)
        history = self.state.premium_history(symbol)
        return Response(s.PremiumHistorySerializer({"symbol": symbol, "points": [[ts, str(value)] for ts, value in history]}).data)


class LivezView(APIView):
    """Liveness for orchestrators: always open, says nothing but that the process answers."""

    permission_classes = []
    authentication_classes = []

    @extend_schema(responses=s.LivezSerializer)
    def get(self, request):
        return Response(s.LivezSerializer({"status": "ok"}).data)


class HealthView(APIView):
    """Liveness of every part; 503 when trading would be unsafe. Behind the read check (it names
    limits, the breaker's reason and reconciliation differences); orchestrators probe /livez."""

    permission_classes = [ReadAccess]

    @extend_schema(responses={200: s.HealthSerializer, 503: s.HealthSerializer})
    def get(self, request):
        problems: list[str] = []
        state = engine.get_state()
        now = datetime.now(UTC)
        body = {"live_mode": settings.LIVE_MODE, "feeds": {}, "components": {}, "kill_switch": None,
                "circuit_breaker": None}
        started = time.perf_counter()
        try:
            state.redis.ping()
            body["redis"] = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 3)}
            beats = state.heartbeats()
        except redis.RedisError as exc:
            body["redis"] = {"ok": False, "error": type(exc).__name__}
            problems.append("redis unreachable")
            beats = {}
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            body["database"] = {"ok": True}
        except DatabaseError as exc:
            body["database"] = {"ok": False, "error": type(exc).__name__}
            problems.append("database unreachable")
        for name, stale_after, group in (("feed_upbit", FEED_STALE_SECONDS, "feeds"), ("feed_binance", FEED_STALE_SECONDS, "feeds"),
                                         ("signals", COMPONENT_STALE_SECONDS, "components"),
                                         ("worker", COMPONENT_STALE_SECONDS, "components"),
                                         ("beat", COMPONENT_STALE_SECONDS, "components")):
            seen = beats.get(name)
            age = (now - seen).total_seconds() if seen else None
            ok = age is not None and age <= stale_after
            body[group][name.removeprefix("feed_")] = {"age_s": round(age, 3) if age is not None else None, "ok": ok}
            if not ok and body["redis"]["ok"]:
                problems.append(f"{name} heartbeat {'missing' if age is None else f'{age:.1f} s old'}")
        if body["redis"]["ok"]:
            body["kill_switch"] = state.kill_switch()
            reconciliation = state.reconciliation()
            if settings.LIVE_MODE:
                body["reconciliation"] = reconciliation or {"ok": False, "differences": ["not run yet"]}
                if body["reconciliation"].get("stale"):  # expired: a stale "ok" keeps nothing open
                    problems.append(f"reconciliation stale (last checked {body['reconciliation'].get('checked_at')})")
                elif not body["reconciliation"].get("ok"):
                    problems.append("ledger and venues disagree (reconciliation)")
            else:
                body["reconciliation"] = {"ok": True, "mode": "paper: the ledger is the venue"}
            tripped = state.breaker()
            body["circuit_breaker"] = {"reason": tripped[0], "seconds_left": tripped[1]} if tripped else None
        body["problems"] = problems
        body["trading_safe"] = not problems
        halted = bool(body["kill_switch"]) or bool(body["circuit_breaker"])
        body["status"] = "unsafe" if problems else "degraded" if halted else "ok"
        return Response(s.HealthSerializer(body).data, status=503 if problems else 200)
