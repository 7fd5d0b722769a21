"""Real recorded payloads and official examples (each with a .src.txt saying where it came from)."""

from pathlib import Path

import orjson

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str):
    return orjson.loads((FIXTURES / f"{name}.json").read_bytes())


def raw(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()
