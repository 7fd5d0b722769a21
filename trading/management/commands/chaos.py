"""The chaos soak: the whole system in LIVE mode against the simulated venue, under random faults.

    manage.py chaos --seconds 600 [--seed N] [--coins 6|BTC,ETH,...] [--workers 2] [--database-url URL] [--keep]

What runs (every process real, as `infra/demo.py` starts them): a private redis-server on a free port
(restarted now and then), the venue in this process (so that its internal orders and accounts can
be read for the final check) with one account for one API key on both dialects, a feed per
exchange, the dispatcher, N Celery workers (`-n w1@%h`, `-n w2@%h`, prefork `-c 1`) and beat, in a
scratch database of the run's own (`kimp_chaos_<random>` on the PostgreSQL server at 127.0.0.1:5432
when one answers, else a temporary SQLite file), migrated first and dropped at the end unless --keep.

The run: `manage.py reconcile` adopts the venue's balances as deposits; the premiums of the chosen
coins are forced to 1.2-3 % and flipped in sign every few seconds, so that signals keep coming and
take-profit closes keep the positions turning over. Meanwhile, at random moments: fault rules
(`POST /_venue/control` `fault`) on order entry, look-ups, cancels and accounts of both venues
(refuse_429/418, unavailable_before, timeout_before, delay_after, error_5xx_after, html_after,
reset_before, reset_after; `skip` makes some hit a second leg or a hedge), a Binance clock offset of
+-2 s, a venue quote balance moved away and back (insufficient balance), SIGKILL of a worker (its
whole process group, restarted at once) and a restart of Redis (stopped, ~2 s, started on the same port).

Then: faults cleared, the kill switch engaged, beat, dispatcher and feeds stopped, the workers given
a warm shutdown (their pairs finish), `resume_pending` with a live executor until no live pair is
open (or a bound passes), `reconcile`, and the invariant checked against the venue's own state:

* every order the venue holds for our key is in the ledger once, with the executed quantity of its
  booked fills, and no ledger order has fills the venue does not know;
* no client id appears twice on a venue (an order sent twice);
* ledger balances equal the venue's balances (free + locked) exactly, per venue and asset;
* per pair, the coin bought equals the coin sold, or the remainder is declared dust, or the pair is
  flagged with a `leg_risk` guard event naming it; anything else is unflagged exposure.

The last line is `chaos: pairs=... faults=... kills=... redis_restarts=... unflagged_exposure=...
doubled_orders=... ledger_matches_venue=yes|no`; the exit status is non-zero when any of the last
three fails (the details are printed above it).

The command runs itself twice: the outer process creates and drops the scratch database and picks
the ports; the inner one (`--inner`, started with the live-mode environment) does everything else,
so that its own Django settings are those of the system it drives.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

ROOT = Path(settings.BASE_DIR)
PY = sys.executable
BIN = Path(PY).parent
LIVE_CONFIRM = "I understand this sends real orders"
DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"

# Fault targets: (dialect, method, path, what it is, weight).
ENDPOINTS = [
    ("binance", "POST", "/api/v3/order", "entry", 9),
    ("upbit", "POST", "/v1/orders", "entry", 9),
    ("binance", "GET", "/api/v3/order", "lookup", 5),
    ("binance", "GET", "/api/v3/myTrades", "lookup", 3),
    ("upbit", "GET", "/v1/order", "lookup", 6),
    ("binance", "DELETE", "/api/v3/order", "cancel", 1),
    ("upbit", "DELETE", "/v1/order", "cancel", 1),
    ("binance", "GET", "/api/v3/account", "accounts", 1),
    ("upbit", "GET", "/v1/accounts", "accounts", 1),
]
RARE_GAP = {"accounts": 150.0, "cancel": 60.0}  # seconds between faults on rarely called endpoints
KINDS = ["refuse_429", "refuse_418", "unavailable_before", "timeout_before", "delay_after", "error_5xx_after",
         "html_after", "reset_before", "reset_after"]
# Limits of the scratch database: the soak is about the order lifecycle, not about the guard's
# market checks, so pairs must keep flowing on a loaded 2-core machine. A pair is at most 1 % of
# the sell venue's coin inventory (a few million KRW); a coin's exposure may reach 40 M KRW.
LIMITS = dict(max_position_size=Decimal("40000000"), max_total_exposure=Decimal("1e12"), stop_loss_cooldown=5,
              max_inventory_pct=Decimal("1"), max_trades_per_hour=10**6,
              max_trades_per_day=10**7, max_daily_loss=Decimal("1e12"), max_total_loss=Decimal("1e12"),
              circuit_breaker_threshold_pct=Decimal("100"), max_slippage_pct=Decimal("1"), max_quote_age_ms=3000,
              max_quote_skew_ms=2500, max_fx_age_ms=10000, fx_jump_pct=Decimal("5"), min_spread_pct=Decimal("0.3"),
              stop_loss_pct=Decimal("5"), take_profit_pct=Decimal("0.5"), block_market_warnings=False)
INVENTORY_KRW = 400_000_000  # each coin, on each venue
KRW, USDT = Decimal("20000000000"), Decimal("15000000")


class Command(BaseCommand):
    help = "Chaos soak: the live system against the simulated venue under random faults, then the money invariant."

    def add_arguments(self, parser):
        parser.add_argument("--seconds", type=float, default=600, help="length of the chaos phase (default 600)")
        parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
        parser.add_argument("--coins", default="6", help="how many coins (the first N of the venue's) or a list BTC,ETH,...")
        parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (default 2)")
        parser.add_argument("--database-url", default=None,
                            help="the PostgreSQL server to create the scratch database on (its database name is "
                                 "ignored; default 127.0.0.1:5432 as postgres when it answers, else SQLite); a "
                                 "sqlite:// URL forces a temporary SQLite file")
        parser.add_argument("--keep", action="store_true", help="keep the scratch database and the logs")
        # Internal: the outer process starts the inner one with these.
        parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--logdir", default="", help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        if options["seconds"] <= 0:
            raise CommandError("--seconds must be positive")
        if options["workers"] < 1:
            raise CommandError("--workers must be at least 1")
        parse_coins(options["coins"])
        if options["seed"] is None:
            options["seed"] = random.SystemRandom().randrange(1, 10**6)
        code = Soak(options, self.stdout).run() if options["inner"] else outer(options, self.stdout)
        if code:
            raise SystemExit(code)


def parse_coins(raw) -> list[str]:
    """--coins: how many of the venue's coins (the first N), or a comma-separated list."""
    from marketdata.venue.market import DEFAULT_COINS

    raw = str(raw).strip()
    known = [c.symbol for c in DEFAULT_COINS]
    if raw.isdigit():
        return known[: max(1, min(int(raw), len(known)))]
    coins = [c.strip().upper() for c in raw.split(",") if c.strip()]
    unknown = [c for c in coins if c not in known]
    if unknown or not coins:
        raise CommandError(f"--coins: unknown {', '.join(unknown) or 'list'}; the venue lists {', '.join(known)}")
    return coins


