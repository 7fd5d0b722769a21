"""The adapter base: a pooled session, a timeout on every call, secrets kept out of reprs and logs,
and the one discipline for orders every venue shares: once an order may exist, any failure is an
unknown outcome, settled only by looking the order up by its client id.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal

import requests
from requests.adapters import HTTPAdapter

from .errors import (
    AuthError,
    DuplicateClientOrderId,
    ExchangeError,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    RateLimited,
    UnknownOutcome,
)
from .redact import redact
from .types import (
    DepositAddress,
    LegOrder,
    LegReport,
    LegStatus,
    NetworkInfo,
    OpenOrder,
    TransferReport,
    TransferStatus,
    WithdrawalRequest,
)

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 600.0


def retry_after_seconds(value, default: float) -> float:
    """A Retry-After header as finite seconds in [0, MAX_RETRY_AFTER_S]; garbage reads as the default.

    Rate-limit headers are bookkeeping: a malformed one is never an error of its own (the answer is
    still classified by its status and body).
    """
    try:
        seconds = float(str(value).strip())
    except (TypeError, ValueError):
        return default
    if seconds != seconds or seconds < 0:  # NaN, negative
        return default
    return min(seconds, MAX_RETRY_AFTER_S)


class ExchangeAdapter:
    name = ""
    quote = ""
    # A look-up that finds nothing this long after the send proves the order never arrived
    # (Binance derives it from recvWindow; see BinanceAdapter).
    absent_after_s = 3.0

    def __init__(self, base_url: str, api_key: str, secret_key: str, *, timeout: float = 5.0,
                 session: requests.Session | None = None, lookups: int = 6, lookup_budget_s: float = 8.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._secret = secret_key
        self.timeout = timeout
        self.lookups = lookups
        self.lookup_budget_s = lookup_budget_s
        self.session = session or requests.Session()
        self.session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=16))
        self.session.mount("https://", HTTPAdapter(pool_connections=4, pool_maxsize=16))

    def __repr__(self) -> str:  # never the secret, and only a hint of the key
        return f"<{type(self).__name__} {self.base_url} key={self.api_key[:4]}…>"

    __str__ = __repr__

    # --- the venue-neutral interface -----------------------------------------------------------
    def submit(self, order: LegOrder) -> LegReport:
        """Send one order once, whatever the network does, and say what really happened.

        Refusals that prove nothing happened (rules, funds, auth, rate limit) are REJECTED. Anything
        else after the request may have left (timeout, reset, 5xx, a body that is not the expected
        JSON, any exception) is settled by looking the order up by its client id; an order still
        unaccounted for is UNKNOWN, never resent under the same id.
        """
        sent_at = time.time()
        try:
            report = self._with_backoff(lambda: self._place(order))
        except (InvalidOrder, InsufficientFunds, AuthError, RateLimited) as exc:
            if isinstance(exc, DuplicateClientOrderId):  # the id is taken: that order may be ours
                return self.resolve(order.symbol, order.side, order.client_id, sent_at, _describe(exc))
            return self._report(order, LegStatus.REJECTED, error=_describe(exc))
        except Exception as exc:  # noqa: BLE001 — every other failure is an unknown outcome
            log.warning("%s %s %s: outcome unknown (%s); looking it up", self.name, order.side, order.client_id,
                        _describe(exc))
            return self.resolve(order.symbol, order.side, order.client_id, sent_at, _describe(exc))
        if report.status is LegStatus.DONE and report.consistent():
            return report
        # Accepted but not final (still working, or fills still to collect): ask until it is.
        return self.resolve(order.symbol, order.side, order.client_id, sent_at, "", exists=True)

    def resolve(self, symbol: str, side: str, client_id: str, sent_at: float | None, first_error: str = "", *,
                exists: bool = False) -> LegReport:
        """Look an order up until its outcome is final, within bounded look-ups and time.

        `exists`: the venue already acknowledged it, so "not found" is lag, never absence.
        """
        deadline = time.monotonic() + self.lookup_budget_s
        last = first_error
        for attempt in range(self.lookups):
            try:
                report = self.lookup(symbol, client_id, side=side)
            except OrderNotFound as exc:
                if not exists and sent_at is not None and time.time() > sent_at + self.absent_after_s:
                    return LegReport(self.name, symbol, side, client_id, LegStatus.ABSENT,
                                     error=f"not found {time.time() - sent_at:.1f} s after sending: never arrived")
                last = f"not found yet ({exc})"
            except RateLimited as exc:
                last = f"look-up rate limited ({exc})"
                self._sleep_within(deadline, min(exc.retry_after, 2.0))
                continue
            except Exception as exc:  # noqa: BLE001 — a failed look-up proves nothing
                last = _describe(exc)
            else:
                if report.status is LegStatus.DONE and report.consistent():
                    return report
                if report.status is LegStatus.OPEN and attempt >= 2:
                    # An IOC order should not rest; one that does is cancelled, then read again.
                    self._try_cancel(symbol, client_id)
                last = f"{report.status} with {report.executed} executed"
            if not self._sleep_within(deadline, min(0.1 * 2**attempt, 1.5)):
                break
        return LegReport(self.name, symbol, side, client_id, LegStatus.UNKNOWN,
                         error=f"unaccounted for after look-ups: {last}"[:300])

    def cancel(self, symbol: str, client_id: str) -> LegReport:
        """Cancel, then report the order as it stands (a cancel of a finished order is no error)."""
        self._try_cancel(symbol, client_id)
        return self.resolve(symbol, "", client_id, None, exists=True)

    def tradable(self, symbol: str, quantity: Decimal, price: Decimal) -> Decimal:
        raise NotImplementedError

    def limit_price(self, symbol: str, side: str, price: Decimal) -> Decimal:
        raise NotImplementedError

    def lookup(self, symbol: str, client_id: str, *, side: str = "") -> LegReport:
        """One look-up by client id; raises OrderNotFound when the venue does not know it."""
        raise NotImplementedError

    def open_orders(self) -> list[OpenOrder]:
        raise NotImplementedError

    def balances(self) -> dict[str, Decimal]:
        raise NotImplementedError

    # --- venue specifics -----------------------------------------------------------------------
    def _place(self, order: LegOrder) -> LegReport:
        raise NotImplementedError

    def _cancel(self, symbol: str, client_id: str) -> None:
        raise NotImplementedError

    def _try_cancel(self, symbol: str, client_id: str) -> None:
        try:
            self._cancel(symbol, client_id)
        except Exception as exc:  # noqa: BLE001 — finished or unknown; the look-up says which
            log.info("%s cancel of %s: %s", self.name, client_id, _describe(exc))

    def _report(self, order: LegOrder, status: LegStatus, **kwargs) -> LegReport:
        return LegReport(self.name, order.symbol, order.side, order.client_id, status, quantity=order.quantity, **kwargs)

    @staticmethod
    def _sleep_within(deadline: float, seconds: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(seconds, left))
        return True

    # --- plumbing ----------------------------------------------------------------------------
    def _send(self, method: str, path: str, **kwargs) -> requests.Response:
        """One HTTP call; network failures become UnknownOutcome (the caller decides what that means)."""
        try:
            response = self.session.request(method, self.base_url + path, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise UnknownOutcome(f"{self.name} {method} {_path(path)}: timed out", exchange=self.name) from None
        except requests.RequestException as exc:
            raise UnknownOutcome(f"{self.name} {method} {_path(path)}: connection failed ({type(exc).__name__})",
                                 exchange=self.name) from None  # its text holds the signed URL
        if response.status_code >= 500:
            raise UnknownOutcome(f"{self.name} {method} {_path(path)}: HTTP {response.status_code}", exchange=self.name,
                                 status=response.status_code)
        return response

    @staticmethod
    def _json(response: requests.Response, expect: type):
        """The body as the expected JSON type, or UnknownOutcome (an HTML page from a proxy proves nothing)."""
        try:
            body = response.json()
        except ValueError:
            raise UnknownOutcome(f"HTTP {response.status_code} with a body that is not JSON "
                                 f"({response.headers.get('Content-Type', '?')})", status=response.status_code) from None
        if not isinstance(body, expect):
            raise UnknownOutcome(f"HTTP {response.status_code} with an unexpected {type(body).__name__} body",
                                 status=response.status_code)
        return body

    def _error(self, response: requests.Response) -> ExchangeError:
        raise NotImplementedError

    def _with_backoff(self, call, attempts: int = 3, max_wait: float = 2.0):
        """Retry a call refused for rate (429/418 mean "not processed", so a retry cannot double it)."""
        for attempt in range(attempts):
            try:
                return call()
            except RateLimited as exc:
                if attempt == attempts - 1 or exc.retry_after > max_wait:
                    raise
                log.warning("%s: rate limited; waiting %.1f s as asked", self.name, exc.retry_after)
                time.sleep(exc.retry_after)

    # --- transfers between the venues (issue 10) -------------------------------------------------
    # A withdrawal looked up this long after it was sent, and not there, never arrived (None: the
    # order bound, absent_after_s; Binance derives it from recvWindow, Upbit sets its own).
    transfer_absent_after_s: float | None = None

    def networks(self, asset: str) -> list[NetworkInfo]:
        """The asset's networks on this venue, with fees, minimums, steps and switches as published."""
        raise NotImplementedError

    def deposit_address(self, asset: str, network: str) -> DepositAddress:
        """This account's deposit address (and tag) for the asset on that network, from the venue."""
        raise NotImplementedError

    def registered_addresses(self, asset: str) -> list[DepositAddress]:
        """The addresses this account may withdraw the asset to (a venue without an allow-list: none)."""
        return []

    def deposits(self, asset: str, since_ms: int) -> list[TransferReport]:
        """Deposits of the asset into this account created since `since_ms` (epoch ms), newest first."""
        raise NotImplementedError

    def withdraw(self, req: WithdrawalRequest) -> TransferReport:
        """Send one withdrawal once, whatever the network does, and say what really happened.

        A refusal that proves nothing happened (an answered 4xx: the venue's rules, funds, address,
        auth, rate limit) is FAILED with the error, and so is anything that stops it before it is
        sent. Any other failure once the request may have left (timeout, reset, 5xx, a body that is
        not the expected JSON) is settled by looking the withdrawal up (lookup_withdrawal): found,
        ABSENT once it can no longer appear, else UNKNOWN. It is never sent again from here; an
        UNKNOWN is for the caller to look up later, with the same `sent_at`.
        """
        sent_at = time.time()
        try:
            return self._withdraw(req)
        except _NotSent as exc:
            return self._transfer_report(req, TransferStatus.FAILED, error=f"not sent: {exc}")
        except Exception as exc:  # noqa: BLE001 — every failure is either a refusal or an unknown outcome
            if _refused(exc):
                return self._transfer_report(req, TransferStatus.FAILED, error=_describe(exc))
            log.warning("%s withdrawal %s: outcome unknown (%s); looking it up", self.name, req.client_id, _describe(exc))
            return self._settle_withdrawal(req.asset, req.client_id, "", sent_at, req.amount, req.address, _describe(exc))

    def lookup_withdrawal(self, asset: str, client_id: str, *, transfer_id: str = "", sent_at: float | None = None,
                          amount: Decimal | None = None, address: str = "") -> TransferReport:
        """Find a withdrawal, with bounded backoff: its report when found; ABSENT when it is not there
        `transfer_absent_after_s` after `sent_at` (never when the venue gave it an id: then "not
        found" is lag); otherwise UNKNOWN. It never sends anything."""
        return self._settle_withdrawal(asset, client_id, transfer_id, sent_at, amount, address, "")

    def _settle_withdrawal(self, asset: str, client_id: str, transfer_id: str, sent_at: float | None,
                           amount: Decimal | None, address: str, first_error: str) -> TransferReport:
        bound = self.transfer_absent_after_s if self.transfer_absent_after_s is not None else self.absent_after_s
        deadline = time.monotonic() + self.lookup_budget_s
        last = first_error
        for attempt in range(max(self.lookups, 1) * 4):
            wait = min(0.1 * 2**attempt, 1.5)
            try:
                found = self._find_withdrawal(asset, client_id, transfer_id, sent_at, amount, address)
            except RateLimited as exc:
                last, wait = f"look-up rate limited ({exc})", min(exc.retry_after, 2.0)
            except Exception as exc:  # noqa: BLE001 — a failed look-up proves nothing
                last = _describe(exc)
            else:
                if found is not None:
                    return found
                if not transfer_id and sent_at is not None and time.time() > sent_at + bound:
                    return TransferReport(self.name, asset, "", "withdrawal", TransferStatus.ABSENT, amount=amount or Decimal(0),
                                          client_id=client_id, address=address,
                                          error=f"not found {time.time() - sent_at:.1f} s after sending: never arrived")
                last = "not found yet"
            if not self._sleep_within(deadline, wait):
                break
        return TransferReport(self.name, asset, "", "withdrawal", TransferStatus.UNKNOWN, amount=amount or Decimal(0),
                              transfer_id=transfer_id, client_id=client_id, address=address,
                              error=f"unaccounted for after look-ups: {last}"[:300])

    def _withdraw(self, req: WithdrawalRequest) -> TransferReport:
        """One withdrawal request; raise _NotSent for anything that stops it before it is sent."""
        raise NotImplementedError

    def _find_withdrawal(self, asset: str, client_id: str, transfer_id: str, sent_at: float | None,
                         amount: Decimal | None, address: str) -> TransferReport | None:
        """One look-up: the withdrawal's report, or None when the venue does not show it."""
        raise NotImplementedError

    def _transfer_report(self, req: WithdrawalRequest, status: TransferStatus, **kwargs) -> TransferReport:
        return TransferReport(self.name, req.asset, req.network, "withdrawal", status, amount=req.amount,
                              client_id=req.client_id, address=req.address, **kwargs)


def _path(path: str) -> str:
    """A path without its query: signed queries and signatures never reach a message or a log."""
    return path.split("?", 1)[0]


def _describe(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}")[:200]


class _NotSent(Exception):
    """A withdrawal stopped before its request was sent (its fee could not be read, say)."""


def _refused(exc: BaseException) -> bool:
    """An answer that proves the request was refused before it took effect: a 4xx with a body."""
    if isinstance(exc, InvalidOrder | InsufficientFunds | AuthError | RateLimited | OrderNotFound):
        return True
    return (isinstance(exc, ExchangeError) and not isinstance(exc, UnknownOutcome) and exc.status is not None
            and 400 <= exc.status < 500)
