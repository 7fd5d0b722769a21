"""The Telegram bot (liveguard/telegram.py): long-polls the Bot API until SIGTERM or Ctrl-C.

It lives with trading's commands, not liveguard's: it wires trading's state (which the kill switch
is mirrored into, and which /status reads) into liveguard's bot, and liveguard never imports trading.
"""

import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from telegram.error import TelegramError

from liveguard.telegram import Commands, Poller
from trading.alerting import status_text
from trading.engine import get_state
from trading.exchanges.redact import redact

MAX_BACKOFF_S = 60.0


class Command(BaseCommand):
    help = "Answer Telegram commands from the authorised chats: /status, and /kill with a confirmation."

    def handle(self, *args, **options):
        if not settings.TELEGRAM_BOT_TOKEN:
            raise CommandError("TELEGRAM_BOT_TOKEN is not set")
        if not settings.TELEGRAM_ALLOWED_CHAT_IDS:
            raise CommandError("TELEGRAM_ALLOWED_CHAT_IDS is empty: no chat could use the bot")
        state = get_state()
        commands = Commands(state, settings.TELEGRAM_ALLOWED_CHAT_IDS, lambda: status_text(state))
        poller = Poller(commands, settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_API_URL)
        self.running = True
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.stdout.write(f"telegram: answering {len(settings.TELEGRAM_ALLOWED_CHAT_IDS)} authorised chat(s)")
        try:
            self.loop(poller)
        finally:
            poller.close()

    def stop(self, *_):
        self.running = False

    def loop(self, poller: Poller) -> None:
        backoff = 1.0
        while self.running:
            try:
                poller.poll_once()
                backoff = 1.0
            except TelegramError as exc:  # a network error or the API's refusal: wait and poll again
                self.stderr.write(redact(f"telegram: {type(exc).__name__}: {exc}; retrying in {backoff:.0f} s"))
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
