"""Issue 13, the Telegram kill switch: against a local fake of the Bot API (getMe, getUpdates,
sendMessage), /kill from an authorised chat asks for a one-time code, /confirm engages the kill
switch and audits it; an unauthorised chat, a wrong or expired code and a release are refused."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest
from telegram.error import InvalidToken

from liveguard import telegram as bot
from liveguard.models import AuditLog, KillSwitch
from liveguard.telegram import Commands, Poller
from trading.exchanges.redact import RedactSecrets

pytestmark = pytest.mark.django_db

TOKEN = "123456789:AAHfakeTokenForTheLocalBotApi_xyz"
STAFF, OTHER_STAFF, STRANGER = 4242, 4343, 9999


class FakeBotApi(ThreadingHTTPServer):
    """The few Bot API methods the poller uses; messages to deliver are queued by the test."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.updates: list[dict] = []
        self.sent: list[dict] = []
        self.paths: list[str] = []
        self.next_id = 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def say(self, chat_id: int, text: str) -> None:
        message = {"message_id": self.next_id, "date": int(time.time()), "text": text,
                   "chat": {"id": chat_id, "type": "private"}, "from": {"id": chat_id, "is_bot": False, "first_name": "Op"}}
        self.updates.append({"update_id": self.next_id, "message": message})
        self.next_id += 1

    def replies(self, chat_id: int) -> list[str]:
        return [m["text"] for m in self.sent if int(m["chat_id"]) == chat_id]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        server: FakeBotApi = self.server
        server.paths.append(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        params = json.loads(raw) if self.headers.get("Content-Type", "").startswith("application/json") else dict(parse_qsl(raw))
        method = self.path.rsplit("/", 1)[-1]
        if not self.path.startswith(f"/bot{TOKEN}/"):
            return self._answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        if method == "getMe":
            result = {"id": 1, "is_bot": True, "first_name": "kimp", "username": "kimp_bot"}
        elif method == "getUpdates":
            offset = int(params.get("offset") or 0)
            result = [u for u in server.updates if u["update_id"] >= offset]
        elif method == "sendMessage":
            server.sent.append(params)
            result = {"message_id": 1000 + len(server.sent), "date": int(time.time()), "text": params["text"],
                      "chat": {"id": int(params["chat_id"]), "type": "private"}}
        else:
            return self._answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        self._answer(200, {"ok": True, "result": result})

    def _answer(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    server = FakeBotApi()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def poller(api, state, caplog):
    caplog.set_level(logging.DEBUG)  # python-telegram-bot logs its URLs (with the token) at DEBUG
    commands = Commands(state, [STAFF, OTHER_STAFF], status=lambda: "Kill switch: released")
    poller = Poller(commands, TOKEN, api.url, poll_timeout_s=0)
    yield poller
    poller.close()


def code_in(reply: str) -> str:
    return re.search(r"/confirm (\d{6})", reply).group(1)


def telegram_audit(chat_id: int) -> list[str]:
    return list(AuditLog.objects.filter(model="Telegram", field=f"telegram:{chat_id}").order_by("created_at", "pk")
                .values_list("new_value", flat=True))


def test_kill_from_an_authorised_chat_is_confirmed_then_engaged_and_audited(api, poller, state, caplog):
    api.say(STAFF, "/kill")
    assert poller.poll_once() == 1
    assert not KillSwitch.load().engaged  # nothing changes before the confirmation
    code = code_in(api.replies(STAFF)[-1])

    api.say(STAFF, f"/confirm {code}")
    poller.poll_once()

    switch = KillSwitch.load()
    assert switch.engaged and switch.reason.startswith(f"telegram:{STAFF}")
    assert state.kill_switch() is True  # mirrored for the guard at once
    assert "ENGAGED" in api.replies(STAFF)[-1]
    assert telegram_audit(STAFF) == ["confirmation requested", "kill switch engaged"]
    engaged = AuditLog.objects.get(model="KillSwitch", field="engaged")
    assert (engaged.old_value, engaged.new_value) == ("False", "True")
    assert AuditLog.objects.get(model="KillSwitch", field="reason").new_value.startswith(f"telegram:{STAFF}")

    # The code is used up; each update is answered once (the offset moved on).
    api.say(STAFF, f"/confirm {code}")
    poller.poll_once()
    assert "wrong or has expired" in api.replies(STAFF)[-1]
    assert len(api.replies(STAFF)) == 3
    # The token travels in the API's URLs; the library logs them at DEBUG, and the handlers' filter
    # (settings.LOGGING) masks it before any line is written.
    redact, records = RedactSecrets(), caplog.get_records("setup") + caplog.records
    for record in records:
        redact.filter(record)
        assert TOKEN not in record.getMessage()
    assert any("/bot[redacted]" in record.getMessage() for record in records)


def test_an_unauthorised_chat_is_refused_and_audited(api, poller):
    api.say(STRANGER, "/kill")
    api.say(STRANGER, "/status")
    poller.poll_once()
    assert api.replies(STRANGER) == ["This chat is not authorised."] * 2
    assert not KillSwitch.load().engaged
    assert telegram_audit(STRANGER) == ["refused: chat not authorised"] * 2


def test_an_expired_or_foreign_confirmation_is_refused(api, poller, monkeypatch):
    monkeypatch.setattr(bot, "CONFIRM_TTL_S", 1)
    api.say(STAFF, "/kill")
    poller.poll_once()
    code = code_in(api.replies(STAFF)[-1])

    api.say(OTHER_STAFF, f"/confirm {code}")  # another chat's code
    poller.poll_once()
    time.sleep(1.2)
    api.say(STAFF, f"/confirm {code}")
    poller.poll_once()

    assert not KillSwitch.load().engaged
    assert "wrong or has expired" in api.replies(OTHER_STAFF)[-1]
    assert "wrong or has expired" in api.replies(STAFF)[-1]
    assert telegram_audit(STAFF) == ["confirmation requested", "refused: wrong or expired confirmation code"]


def test_release_is_not_possible_from_telegram(api, poller, state):
    from liveguard.services import set_kill_switch

    set_kill_switch(state, True, reason="operator")
    api.say(STAFF, "/release")
    api.say(STAFF, "/status")
    poller.poll_once()
    assert KillSwitch.load().engaged
    release, status = api.replies(STAFF)
    assert "not possible from Telegram" in release and "dashboard or the admin" in release
    assert status == "Kill switch: released"  # the status callable's answer
    assert telegram_audit(STAFF) == ["refused: release is not allowed from Telegram"]


def test_a_rejected_token_is_not_quoted_in_the_error(api, state):
    commands = Commands(state, [STAFF], status=lambda: "")
    with pytest.raises(InvalidToken) as refused:
        Poller(commands, "987654321:AAHwrongTokenWrongTokenWrongToken_zz", api.url, poll_timeout_s=0)
    assert "rejected" in str(refused.value) and "987654321" not in str(refused.value)
