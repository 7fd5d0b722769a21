"""Orders, positions and executions: what was sent, what is held, and what each pair made."""

from __future__ import annotations

from datetime import datetime

import redis

from . import keys
from .codec import decode_record
from .indexes import index_add, list_indexed, save_indexed
from .records import ExecutionRecord, OrderRecord, PositionRecord, utcnow


class OrderStore:
    redis: redis.Redis

    # orders ---------------------------------------------------------------------------------
    def save_order(self, order: OrderRecord) -> None:
        save_indexed(self.redis, keys.index_key("orders"), keys.order_key(order.order_id), order.order_id, order,
                     keys.TTL_ORDER)

    def get_order(self, order_id: str) -> OrderRecord | None:
        return decode_record(OrderRecord, self.redis.hgetall(keys.order_key(order_id)))

    def list_orders(self) -> list[OrderRecord]:
        return list_indexed(self.redis, keys.index_key("orders"), OrderRecord, keys.order_key, keys.TTL_ORDER)

    # positions ------------------------------------------------------------------------------
    def save_position(self, position: PositionRecord) -> None:
        save_indexed(self.redis, keys.index_key("positions"), keys.position_key(position.symbol), position.symbol,
                     position, keys.TTL_POSITION)

    def get_position(self, symbol: str) -> PositionRecord | None:
        return decode_record(PositionRecord, self.redis.hgetall(keys.position_key(symbol)))

    def delete_position(self, symbol: str) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(keys.position_key(symbol))
        pipe.zrem(keys.index_key("positions"), symbol)
        pipe.execute()

    def list_positions(self) -> list[PositionRecord]:
        return list_indexed(self.redis, keys.index_key("positions"), PositionRecord, keys.position_key, keys.TTL_POSITION)

    # executions -----------------------------------------------------------------------------
    def save_execution(self, execution: ExecutionRecord, tick_received_at: datetime | None = None) -> str:
        """Store an execution in its coin's index and in the index of all, and announce it."""
        key = keys.execution_key(execution.symbol, execution.timestamp)
        extra = {"tick_received_at": tick_received_at.isoformat()} if tick_received_at else {}
        save_indexed(self.redis, keys.index_key(f"executions:{execution.symbol}"), key, key, execution, keys.TTL_EXECUTION,
                     announce=keys.EXECUTIONS_CHANNEL, extra=extra)
        pipe = self.redis.pipeline(transaction=False)
        index_add(pipe, keys.index_key("executions"), key, execution.timestamp.timestamp(), keys.TTL_EXECUTION)
        pipe.execute()
        return key

    def list_executions(self, symbol: str | None, limit: int = 100) -> list[ExecutionRecord]:
        """Newest first, for one coin or (symbol=None) for all."""
        index = keys.index_key(f"executions:{symbol}" if symbol else "executions")
        now = utcnow().timestamp()
        self.redis.zremrangebyscore(index, "-inf", now - keys.TTL_EXECUTION)
        members = self.redis.zrevrange(index, 0, limit - 1)
        pipe = self.redis.pipeline(transaction=False)
        for key in members:
            pipe.hgetall(key)
        return [r for r in (decode_record(ExecutionRecord, raw) for raw in pipe.execute()) if r]
