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