# --- the outer process: scratch database, ports, environment ---------------------------------------
def say(out, text: str) -> None:
    out.write(text)
    out.flush()


class ScratchDatabase:
    """kimp_chaos_<random> on a PostgreSQL server, or a SQLite file in a temporary directory."""

    def __init__(self, server: str | None):
        self.name = f"kimp_chaos_{secrets.token_hex(4)}"
        self.url = ""
        self.server = ""
        self.tmpdir = ""
        wanted = server or DEFAULT_SERVER
        if not wanted.startswith("sqlite") and self._answers(wanted):
            self.server = wanted
        elif server and not server.startswith("sqlite"):
            raise CommandError(f"no PostgreSQL answers at {_hide_password(server)}")

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            import psycopg

            with psycopg.connect(_with_db(url, "postgres"), connect_timeout=3):
                return True
        except Exception:  # noqa: BLE001 — anything: fall back to SQLite
            return False

    def create(self) -> str:
        if self.server:
            import psycopg
            from psycopg import sql

            with psycopg.connect(_with_db(self.server, "postgres"), autocommit=True, connect_timeout=10) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
            self.url = _with_db(self.server, self.name)
        else:
            self.tmpdir = tempfile.mkdtemp(prefix="kimp-chaos-db-")
            self.url = f"sqlite:///{self.tmpdir}/{self.name}.sqlite3"
        return self.url

    def describe(self) -> str:
        return f"PostgreSQL {self.name} on {_hide_password(self.server)}" if self.server else f"SQLite {self.url[10:]}"

    def drop(self) -> None:
        if self.server and self.url:
            import psycopg
            from psycopg import sql

            with psycopg.connect(_with_db(self.server, "postgres"), autocommit=True, connect_timeout=10) as conn:
                force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(self.name), force))
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return url


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outer(options, out) -> int:
    db = ScratchDatabase(options["database_url"])
    logdir = Path(tempfile.mkdtemp(prefix="kimp-chaos-"))
    redis_port, upbit_port, binance_port = free_port(), free_port(), free_port()
    while len({redis_port, upbit_port, binance_port}) < 3:
        upbit_port, binance_port = free_port(), free_port()
    key, secret = f"chaos-{secrets.token_hex(6)}", secrets.token_hex(32)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    host = "127.0.0.1"
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_TEST_NAME", "KIMP_TEST_DB_ENGINE", "CELERY_TASK_ALWAYS_EAGER", "FEED_SYMBOLS")}
    env.update(
        DJANGO_SETTINGS_MODULE="arbproject.settings", PYTHONUNBUFFERED="1",
        REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url, CELERY_RESULT_BACKEND=redis_url, CHANNELS_REDIS_URL=redis_url,
        LIVE_MODE="true", LIVE_MODE_CONFIRM=LIVE_CONFIRM, DJANGO_SECRET_KEY=secrets.token_urlsafe(48),
        API_READ_TOKEN=secrets.token_urlsafe(24), DJANGO_DEBUG="false",  # live mode keeps reads private
        UPBIT_API_KEY=key, UPBIT_SECRET_KEY=secret, BINANCE_API_KEY=key, BINANCE_SECRET_KEY=secret,
        VENUE_HOST=host, VENUE_UPBIT_PORT=str(upbit_port), VENUE_BINANCE_PORT=str(binance_port),
        UPBIT_REST_URL=f"http://{host}:{upbit_port}", UPBIT_WS_URL=f"ws://{host}:{upbit_port}/websocket/v1",
        BINANCE_REST_URL=f"http://{host}:{binance_port}", BINANCE_WS_URL=f"ws://{host}:{binance_port}",
        FX_REFERENCE_URL=f"http://{host}:{upbit_port}/v1/forex/recent?codes=FRX.KRWUSD", FX_SOURCE="upbit",
        # Every signed call gives up after 2 s (the faults' delays and holds straddle it); a pair's
        # lease is 30 s, refreshed at each stage (a stage takes at most ~15 s: a 2 s timeout plus the
        # 8 s look-up budget plus back-offs), so that resume takes over a dead worker's pair in the run.
        # The quant cap (RISK_BUDGET_KRW over the premium's volatility) would shrink pairs to dust once
        # beat refits it; the soak sizes pairs by the limits above instead.
        RISK_BUDGET_KRW="1000000000",
        EXCHANGE_TIMEOUT_S="2", PAIR_LEASE_S="30", LEG_RISK_AFTER_S="60", LEG_SLIPPAGE="0.003",
        FEED_RECONNECT_MAX_BACKOFF="1", LOG_LEVEL=os.environ.get("CHAOS_LOG_LEVEL", "WARNING"),
        CHAOS_REDIS_PORT=str(redis_port), CHAOS_API_KEY=key, CHAOS_API_SECRET=secret,
    )
    argv = [PY, str(ROOT / "manage.py"), "chaos", "--inner", "--seconds", str(options["seconds"]), "--seed",
            str(options["seed"]), "--coins", str(options["coins"]), "--workers", str(options["workers"]),
            "--logdir", str(logdir)]
    code = 1
    proc = None
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    try:
        env["DATABASE_URL"] = db.create()
        say(out, f"chaos: seed {options['seed']}; scratch database {db.describe()}; logs in {logdir}")
        proc = subprocess.Popen(argv, cwd=ROOT, env=env)
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:
                # Ctrl-C reaches the inner process too (same process group); a SIGTERM to us alone is passed on.
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                code = 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(180)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if options["keep"]:
            say(out, f"chaos: kept the scratch database ({db.describe()}) and the logs in {logdir}")
        else:
            try:
                db.drop()
            except Exception as exc:  # noqa: BLE001 — reported, not hidden
                say(out, f"chaos: could not drop the scratch database {db.name}: {exc}")
            if code == 0:
                shutil.rmtree(logdir, ignore_errors=True)
            else:
                say(out, f"chaos: logs of the failed run kept in {logdir}")
    return code


