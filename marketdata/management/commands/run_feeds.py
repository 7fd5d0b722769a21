"""Run the Upbit and/or Binance feed workers until SIGTERM or Ctrl-C (inside Django; the lean
process is `python -m marketdata.feeds`, the same run: marketdata.feeds.run)."""

from django.core.management.base import BaseCommand, CommandError

from marketdata.feeds.run import FeedsError, add_arguments, run


class Command(BaseCommand):
    help = "Stream order books from Upbit and Binance into Redis."

    def add_arguments(self, parser):
        add_arguments(parser)

    def handle(self, *args, **options):
        try:
            run(options, say=self.stdout.write, warn=self.stderr.write)
        except FeedsError as exc:
            raise CommandError(str(exc)) from exc
