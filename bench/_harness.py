"""Shared pieces of the benchmarks: private Redis, subprocesses, CPU accounting, percentiles."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from marketdata.realtime import set_process_realtime
from tests.support import PrivateRedis, free_port, stop_processes  # noqa: F401  (free_port is re-exported)

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")


def start_redis() -> tuple[PrivateRedis, str]:
    server = PrivateRedis().start()
    return server, server.url


FEEDS = ["-m", "marketdata.feeds"]  # spawn(FEEDS + [...]): the lean feed process, not a manage.py command


def spawn(args: list[str], env: dict) -> subprocess.Popen:
    argv = [PY, *args] if args[:1] == ["-m"] else [PY, "manage.py", *args]
    return subprocess.Popen(argv, cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def postgres_cpu_seconds() -> float:
    """CPU of every process named postgres on this machine (the server and all its backends)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" in text:
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def box_speed_ms() -> float:
    """How long a fixed pure-Python loop (a million multiply-adds) takes on this machine now, the best
    of three, in ms: this shared host's speed moves by half or more within minutes, and every figure
    with it (55 ms at its fastest here in session 7, up to 190 ms)."""
    import time

    best = float("inf")
    for _ in range(3):
        started, total = time.perf_counter(), 0
        for i in range(1_000_000):
            total += i * i
        best = min(best, (time.perf_counter() - started) * 1000)
    return best


def steal_seconds() -> float:
    """CPU time the hypervisor gave other guests while this machine's vCPUs wanted it (/proc/stat's
    steal, all CPUs): on a shared host a latency figure means little without it."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) / CLK_TCK


def realtime_threads(pid: int) -> str:
    """'k/n': how many of the n threads of pid and its descendants run at a real-time policy now."""
    every = [task for each in children(pid) for task in Path(f"/proc/{each}/task").glob("*")]
    realtime = 0
    for task in every:
        try:
            policy = int((task / "stat").read_text().rsplit(")", 1)[1].split()[38])
        except (OSError, IndexError, ValueError):
            continue
        realtime += policy in (os.SCHED_FIFO, os.SCHED_RR)
    return f"{realtime}/{len(every)}"


def children(pid: int) -> list[int]:
    """pid and its descendants (a Celery prefork worker's pool processes, say)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for each in children(pid):
        try:
            total += cpu_seconds(each)
        except OSError:
            pass
    return total


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of pid and its descendants in MB. PSS shares each page among the processes that map
    it, so forked pool processes and shared libraries are counted once across the sum."""
    rss = pss = 0
    for each in children(pid):
        try:
            for line in Path(f"/proc/{each}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss / 1024, pss / 1024


def model_market(model, symbols, now, depth: int = 20):
    """(prices, books, the KRW/USDT rate) of the venue's market model as the feeds would store them."""
    from trading.state import BookRecord, FxRecord, PriceRecord

    prices, books = [], []
    for symbol in symbols:
        c = model.coins[symbol]
        for exchange, bids, asks in (("upbit", c.upbit_bids, c.upbit_asks), ("binance", c.binance_bids, c.binance_asks)):
            books.append(BookRecord(exchange, symbol, bids[:depth], asks[:depth], now, now))
            prices.append(PriceRecord(exchange, symbol, bids[0][0], asks[0][0], (bids[0][0] + asks[0][0]) / 2, now, now))
    bid, ask = model.usdt_bids[0][0], model.usdt_asks[0][0]
    return prices, books, FxRecord("upbit", (bid + ask) / 2, bid, ask, now)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def stop(*procs) -> None:
    """Stop benchmark processes (and private Redis servers) started by this harness."""
    stop_processes([p for p in procs if not isinstance(p, PrivateRedis)], timeout=5)
    for proc in procs:
        if isinstance(proc, PrivateRedis):
            proc.cleanup()


def wait_http(url: str, timeout: float = 10.0) -> None:
    """Wait until something answers HTTP at url (a venue of hundreds of coins answers slowly while it
    builds its books: a slow answer is waited for too)."""
    import time

    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered at {url}")


class TickLatency:
    """Hears the signals and executions announced on Redis and keeps, while measuring, how long after
    the feed received the newer book (their tick_received_at) each one was heard, in ms.

    It listens in a process of its own: a thread of the bench would share the bench's GIL with its
    other threads, and one of those preempted while holding it (they run at normal priority on a busy
    box) would hold the listener back for as long, a wait of the measurement's, not of the system's."""

    def __init__(self, client, nice: int = 0, realtime: int = 0):
        """client: a Redis client (the listener opens its own connection to the same server); nice,
        realtime (a SCHED_FIFO priority, 0 for none): the listener's CPU priority (where the OS allows
        it): the measurement's own wait for the CPU is not the system's latency."""
        import multiprocessing

        kwargs = client.connection_pool.connection_kwargs
        self.address = {name: kwargs[name] for name in ("host", "port", "db", "password") if name in kwargs}
        self.nice = nice
        self.realtime = realtime
        self.signals: list[float] = []
        self.fills: list[float] = []
        # per signal heard: (tick -> screen start, screen start -> heard) in ms, from the signal's own
        # timestamp (the screen's clock): which side of the screen a slow signal spent its time on
        self.parts: list[tuple[float, float]] = []
        context = multiprocessing.get_context("fork")
        self.measuring, self.done = context.Event(), context.Event()
        self._results, self._sender = context.Pipe(duplex=False)
        self.process = context.Process(target=self._listen, daemon=True)

    def start(self) -> TickLatency:
        self.process.start()
        return self

    def stop(self) -> None:
        self.done.set()
        if self._results.poll(5):
            self.signals, self.fills, self.parts = self._results.recv()
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()

    def _listen(self) -> None:
        import os
        import time
        from datetime import datetime

        import orjson
        import redis

        if self.nice:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, self.nice)
            except PermissionError:
                pass
        if self.realtime:
            set_process_realtime(0, self.realtime)
        signals, fills, parts = [], [], []
        pubsub = redis.Redis(**self.address).pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe("arbitrage:signals", "arbitrage:executions")
        while not self.done.is_set():
            msg = pubsub.get_message(timeout=0.2)
            if msg is None or not self.measuring.is_set():
                continue
            now = time.time()
            payload = orjson.loads(msg["data"])
            tick = payload.get("tick_received_at")
            if tick:
                tick = datetime.fromisoformat(tick).timestamp()
                lat = (now - tick) * 1000
                if msg["channel"] == b"arbitrage:signals":
                    signals.append(lat)
                    screened = datetime.fromisoformat(payload["timestamp"]).timestamp()
                    parts.append(((screened - tick) * 1000, (now - screened) * 1000))
                else:
                    fills.append(lat)
        pubsub.close()
        self._sender.send((signals, fills, parts))


def scratch_database(server: str | None, scratch: Path):
    """(DATABASE_URL, drop) for a database of this run's own: on the PostgreSQL server, else SQLite."""
    if server is None:
        return f"sqlite:///{scratch / 'bench.sqlite3'}", lambda: None
    import psycopg
    from psycopg import sql

    name = f"kimp_bench_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(server, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop():
        with psycopg.connect(server, dbname="postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    return f"{server.rsplit('/', 1)[0]}/{name}", drop
