"""Capacity: every coin at market-data rates, the whole system's processes real and separate.

    .venv/bin/python bench/capacity.py --coins 200 --rate 1000 --rate 3000 --rate 6000 --seconds 10

Per run: the venue lists N coins and sends RATE book updates a second across both exchanges (the
model's steps plus `--churn`: one level's size changed per update, as most real depth updates do);
the first --hot coins have their premium forced to 1 %, so each of their ticks makes a signal and a
pair. The system: one feed worker per exchange, the dispatcher, evaluation workers (-Q evaluate, solo
pool; two by default, --evaluate-workers), a pair worker (-Q pairs), a housekeeping worker (-Q
celery,notify), beat, the relay and the web server, on
a private Redis and a scratch PostgreSQL database (the production database: the pair worker and the
screens' rejections write concurrently; SQLite's single writer would be the bottleneck measured), or
SQLite with --sqlite. The processes run at the priorities make demo gives them, the hot path at
real-time priority where the OS allows it (--priorities, --realtime, --nice); the venue, which stands
for the exchanges' machines, at the hot path's niceness, so that the offered load is not shaped by
the system's (see NICE).

Printed per run: offered and processed book updates/s (the feeds' message counters), evaluations/s
(coins screened, from the batches' own record), tick->signal and tick->fill p50/p99 (from the feed's
flush of the newer book to a listener of this bench's hearing the announcement; the listener is a
process of its own at the evaluate workers' priority), the staleness p99 (age of a batch's oldest
change when its results were stored), CPU, memory (RSS; PSS counts a page shared by forked processes
once), niceness and real-time threads of each process, how often a hot thread went over its
real-time budget, the CPU the hypervisor gave other guests meanwhile (steal) and the box's speed
before and after (a fixed Python loop: this shared host's speed moves by half within minutes, and
every figure with it), and a closing line:
    capacity: coins=200 updates_per_s=3000 sig_p99_ms=... staleness_p99_ms=... ... keeps_up=yes
keeps_up: the feeds processed >= 95 % of what was offered and the staleness p99 stayed under 100 ms.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import _harness as h  # noqa: E402
from infra.demo import (  # noqa: E402  (make demo's)
    EVALUATE_ENV,
    EVALUATE_REALTIME_PRIORITY,
    FEED_ENV,
    HOUSEKEEPING_NICE,
    REDIS_REALTIME_PRIORITY,
    TRADING_NICE,
    set_priority,
)
from marketdata import realtime  # noqa: E402
from trading.state import StateManager, keys  # noqa: E402

STEP_HZ = 0.2  # the model's full steps (every ladder rebuilt); the rest of the rate is churn
CELERY = str(Path(h.PY).parent / "celery")
UVICORN = str(Path(h.PY).parent / "uvicorn")


def system_env(redis_url: str, database_url: str, up: int, bn: int, extra: dict) -> dict:
    return {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "arbproject.settings",
            "UPBIT_REST_URL": f"http://127.0.0.1:{up}", "UPBIT_WS_URL": f"ws://127.0.0.1:{up}/websocket/v1",
            "BINANCE_REST_URL": f"http://127.0.0.1:{bn}", "BINANCE_WS_URL": f"ws://127.0.0.1:{bn}",
            # Funds deep enough that a run never runs dry.
            "PAPER_START_KRW": "10000000000", "PAPER_START_USDT": "7000000", "PAPER_START_COIN_KRW": "1000000000",
            **extra}


# As make demo runs them (docs/architecture.md, CPU priority): a tick's hot path (Redis, the feeds,
# the evaluate worker) at nice -10 where the OS allows it; the dispatcher and the pairs at 0;
# housekeeping and the dashboard at nice 10. --priorities off runs every process at the same one.
# The venue is no part of the system: it stands for the exchanges' machines, whose pace does not depend
# on this box's load. make demo runs it at housekeeping's niceness; here it runs at the hot path's, so
# that it sends the offered rate evenly while pairs and housekeeping wait (with the hot path at
# real-time priority, it still takes nothing from a tick's path). Starved, it fell behind and then sent
# its backlog in bursts: the offered load would have been shaped by the system under test.
NICE = {**{name: HOUSEKEEPING_NICE for name in ("worker_ops", "beat", "relay", "web")},
        **{name: TRADING_NICE for name in ("venue", "redis", "feed_upbit", "feed_binance", "worker_evaluate")}}
# ... and real-time priority (SCHED_FIFO, where allowed) for the hot path, as make demo gives it: the
# feeds, the dispatcher and the evaluate workers promote their own threads on a CPU budget, Redis is promoted here.
# --realtime off leaves every process on the normal scheduler.
REALTIME = {"redis", "feed_upbit", "feed_binance", "signals", "worker_evaluate"}


def start(name: str, argv: list[str], env: dict, procs: dict, logs: Path) -> None:
    """Start a process of the system at its priority; its log (stderr, LOG_LEVEL=WARNING) in logs/NAME.log."""
    role = name.rstrip("0123456789")
    nice = NICE.get(role, 0)
    if role in REALTIME:
        env = {**env, **(FEED_ENV if role.startswith("feed") else EVALUATE_ENV)}
    with open(logs / f"{name}.log", "wb") as log:
        procs[name] = subprocess.Popen(argv, cwd=h.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
                                       preexec_fn=(lambda: set_priority(nice)) if nice else None)


def demotions(logs: Path) -> dict[str, int]:
    """Per process, how often a hot thread went over its real-time CPU budget (marketdata/realtime.py)."""
    counts = {path.stem: path.read_text(errors="replace").count("at real-time priority (budget") for path in logs.glob("*.log")}
    return {name: n for name, n in counts.items() if n}


def run(coins: int, rate: float, seconds: float, hot: int, extra_env: dict, server: str | None,
        evaluate_workers: int = 2, min_spread: str = "0.3") -> dict:
    speed_before = h.box_speed_ms()
    redis_server, redis_url = h.start_redis()
    try:
        os.setpriority(os.PRIO_PROCESS, redis_server.proc.pid, NICE.get("redis", 0))
    except PermissionError:
        pass  # a negative niceness needs root or CAP_SYS_NICE: it stays at 0
    if "redis" in REALTIME:
        realtime.set_process_realtime(redis_server.proc.pid, REDIS_REALTIME_PRIORITY)
    scratch = Path(tempfile.mkdtemp(prefix="kimp-capacity-"))
    database_url, drop_database = h.scratch_database(server, scratch)
    up, bn, web = h.free_port(), h.free_port(), h.free_port()
    env = system_env(redis_url, database_url, up, bn, extra_env)
    manage = [h.PY, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=h.ROOT, env=env, check=True)
    subprocess.run([*manage, "shell", "-c", (
        "from decimal import Decimal as D; from liveguard.services import update_limits; "
        f"update_limits(min_spread_pct=D('{min_spread}'), max_position_size=D('5000000'), max_trades_per_hour=10**9, "
        "max_trades_per_day=10**9, max_slippage_pct=D('50'), max_daily_loss=D('1e10'), max_total_loss=D('1e10'), "
        "max_total_exposure=D('1e12'), "
        "block_market_warnings=False)")], cwd=h.ROOT, env=env, check=True)
    churn = max(0.0, rate - 2 * coins * STEP_HZ)
    procs: dict[str, subprocess.Popen] = {}
    start("venue", [*manage, "run_venue", "--coins", str(coins), "--step-hz", str(STEP_HZ), "--churn", str(churn),
                    "--upbit-port", str(up), "--binance-port", str(bn)], env, procs, scratch)
    h.wait_http(f"http://127.0.0.1:{bn}/api/v3/ping", timeout=30)
    markets = requests.get(f"http://127.0.0.1:{bn}/_venue/state", timeout=5).json()["binance_markets"]
    for market in markets[:hot]:
        requests.post(f"http://127.0.0.1:{bn}/_venue/control", json={"action": "premium", "symbol": market[:-4], "premium": 0.01},
                      timeout=5)
    start("feed_upbit", [h.PY, "-m", "marketdata.feeds", "--exchange", "upbit"], env, procs, scratch)
    start("feed_binance", [h.PY, "-m", "marketdata.feeds", "--exchange", "binance"], env, procs, scratch)
    start("signals", [*manage, "run_signals"], env, procs, scratch)
    quiet = ["-l", "warning", "--without-mingle", "--without-gossip", "--without-heartbeat"]
    for i in range(evaluate_workers):  # a batch's message is disposable (docs/configuration.md)
        start(f"worker_evaluate{i or ''}", [CELERY, "-A", "arbproject", "worker", "-Q", "evaluate", "-P", "solo",
                                            "-n", f"eval{i}@%h", *quiet], {**env, "CELERY_ACK_EMULATION": "false"}, procs, scratch)
    start("worker_pairs", [CELERY, "-A", "arbproject", "worker", "-Q", "pairs", "-P", "prefork", "-c", "1",
                           "-n", "pairs@%h", *quiet], env, procs, scratch)
    start("worker_ops", [CELERY, "-A", "arbproject", "worker", "-Q", "celery,notify", "-P", "prefork", "-c", "1",
                         "-n", "ops@%h", *quiet], env, procs, scratch)
    start("beat", [CELERY, "-A", "arbproject", "beat", "-l", "warning", "-s", str(scratch / "beat-schedule")], env, procs, scratch)
    start("relay", [*manage, "run_relay"], env, procs, scratch)
    start("web", [UVICORN, "arbproject.asgi:application", "--host", "127.0.0.1", "--port", str(web), "--lifespan", "off",
                  "--no-access-log", "--log-level", "warning"], env, procs, scratch)
    client = redis.Redis.from_url(redis_url)
    latency = h.TickLatency(client, nice=NICE.get("worker_evaluate", 0),  # heard at the hot path's priority
                            realtime=EVALUATE_REALTIME_PRIORITY if "worker_evaluate" in REALTIME else 0).start()
    pings: list[float] = []  # Redis PING round trips while measuring (ms): what any client waits for a reply
    pinging = threading.Event()

    def ping() -> None:
        pinger = redis.Redis.from_url(redis_url)
        while not latency.done.is_set():
            if pinging.is_set():
                started = time.perf_counter()
                pinger.ping()
                pings.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)

    threading.Thread(target=ping, daemon=True).start()

    state = StateManager(client)

    def feed_messages() -> int:
        return sum(stats.messages for stats in map(state.get_feed_stats, ("upbit", "binance")) if stats)

    try:
        deadline = time.monotonic() + 90
        while len(state.premium_symbols()) < coins * 0.9 and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # warm-up: funding deposits, first pairs, caches
        t0, m0 = time.time(), feed_messages()
        # Redis and the PostgreSQL server's processes (every backend, whoever's) share the two cores too.
        watched = {**{name: p.pid for name, p in procs.items()}, "redis": redis_server.proc.pid}
        cpu0 = {name: h.tree_cpu_seconds(pid) for name, pid in watched.items()}
        pg0, steal0 = h.postgres_cpu_seconds(), h.steal_seconds()
        # Every command Redis took over 1 ms to run: while it runs, every hot path's command waits.
        client.config_set("slowlog-log-slower-than", 1000)
        client.config_set("slowlog-max-len", 10000)
        client.slowlog_reset()
        latency.measuring.set()
        pinging.set()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            # Each pair adds to its coin's exposure; clear it (every coin's: their sum is capped too) so
            # that the position limits do not end the run. By name: a KEYS scan would stall Redis.
            held = client.smembers(keys.EXPOSURE_COINS_KEY)
            client.delete(keys.EXPOSURE_COINS_KEY, *(keys.exposure_key(c.decode()) for c in held))
            time.sleep(0.25)
        latency.measuring.clear()
        pinging.clear()
        t1, m1 = time.time(), feed_messages()
        slow = client.slowlog_get(10000)
        redis_time = client.info("commandstats")
        cpu1 = {name: h.tree_cpu_seconds(pid) for name, pid in watched.items()}
        pg1, steal1 = h.postgres_cpu_seconds(), h.steal_seconds()
        memory = {name: h.tree_memory_mb(pid) for name, pid in watched.items()}
        niceness = {name: os.getpriority(os.PRIO_PROCESS, pid) for name, pid in watched.items()}
        policy = {name: h.realtime_threads(pid) for name, pid in watched.items()}
        batches = state.batch_samples()  # (finished at, coins, age of the oldest change ms)
        busiest = sorted(redis_time.items(), key=lambda kv: -kv[1]["usec"])[:5]
        dead = [name for name, p in procs.items() if p.poll() is not None]
        outcomes = signal_outcomes(database_url, [m[:-4] for m in markets[:hot]])
        demoted = demotions(scratch)
    finally:
        latency.stop()
        h.stop(*reversed(list(procs.values())))
        h.stop(redis_server)
        drop_database()
    speed_after = h.box_speed_ms()
    window = [b for b in batches if t0 <= b[0] <= t1]
    span = t1 - t0
    return {
        "coins": coins, "offered": rate, "processed": (m1 - m0) / span,
        "evals": sum(b[1] for b in window) / span, "batches": len(window) / span,
        "signals": len(latency.signals), "s50": h.percentile(latency.signals, 50), "s99": h.percentile(latency.signals, 99),
        "fills": len(latency.fills), "f50": h.percentile(latency.fills, 50), "f99": h.percentile(latency.fills, 99),
        "stale99": h.percentile([b[2] for b in window], 99), "tail": tail_split(latency),
        "cpu": {name: (cpu1[name] - cpu0[name]) / span for name in watched}, "memory": memory, "nice": niceness, "dead": dead,
        "postgres_cpu": (pg1 - pg0) / span, "steal": (steal1 - steal0) / span, "realtime": policy, "demoted": demoted,
        "speed": (speed_before, speed_after),
        "batches_raw": window, "outcomes": outcomes,
        "ping50": h.percentile(pings, 50), "ping99": h.percentile(pings, 99),
        "redis_slow": slow_commands(slow),
        "redis_busiest": ", ".join(f"{name.removeprefix('cmdstat_')} {v['usec_per_call']:.0f} us x {v['calls']}"
                                   for name, v in busiest),
    }


def slow_commands(entries: list[dict]) -> str:
    """Redis's slow log while measuring: how many commands ran over 1 ms, and the slowest kinds."""
    if not entries:
        return "none"
    worst: dict[str, list[int]] = {}
    for e in entries:
        words = e["command"].split()
        name = words[0].decode(errors="replace").lower() if words else "?"
        if name in ("evalsha", "eval") and len(words) > 2:
            name += f"({int(words[2])} keys)"
        worst.setdefault(name, []).append(e["duration"])
    kinds = sorted(worst.items(), key=lambda kv: -max(kv[1]))[:3]
    return f"{len(entries)} over 1 ms, " + ", ".join(f"{name} x{len(d)} up to {max(d) / 1000:.1f} ms" for name, d in kinds)


