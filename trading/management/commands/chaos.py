"""manage.py chaos: the chaos soak (see trading.chaos for what it runs and checks)."""

from __future__ import annotations

import argparse
import random

from django.core.management.base import BaseCommand, CommandError

from trading.chaos.common import parse_coins
from trading.chaos.outer import outer
from trading.chaos.soak import Soak


class Command(BaseCommand):
    help = "Chaos soak: the live system against the simulated venue under random faults, then the money invariant."

    def add_arguments(self, parser):
        parser.add_argument("--seconds", type=float, default=600, help="length of the chaos phase (default 600)")
        parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
        parser.add_argument("--coins", default="6", help="how many coins (the first N of the venue's) or a list BTC,ETH,...")
        parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (default 2)")
        parser.add_argument("--database-url", default=None,
                            help="the PostgreSQL server to create the scratch database on (its database name is "
                                 "ignored; default 127.0.0.1:5432 as postgres when it answers, else SQLite); a "
                                 "sqlite:// URL forces a temporary SQLite file")
        parser.add_argument("--keep", action="store_true", help="keep the scratch database and the logs")
        # Internal: the outer process starts the inner one with these.
        parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--logdir", default="", help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        if options["seconds"] <= 0:
            raise CommandError("--seconds must be positive")
        if options["workers"] < 1:
            raise CommandError("--workers must be at least 1")
        parse_coins(options["coins"])
        if options["seed"] is None:
            options["seed"] = random.SystemRandom().randrange(1, 10**6)
        code = Soak(options, self.stdout).run() if options["inner"] else outer(options, self.stdout)
        if code:
            raise SystemExit(code)

