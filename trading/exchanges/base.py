"""The adapter base: a pooled session, a timeout on every call, secrets kept out of reprs and logs."""

from __future__ import annotations

import logging
import time

import requests
from requests.adapters import HTTPAdapter

from .errors import ExchangeError, OrderNotFound, RateLimited, UnknownOutcome

log = logging.getLogger(__name__)


class ExchangeAdapter:
    name = ""

    def __init__(self, base_url: str, api_key: str, secret_key: str, *, timeout: float = 5.0,
                 session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._secret = secret_key
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=16))
        self.session.mount("https://", HTTPAdapter(pool_connections=4, pool_maxsize=16))

    def __repr__(self) -> str:  # never the secret, and only a hint of the key
        return f"<{type(self).__name__} {self.base_url} key={self.api_key[:4]}…>"

    __str__ = __repr__

    def _send(self, method: str, path: str, **kwargs) -> requests.Response:
        """One HTTP call; network failures become UnknownOutcome (the caller decides what that means)."""
        try:
            response = self.session.request(method, self.base_url + path, timeout=self.timeout, **kwargs)
        except requests.Timeout as exc:
            raise UnknownOutcome(f"{self.name} {method} {path}: timed out", exchange=self.name) from exc
        except requests.ConnectionError as exc:
            raise UnknownOutcome(f"{self.name} {method} {path}: connection failed", exchange=self.name) from exc
        if response.status_code >= 500:
            raise UnknownOutcome(f"{self.name} {method} {path}: HTTP {response.status_code}", exchange=self.name,
                                 status=response.status_code)
        return response

    def _error(self, response: requests.Response) -> ExchangeError:
        raise NotImplementedError

    def _with_backoff(self, call, attempts: int = 3, max_wait: float = 5.0):
        """Retry a call refused for rate (429/418 mean "not processed", so a retry cannot double it)."""
        for attempt in range(attempts):
            try:
                return call()
            except RateLimited as exc:
                if attempt == attempts - 1 or exc.retry_after > max_wait:
                    raise
                log.warning("%s: rate limited; waiting %.1f s as asked", self.name, exc.retry_after)
                time.sleep(exc.retry_after)

    def _recover(self, client_id: str, look_up, first: UnknownOutcome, lookups: int = 5) -> dict:
        """After an unknown outcome, look the order up by its client id before anything else.

        Client ids are not idempotency keys on either exchange, so an order still unaccounted for
        after the look-ups is reported, never sent again.
        """
        for attempt in range(lookups):
            time.sleep(min(0.2 * 2**attempt, 2.0))
            try:
                return look_up()
            except (OrderNotFound, UnknownOutcome):
                continue  # not (yet) visible at the exchange: ask again before concluding
        raise UnknownOutcome(f"order {client_id} is still unaccounted for after {lookups} look-ups; not resent",
                             exchange=self.name) from first
