"""API throughput and latency with 50 concurrent clients, and WebSocket fan-out to 100 clients.

    .venv/bin/python bench/api_load.py --workers 2 --seconds 10

Serves the real ASGI app with uvicorn (N worker processes) on a private Redis and a scratch SQLite
database holding a few hundred executions, plus the relay process. Clients are aiohttp tasks in
this process: 50 keep-alive clients cycle through /metrics/live, /signals and /executions?limit=50;
then 100 WebSocket clients on /ws/signals hear signals stored in Redis (signal stored -> received).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._harness import PY, ROOT, free_port, percentile, spawn, start_redis, stop  # noqa: E402

PATHS = ["/metrics/live", "/signals", "/executions?limit=50"]

SEED = """
import random
from datetime import UTC, datetime
from decimal import Decimal as D
from trading.models import Pair, Order
from trading.state import MetricsRecord, SignalRecord, ExecutionRecord
from trading.engine import get_state
state = get_state()
state.set_metrics(MetricsRecord(D("215000000"), D("198000000"), 3, 120, D("0"), D("0"), 60))
rng = random.Random(1)
for i in range(300):
    p = Pair.objects.create(symbol=rng.choice(["BTC","ETH","XRP"]), buy_exchange="binance", sell_exchange="upbit",
                            state="filled", quantity=D("0.01"), buy_price=D("138000000"), sell_price=D("139000000"),
                            gross_pnl=D("10000"), fees=D("1500"), net_pnl=D("8500"), pnl_pct=D("0.6"))
    for side in ("buy", "sell"):
        Order.objects.create(client_order_id=f"seed-{i}-{side}", pair=p, exchange="upbit", symbol=p.symbol, side=side,
                             quantity=D("0.01"), price=D("138000000"), status="filled", filled_quantity=D("0.01"))
    # What the executor mirrors into Redis for each pair (hot for 24 h).
    state.save_execution(ExecutionRecord(p.symbol, "b", "s", p.buy_price, p.sell_price, p.quantity, p.gross_pnl,
                                         p.net_pnl, p.fees, p.pnl_pct, datetime.now(UTC)))
for s in ["BTC", "ETH", "XRP", "SOL"]:
    state.save_signal(SignalRecord(s, "binance", "upbit", D("100"), D("101"), D("1"), D("1"), datetime.now(UTC)))
"""


async def load(base: str, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def client(i: int, session: aiohttp.ClientSession):
        nonlocal errors
        n = i
        while time.monotonic() < deadline:
            path = PATHS[n % len(PATHS)]
            n += 1
            started = time.perf_counter()
            async with session.get(base + path) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append((time.perf_counter() - started) * 1000)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        await asyncio.gather(*(client(i, session) for i in range(clients)))
        elapsed = time.monotonic() - started
    return {"rps": len(latencies) / elapsed, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
            "errors": errors, "requests": len(latencies)}


async def fanout(host: str, redis_url: str, clients: int, signals: int) -> dict:
    import redis.asyncio as aioredis

    from trading.state import SIGNALS_CHANNEL

    received: list[float] = []
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(f"ws://{host}/ws/signals") for _ in range(clients)]
        for ws in sockets:
            await ws.receive()  # snapshot

        async def reader(ws):
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return
                data = orjson.loads(msg.data)
                if data.get("type") == "signal":
                    received.append((time.time() - float(data["data"]["sent"])) * 1000)

        tasks = [asyncio.create_task(reader(ws)) for ws in sockets]
        r = aioredis.Redis.from_url(redis_url)
        for _ in range(signals):
            # What save_signal announces, stamped with the send time.
            await r.publish(SIGNALS_CHANNEL, orjson.dumps({"symbol": "BTC", "sent": repr(time.time())}))
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        for ws in sockets:
            await ws.close()
        for task in tasks:
            task.cancel()
        await r.aclose()
    return {"delivered": len(received), "expected": clients * signals, "p50": percentile(received, 50),
            "p99": percentile(received, 99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--ws-clients", type=int, default=100)
    parser.add_argument("--signals", type=int, default=40)
    args = parser.parse_args()
    redis_server, redis_url = start_redis()
    db = Path(tempfile.mkdtemp(prefix="kimp-bench-db-")) / "api.sqlite3"
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": f"sqlite:///{db}", "LOG_LEVEL": "ERROR",
           "DJANGO_SETTINGS_MODULE": "arbproject.settings"}
    os.environ.update(REDIS_URL=redis_url, DATABASE_URL=f"sqlite:///{db}", DJANGO_SETTINGS_MODULE="arbproject.settings")
    subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run([PY, "manage.py", "shell", "-c", SEED], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    server = subprocess.Popen([str(Path(PY).parent / "uvicorn"), "arbproject.asgi:application", "--port", str(port),
                               "--workers", str(args.workers), "--lifespan", "off", "--no-access-log", "--log-level", "warning"],
                              cwd=ROOT, env=env)
    relay = spawn(["run_relay"], env)
    try:
        time.sleep(3)
        import django

        django.setup()
        api = asyncio.run(load(f"http://127.0.0.1:{port}", args.clients, args.seconds))
        print(f"API   uvicorn x{args.workers}, {args.clients} clients, {'/'.join(PATHS)}: {api['rps']:.0f} req/s, "
              f"p50 {api['p50']:.1f} ms, p99 {api['p99']:.1f} ms, {api['errors']} errors of {api['requests']}")
        ws = asyncio.run(fanout(f"127.0.0.1:{port}", redis_url, args.ws_clients, args.signals))
        print(f"WS    {args.ws_clients} clients x {args.signals} signals: delivered {ws['delivered']}/{ws['expected']}, "
              f"stored -> received p50 {ws['p50']:.1f} ms, p99 {ws['p99']:.1f} ms")
    finally:
        stop(relay, server)
        stop(redis_server)


if __name__ == "__main__":
    main()
