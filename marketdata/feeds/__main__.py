"""`python -m marketdata.feeds --exchange upbit|binance|all`: the feed workers without Django's setup
(marketdata.feeds.run)."""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arbproject.settings")

from marketdata.feeds.run import main  # noqa: E402  (after the settings module is named)

sys.exit(main())
