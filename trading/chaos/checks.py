"""The soak's final check: the ledger against the venue's own orders and balances, and the report."""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal

from .common import (
    ENDPOINTS,
    say,
)


class SoakChecks:
    """The checks and the report of a Soak (its venue, account, findings and counts)."""

    def venue_orders(self) -> list[dict]:
        def snapshot():
            rows = []
            for exchange, book in (("binance", self.server.binance.orders.orders), ("upbit", self.server.upbit.orders.orders)):
                for o in book.values():
                    if o.api_key == self.api_key:
                        rows.append({"exchange": exchange, "client_id": o.client_id, "executed": o.executed,
                                     "status": o.status, "market": o.market, "side": o.side, "open": o.open})
            return rows

        return self.venue.call(snapshot)

    def venue_balances(self) -> dict[tuple[str, str], Decimal]:
        def snapshot():
            out = {}
            for exchange, account in self.account.items():
                for asset in set(account.balances) | set(account.locked):
                    out[(exchange, asset)] = account.balances.get(asset, Decimal(0)) + account.locked.get(asset, Decimal(0))
            return out

        return self.venue.call(snapshot)

    def verify(self) -> int:
        from django.db.models import Sum

        from liveguard.models import GuardEvent
        from trading import ledger
        from trading.models import Fill, Order, Pair

        problems: list[str] = []
        orders = self.venue_orders()
        # No client id twice on a venue.
        ids = Counter((o["exchange"], o["client_id"]) for o in orders)
        doubled = {key: n for key, n in ids.items() if n > 1}
        for (exchange, client_id), n in doubled.items():
            problems.append(f"doubled: {exchange} holds {n} orders with client id {client_id!r}")
        doubled_orders = sum(n - 1 for n in doubled.values())
        # Every venue order in the ledger once, with the executed quantity of its booked fills.
        ledger_orders = {o.client_order_id: o for o in Order.objects.all()}
        booked = {row["order__client_order_id"]: row["total"] or Decimal(0) for row in
                  Fill.objects.values("order__client_order_id").annotate(total=Sum("quantity"))}
        orders_ok = True
        executed_on_venue = defaultdict(Decimal)
        for o in orders:
            executed_on_venue[(o["exchange"], o["client_id"])] += o["executed"]
            mine = ledger_orders.get(o["client_id"])
            if mine is None or mine.exchange != o["exchange"]:
                orders_ok = False
                problems.append(f"not in the ledger: {o['exchange']} order {o['client_id']!r} {o['side']} {o['market']} "
                                f"executed {o['executed']} ({o['status']})")
                continue
            fills = booked.get(o["client_id"], Decimal(0))
            if fills != o["executed"] or mine.filled_quantity != o["executed"]:
                orders_ok = False
                problems.append(f"executed differs: {o['exchange']} {o['client_id']} venue {o['executed']}, ledger fills "
                                f"{fills}, order.filled_quantity {mine.filled_quantity} (status {mine.status}, pair {mine.pair_id})")
            if o["open"]:
                problems.append(f"still open on the venue: {o['exchange']} {o['client_id']} ({o['status']})")
        for client_id, order in ledger_orders.items():
            if (booked.get(client_id) or order.filled_quantity) and (order.exchange, client_id) not in executed_on_venue:
                orders_ok = False
                problems.append(f"booked but unknown to the venue: {order.exchange} {client_id} filled {order.filled_quantity}")
        # Balances, exactly, per venue and asset.
        theirs = self.venue_balances()
        ours = ledger.balances()
        balances_ok = True
        for key in sorted(set(theirs) | set(ours)):
            a, b = theirs.get(key, Decimal(0)), ours.get(key, Decimal(0))
            if a != b:
                balances_ok = False
                problems.append(f"balance differs: {key[0]} {key[1]} venue {a} vs ledger {b} (venue - ledger = {a - b})")
        sums = ledger.ledger_sums()
        for key in sorted(set(sums) | set(ours)):
            if sums.get(key, Decimal(0)) != ours.get(key, Decimal(0)):
                balances_ok = False
                problems.append(f"ledger entries of {key} sum to {sums.get(key)} but the running balance is {ours.get(key)}")
        # Per pair: flat, declared dust, or flagged with a leg_risk event naming it.
        leg_risk = list(GuardEvent.objects.filter(check_name="leg_risk").values_list("reason", flat=True))
        unflagged = 0
        stages = Counter()
        flagged = dust = 0
        for pair in Pair.objects.filter(mode="live").prefetch_related("orders"):
            stages[pair.stage] += 1
            net = sum((o.filled_quantity if o.side == "buy" else -o.filled_quantity for o in pair.orders.all()), Decimal(0))
            named = any(str(pair.id) in reason for reason in leg_risk)
            if pair.stage == Pair.Stage.FLAGGED and named:
                flagged += 1
                if net:
                    self.findings.append(f"flagged pair {pair.id} {pair.symbol}: net {net} ({pair.note})")
                continue
            if net == 0:
                continue
            declared = _declared_dust(pair.note)
            if declared is not None and abs(net) == declared:
                dust += 1
                continue
            unflagged += 1
            problems.append(f"unflagged exposure: pair {pair.id} {pair.symbol} {pair.stage}/{pair.state} net {net} "
                            f"note {pair.note!r} orders " + ", ".join(
                                f"{o.role} {o.exchange} {o.side} {o.filled_quantity}/{o.quantity} {o.status}"
                                for o in pair.orders.all()))
        ledger_ok = orders_ok and balances_ok
        self.report(stages, flagged, dust)
        for line in self.findings:
            say(self.out, f"chaos: finding: {line}")
        for line in problems:
            say(self.out, f"chaos: FAIL {line}")
        faults = sum(self.hits().values()) + self.counts["clock_offset"] + self.counts["insufficient_balance"]
        pairs = Pair.objects.filter(mode="live").count()
        say(self.out, f"chaos: pairs={pairs} faults={faults} kills={self.counts['kills']} "
                      f"redis_restarts={self.counts['redis_restarts']} unflagged_exposure={unflagged} "
                      f"doubled_orders={doubled_orders} ledger_matches_venue={'yes' if ledger_ok else 'no'}")
        return 0 if (unflagged == 0 and doubled_orders == 0 and ledger_ok) else 1

    def hits(self) -> Counter:
        """Requests each fault kind really spoiled: what was injected less what was left unused."""
        left = Counter()
        for kind, exchange, _method, path, remaining in self.leftover:
            what = next((e[3] for e in ENDPOINTS if e[0] == exchange and e[2] == path and e[1] == _method), "?")
            left[(kind, exchange, what)] += remaining
        return Counter({key: n - left[key] for key, n in self.injected.items() if n - left[key] > 0})

    def report(self, stages: Counter, flagged: int, dust: int) -> None:
        from liveguard.models import GuardEvent
        from trading.models import Order, Pair

        hits = self.hits()
        by_kind = Counter()
        for (kind, _exchange, _what), n in hits.items():
            by_kind[kind] += n
        by_target = Counter()
        for (_kind, exchange, what), n in hits.items():
            by_target[f"{exchange} {what}"] += n
        say(self.out, f"chaos: fault rules injected {self.counts['rules']} ({sum(self.injected.values())} requests to "
                      f"spoil), requests spoiled {sum(hits.values())}: " + ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items())))
        say(self.out, "chaos: spoiled by target: " + ", ".join(f"{k} {v}" for k, v in sorted(by_target.items()))
            + f"; clock offsets {self.counts['clock_offset']}, insufficient-balance windows {self.counts['insufficient_balance']}")
        live = Pair.objects.filter(mode="live")
        states = Counter(live.values_list("state", flat=True))
        hedges = Order.objects.filter(pair__mode="live", role="hedge").count()
        statuses = Counter(Order.objects.filter(pair__mode="live").values_list("status", flat=True))
        say(self.out, f"chaos: pairs by stage {dict(stages)}, by state {dict(states)}, close pairs "
                      f"{live.filter(kind='close').count()}, hedges {hedges}, flagged {flagged}, dust {dust}; orders {dict(statuses)}")
        events = Counter(GuardEvent.objects.values_list("check_name", flat=True))
        say(self.out, f"chaos: guard events {dict(events)}; kill switch engaged during the run: "
                      f"{self.counts['kill_switch_engaged']} time(s)")
        restarts = {c.name: c.starts - 1 for c in self.children.values() if c.starts > 1}
        if restarts:
            say(self.out, f"chaos: process restarts {restarts}")
        errors = self.log_errors()
        if errors:
            say(self.out, "chaos: errors in the processes' logs: " + ", ".join(f"{k} {v}" for k, v in errors.most_common()))

    def log_errors(self) -> Counter:
        """What the workers' and beat's logs say went wrong (tasks that raised, deadlocks, failed resumes)."""
        import re

        raised = re.compile(r"ERROR/\S+\] Task (\S+?)\[[^\]]*\] raised unexpected: ([\w:.]+)")
        found = Counter()
        for path in self.logdir.glob("*.log"):
            if path.name == "events.log":
                continue
            for line in path.read_text(errors="replace").splitlines():
                if match := raised.search(line):
                    what = "deadlock" if "deadlock detected" in line else match.group(2)
                    found[f"{match.group(1).rsplit('.', 1)[-1]} raised {what}"] += 1
                elif "resume of pair" in line and "failed" in line:
                    found["resume of a pair failed"] += 1
        return found

    # --- clean-up -------------------------------------------------------------------------------


def _declared_dust(note: str) -> Decimal | None:
    """The quantity a pair's note declares as dust ("dust 0.00001 BTC kept on binance ...")."""
    if "dust " not in note:
        return None
    try:
        return Decimal(note.split("dust ", 1)[1].split(" ", 1)[0])
    except ArithmeticError:
        return None

