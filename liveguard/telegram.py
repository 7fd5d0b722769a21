"""The Telegram bot: staff may engage the kill switch (never release it) and ask for the status.

`Commands` is the policy, transport-free: authorised chats only, a one-time code confirmed within
a minute before anything changes, and an audit row for every attempt (refusals included).
`Poller` is the transport: python-telegram-bot long-polls getUpdates and sends the replies, on a
Bot API base URL from the settings (a local fake in the tests). The token is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable

import telegram
import telegram.error
from telegram.request import HTTPXRequest

from .alertstate import AlertState
from .models import AuditLog
from .services import set_kill_switch

log = logging.getLogger(__name__)

CONFIRM_TTL_S = 60
HELP = "Commands: /status, /kill (engage the kill switch; asks for a confirmation)."
NO_RELEASE = "Releasing the kill switch is not possible from Telegram: use the dashboard or the admin."


class Commands:
    def __init__(self, state, allowed_chat_ids: Iterable[int], status: Callable[[], str], hot: AlertState | None = None):
        self.state = state  # trading's StateManager: set_kill_switch mirrors the switch into it
        self.allowed = frozenset(allowed_chat_ids)
        self.status = status
        self.hot = hot or AlertState.default()

    def handle(self, chat_id: int, text: str) -> str:
        """The reply to one message."""
        command, _, argument = (text or "").strip().partition(" ")
        command = command.split("@", 1)[0].lower()  # "/kill@SomeBot" in group chats
        if chat_id not in self.allowed:
            log.warning("telegram: %s refused from unauthorised chat %s", command[:40], chat_id)
            self._audit(chat_id, text, "refused: chat not authorised")
            return "This chat is not authorised."
        if command == "/status":
            return self.status()
        if command == "/kill":
            return self._request_kill(chat_id, text)
        if command == "/confirm":
            return self._confirm_kill(chat_id, text, argument.strip())
        if command in {"/release", "/resume", "/unkill"}:
            self._audit(chat_id, text, "refused: release is not allowed from Telegram")
            return NO_RELEASE
        return HELP

    def _request_kill(self, chat_id: int, text: str) -> str:
        code = f"{secrets.randbelow(10**6):06d}"
        self.hot.set_confirmation(chat_id, code, CONFIRM_TTL_S)
        self._audit(chat_id, text, "confirmation requested")
        return f"Engage the kill switch? Reply /confirm {code} within {CONFIRM_TTL_S} s."

    def _confirm_kill(self, chat_id: int, text: str, code: str) -> str:
        if not code or not self.hot.use_confirmation(chat_id, code):
            self._audit(chat_id, text, "refused: wrong or expired confirmation code")
            return "That code is wrong or has expired: send /kill again."
        actor = f"telegram:{chat_id}"
        set_kill_switch(self.state, True, reason=f"{actor}: engaged from Telegram")
        self._audit(chat_id, text, "kill switch engaged")
        log.warning("kill switch engaged from Telegram by %s", actor)
        return "Kill switch ENGAGED: no new pair is sent. " + NO_RELEASE

    @staticmethod
    def _audit(chat_id: int, text: str, outcome: str) -> None:
        AuditLog.objects.create(model="Telegram", field=f"telegram:{chat_id}"[:60], old_value=(text or "")[:200],
                                new_value=outcome)


class Poller:
    """Long-polls the Bot API and answers each message through `Commands`.

    The bot is asynchronous; the commands use the ORM, which must not run inside an event loop.
    So the poller keeps its own loop and runs each request to completion on it, with the commands
    in between, outside the loop.
    """

    def __init__(self, commands: Commands, token: str, api_url: str, poll_timeout_s: int = 25):
        # httpx logs every request's URL at INFO, and a Bot API URL carries the token.
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        api_url = api_url.rstrip("/")
        self.commands = commands
        self.poll_timeout_s = poll_timeout_s
        self.offset: int | None = None
        self.loop = asyncio.new_event_loop()
        self.bot = telegram.Bot(token, base_url=f"{api_url}/bot", base_file_url=f"{api_url}/file/bot",
                                request=HTTPXRequest(connect_timeout=5, read_timeout=10),
                                get_updates_request=HTTPXRequest(connect_timeout=5, read_timeout=poll_timeout_s + 10))
        try:
            self._run(self.bot.initialize())
        except telegram.error.InvalidToken:
            self.close()
            # The library's own message quotes the token.
            raise telegram.error.InvalidToken("the Bot API rejected TELEGRAM_BOT_TOKEN") from None

    def _run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def poll_once(self) -> int:
        """Fetch the waiting updates (up to the long-poll timeout) and answer them; how many."""
        updates = self._run(self.bot.get_updates(offset=self.offset, timeout=self.poll_timeout_s,
                                                 allowed_updates=["message"]))
        for update in updates:
            self.offset = update.update_id + 1  # acknowledged even if answering fails: never handled twice
            message = update.effective_message
            if message is None or not message.text:
                continue
            reply = self.commands.handle(message.chat_id, message.text)
            self._run(self.bot.send_message(chat_id=message.chat_id, text=reply))
        return len(updates)

    def close(self) -> None:
        try:
            self._run(self.bot.shutdown())
        finally:
            self.loop.close()
