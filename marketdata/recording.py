"""Record raw exchange messages as JSON lines, and read them back for replay."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import orjson


class Recorder:
    """Append raw messages, with their receive time, to a JSON-lines file."""

    def __init__(self, path: str):
        self._file = open(path, "ab")  # noqa: SIM115 - closed by close()
        self._lock = threading.Lock()

    def write(self, exchange: str, data: bytes | str, *, kind: str = "ws", market: str | None = None) -> None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        record = {"t": time.time(), "exchange": exchange, "kind": kind, "data": text}
        if market:
            record["market"] = market
        line = orjson.dumps(record) + b"\n"
        with self._lock:
            self._file.write(line)

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_recording(path: str) -> Iterator[dict]:
    """Yield the recorded messages in order, skipping lines that are not valid records."""
    with open(path, "rb") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict) and {"t", "exchange", "data"} <= record.keys():
                yield record
