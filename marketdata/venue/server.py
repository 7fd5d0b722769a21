"""Serve the venue: the Upbit and Binance dialects on their own ports, plus a control API."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future

import orjson
from aiohttp import web

from .accounts import Accounts
from .binance import BinanceDialect
from .core import Venue
from .faults import fault_middleware, make_rule
from .transfers import Transfers
from .upbit import UpbitDialect

log = logging.getLogger(__name__)


class VenueServer:
    """Both dialects of one venue, each on its own port as the real hosts are separate."""

    def __init__(self, venue: Venue, host: str = "127.0.0.1", upbit_port: int = 0, binance_port: int = 0,
                 *, upbit_rate_limit: int = 10, binance_weight_limit: int = 6000, drive: bool = True,
                 accounts: Accounts | None = None):
        self.venue = venue
        self.host = host
        self.ports = {"upbit": upbit_port, "binance": binance_port}
        self.accounts = accounts or Accounts()
        # One transfer world for both dialects: a withdrawal on one arrives as a deposit on the other.
        self.transfers = Transfers(self.accounts)
        self.upbit = UpbitDialect(venue, rate_limit=upbit_rate_limit, accounts=self.accounts, transfers=self.transfers)
        self.binance = BinanceDialect(venue, weight_limit=binance_weight_limit, accounts=self.accounts,
                                      transfers=self.transfers)
        self.drive = drive
        self._runners: list[web.AppRunner] = []

    @property
    def upbit_url(self) -> str:
        return f"http://{self.host}:{self.ports['upbit']}"

    @property
    def binance_url(self) -> str:
        return f"http://{self.host}:{self.ports['binance']}"

    @property
    def upbit_ws_url(self) -> str:
        return f"ws://{self.host}:{self.ports['upbit']}/websocket/v1"

    @property
    def binance_ws_url(self) -> str:
        return f"ws://{self.host}:{self.ports['binance']}"

    async def start(self) -> None:
        for exchange, app in (("upbit", self.upbit.app()), ("binance", self.binance.app())):
            dialect = self.upbit if exchange == "upbit" else self.binance
            # Outermost, so a fault rule acts before anything else (the dialects' own limits included).
            app.middlewares.insert(0, fault_middleware(self.venue, exchange, dialect))
            app.router.add_post("/_venue/control", self._control_handler(exchange))
            app.router.add_get("/_venue/state", self.state)
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.ports[exchange], reuse_address=True)
            await site.start()
            self.ports[exchange] = runner.addresses[0][1]
            self._runners.append(runner)
        if self.drive:
            self.venue.start()
        self.transfers.start()
        log.info("venue: upbit on %s, binance on %s", self.upbit_url, self.binance_url)

    async def stop(self) -> None:
        await self.transfers.stop()
        await self.venue.stop()
        for runner in self._runners:
            await runner.cleanup()

    # --- control API ---------------------------------------------------------------------------
    def control(self, exchange: str | None, action: str, **params) -> dict:
        """Flip a fault switch or steer the market; returns what was done."""
        venue = self.venue
        symbol = params.get("symbol")
        if action == "drop_connections":
            return {"dropped": venue.drop_connections(exchange)}
        if action == "delay":
            venue.set_delay(float(params.get("seconds", 0)))
        elif action == "rest_delay":
            venue.faults.rest_delay = max(0.0, float(params.get("seconds", 0)))
        elif action == "malformed":
            return {"sent": venue.send_malformed(exchange)}
        elif action == "skip_update_id":
            venue.skip_update_id(symbol)
        elif action == "stop_symbol":
            venue.stop_symbol(symbol)
        elif action == "resume_symbol":
            venue.resume_symbol(symbol)
        elif action == "server_shutdown":
            return {"sent": self.binance.server_shutdown()}
        elif action == "premium":
            premium = params.get("premium")
            venue.model.force_premium(symbol, None if premium is None else float(premium))
        elif action == "caution":
            venue.set_caution(symbol, list(params.get("flags", [])))
        elif action == "pause":
            venue.paused = True
        elif action == "resume":
            venue.paused = False
        elif action == "fault":
            rule = make_rule(exchange, params)
            venue.faults.rules.append(rule)
            return {"ok": True, "rule": rule.view()}
        elif action == "clear_faults":
            dropped = len(venue.faults.rules)
            venue.faults.rules.clear()
            return {"ok": True, "dropped": dropped}
        elif action == "clock_offset":
            venue.faults.clock_offset_ms = int(params.get("ms", 0))
        elif action == "clear":
            venue.clear_faults()  # every switch, fault rules and clock offset included
            self.transfers.clear_switches()
        elif action in TRANSFER_ACTIONS:
            return self._transfer_control(exchange, action, params)
        else:
            raise ValueError(f"unknown action {action!r}")
        return {"ok": True}

    def _transfer_control(self, exchange: str | None, action: str, params: dict) -> dict:
        """The transfer world's switches (transfers.py); `exchange` defaults to the port's dialect."""
        transfers = self.transfers
        if action == "network":
            if exchange not in ("upbit", "binance"):
                raise ValueError("exchange must be upbit or binance")
            switched = transfers.set_network(exchange, params["asset"], params.get("network"),
                                             withdraw=_flag(params.get("withdraw")), deposit=_flag(params.get("deposit")))
            return {"ok": True, "networks": switched}
        if action == "transfer_delay":
            transfers.delay = max(0.0, float(params.get("seconds", 0)))
        elif action == "travel_rule_hold":
            transfers.travel_rule_hold = bool(params.get("on", True))
        elif action == "travel_rule_release":
            return {"ok": True, "released": transfers.release(params.get("uuid"))}
        elif action == "register_address":
            row = transfers.register_address(params["key"], params["asset"], params["network"], params["address"],
                                             params.get("tag") or "", exchange_name=params.get("exchange_name"))
            return {"ok": True, "address": row}
        elif action == "lose_deposit":
            transfers.lose_deposit = bool(params.get("on", True))
        elif action == "fail_withdrawal":
            w = transfers.fail(params["id"], str(params.get("state", "FAILED")).upper(), params.get("reason", ""))
            return {"ok": True, "state": w.state}
        return {"ok": True}

    def _control_handler(self, exchange: str):
        async def handler(request: web.Request) -> web.Response:
            try:
                body = orjson.loads(await request.read())
                action = body.pop("action")
                result = self.control(body.pop("exchange", exchange), action, **body)
            except (KeyError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.json_response(result)

        return handler

    async def state(self, request: web.Request) -> web.Response:
        venue = self.venue
        return web.json_response({
            "upbit_markets": venue.upbit_markets(),
            "binance_markets": venue.binance_markets(),
            "upbit_clients": len(venue.upbit_clients),
            "binance_clients": len(venue.binance_clients),
            "stopped": sorted(venue.faults.stopped),
            "delay": venue.faults.delay,
            "rest_delay": venue.faults.rest_delay,
            "fault_rules": [rule.view() for rule in venue.faults.rules],
            "clock_offset_ms": venue.faults.clock_offset_ms,
            "usd_krw": venue.model.usd_krw,
            "firehose_sent": self.binance.firehose_sent,
            "transfers": self.transfers.summary(),
        })


TRANSFER_ACTIONS = ("network", "transfer_delay", "travel_rule_hold", "travel_rule_release", "register_address",
                    "lose_deposit", "fail_withdrawal")


def _flag(value) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise ValueError("withdraw/deposit must be true or false")


class VenueThread:
    """Run a VenueServer on its own event loop in a background thread (tests and benchmarks)."""

    def __init__(self, server: VenueServer):
        self.server = server
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="venue", daemon=True)

    def start(self) -> VenueThread:
        self._thread.start()
        self.run(self.server.start())
        return self

    def run(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args, **kwargs):
        """Run fn on the venue's loop and return its result."""
        future: Future = Future()

        def invoke():
            try:
                future.set_result(fn(*args, **kwargs))
            except Exception as exc:  # handed back to the caller
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(invoke)
        return future.result(10)

    def stop(self) -> None:
        try:
            self.run(self.server.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
