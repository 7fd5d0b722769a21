"""Which coins to follow: those listed on Upbit's KRW market and Binance's USDT market."""

from __future__ import annotations

import requests

from .exceptions import DiscoveryError


def _get(session: requests.Session, url: str, **params):
    try:
        response = session.get(url, params=params, timeout=10)
    except requests.RequestException as exc:
        raise DiscoveryError(f"{url}: {exc}") from exc
    if response.status_code != 200:
        raise DiscoveryError(f"{url}: HTTP {response.status_code}: {response.text[:200]}")
    return response.json()


def upbit_krw_symbols(rest_url: str, session: requests.Session | None = None) -> set[str]:
    markets = _get(session or requests.Session(), f"{rest_url.rstrip('/')}/v1/market/all", is_details="false")
    return {m["market"].split("-", 1)[1] for m in markets if m["market"].startswith("KRW-")}


def binance_usdt_symbols(rest_url: str, session: requests.Session | None = None) -> set[str]:
    info = _get(session or requests.Session(), f"{rest_url.rstrip('/')}/api/v3/exchangeInfo")
    return {
        s["baseAsset"]
        for s in info["symbols"]
        if s.get("quoteAsset") == "USDT" and s.get("status") == "TRADING" and s.get("isSpotTradingAllowed", True)
    }


def common_symbols(upbit_rest_url: str, binance_rest_url: str, session: requests.Session | None = None) -> list[str]:
    """Base assets tradeable on both venues, sorted (USDT itself is the FX market, not a coin)."""
    session = session or requests.Session()
    both = upbit_krw_symbols(upbit_rest_url, session) & binance_usdt_symbols(binance_rest_url, session)
    both.discard("USDT")
    if not both:
        raise DiscoveryError("no coin is listed on both Upbit KRW and Binance USDT")
    return sorted(both)
