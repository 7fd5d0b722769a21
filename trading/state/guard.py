"""The guard's state in Redis: the mirror of the database's controls, and the atomic reservation.

The database is the record of truth for the kill switch, the pauses and the pairs; Redis holds a
mirror that every evaluation reads, re-mirrored from the database every second by beat (and at
start-up). The rule for every control: the safe direction goes first (engaging: Redis, then the
database; releasing: the database, then Redis), and an unreadable mirror blocks trading.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import redis

from . import keys
from .codec import text
from .records import utcnow


class GuardStore:
    redis: redis.Redis

    def set_kill_switch(self, engaged: bool) -> None:
        """Mirror of the database's kill switch, read before every pair."""
        self.redis.set(keys.KILL_KEY, "1" if engaged else "0")

    def kill_switch(self) -> bool | None:
        raw = self.redis.get(keys.KILL_KEY)
        return None if raw is None else raw in (b"1", "1")

    def trip_breaker(self, reason: str, cooldown_s: int) -> bool:
        """Halt trading for the cooldown; False if the breaker was already tripped."""
        return bool(self.redis.set(keys.BREAKER_KEY, reason, nx=True, ex=cooldown_s))

    def breaker(self) -> tuple[str, int] | None:
        """(reason, seconds left) while tripped."""
        pipe = self.redis.pipeline()
        pipe.get(keys.BREAKER_KEY)
        pipe.ttl(keys.BREAKER_KEY)
        reason, ttl = pipe.execute()
        if reason is None:
            return None
        return (text(reason), max(int(ttl), 0))

    def bump_limits_version(self) -> int:
        """Tell every worker to re-read the limits before its next check."""
        return int(self.redis.incr(keys.LIMITS_VERSION_KEY))

    def limits_version(self) -> int:
        return int(self.redis.get(keys.LIMITS_VERSION_KEY) or 0)

    def reset_breaker(self) -> None:
        self.redis.delete(keys.BREAKER_KEY)

    # Checks and takes a trade slot, the exposure and (optionally) the buy venue's quote in one
    # step, so that two workers can never both pass a limit only one trade fits under.
    # KEYS: hour, day, exposure, mirrored marker[, quote hash, quote version]
    # ARGV: max/hour, max/day, exposure, max exposure, counter TTL, require mirrored ('1'/'0')
    #       [, quote units, available units, version seen ('' = unchecked), reservation id,
    #        now ms, expires ms, hold ms]
    _RESERVE = """
    if ARGV[6] == '1' and redis.call('EXISTS', KEYS[4]) == 0 then return 'unmirrored' end
    local hour, day, exposure = tonumber(redis.call('GET', KEYS[1]) or '0'),
                                tonumber(redis.call('GET', KEYS[2]) or '0'),
                                tonumber(redis.call('GET', KEYS[3]) or '0')
    if hour + 1 > tonumber(ARGV[1]) then return 'trades_per_hour' end
    if day + 1 > tonumber(ARGV[2]) then return 'trades_per_day' end
    if exposure + tonumber(ARGV[3]) > tonumber(ARGV[4]) then return 'position_size' end
    -- The total across coins (premiums move together). Every coin with exposure is in one set;
    -- the coins' keys are read by name (a single Redis, not a cluster). ARGV[#ARGV]: the cap
    -- ('' for none), ARGV[#ARGV - 1]: this coin, ARGV[#ARGV - 2]: the coins' key prefix.
    local max_total, coin, prefix = ARGV[#ARGV], ARGV[#ARGV - 1], ARGV[#ARGV - 2]
    if max_total ~= '' then
      local total_exposure = exposure + tonumber(ARGV[3])
      for _, other in ipairs(redis.call('SMEMBERS', prefix .. 'coins')) do
        if other ~= coin then total_exposure = total_exposure + tonumber(redis.call('GET', prefix .. other) or '0') end
      end
      if total_exposure > tonumber(max_total) then return 'total_exposure' end
    end
    if #KEYS >= 6 then
      if ARGV[9] ~= '' and (redis.call('GET', KEYS[6]) or '0') ~= ARGV[9] then return 'quote_changed' end
      local now, total = tonumber(ARGV[11]), 0
      local entries = redis.call('HGETALL', KEYS[5])
      for i = 1, #entries, 2 do
        local units, expires = string.match(entries[i + 1], '^(%-?%d+):(%d+)$')
        if units == nil or tonumber(expires) <= now then
          redis.call('HDEL', KEYS[5], entries[i])
        else
          total = total + tonumber(units)
        end
      end
      if total + tonumber(ARGV[7]) > tonumber(ARGV[8]) then return 'quote_balance' end
      redis.call('HSET', KEYS[5], ARGV[10], ARGV[7] .. ':' .. ARGV[12])
      redis.call('PEXPIRE', KEYS[5], ARGV[13])
    end
    redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], ARGV[5])
    redis.call('INCR', KEYS[2]); redis.call('EXPIRE', KEYS[2], ARGV[5])
    redis.call('INCRBY', KEYS[3], ARGV[3])
    redis.call('SADD', prefix .. 'coins', coin)
    return 'ok'
    """

    def _counter_keys(self, symbol: str, hour: str, day: str) -> list[str]:
        return [keys.trades_hour_key(hour), keys.trades_day_key(day), keys.exposure_key(symbol)]

    def reserve_trade(self, symbol: str, hour: str, day: str, exposure_krw: int, *, max_per_hour: int,
                      max_per_day: int, max_exposure_krw: int, quote_venue: str | None = None,
                      quote_units: int = 0, quote_available_units: int = 0, quote_version: int | None = None,
                      reservation_id: str = "", hold_ms: int = keys.QUOTE_HOLD_MS, require_mirrored: bool = False,
                      max_total_exposure_krw: int | None = None) -> str:
        """'ok' when reserved, else the name of the limit that refused.

        max_total_exposure_krw: the cap on the exposure summed over every coin ('total_exposure').

        With quote_venue, the pair's quote (quote_units, in QUOTE_UNIT) is reserved on that venue
        too, against quote_available_units (the ledger's balance) minus every unexpired
        reservation of any coin: 'quote_balance' when it does not fit, 'quote_changed' when
        settled fills changed the ledger since quote_version was read (read the balance again).
        require_mirrored: refuse with 'unmirrored' while the database has not been mirrored into
        this Redis (flushed or restarted), as the counters would start from zero.
        """
        script_keys = self._counter_keys(symbol, hour, day) + [keys.MIRRORED_KEY]
        args = [max_per_hour, max_per_day, exposure_krw, max_exposure_krw, keys.TTL_COUNTER, "1" if require_mirrored else "0"]
        if quote_venue:
            now_ms = int(utcnow().timestamp() * 1000)
            script_keys += [keys.quote_key(quote_venue), keys.quote_version_key(quote_venue)]
            args += [int(quote_units), int(quote_available_units), "" if quote_version is None else int(quote_version),
                     reservation_id or uuid.uuid4().hex, now_ms, now_ms + hold_ms, hold_ms]
        args += [keys.EXPOSURE_PREFIX, symbol, "" if max_total_exposure_krw is None else int(max_total_exposure_krw)]
        result = self.redis.eval(self._RESERVE, len(script_keys), *script_keys, *args)
        return text(result)

    def release_trade(self, symbol: str, hour: str, day: str, exposure_krw: int, quote_venue: str | None = None,
                      reservation_id: str = "") -> None:
        """Give back a reservation whose pair was never sent (its quote reservation too)."""
        hour_key, day_key, exposure_key = self._counter_keys(symbol, hour, day)
        pipe = self.redis.pipeline()
        pipe.decr(hour_key)
        pipe.decr(day_key)
        pipe.decrby(exposure_key, exposure_krw)
        if quote_venue and reservation_id:
            pipe.hdel(keys.quote_key(quote_venue), reservation_id)
        pipe.execute()

    def settle_quote(self, venue: str, reservation_id: str) -> None:
        """The pair's fills are in the ledger: give its quote reservation back, and tell every
        reservation that read the ledger before now to read it again."""
        pipe = self.redis.pipeline()
        pipe.hdel(keys.quote_key(venue), reservation_id)
        pipe.incr(keys.quote_version_key(venue))
        pipe.execute()

    def quote_version(self, venue: str) -> int:
        return int(self.redis.get(keys.quote_version_key(venue)) or 0)

    def quote_reserved(self, venue: str) -> int:
        """Quote (in QUOTE_UNIT) held by unexpired reservations on a venue."""
        now_ms = int(utcnow().timestamp() * 1000)
        total = 0
        for raw in self.redis.hvals(keys.quote_key(venue)):
            units, _, expires = text(raw).partition(":")
            if expires and int(expires) > now_ms:
                total += int(units)
        return total

    def set_exposure(self, symbol: str, exposure_krw: int) -> None:
        pipe = self.redis.pipeline()
        pipe.set(keys.exposure_key(symbol), exposure_krw)
        pipe.sadd(keys.EXPOSURE_COINS_KEY, symbol)
        pipe.execute()

    def exposure(self, symbol: str) -> int:
        return int(self.redis.get(keys.exposure_key(symbol)) or 0)

    def total_exposure(self) -> int:
        """KRW reserved or held across every coin (the metrics' total)."""
        coins = [text(c) for c in self.redis.smembers(keys.EXPOSURE_COINS_KEY)]
        return sum(int(v or 0) for v in self.redis.mget([keys.exposure_key(c) for c in coins])) if coins else 0

    def exposure_symbols(self) -> list[str]:
        prefix = keys.EXPOSURE_PREFIX
        found = [k.decode()[len(prefix):] if isinstance(k, bytes) else k[len(prefix):]
                 for k in self.redis.scan_iter(match=f"{prefix}*", count=500)]
        return [s for s in found if s != "coins"]

    def trades_counted(self, hour: str, day: str) -> tuple[int, int]:
        h, d = self.redis.mget(keys.trades_hour_key(hour), keys.trades_day_key(day))
        return int(h or 0), int(d or 0)

    # Re-mirrors the database's guard state in one step. The kill switch and the pauses are
    # overwritten every time. The trade counters and the exposure are rebuilt only when this
    # Redis lost them (the marker is missing: flushed or restarted empty; or it names another
    # server run: restarted from an older snapshot) or when a counter key is missing, and then
    # only ever raised (max of current and rebuilt): a reservation that just incremented a
    # counter is never undone.
    # KEYS: kill, paused, marker, hour, day, exposure...   ARGV: kill, run id, counter TTL,
    # hour count, day count, #paused, paused..., exposure... (one per exposure key)
    _MIRROR = """
    redis.call('SET', KEYS[1], ARGV[1])
    local rebuild = redis.call('GET', KEYS[3]) ~= ARGV[2]
    local npaused = tonumber(ARGV[6])
    redis.call('DEL', KEYS[2])
    for i = 1, npaused do redis.call('SADD', KEYS[2], ARGV[6 + i]) end
    local raised = 0
    local function raise(key, value, ttl)
      local current = redis.call('GET', key)
      if rebuild or current == false then
        if current == false or tonumber(current) < tonumber(value) then
          if ttl then redis.call('SET', key, value, 'EX', ttl) else redis.call('SET', key, value) end
          raised = raised + 1
        end
      end
    end
    raise(KEYS[4], ARGV[4], ARGV[3])
    raise(KEYS[5], ARGV[5], ARGV[3])
    for i = 6, #KEYS do raise(KEYS[i], ARGV[6 + npaused + i - 5], nil) end
    redis.call('SET', KEYS[3], ARGV[2])
    if rebuild then return {1, raised} end
    return {0, raised}
    """

    def server_run_id(self) -> str:
        """The Redis server's run id (changes at every restart); '' where INFO is not allowed."""
        try:
            return str(self.redis.info("server").get("run_id", ""))
        except redis.ResponseError:
            return ""

    def mirror_guard(self, *, kill_switch: bool, paused: Iterable[str], hour: str, day: str, trades_hour: int,
                     trades_day: int, exposure_krw: dict[str, int], run_id: str | None = None) -> tuple[bool, int]:
        """Write the database's guard state into Redis (see _MIRROR); returns (rebuilt, keys raised)."""
        paused = sorted(set(paused))
        symbols = sorted(exposure_krw)
        hour_key, day_key, _ = self._counter_keys("", hour, day)
        mirrored = [keys.KILL_KEY, keys.PAUSED_KEY, keys.MIRRORED_KEY, hour_key, day_key, *(keys.exposure_key(s) for s in symbols)]
        args = ["1" if kill_switch else "0", self.server_run_id() if run_id is None else run_id, keys.TTL_COUNTER,
                int(trades_hour), int(trades_day), len(paused), *paused, *(int(exposure_krw[s]) for s in symbols)]
        rebuilt, raised = self.redis.eval(self._MIRROR, len(mirrored), *mirrored, *args)
        if symbols:
            self.redis.sadd(keys.EXPOSURE_COINS_KEY, *symbols)  # the total-exposure cap sums these
        return bool(rebuilt), int(raised)

    def guard_mirrored(self) -> bool:
        return bool(self.redis.exists(keys.MIRRORED_KEY))

    def _replace_set(self, key: str, members: Iterable[str], pipe=None) -> None:
        """Swap a set's members in one transaction (readers never see it half-written)."""
        own = pipe is None
        pipe = pipe or self.redis.pipeline()
        pipe.delete(key)
        members = list(members)
        if members:
            pipe.sadd(key, *members)
        if own:
            pipe.execute()

    def set_market_warnings(self, symbols: Iterable[str]) -> None:
        pipe = self.redis.pipeline()
        self._replace_set(keys.WARNINGS_KEY, symbols, pipe)
        pipe.set(keys.WARNINGS_CHECKED_KEY, utcnow().isoformat(), ex=keys.TTL_WARNINGS)
        pipe.execute()

    def set_paused(self, symbols: Iterable[str]) -> None:
        """Mirror of the database's paused coins."""
        self._replace_set(keys.PAUSED_KEY, symbols)

    def add_paused(self, symbol: str) -> None:
        """Pause one coin in the mirror (engaging goes to Redis first, then the database)."""
        self.redis.sadd(keys.PAUSED_KEY, symbol)

    def paused_symbols(self) -> set[str]:
        return {text(m) for m in self.redis.smembers(keys.PAUSED_KEY)}

    def market_warning(self, symbol: str) -> bool:
        return bool(self.redis.sismember(keys.WARNINGS_KEY, symbol))

