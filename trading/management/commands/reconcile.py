"""Compare the venues' balances and open orders with the ledger; live trading waits for agreement."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from trading.engine import fees, get_state
from trading.execution import resume_pending
from trading.live import live_executor
from trading.reconcile import reconcile


class Command(BaseCommand):
    help = "Reconcile the venues with the ledger (run at start-up in live mode)."

    def handle(self, *args, **options):
        if not settings.LIVE_MODE:
            raise CommandError("reconcile talks to the exchanges with the trading keys: it needs LIVE_MODE=true")
        state = get_state()
        executor = live_executor(state, fees())
        adapters = executor.venues
        for pair in resume_pending(state, executor):
            self.stdout.write(f"resumed pair {pair.id} ({pair.symbol}): {pair.state} {pair.note}")
        report = reconcile(state, adapters)
        for line in report["differences"]:
            self.stderr.write(f"differs: {line}")
        for line in report["cancelled"]:
            self.stdout.write(f"cancelled orphan: {line}")
        self.stdout.write("agreed" if report["ok"] else "NOT agreed: live trading refused")
        if not report["ok"]:
            raise SystemExit(1)
