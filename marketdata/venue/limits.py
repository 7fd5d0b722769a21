"""Fixed-window request counters, as the exchanges meter requests per IP."""

import time


class RateWindow:
    """Counts uses per key in fixed windows of `seconds`; take() returns what is left (< 0: over)."""

    def __init__(self, seconds: float, limit: int):
        self.seconds = seconds
        self.limit = limit
        self._windows: dict[object, tuple[int, int]] = {}

    def take(self, key, cost: int = 1) -> int:
        window = int(time.monotonic() / self.seconds)
        start, used = self._windows.get(key, (window, 0))
        if start != window:
            used = 0
        used += cost
        self._windows[key] = (window, used)
        return self.limit - used

    def used(self, key) -> int:
        window = int(time.monotonic() / self.seconds)
        start, used = self._windows.get(key, (window, 0))
        return used if start == window else 0

    def seconds_left(self) -> float:
        return self.seconds - (time.monotonic() % self.seconds)


# --- Upbit's request groups (docs.upbit.com rate-limits 2026-09-08; docs/venue.md) ---------------
# Quotation groups are counted per IP, 10 a second each; Exchange API groups per pocket (API key).
UPBIT_QUOTATION_GROUPS = ("market", "candle", "trade", "ticker", "orderbook")
# group -> (requests, per seconds)
UPBIT_EXCHANGE_LIMITS: dict[str, tuple[int, float]] = {
    "default": (30, 1.0),
    "order": (12, 1.0),  # POST /v1/orders, POST /v1/orders/cancel_and_new
    "order-test": (8, 1.0),  # POST /v1/orders/test
    "order-cancel-all": (1, 2.0),  # DELETE /v1/orders/open
}
_UPBIT_QUOTATION_PREFIXES = (("/v1/market", "market"), ("/v1/candles", "candle"), ("/v1/trades", "trade"),
                             ("/v1/ticker", "ticker"), ("/v1/orderbook", "orderbook"))


def upbit_group(method: str, path: str) -> str:
    """The rate-limit group Upbit counts a /v1/* request in (and names in `Remaining-Req`)."""
    for prefix, group in _UPBIT_QUOTATION_PREFIXES:
        if path.startswith(prefix):
            return group
    if method == "POST" and path in ("/v1/orders", "/v1/orders/cancel_and_new"):
        return "order"
    if method == "POST" and path == "/v1/orders/test":
        return "order-test"
    if method == "DELETE" and path == "/v1/orders/open":
        return "order-cancel-all"
    return "default"


def remaining_req(group: str, sec: int, minute: int) -> dict[str, str]:
    """Upbit's header: `group=default; min=1800; sec=29` (`sec` left this second; `min` deprecated)."""
    return {"Remaining-Req": f"group={group}; min={max(minute, 0)}; sec={max(sec, 0)}"}
