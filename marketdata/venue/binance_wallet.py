"""Binance's wallet (capital) endpoints on the venue, over the shared transfer world (transfers.py).

GET /sapi/v1/capital/config/getall, GET /sapi/v1/capital/deposit/address, GET
/sapi/v1/capital/deposit/hisrec, POST /sapi/v1/capital/withdraw/apply, GET
/sapi/v1/capital/withdraw/history: all SIGNED, errors `{"code", "msg"}` with the documented
-4xxx codes and messages.

Weights as documented: getall and deposit/address 10, hisrec 1 (IP, 12,000 a minute for /sapi,
`X-SAPI-USED-IP-WEIGHT-1M`); withdraw/apply 900 (UID, 180,000 a minute,
`X-SAPI-USED-UID-WEIGHT-1M`); withdraw/history 18,000 (UID, per second: 10 requests a second,
`X-SAPI-USED-UID-WEIGHT-1S`). Over a limit: 429 `-1003` with `Retry-After`, nothing done.

The fee (the docs do not say whether `amount` includes it; history reports `amount` and
`transactionFee` apart): here the requested `amount` is what leaves the balance, fee included, as
in Binance's withdrawal form ("receive amount" = amount - fee), which is why -4028 demands
amount > fee. History then reports `amount` = what was sent on chain (requested - fee) and
`transactionFee` = the fee, so amount + transactionFee = what the balance lost; the receiver is
credited `amount`. withdrawMin, withdrawMax and withdrawIntegerMultiple apply to the requested
amount.

Statuses: withdrawals 2 (awaiting approval: the venue's WAITING) -> 4 (processing) -> 6
(completed, funds gone); 1 cancelled, 3 rejected, 5 failure. Deposits 0 (pending) -> 6 (credited
but locked: in `locked`, neither withdrawable nor tradable) -> 1 (success, moved to `free`).

Inferred, not documented: an unknown network of a known coin answers -4019 like a closed one; a
tag on a network without memos -4106 ("Tag is not supported for this network."); a missing or
malformed memo where one is required -4008; a `withdrawOrderId` used twice is accepted (nothing in
the docs refuses it), so a resent withdrawal would show up twice in history.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import orjson
from aiohttp import web

from .accounts import Account, AuthFailure
from .limits import RateWindow
from .transfers import (
    ACCEPTED,
    CANCELLED,
    COIN_NAMES,
    CREDITED,
    DONE,
    FAILED,
    MEMO_REGEX,
    PROCESSING,
    REJECTED,
    TRAVEL_RULE_SUSPECTED,
    WAITING,
    Deposit,
    Network,
    Transfers,
    Withdrawal,
)

SAPI_IP_LIMIT = 12_000  # per minute
SAPI_UID_LIMIT = 180_000  # per minute, and per second for withdraw/history
DAY_MS = 24 * 3600 * 1000
WITHDRAW_STATUS = {WAITING: 2, PROCESSING: 4, DONE: 6, CANCELLED: 1, REJECTED: 3, FAILED: 5}
DEPOSIT_STATUS = {PROCESSING: 0, CREDITED: 6, ACCEPTED: 1, TRAVEL_RULE_SUSPECTED: 0}


def s(value: Decimal) -> str:
    return f"{value.normalize():f}"


def utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


class BinanceWallet:
    def __init__(self, dialect, transfers: Transfers):
        self.dialect = dialect
        self.transfers = transfers
        self.ip_weights = RateWindow(60.0, SAPI_IP_LIMIT)
        self.uid_weights = RateWindow(60.0, SAPI_UID_LIMIT)
        self.uid_weights_1s = RateWindow(1.0, SAPI_UID_LIMIT)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/sapi/v1/capital/config/getall", self.config_getall)
        app.router.add_get("/sapi/v1/capital/deposit/address", self.deposit_address)
        app.router.add_get("/sapi/v1/capital/deposit/hisrec", self.deposit_history)
        app.router.add_post("/sapi/v1/capital/withdraw/apply", self.withdraw_apply)
        app.router.add_get("/sapi/v1/capital/withdraw/history", self.withdraw_history)

    # --- helpers -----------------------------------------------------------------------------------
    def _charge(self, request: web.Request, weight: int, *, uid: str | None = None,
                per_second: bool = False) -> tuple[dict, web.Response | None]:
        """Charge the weight (to the IP, or to the account for UID-weighted endpoints) before any work."""
        if uid is None:
            window, key, header, interval, limit = self.ip_weights, request.remote, "X-SAPI-USED-IP-WEIGHT-1M", "1 MINUTE", SAPI_IP_LIMIT
        elif per_second:
            window, key, header, interval, limit = self.uid_weights_1s, uid, "X-SAPI-USED-UID-WEIGHT-1S", "1 SECOND", SAPI_UID_LIMIT
        else:
            window, key, header, interval, limit = self.uid_weights, uid, "X-SAPI-USED-UID-WEIGHT-1M", "1 MINUTE", SAPI_UID_LIMIT
        remaining = window.take(key, weight)
        headers = {header: str(limit - remaining)}
        if remaining < 0:
            headers["Retry-After"] = str(max(1, int(window.seconds_left())))
            return headers, self.dialect.error(429, -1003, f"Too much request weight used; current limit is {limit} request "
                                               f"weight per {interval}. Please use WebSocket Streams for live updates to "
                                               "avoid polling the API.", headers)
        return headers, None

    async def _auth(self, request: web.Request) -> tuple[Account, dict[str, str], str]:
        body = (await request.read()).decode() if request.can_read_body else ""
        account = self.dialect.verify(request, body)
        params = dict((await request.post()) if body else {})
        params.update(request.query)  # the query wins over the body
        return account, params, request.headers["X-MBX-APIKEY"]

    def _fail(self, code: int, msg: str, headers: dict | None = None, status: int = 400) -> web.Response:
        return self.dialect.error(status, code, msg, headers)

    @staticmethod
    def _ok(payload, headers: dict) -> web.Response:
        return web.Response(body=orjson.dumps(payload), content_type="application/json", headers=headers)

    @staticmethod
    def _numbers(p: dict, names: tuple[str, ...]) -> dict[str, int] | str:
        out = {}
        for name in names:
            raw = p.get(name)
            if raw is None or raw == "":
                continue
            if not raw.isdigit() or len(raw) > 20:
                return name
            out[name] = int(raw)
        return out

    def _window(self, numbers: dict, default_days: int) -> tuple[int, int] | None:
        """startTime..endTime, defaulting to the last `default_days`; None when longer than 90 days."""
        end = numbers.get("endTime")
        start = numbers.get("startTime")
        if start is None and end is None:
            end = int(time.time() * 1000)
        if start is None:
            start = end - default_days * DAY_MS
        if end is None:
            end = start + default_days * DAY_MS
        return None if end - start > 90 * DAY_MS or end < start else (start, end)

    # --- config and addresses --------------------------------------------------------------------------
    def network_view(self, net: Network) -> dict:
        t = net.binance
        withdraw = self.transfers.enabled("binance", net, "withdraw")
        deposit = self.transfers.enabled("binance", net, "deposit")
        return {
            "network": net.network, "coin": net.coin, "withdrawIntegerMultiple": s(t.step), "isDefault": t.default,
            "depositEnable": deposit, "withdrawEnable": withdraw,
            "depositDesc": "" if deposit else "Wallet Maintenance, Deposit Suspended",
            "withdrawDesc": "" if withdraw else "Wallet Maintenance, Withdrawal Suspended",
            "specialTips": "", "specialWithdrawTips": "", "name": net.name, "resetAddressStatus": False,
            "addressRegex": net.address_regex, "memoRegex": MEMO_REGEX if net.tag else "",
            "withdrawFee": s(t.fee), "withdrawMin": s(t.minimum), "withdrawMax": s(t.maximum),
            "withdrawInternalMin": s(t.step), "depositDust": s(t.step), "minConfirm": t.confirmations,
            "unLockConfirm": t.unlock, "sameAddress": net.tag, "withdrawTag": net.tag,
            "estimatedArrivalTime": t.arrival_min, "busy": False, "contractAddressUrl": "", "contractAddress": "",
        }

    async def config_getall(self, request: web.Request) -> web.Response:
        headers, refused = self._charge(request, 10)
        if refused is not None:
            return refused
        try:
            account, _p, key = await self._auth(request)
        except AuthFailure as exc:
            return self._fail(exc.name, exc.message, headers, exc.status)
        self.transfers.advance()
        zero = Decimal(0)
        withdrawing: dict[str, Decimal] = {}
        for w in self.transfers.withdrawals.values():
            if w.exchange == "binance" and w.api_key == key and w.open:
                withdrawing[w.coin] = withdrawing.get(w.coin, zero) + w.debit
        out = []
        for coin in self.transfers.coins("binance"):
            nets = [self.network_view(n) for n in self.transfers.networks("binance", coin)]
            out.append({
                "coin": coin, "depositAllEnable": any(n["depositEnable"] for n in nets),
                "withdrawAllEnable": any(n["withdrawEnable"] for n in nets), "name": COIN_NAMES.get(coin, coin),
                "free": s(account.balances.get(coin, zero)), "locked": s(account.locked.get(coin, zero)), "freeze": "0",
                "withdrawing": s(withdrawing.get(coin, zero)), "ipoing": "0", "ipoable": "0", "storage": "0",
                "isLegalMoney": False, "trading": True, "networkList": nets,
            })
        return self._ok(out, headers)

    async def deposit_address(self, request: web.Request) -> web.Response:
        headers, refused = self._charge(request, 10)
        if refused is not None:
            return refused
        try:
            _account, p, key = await self._auth(request)
        except AuthFailure as exc:
            return self._fail(exc.name, exc.message, headers, exc.status)
        coin = p.get("coin")
        if not coin:
            return self._fail(-1102, "Mandatory parameter 'coin' was not sent, was empty/null, or malformed.", headers)
        net = self.transfers.network("binance", coin, p.get("network") or None)
        if net is None:
            return self._fail(-4018, "We don't have this asset.", headers)
        address, tag = self.transfers.deposit_address("binance", key, net)
        return self._ok({"address": address, "coin": coin, "tag": tag, "url": net.explorer.format(address=address)}, headers)

    # --- deposits ---------------------------------------------------------------------------------------
    def deposit_view(self, d: Deposit, include_source: bool = False) -> dict:
        net = self.transfers.network("binance", d.coin, d.network)
        required = net.binance.confirmations
        row = {
            "id": d.id, "amount": s(d.amount), "coin": d.coin, "network": d.network,
            "status": DEPOSIT_STATUS[d.state], "address": d.address, "addressTag": d.tag, "txId": d.txid,
            "insertTime": d.created_ms, "transferType": 0,
            "confirmTimes": f"{self.transfers.confirmations(d, required)}/{required}",
            "unlockConfirm": net.binance.unlock, "walletType": 0, "travelRuleStatus": 0,
        }
        if d.credited_ms is not None:
            row["completeTime"] = d.credited_ms
        if include_source:
            row["sourceAddress"] = d.source_address
        return row

    async def deposit_history(self, request: web.Request) -> web.Response:
        headers, refused = self._charge(request, 1)
        if refused is not None:
            return refused
        try:
            _account, p, key = await self._auth(request)
        except AuthFailure as exc:
            return self._fail(exc.name, exc.message, headers, exc.status)
        numbers = self._numbers(p, ("status", "startTime", "endTime", "offset", "limit"))
        if isinstance(numbers, str):
            return self._fail(-1100, f"Illegal characters found in parameter '{numbers}'; legal range is '^[0-9]{{1,20}}$'.", headers)
        window = self._window(numbers, 90)
        if window is None:
            return self._fail(-4047, "Time interval must be within 0-90 days", headers)
        self.transfers.advance()
        coin, tx_id = p.get("coin"), p.get("txId")
        rows = [d for d in self.transfers.deposits.values()
                if d.exchange == "binance" and d.api_key == key and (not coin or d.coin == coin)
                and (not tx_id or d.txid == tx_id) and window[0] <= d.created_ms <= window[1]
                and ("status" not in numbers or DEPOSIT_STATUS[d.state] == numbers["status"])]
        rows.sort(key=lambda d: d.created_ms)
        rows.reverse()  # newest first; of two in one millisecond, the later one
        offset, limit = numbers.get("offset", 0), max(1, min(numbers.get("limit", 1000), 1000))
        include = (p.get("includeSource") or "").lower() == "true"
        return self._ok([self.deposit_view(d, include) for d in rows[offset:offset + limit]], headers)

    # --- withdrawals ------------------------------------------------------------------------------------
    def withdrawal_view(self, w: Withdrawal) -> dict:
        row = {"id": w.id, "amount": s(w.amount), "transactionFee": s(w.fee), "coin": w.coin,
               "status": WITHDRAW_STATUS[w.state], "address": w.address}
        if w.tag:
            row["addressTag"] = w.tag
        row.update(txId=w.txid, applyTime=utc(w.created_ms), network=w.network, transferType=0)
        if w.client_id:
            row["withdrawOrderId"] = w.client_id
        net = self.transfers.network("binance", w.coin, w.network)
        row.update(info=w.info, confirmNo=net.binance.confirmations if w.state == DONE else 0, walletType=0, txKey="")
        if w.done_ms is not None:
            row["completeTime"] = utc(w.done_ms)
        return row

    async def withdraw_apply(self, request: web.Request) -> web.Response:
        try:
            account, p, key = await self._auth(request)
        except AuthFailure as exc:
            return self._fail(exc.name, exc.message, None, exc.status)
        headers, refused = self._charge(request, 900, uid=key)
        if refused is not None:
            return refused  # refused before anything was done: nothing to look up
        for name in ("coin", "address", "amount"):
            if not p.get(name):
                return self._fail(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.", headers)
        coin = p["coin"]
        if not self.transfers.networks("binance", coin):
            return self._fail(-4018, "We don't have this asset.", headers)
        net = self.transfers.network("binance", coin, p.get("network") or None)
        if net is None or not self.transfers.enabled("binance", net, "withdraw"):
            return self._fail(-4019, "Current asset is not open for withdrawal.", headers)
        try:
            amount = Decimal(p["amount"])
            if not amount.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            return self._fail(-1100, "Illegal characters found in parameter 'amount'; legal range is "
                              "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.", headers)
        address, tag = p["address"], p.get("addressTag") or ""
        if not net.valid_address(address):
            return self._fail(-4033, "Illegal address.", headers)
        if tag and not net.tag:
            return self._fail(-4106, "Tag is not supported for this network.", headers)
        if net.tag and not net.valid_tag(tag):
            return self._fail(-4008, "Address tag validation is not passed.", headers)
        t = net.binance
        if amount % t.step:
            return self._fail(-4021, f"Asset withdrawal must be an integer multiple of {s(t.step)}.", headers)
        if amount <= t.fee:
            return self._fail(-4028, "The amount of withdrawal must be greater than the Commission.", headers)
        if amount < t.minimum:
            return self._fail(-4022, f"Not less than the minimum pick-up quantity {s(t.minimum)}.", headers)
        if amount > t.maximum:
            return self._fail(-4023, "Within 24 hours, the withdrawal exceeds the maximum amount.", headers)
        if coin not in account.balances:
            return self._fail(-4024, "You don't have this asset.", headers)
        if account.balances[coin] < amount:
            return self._fail(-4026, "You have insufficient balance.", headers)
        w = self.transfers.withdraw("binance", key, net, amount - t.fee, t.fee, address, tag,
                                    client_id=p.get("withdrawOrderId") or "")
        return self._ok({"id": w.id}, headers)

    async def withdraw_history(self, request: web.Request) -> web.Response:
        try:
            _account, p, key = await self._auth(request)
        except AuthFailure as exc:
            return self._fail(exc.name, exc.message, None, exc.status)
        headers, refused = self._charge(request, 18_000, uid=key, per_second=True)
        if refused is not None:
            return refused
        numbers = self._numbers(p, ("status", "startTime", "endTime", "offset", "limit"))
        if isinstance(numbers, str):
            return self._fail(-1100, f"Illegal characters found in parameter '{numbers}'; legal range is '^[0-9]{{1,20}}$'.", headers)
        client_id = p.get("withdrawOrderId") or ""
        window = self._window(numbers, 7 if client_id else 90)
        if window is None:
            return self._fail(-4047, "Time interval must be within 0-90 days", headers)
        ids = [i for i in (p.get("idList") or "").split(",") if i]
        if len(ids) > 45:
            return self._fail(-1100, "Illegal characters found in parameter 'idList'; at most 45 ids.", headers)
        self.transfers.advance()
        coin = p.get("coin")
        rows = [w for w in self.transfers.withdrawals.values()
                if w.exchange == "binance" and w.api_key == key and (not coin or w.coin == coin)
                and (not client_id or w.client_id == client_id) and (not ids or w.id in ids)
                and window[0] <= w.created_ms <= window[1]
                and ("status" not in numbers or WITHDRAW_STATUS[w.state] == numbers["status"])]
        rows.sort(key=lambda w: w.created_ms)
        rows.reverse()  # newest first; of two in one millisecond, the later one
        offset, limit = numbers.get("offset", 0), max(1, min(numbers.get("limit", 1000), 1000))
        return self._ok([self.withdrawal_view(w) for w in rows[offset:offset + limit]], headers)
