"""The inner process of the soak: it starts the system, runs the chaos, winds down and checks."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import tempfile
import time
import traceback
from collections import Counter
from decimal import Decimal
from pathlib import Path

from .checks import SoakChecks
from .common import (
    BIN,
    ENDPOINTS,
    INVENTORY_KRW,
    KINDS,
    KRW,
    LIMITS,
    PY,
    RARE_GAP,
    ROOT,
    USDT,
    parse_coins,
    raise_interrupt,
    say,
)
from .processes import Child


class Soak(SoakChecks):
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
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
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
        child("feed-upbit", [PY, "-m", "marketdata.feeds", "--exchange", "upbit", "--symbols", joined])
        child("feed-binance", [PY, "-m", "marketdata.feeds", "--exchange", "binance", "--symbols", joined])
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