def tail_split(latency: h.TickLatency) -> str:
    """Where the slowest 1 % of signals spent their time: before their screen started (the feed's
    write, the take, the batches ahead) or after (the screen, the store, the announcement heard)."""
    if not latency.parts:
        return "n/a"
    cut = h.percentile(latency.signals, 99)
    slow = [p for lat, p in zip(latency.signals, latency.parts, strict=True) if lat >= cut]
    return (f"{len(slow)} signals >= p99: before the screen p50 {h.percentile([p[0] for p in slow], 50):.1f} ms, "
            f"after it p50 {h.percentile([p[1] for p in slow], 50):.1f} ms")


def signal_outcomes(database_url: str, hot: list[str]) -> str:
    """What the ledger says became of the forced-premium coins' signals, and the checks that blocked
    them most (the fills depend on it: a blocked pair is no fill)."""
    if not database_url.startswith("postgres"):
        return "n/a on SQLite"
    import psycopg

    with psycopg.connect(database_url) as conn:
        outcomes = conn.execute("SELECT outcome, count(*) FROM trading_signal WHERE symbol = ANY(%s) GROUP BY 1 ORDER BY 2 DESC",
                                (hot,)).fetchall()
        checks = conn.execute("SELECT check_name, count(*) FROM liveguard_guardevent WHERE symbol = ANY(%s) GROUP BY 1 "
                              "ORDER BY 2 DESC LIMIT 3", (hot,)).fetchall()
    return (", ".join(f"{o} {n}" for o, n in outcomes) or "none") + "; blocked by " + (
        ", ".join(f"{c} {n}" for c, n in checks) or "nothing")


