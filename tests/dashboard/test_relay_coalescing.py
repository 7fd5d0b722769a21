"""The relay pushes executions as they happen and each coin's newest signal at most once per interval."""

import asyncio

from dashboard.relay import Relay


class Layer:
    def __init__(self):
        self.sent = []

    async def group_send(self, group, message):
        self.sent.append((group, message["payload"]["type"], message["payload"]["data"]))


def test_a_coins_signals_are_held_to_the_newest_and_executions_pass_at_once():
    async def scenario():
        relay = Relay(state=None, signal_every=0.2)
        relay.layer = layer = Layer()
        held = asyncio.create_task(relay._held_signals())
        for n in range(50):  # a standing premium: a signal on every tick
            await relay._signal({"symbol": "BTC", "n": n})
        await relay._signal({"symbol": "ETH", "n": 0})
        await relay._push("execution", {"symbol": "BTC"})
        assert [(kind, data.get("n")) for _, kind, data in layer.sent] == [("signal", 0), ("signal", 0), ("execution", None)]
        await asyncio.sleep(0.35)  # the interval passes: BTC's newest signal, and only it
        relay.stopping.set()
        await held
        return layer.sent

    sent = asyncio.run(scenario())
    assert [(data["symbol"], data.get("n")) for _, kind, data in sent if kind == "signal"] == [("BTC", 0), ("ETH", 0), ("BTC", 49)]