def _raise_interrupt(*_args):
    raise KeyboardInterrupt


# --- the inner process: the system, the chaos, the checks ------------------------------------------
class Child:
    """One process of the system, in a process group of its own (so a SIGKILL takes all of it)."""

    def __init__(self, name: str, argv: list[str], env: dict, logdir: Path):
        self.name, self.argv, self.env, self.logdir = name, argv, env, logdir
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.expected_exit = False

    def start(self) -> None:
        self.starts += 1
        log = open(self.logdir / f"{self.name}.log", "ab")  # noqa: SIM115 — handed to the child
        log.write(f"\n=== start {self.starts} at {time.strftime('%H:%M:%S')} ===\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.expected_exit = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (a worker and its pool child die together, as in a crash)."""
        if self.proc is None:
            return
        self.expected_exit = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def terminate(self) -> None:
        if self.alive():
            self.expected_exit = True
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(max(0.1, timeout))
            return True
        except subprocess.TimeoutExpired:
            return False

    def reap_group(self) -> None:
        """Whatever of its group is left (a pool child whose parent died) goes too."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class Soak:
    def __init__(self, options, out):
        self.options = options
        self.out = out
        self.seconds = float(options["seconds"])
        self.rng = random.Random(options["seed"])
        self.logdir = Path(options["logdir"] or tempfile.mkdtemp(prefix="kimp-chaos-"))
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.events = open(self.logdir / "events.log", "a")  # noqa: SIM115 — closed in run()
        self.env = dict(os.environ)
        self.api_key = os.environ["CHAOS_API_KEY"]
        self.api_secret = os.environ["CHAOS_API_SECRET"]
        self.redis_port = int(os.environ["CHAOS_REDIS_PORT"])
        self.children: dict[str, Child] = {}
        self.workers: list[Child] = []
        self.redis = None
        self.venue = None
        self.t0 = time.monotonic()
        self.counts = Counter()
        self.injected = Counter()  # (kind, exchange, target) -> requests the rules were to spoil
        self.findings: list[str] = []
        self.moved: list[tuple[str, str, Decimal]] = []  # quote moved away from the venue account, to put back
        self.kill_switch_seen = False
        self.last_rare: dict[str, float] = {}

    # --- output --------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def log(self, text: str, echo: bool = False) -> None:
        line = f"[{self.elapsed():7.1f}s] {text}"
        self.events.write(line + "\n")
        self.events.flush()
        if echo:
            say(self.out, f"chaos: {line}")

    # --- the run -------------------------------------------------------------------------------
    def run(self) -> int:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self.start_system()
            self.chaos()
            self.wind_down()
            return self.verify()
        except KeyboardInterrupt:
            say(self.out, "chaos: interrupted; stopping every process")
            return 130
        except Exception:
            say(self.out, "chaos: the soak itself failed:\n" + traceback.format_exc())
            return 2
        finally:
            # A second Ctrl-C (or the outer process passing one on) must not cut the clean-up short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self.cleanup()
            signal.signal(signal.SIGTERM, previous)
            self.events.close()

    def start_system(self) -> None:
        # Everything this process will call later is imported now: a tree edited during a long run
        # must not hand the wind-down a newer module than the one the run started with.
        from django.core.management import call_command

        import liveguard.services  # noqa: F401
        import trading.engine  # noqa: F401
        import trading.execution  # noqa: F401
        import trading.live  # noqa: F401
        import trading.reconcile  # noqa: F401
        from liveguard.services import update_limits
        from marketdata.venue.accounts import Accounts
        from marketdata.venue.core import Venue
        from marketdata.venue.market import DEFAULT_COINS, MarketModel, ModelParams
        from marketdata.venue.server import VenueServer, VenueThread
        from tests.support import PrivateRedis
        from trading.engine import get_state

        self.symbols = parse_coins(self.options["coins"])
        say(self.out, f"chaos: {self.seconds:g} s on {', '.join(self.symbols)} with {self.options['workers']} workers, "
                      f"seed {self.options['seed']}")
        self.redis = PrivateRedis(self.redis_port).start()
        # The venue: one account on each dialect, deep in quote and in every coin traded.
        accounts = Accounts()
        prices = {c.symbol: Decimal(repr(c.usd_price)) for c in DEFAULT_COINS}
        coins = {s: (Decimal(INVENTORY_KRW) / (prices[s] * 1400)).quantize(Decimal("0.0001")) for s in self.symbols}
        accounts.add("upbit", self.api_key, self.api_secret, {"KRW": KRW, **coins})
        accounts.add("binance", self.api_key, self.api_secret, {"USDT": USDT, **coins})
        model = MarketModel(seed=self.options["seed"], params=ModelParams(jump_rate=0))
        server = VenueServer(Venue(model, step_hz=5), upbit_port=int(os.environ["VENUE_UPBIT_PORT"]),
                             binance_port=int(os.environ["VENUE_BINANCE_PORT"]), accounts=accounts)
        self.venue = VenueThread(server).start()
        self.server = server
        self.account = {"upbit": accounts.upbit[self.api_key], "binance": accounts.binance[self.api_key]}

        call_command("migrate", verbosity=0, interactive=False)
        self.state = get_state()
        from liveguard.models import GuardLimits

        fields = {f.name for f in GuardLimits._meta.get_fields()}
        update_limits(self.state, **{name: value for name, value in LIMITS.items() if name in fields})
        # Live trading starts from an agreement: the venues' balances adopted as deposits.
        out = subprocess.run([PY, "manage.py", "reconcile"], cwd=ROOT, env=self.env, capture_output=True, text=True)
        self.log(f"manage.py reconcile: {out.stdout.strip()} {out.stderr.strip()}")
        if out.returncode != 0 or "agreed" not in out.stdout:
            raise RuntimeError(f"manage.py reconcile did not agree: {out.stdout} {out.stderr}")

        def child(name, argv):
            self.children[name] = Child(name, argv, self.env, self.logdir)
            self.children[name].start()
            return self.children[name]

        joined = ",".join(self.symbols)
        child("feed-upbit", [PY, "manage.py", "run_feeds", "--exchange", "upbit", "--symbols", joined])
        child("feed-binance", [PY, "manage.py", "run_feeds", "--exchange", "binance", "--symbols", joined])
        child("signals", [PY, "manage.py", "run_signals"])
        for i in range(1, self.options["workers"] + 1):
            self.workers.append(child(f"w{i}", [
                str(BIN / "celery"), "-A", "arbproject", "worker", "-P", "prefork", "-c", "1", "-n", f"w{i}@%h",
                "-l", "warning", "--without-mingle", "--without-gossip", "--without-heartbeat"]))
        child("beat", [str(BIN / "celery"), "-A", "arbproject", "beat", "-l", "warning",
                       "-s", str(self.logdir / "celerybeat-schedule")])
        self.wait_for_books()
        self.next_flip, self.signs = {}, {}
        for symbol in self.symbols:
            self.flip(symbol)

    def wait_for_books(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.state.get_fx("upbit") and all(self.state.get_book(e, s) for e in ("upbit", "binance")
                                                      for s in self.symbols):
                    return
            except Exception:  # noqa: BLE001 — Redis still starting
                pass
            self.supervise()
            time.sleep(0.3)
        raise RuntimeError("the feeds brought no books within 60 s")

    # --- the venue's control API ---------------------------------------------------------------
    def control(self, exchange: str, action: str, **params) -> dict:
        import requests

        url = self.server.upbit_url if exchange == "upbit" else self.server.binance_url
        response = requests.post(f"{url}/_venue/control", json={"action": action, "exchange": exchange, **params}, timeout=5)
        response.raise_for_status()
        return response.json()

    def flip(self, symbol: str) -> None:
        """Force the coin's premium to 1.2-3 % the other way from before: signals in the new
        direction, and take-profit closes of the position the old direction built."""
        sign = self.signs[symbol] = -self.signs.get(symbol, self.rng.choice((1, -1)))
        premium = round(sign * self.rng.uniform(0.012, 0.03), 4)
        self.control("upbit", "premium", symbol=symbol, premium=premium)
        self.log(f"premium {symbol} {premium:+.2%}")
        self.next_flip[symbol] = self.elapsed() + self.rng.uniform(4, 10)

    # --- chaos ---------------------------------------------------------------------------------
    def schedule(self, count: int, start: float, end: float, gap: float) -> list[float]:
        times: list[float] = []
        for _ in range(200):
            if len(times) >= count or end <= start:
                break
            t = self.rng.uniform(start, end)
            if all(abs(t - other) >= gap for other in times):
                times.append(t)
        return sorted(times)

    def chaos(self) -> None:
        n = self.seconds
        self.t0 = time.monotonic()  # the chaos phase's clock
        # At least one worker kill and one Redis restart in any run; about one kill per 80 s and one
        # restart per 200 s in long ones. Short runs restart Redis late: live trading waits for the
        # next reconciliation after a restart (the stored result is lost with Redis).
        kills = self.schedule(max(1, round(n / 80)), min(10.0, n * 0.2), n * 0.6 if n < 120 else n - 10, 8)
        restarts = self.schedule(max(1, round(n / 200)), n * 0.65 if n < 120 else 30, n - 5, 25)
        say(self.out, f"chaos: worker kills at {[round(t) for t in kills]} s, Redis restarts at {[round(t) for t in restarts]} s")
        next_fault = self.rng.uniform(0.5, 2.0)
        next_clock = self.rng.uniform(5, 20)
        next_balance = self.rng.uniform(5, 30)
        next_status = 15.0
        balance_until = clock_until = None
        while (now := self.elapsed()) < n:
            for symbol in self.symbols:
                if now >= self.next_flip[symbol]:
                    self.flip(symbol)
            if now >= next_fault:
                self.inject_fault()
                next_fault = now + self.rng.uniform(1.0, 6.0)
            if clock_until is None and now >= next_clock and now < n - 3:
                ms = self.rng.choice((-2000, 2000))
                self.control("binance", "clock_offset", ms=ms)
                clock_until = now + self.rng.uniform(2, 5)
                self.counts["clock_offset"] += 1
                self.log(f"fault binance clock_offset {ms} ms until {clock_until:.1f}s")
            elif clock_until is not None and now >= clock_until:
                self.control("binance", "clock_offset", ms=0)
                clock_until = None
                next_clock = now + self.rng.uniform(10, 30)
            if balance_until is None and now >= next_balance and now < n - 3:
                self.move_quote_away()
                balance_until = now + self.rng.uniform(1, 3)
            elif balance_until is not None and now >= balance_until:
                self.put_quote_back()
                balance_until = None
                next_balance = now + self.rng.uniform(20, 60)
            if kills and now >= kills[0]:
                kills.pop(0)
                self.kill_worker()
            if restarts and now >= restarts[0]:
                restarts.pop(0)
                self.restart_redis()
            if now >= next_status:
                self.status()
                next_status = now + 15
            self.supervise()
            self.watch_kill_switch()
            self.watch_reconciliation()
            time.sleep(0.1)
        if clock_until is not None:
            self.control("binance", "clock_offset", ms=0)
        self.put_quote_back()

    def inject_fault(self) -> None:
        """One fault rule on an endpoint that has none pending: a rule on an endpoint that is rarely
        called (accounts: once a minute, by reconciliation; cancels) would otherwise wait there and
        pile up with the next ones, and spoil every call of it for the rest of the run."""
        pending = self.venue.call(lambda: {(r.exchange, r.method, r.path) for r in self.server.venue.faults.rules})
        # Accounts are read once a minute (by reconciliation), and each failed read refuses live
        # trading until the next one: one such fault per RARE_GAP seconds, not one a minute.
        now = self.elapsed()
        free = [e for e in ENDPOINTS if (e[0], e[1], e[2]) not in pending
                and now - self.last_rare.get(e[3], -RARE_GAP.get(e[3], 0)) >= RARE_GAP.get(e[3], 0)]
        if not free:
            return
        exchange, method, path, what, _w = self.rng.choices(free, weights=[e[4] for e in free])[0]
        kind = self.rng.choice(KINDS)
        count = 1 if what in RARE_GAP else self.rng.choice((1, 1, 1, 1, 2, 3))
        if what in RARE_GAP:
            self.last_rare[what] = now
        params = {"method": method, "path": path, "kind": kind, "count": count}
        params["skip"] = self.rng.choices((0, 1, 2), weights=(6, 3, 1))[0]  # 1-2: a second leg, a hedge, a later look-up
        if kind in ("refuse_429", "refuse_418"):
            params["retry_after"] = self.rng.choice((0, 1, 1, 2))
        elif kind == "timeout_before":
            params["seconds"] = round(self.rng.uniform(0.5, 4.0), 2)
        elif kind == "delay_after":
            params["seconds"] = round(self.rng.uniform(0.3, 4.0), 2)
        elif kind == "error_5xx_after":
            params["status"] = self.rng.choice((500, 500, 502, 503, 504))
        self.control(exchange, "fault", **params)
        self.injected[(kind, exchange, what)] += params["count"]
        self.counts["rules"] += 1
        self.log(f"fault {exchange} {method} {path} {kind} " + " ".join(f"{k}={v}" for k, v in params.items()
                                                                   if k not in ("method", "path", "kind")))

    def move_quote_away(self) -> None:
        """Insufficient balance: all but a little of one venue's quote leaves the account, for a moment."""
        exchange = self.rng.choice(("upbit", "binance"))
        asset = "KRW" if exchange == "upbit" else "USDT"
        leave = Decimal("3000") if exchange == "upbit" else Decimal("2")
        account = self.account[exchange]

        def take():
            amount = account.balances.get(asset, Decimal(0)) - leave
            if amount > 0:
                account.move(asset, -amount)
            return max(amount, Decimal(0))

        amount = self.venue.call(take)
        if amount:
            self.moved.append((exchange, asset, amount))
            self.counts["insufficient_balance"] += 1
            self.log(f"fault {exchange} insufficient balance: {amount} {asset} moved away")

    def put_quote_back(self) -> None:
        while self.moved:
            exchange, asset, amount = self.moved.pop()
            self.venue.call(self.account[exchange].move, asset, amount)
            self.log(f"{exchange}: {amount} {asset} put back")

    def kill_worker(self) -> None:
        """SIGKILL a worker, preferably while a live pair is in flight, and start it again at once."""
        from trading.models import Pair

        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if Pair.objects.filter(mode="live", stage__in=("sending", "unwinding")).exists():
                break
            time.sleep(0.05)
        worker = self.rng.choice(self.workers)
        in_flight = list(Pair.objects.filter(mode="live", stage__in=("planned", "sending", "unwinding"))
                         .values_list("symbol", "stage"))
        worker.kill()
        worker.start()
        self.counts["kills"] += 1
        self.log(f"SIGKILL {worker.name} (restarted); pairs in flight then: {in_flight}", echo=True)

    def restart_redis(self) -> None:
        self.log("Redis: stopping", echo=False)
        self.redis.stop()
        time.sleep(2)
        self.redis.start()
        self.counts["redis_restarts"] += 1
        self.log(f"Redis restarted on port {self.redis_port}", echo=True)

    def supervise(self) -> None:
        """A process that died by itself is a finding; it is started again so the soak goes on."""
        for child in self.children.values():
            if child.proc is not None and not child.alive() and not child.expected_exit:
                code = child.proc.returncode
                self.findings.append(f"{child.name} exited by itself with status {code} at {self.elapsed():.0f} s "
                                     f"(see {child.name}.log); restarted")
                self.log(f"{child.name} exited with {code}; restarting", echo=True)
                child.reap_group()
                child.start()

    def watch_kill_switch(self) -> None:
        """A flagged pair engages the kill switch and stops everything until a person settles it (and
        every resume of it engages the switch again); the soak leaves it so and says when it happened."""
        from liveguard.models import KillSwitch

        switch = KillSwitch.objects.filter(pk=1).first()
        engaged = bool(switch and switch.engaged)
        if engaged and not self.kill_switch_seen:
            self.counts["kill_switch_engaged"] += 1
            self.log(f"kill switch engaged: {switch.reason}; live trading stops until a person settles it", echo=True)
        self.kill_switch_seen = engaged

    def watch_reconciliation(self) -> None:
        """Live trading waits while the stored reconciliation is not ok: say when and why it changes."""
        if time.monotonic() < getattr(self, "_next_reconciliation_check", 0):
            return
        self._next_reconciliation_check = time.monotonic() + 1
        try:
            report = self.state.reconciliation() or {}
        except Exception:  # noqa: BLE001 — Redis restarting
            return
        seen = (report.get("checked_at"), bool(report.get("ok")), bool(report.get("stale")))
        if seen == getattr(self, "_reconciliation_seen", None):
            return
        self._reconciliation_seen = seen
        if report.get("ok"):
            self.log(f"reconciliation ok ({report.get('checked_at')})")
            return
        self.counts["reconciliation_refused"] += 1
        why = "stale (its result expired)" if report.get("stale") else "; ".join(report.get("differences") or []) or "missing"
        self.log(f"reconciliation NOT ok, live trading refused: {why}"[:400], echo=True)

    def status(self) -> None:
        from trading.execution import OPEN_STAGES
        from trading.models import Pair

        pairs = Pair.objects.filter(mode="live")
        say(self.out, f"chaos: [{self.elapsed():5.0f}s] pairs={pairs.count()} open={pairs.filter(stage__in=OPEN_STAGES).count()} "
                      f"rules={self.counts['rules']} kills={self.counts['kills']} redis_restarts={self.counts['redis_restarts']}")

    # --- stop trading, resume, reconcile -------------------------------------------------------------
    def wind_down(self) -> None:
        from liveguard.services import set_kill_switch

        leftover = self.server.venue.faults.rules
        self.leftover = self.venue.call(lambda: [(r.kind, r.exchange, r.method, r.path, r.remaining or 0) for r in leftover])
        self.control("upbit", "clear_faults")
        self.control("binance", "clock_offset", ms=0)
        self.put_quote_back()
        self.chaos_seconds = self.elapsed()
        say(self.out, f"chaos: [{self.chaos_seconds:5.0f}s] chaos over: faults cleared, kill switch engaged, stopping trading")
        set_kill_switch(self.state, True, reason="chaos soak: stop trading")
        for name in ("beat", "signals"):
            self.children[name].terminate()
        for worker in self.workers:
            worker.terminate()  # warm shutdown: a pair in progress finishes
        deadline = time.monotonic() + 120  # above the task hard limit (100 s)
        for child in [*self.workers, self.children["beat"], self.children["signals"]]:
            if not child.wait(deadline - time.monotonic()):
                self.findings.append(f"{child.name} did not stop within 120 s of SIGTERM; killed")
                child.kill()
            child.reap_group()
        for name in ("feed-upbit", "feed-binance"):
            self.children[name].terminate()
            if not self.children[name].wait(10):
                self.children[name].kill()
        self.resume_all()

    def resume_all(self) -> None:
        from trading.engine import fees
        from trading.execution import OPEN_STAGES, resume_pending
        from trading.live import live_executor
        from trading.models import Pair

        executor = live_executor(self.state, fees())
        open_live = Pair.objects.filter(mode="live", stage__in=OPEN_STAGES)
        before = open_live.count()
        rounds = unchanged = 0
        deadline = time.monotonic() + 120
        last = None
        while open_live.exists() and time.monotonic() < deadline and unchanged < 3:
            # Every process that could own a pair is stopped: nobody holds a lease any more.
            open_live.update(lease_until=None)
            rounds += 1
            settled = resume_pending(self.state, executor)
            now = sorted((str(p.id), p.stage, p.note, *sorted(p.orders.values_list("status", flat=True)))
                         for p in open_live.prefetch_related("orders"))
            unchanged = unchanged + 1 if now == last else 0  # flagged for good: a person's turn
            last = now
            self.log(f"resume round {rounds}: {len(settled)} resumed, {open_live.count()} open")
            if open_live.exists():
                time.sleep(2)
        say(self.out, f"chaos: resume: {before} live pair(s) open after the workers stopped, {open_live.count()} "
                      f"after {rounds} round(s)")
        from trading.reconcile import reconcile

        self.reconciliation = reconcile(self.state, executor.venues)
        verdict = "agreed" if self.reconciliation["ok"] else "NOT agreed: " + "; ".join(self.reconciliation["differences"])
        say(self.out, f"chaos: reconcile: {verdict}")

    # --- the invariant ------------------------------------------------------------------------------
    def venue_orders(self) -> list[dict]:
        def snapshot():
            rows = []
            for exchange, book in (("binance", self.server.binance.orders.orders), ("upbit", self.server.upbit.orders.orders)):
                for o in book.values():
                    if o.api_key == self.api_key:
                        rows.append({"exchange": exchange, "client_id": o.client_id, "executed": o.executed,
                                     "status": o.status, "market": o.market, "side": o.side, "open": o.open})
            return rows

        return self.venue.call(snapshot)

    def venue_balances(self) -> dict[tuple[str, str], Decimal]:
        def snapshot():
            out = {}
            for exchange, account in self.account.items():
                for asset in set(account.balances) | set(account.locked):
                    out[(exchange, asset)] = account.balances.get(asset, Decimal(0)) + account.locked.get(asset, Decimal(0))
            return out

        return self.venue.call(snapshot)

    def verify(self) -> int:
        from django.db.models import Sum

        from liveguard.models import GuardEvent
        from trading import ledger
        from trading.models import Fill, Order, Pair

        problems: list[str] = []
        orders = self.venue_orders()
        # No client id twice on a venue.
        ids = Counter((o["exchange"], o["client_id"]) for o in orders)
        doubled = {key: n for key, n in ids.items() if n > 1}
        for (exchange, client_id), n in doubled.items():
            problems.append(f"doubled: {exchange} holds {n} orders with client id {client_id!r}")
        doubled_orders = sum(n - 1 for n in doubled.values())
        # Every venue order in the ledger once, with the executed quantity of its booked fills.
        ledger_orders = {o.client_order_id: o for o in Order.objects.all()}
        booked = {row["order__client_order_id"]: row["total"] or Decimal(0) for row in
                  Fill.objects.values("order__client_order_id").annotate(total=Sum("quantity"))}
        orders_ok = True
        executed_on_venue = defaultdict(Decimal)
        for o in orders:
            executed_on_venue[(o["exchange"], o["client_id"])] += o["executed"]
            mine = ledger_orders.get(o["client_id"])
            if mine is None or mine.exchange != o["exchange"]:
                orders_ok = False
                problems.append(f"not in the ledger: {o['exchange']} order {o['client_id']!r} {o['side']} {o['market']} "
                                f"executed {o['executed']} ({o['status']})")
                continue
            fills = booked.get(o["client_id"], Decimal(0))
            if fills != o["executed"] or mine.filled_quantity != o["executed"]:
                orders_ok = False
                problems.append(f"executed differs: {o['exchange']} {o['client_id']} venue {o['executed']}, ledger fills "
                                f"{fills}, order.filled_quantity {mine.filled_quantity} (status {mine.status}, pair {mine.pair_id})")
            if o["open"]:
                problems.append(f"still open on the venue: {o['exchange']} {o['client_id']} ({o['status']})")
        for client_id, order in ledger_orders.items():
            if (booked.get(client_id) or order.filled_quantity) and (order.exchange, client_id) not in executed_on_venue:
                orders_ok = False
                problems.append(f"booked but unknown to the venue: {order.exchange} {client_id} filled {order.filled_quantity}")
        # Balances, exactly, per venue and asset.
        theirs = self.venue_balances()
        ours = ledger.balances()
        balances_ok = True
        for key in sorted(set(theirs) | set(ours)):
            a, b = theirs.get(key, Decimal(0)), ours.get(key, Decimal(0))
            if a != b:
                balances_ok = False
                problems.append(f"balance differs: {key[0]} {key[1]} venue {a} vs ledger {b} (venue - ledger = {a - b})")
        sums = ledger.ledger_sums()
        for key in sorted(set(sums) | set(ours)):
            if sums.get(key, Decimal(0)) != ours.get(key, Decimal(0)):
                balances_ok = False
                problems.append(f"ledger entries of {key} sum to {sums.get(key)} but the running balance is {ours.get(key)}")
        # Per pair: flat, declared dust, or flagged with a leg_risk event naming it.
        leg_risk = list(GuardEvent.objects.filter(check_name="leg_risk").values_list("reason", flat=True))
        unflagged = 0
        stages = Counter()
        flagged = dust = 0
        for pair in Pair.objects.filter(mode="live").prefetch_related("orders"):
            stages[pair.stage] += 1
            net = sum((o.filled_quantity if o.side == "buy" else -o.filled_quantity for o in pair.orders.all()), Decimal(0))
            named = any(str(pair.id) in reason for reason in leg_risk)
            if pair.stage == Pair.Stage.FLAGGED and named:
                flagged += 1
                if net:
                    self.findings.append(f"flagged pair {pair.id} {pair.symbol}: net {net} ({pair.note})")
                continue
            if net == 0:
                continue
            declared = _declared_dust(pair.note)
            if declared is not None and abs(net) == declared:
                dust += 1
                continue
            unflagged += 1
            problems.append(f"unflagged exposure: pair {pair.id} {pair.symbol} {pair.stage}/{pair.state} net {net} "
                            f"note {pair.note!r} orders " + ", ".join(
                                f"{o.role} {o.exchange} {o.side} {o.filled_quantity}/{o.quantity} {o.status}"
                                for o in pair.orders.all()))
        ledger_ok = orders_ok and balances_ok
        self.report(stages, flagged, dust)
        for line in self.findings:
            say(self.out, f"chaos: finding: {line}")
        for line in problems:
            say(self.out, f"chaos: FAIL {line}")
        faults = sum(self.hits().values()) + self.counts["clock_offset"] + self.counts["insufficient_balance"]
        pairs = Pair.objects.filter(mode="live").count()
        say(self.out, f"chaos: pairs={pairs} faults={faults} kills={self.counts['kills']} "
                      f"redis_restarts={self.counts['redis_restarts']} unflagged_exposure={unflagged} "
                      f"doubled_orders={doubled_orders} ledger_matches_venue={'yes' if ledger_ok else 'no'}")
        return 0 if (unflagged == 0 and doubled_orders == 0 and ledger_ok) else 1

    def hits(self) -> Counter:
        """Requests each fault kind really spoiled: what was injected less what was left unused."""
        left = Counter()
        for kind, exchange, _method, path, remaining in self.leftover:
            what = next((e[3] for e in ENDPOINTS if e[0] == exchange and e[2] == path and e[1] == _method), "?")
            left[(kind, exchange, what)] += remaining
        return Counter({key: n - left[key] for key, n in self.injected.items() if n - left[key] > 0})

    def report(self, stages: Counter, flagged: int, dust: int) -> None:
        from liveguard.models import GuardEvent
        from trading.models import Order, Pair

        hits = self.hits()
        by_kind = Counter()
        for (kind, _exchange, _what), n in hits.items():
            by_kind[kind] += n
        by_target = Counter()
        for (_kind, exchange, what), n in hits.items():
            by_target[f"{exchange} {what}"] += n
        say(self.out, f"chaos: fault rules injected {self.counts['rules']} ({sum(self.injected.values())} requests to "
                      f"spoil), requests spoiled {sum(hits.values())}: " + ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items())))
        say(self.out, "chaos: spoiled by target: " + ", ".join(f"{k} {v}" for k, v in sorted(by_target.items()))
            + f"; clock offsets {self.counts['clock_offset']}, insufficient-balance windows {self.counts['insufficient_balance']}")
        live = Pair.objects.filter(mode="live")
        states = Counter(live.values_list("state", flat=True))
        hedges = Order.objects.filter(pair__mode="live", role="hedge").count()
        statuses = Counter(Order.objects.filter(pair__mode="live").values_list("status", flat=True))
        say(self.out, f"chaos: pairs by stage {dict(stages)}, by state {dict(states)}, close pairs "
                      f"{live.filter(kind='close').count()}, hedges {hedges}, flagged {flagged}, dust {dust}; orders {dict(statuses)}")
        events = Counter(GuardEvent.objects.values_list("check_name", flat=True))
        say(self.out, f"chaos: guard events {dict(events)}; kill switch engaged during the run: "
                      f"{self.counts['kill_switch_engaged']} time(s)")
        restarts = {c.name: c.starts - 1 for c in self.children.values() if c.starts > 1}
        if restarts:
            say(self.out, f"chaos: process restarts {restarts}")
        errors = self.log_errors()
        if errors:
            say(self.out, "chaos: errors in the processes' logs: " + ", ".join(f"{k} {v}" for k, v in errors.most_common()))

    def log_errors(self) -> Counter:
        """What the workers' and beat's logs say went wrong (tasks that raised, deadlocks, failed resumes)."""
        import re

        raised = re.compile(r"ERROR/\S+\] Task (\S+?)\[[^\]]*\] raised unexpected: ([\w:.]+)")
        found = Counter()
        for path in self.logdir.glob("*.log"):
            if path.name == "events.log":
                continue
            for line in path.read_text(errors="replace").splitlines():
                if match := raised.search(line):
                    what = "deadlock" if "deadlock detected" in line else match.group(2)
                    found[f"{match.group(1).rsplit('.', 1)[-1]} raised {what}"] += 1
                elif "resume of pair" in line and "failed" in line:
                    found["resume of a pair failed"] += 1
        return found

    # --- clean-up -------------------------------------------------------------------------------
    def cleanup(self) -> None:
        for child in self.children.values():
            child.terminate()
        deadline = time.monotonic() + 15
        for child in self.children.values():
            if not child.wait(deadline - time.monotonic()):
                child.kill()
            child.reap_group()
        if self.venue is not None:
            try:
                self.venue.stop()
            except Exception:  # noqa: BLE001 — best effort at exit
                pass
        if self.redis is not None:
            self.redis.cleanup()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001
            pass


def _declared_dust(note: str) -> Decimal | None:
    """The quantity a pair's note declares as dust ("dust 0.00001 BTC kept on binance ...")."""
    if "dust " not in note:
        return None
    try:
        return Decimal(note.split("dust ", 1)[1].split(" ", 1)[0])
    except ArithmeticError:
        return None