def report(r: dict) -> None:
    print(f"\ncoins={r['coins']} offered={r['offered']:.0f} upd/s processed={r['processed']:.0f} upd/s "
          f"evaluations={r['evals']:.0f}/s in {r['batches']:.0f} batches/s")
    print(f"  tick->signal p50 {r['s50']:.2f} ms p99 {r['s99']:.2f} ms ({r['signals']} signals); "
          f"tick->fill p50 {r['f50']:.2f} ms p99 {r['f99']:.2f} ms ({r['fills']} fills); staleness p99 {r['stale99']:.2f} ms")
    print(f"  the slowest signals: {r['tail']}")
    print(f"  hot coins' signals in the ledger: {r['outcomes']}")
    print(f"  the box's speed: a fixed Python loop took {r['speed'][0]:.0f} ms before the run, {r['speed'][1]:.0f} ms after "
          f"(~55 ms at this host's fastest)")
    print(f"  Redis PING round trip p50 {r['ping50']:.2f} ms p99 {r['ping99']:.2f} ms; busiest commands (whole run): "
          f"{r['redis_busiest']}")
    print(f"  Redis commands that ran over 1 ms while measuring: {r['redis_slow']}")
    print(f"  {'process':<16} {'CPU':>6} {'RSS MB':>8} {'PSS MB':>8} {'nice':>5} {'real-time threads':>18}")
    system = [name for name in r["cpu"] if name not in ("venue", "redis")]
    for name in ["venue", "redis", *system]:
        rss, pss = r["memory"][name]
        print(f"  {name:<16} {r['cpu'][name]:>6.0%} {rss:>8.0f} {pss:>8.0f} {r['nice'][name]:>5} {r['realtime'][name]:>18}")
    rss = sum(r["memory"][n][0] for n in system)
    pss = sum(r["memory"][n][1] for n in system)
    print(f"  {'system (no venue, no redis)':<16} {sum(r['cpu'][n] for n in system):>6.0%} {rss:>8.0f} {pss:>8.0f}")
    print(f"  {'postgres server':<16} {r['postgres_cpu']:>6.0%}   (all its processes)")
    print(f"  {'whole box':<16} {sum(r['cpu'].values()) + r['postgres_cpu']:>6.0%}   of {os.cpu_count() * 100}%; taken by the "
          f"hypervisor for other guests (steal): {r['steal']:.0%}")
    if r["demoted"]:
        print(f"  over their real-time budget (back to normal priority for 5 s), whole run: "
              f"{', '.join(f'{name} {n}x' for name, n in r['demoted'].items())}")
    if r["dead"]:
        print(f"  processes that died: {', '.join(r['dead'])}")
    keeps_up = r["processed"] >= 0.95 * r["offered"] and r["stale99"] < 100 and not r["dead"]
    print(f"capacity: coins={r['coins']} updates_per_s={r['offered']:.0f} sig_p99_ms={r['s99']:.1f} "
          f"staleness_p99_ms={r['stale99']:.1f} fill_p99_ms={r['f99']:.1f} system_pss_mb={pss:.0f} steal_pct={r['steal'] * 100:.0f} loop_ms={max(r['speed']):.0f} "
          f"keeps_up={'yes' if keeps_up else 'no'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coins", type=int, default=200)
    parser.add_argument("--rate", type=float, action="append", help="book updates per second, both venues (repeatable)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--hot", type=int, default=5, help="coins whose premium is forced to 1 %% (a signal on every tick)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment for the system")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres",
                        help="the PostgreSQL server a scratch database is made on (dropped at the end)")
    parser.add_argument("--sqlite", action="store_true", help="a scratch SQLite file instead")
    parser.add_argument("--evaluate-workers", type=int, default=2,
                        help="worker processes on the evaluate queue (default 2, as make demo runs: one per core)")
    parser.add_argument("--priorities", choices=["on", "off"], default="on",
                        help="the priorities of make demo: the hot path at nice -10 where allowed, housekeeping, the "
                             "dashboard and the venue at 10 (default on)")
    parser.add_argument("--realtime", choices=["on", "off"], default="on",
                        help="real-time priority (SCHED_FIFO, on a CPU budget) for the hot path where allowed, as make "
                             "demo gives it: Redis, the feeds, the evaluate workers (default on)")
    parser.add_argument("--nice", action="append", default=[], metavar="PROCESS=N",
                        help="this niceness for one process (venue, redis, feed_upbit, worker_pairs, ...; repeatable)")
    parser.add_argument("--min-spread", default="0.3", help="min_spread_pct (%%): the default limit, beaten only by the hot "
                                                              "coins; 0.05 makes a fifth of the market signal on every tick")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    if args.priorities == "off":
        NICE.clear()
    if args.priorities == "off" or args.realtime == "off":
        REALTIME.clear()
    NICE.update({name: int(n) for name, n in (item.split("=", 1) for item in args.nice)})
    for rate in args.rate or [1000.0, 3000.0, 6000.0]:
        report(run(args.coins, rate, args.seconds, args.hot, extra, None if args.sqlite else args.postgres,
                   args.evaluate_workers, args.min_spread))


if __name__ == "__main__":
    main()
