"""Record indexes: a sorted set per kind of record, so listing never scans the keyspace.

Every index is pruned when written (members older than the records' TTL, beyond
INDEX_MAX_MEMBERS) and expires when idle, so none grows without bound.
"""

from __future__ import annotations

import orjson

from .codec import decode_record, encode_record, text
from .records import utcnow

# An index (sorted set of record keys) never holds more than this many members: the newest.
INDEX_MAX_MEMBERS = 10_000


def index_add(pipe, index: str, member: str, score: float, ttl: int) -> None:
    """Index a record and prune in the same round trip: members older than the records' TTL go,
    the index keeps at most INDEX_MAX_MEMBERS (the newest) and itself expires when idle."""
    pipe.zadd(index, {member: score})
    pipe.zremrangebyscore(index, "-inf", utcnow().timestamp() - ttl)
    pipe.zremrangebyrank(index, 0, -INDEX_MAX_MEMBERS - 1)
    pipe.expire(index, ttl)


def save_indexed(client, index: str, key: str, member: str, record: object, ttl: int,
                 announce: str | None = None, extra: dict | None = None) -> None:
    """Store a record under key, index it, and (optionally) announce it, in one transaction."""
    pipe = client.pipeline()
    queue_indexed(pipe, index, key, member, record, ttl, announce, extra)
    pipe.execute()


def queue_indexed(pipe, index: str, key: str, member: str, record: object, ttl: int,
                  announce: str | None = None, extra: dict | None = None) -> None:
    """save_indexed's commands, queued on a pipeline the caller executes (announced after stored)."""
    encoded = encode_record(record)
    pipe.hset(key, mapping=encoded)
    pipe.expire(key, ttl)
    index_add(pipe, index, member, utcnow().timestamp(), ttl)
    if announce:
        pipe.publish(announce, orjson.dumps({**encoded, **(extra or {})}))


def list_indexed(client, index: str, cls: type, key_for, ttl: int) -> list:
    """Every live record of an index, newest first."""
    client.zremrangebyscore(index, "-inf", utcnow().timestamp() - ttl)
    members = client.zrevrange(index, 0, -1)
    pipe = client.pipeline(transaction=False)
    for member in members:
        pipe.hgetall(key_for(text(member)))
    return [r for r in (decode_record(cls, raw) for raw in pipe.execute()) if r]
