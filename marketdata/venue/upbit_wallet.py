"""Upbit's deposit and withdrawal endpoints on the venue, over the shared transfer world (transfers.py).

Withdrawals: GET /v1/withdraws/chance, GET /v1/withdraws/coin_addresses (the allow-list, set up by
`Accounts.register_address` or the control API's `register_address`, never by the API), POST
/v1/withdraws/coin (201), DELETE /v1/withdraws/coin?uuid= (while `is_cancelable`), GET
/v1/withdraws, GET /v1/withdraw. Deposits: GET /v1/deposits/chance/coin, POST
/v1/deposits/generate_coin_address (asynchronous: `{success, message}` until the address exists,
ADDRESS_READY_S later), GET /v1/deposits/coin_address, GET /v1/deposits/coin_addresses, GET
/v1/deposits, GET /v1/deposit. Status: GET /v1/status/wallet.

Every one is in the exchange API's `default` group (30 requests a second per key): each answer,
errors included, carries `Remaining-Req: group=default; min=1800; sec=N`; past the limit 429
`too_many_requests`, nothing done.

The fee is charged on top of `amount` (a recorded pair: 35.72344 ADA in, 35.22344 + 0.5 fee out):
amount + fee leave `balance` for `locked` at once; the receiver is credited `amount`.
`transaction_type: internal` (바로출금) is fee-free and only to an Upbit deposit address.

Documented error names: validation_error, withdraw_address_not_registered (a recorded body),
currency_not_found (404). Inferred, not documented: under_min_amount, insufficient_funds,
withdraw_suspended (the network's withdrawals are off), withdraw_not_cancelable,
withdraw_not_found / deposit_not_found / coin_address_not_found (404).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import jwt
import orjson
from aiohttp import web

from .accounts import Account, AuthFailure, verify_upbit
from .limits import RateWindow
from .transfers import Deposit, Network, Transfers, Withdrawal
from .upbit_orders import kst

DEFAULT_GROUP_PER_SEC = 30
ADDRESS_READY_S = 0.3
WALLET_STATES = {(True, True): "working", (True, False): "withdraw_only", (False, True): "deposit_only",
                 (False, False): "paused"}


def u(value: Decimal) -> str:
    """Upbit's number strings: "13.0", "0.0008"."""
    text = f"{value.normalize():f}"
    return text if "." in text else text + ".0"


def _access_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    try:
        return jwt.decode(auth[7:], options={"verify_signature": False}).get("access_key") if auth.startswith("Bearer ") else None
    except jwt.PyJWTError:
        return None


class UpbitWallet:
    def __init__(self, dialect, transfers: Transfers):
        self.dialect = dialect
        self.transfers = transfers
        self.limit = RateWindow(1.0, DEFAULT_GROUP_PER_SEC)
        self.generating: dict[tuple[str, str, str], float] = {}  # (key, currency, net_type) -> ready at

    def routes(self, app: web.Application) -> None:
        for method, path, handler in (
            ("GET", "/v1/withdraws/chance", self.withdraw_chance),
            ("GET", "/v1/withdraws/coin_addresses", self.withdraw_addresses),
            ("POST", "/v1/withdraws/coin", self.withdraw),
            ("DELETE", "/v1/withdraws/coin", self.cancel_withdrawal),
            ("GET", "/v1/withdraws", self.withdrawals),
            ("GET", "/v1/withdraw", self.withdrawal),
            ("GET", "/v1/deposits/chance/coin", self.deposit_chance),
            ("POST", "/v1/deposits/generate_coin_address", self.generate_address),
            ("GET", "/v1/deposits/coin_address", self.coin_address),
            ("GET", "/v1/deposits/coin_addresses", self.coin_addresses),
            ("GET", "/v1/deposits", self.deposits),
            ("GET", "/v1/deposit", self.deposit),
            ("GET", "/v1/status/wallet", self.wallet_status),
        ):
            app.router.add_route(method, path, self._guard(handler, json_body=method == "POST"))

    # --- plumbing ------------------------------------------------------------------------------------
    def _guard(self, handler, *, json_body: bool):
        """Count the request in the default group, authenticate, run; Remaining-Req on every answer."""

        async def serve(request: web.Request) -> web.Response:
            remaining = self.limit.take(_access_key(request) or request.remote)
            header = {"Remaining-Req": f"group=default; min=1800; sec={max(remaining, 0)}"}
            if remaining < 0:
                return self._err(429, "too_many_requests", "Too many API requests.", header)
            data = None
            raw = await request.read()
            if json_body:
                try:
                    data = orjson.loads(raw or b"{}")
                except orjson.JSONDecodeError:
                    data = None
                if not isinstance(data, dict):
                    return self._err(400, "invalid_parameter", "잘못된 파라미터", header)
            elif raw and request.method == "DELETE":
                return self._err(400, "QUERY_PARAMETER_NOT_SUPPORTED",
                                 "이 API는 쿼리 파라미터 형식의 요청만 지원합니다. 요청 본문에 값을 포함할 수 없습니다.", header)
            try:
                account = verify_upbit(self.dialect.accounts, request.headers, request.query_string, data)
            except AuthFailure as exc:
                return self._err(exc.status, exc.name, exc.message, header)
            self.transfers.advance()
            params = data if data is not None else request.query
            response = handler(request, account, _access_key(request), params)
            response.headers.update(header)
            return response

        return serve

    def _err(self, status: int, name: str, message: str, headers: dict | None = None) -> web.Response:
        return self.dialect.error(status, name, message, headers)

    def _ok(self, payload, status: int = 200) -> web.Response:
        return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json", charset="utf-8")

    def _network(self, params, *, need_net: bool = True) -> Network | web.Response:
        currency, net_type = params.get("currency"), params.get("net_type")
        if not currency:
            return self._err(400, "validation_error", "currency is missing")
        if not self.transfers.networks("upbit", currency):
            return self._err(404, "currency_not_found", f"존재하지 않는 화폐입니다: {currency}")
        if not net_type and need_net:
            return self._err(400, "validation_error", "net_type is missing")
        net = self.transfers.network("upbit", currency, net_type or None)
        if net is None:
            return self._err(400, "validation_error", "net_type does not have a valid value")
        return net

    def _switches(self, net: Network) -> tuple[bool, bool]:
        return self.transfers.enabled("upbit", net, "withdraw"), self.transfers.enabled("upbit", net, "deposit")

    @staticmethod
    def _page(params, rows: list, created) -> list | str:
        """Upbit's list paging: limit <= 100 (default 100), page from 1, order_by desc (default) | asc."""
        try:
            limit = int(params.get("limit", 100))
            page = int(params.get("page", 1))
        except ValueError:
            return "limit/page does not have a valid value"
        order = params.get("order_by", "desc")
        if not 1 <= limit <= 100 or page < 1 or order not in ("asc", "desc"):
            return "limit/page/order_by does not have a valid value"
        rows.sort(key=created)
        if order == "desc":
            rows.reverse()  # of two in one millisecond, the later one first
        return rows[(page - 1) * limit: page * limit]

    # --- withdrawals -----------------------------------------------------------------------------------
    def withdrawal_view(self, w: Withdrawal) -> dict:
        return {
            "type": "withdraw", "uuid": w.id, "currency": w.coin, "net_type": w.network, "txid": w.txid or None,
            "state": w.state, "created_at": kst(w.created_ms), "done_at": kst(w.done_ms) if w.done_ms else None,
            "amount": u(w.amount), "fee": u(w.fee), "transaction_type": w.transaction_type, "is_cancelable": w.cancelable,
        }

    def withdraw_chance(self, request, account: Account, key: str, params) -> web.Response:
        net = self._network(params)
        if isinstance(net, web.Response):
            return net
        t = net.upbit
        withdraw, deposit = self._switches(net)
        support = [w for w, on in (("deposit", deposit), ("withdraw", withdraw)) if on]
        zero = Decimal(0)
        return self._ok({
            "member_level": {"security_level": 4, "fee_level": 0, "email_verified": True, "identity_auth_verified": True,
                             "bank_account_verified": True, "two_factor_auth_verified": True, "locked": False,
                             "wallet_locked": False},
            "currency": {"code": net.coin, "withdraw_fee": u(t.fee), "is_coin": True,
                         "wallet_state": WALLET_STATES[(withdraw, deposit)], "wallet_support": support},
            "account": {"currency": net.coin, "balance": u(account.balances.get(net.coin, zero)),
                        "locked": u(account.locked.get(net.coin, zero)), "avg_buy_price": "0",
                        "avg_buy_price_modified": False, "unit_currency": "KRW"},
            "withdraw_limit": {"currency": net.coin, "onetime": None, "daily": None, "remaining_daily": None,
                               "remaining_daily_fiat": "1000000000.0", "fiat_currency": "KRW", "minimum": u(t.minimum),
                               "fixed": t.fixed, "withdraw_delayed_fiat": "0.0", "can_withdraw": withdraw},
        })

    def withdraw_addresses(self, request, account: Account, key: str, params) -> web.Response:
        return self._ok(list(account.withdraw_addresses))

    def withdraw(self, request, account: Account, key: str, data: dict) -> web.Response:
        for name in ("currency", "net_type", "amount", "address"):
            if data.get(name) in (None, ""):
                return self._err(400, "validation_error", f"{name} is missing")
        net = self._network(data)
        if isinstance(net, web.Response):
            return net
        try:
            amount = Decimal(str(data["amount"]))
            if not amount.is_finite() or amount <= 0:
                raise InvalidOperation
        except InvalidOperation:
            return self._err(400, "validation_error", "amount does not have a valid value")
        kind = data.get("transaction_type") or "default"
        if kind not in ("default", "internal"):
            return self._err(400, "validation_error", "transaction_type does not have a valid value")
        address, tag = str(data["address"]), str(data.get("secondary_address") or "")
        if tag and not net.tag:
            return self._err(400, "validation_error", "secondary_address is not supported for this net_type")
        if not self.transfers.enabled("upbit", net, "withdraw"):
            return self._err(400, "withdraw_suspended", f"{net.coin}({net.network}) 출금이 일시 중단되었습니다.")
        registered = any((r["currency"], r["net_type"], r["withdraw_address"], r["secondary_address"] or "")
                         == (net.coin, net.network, address, tag) for r in account.withdraw_addresses)
        if not registered:
            return self._err(400, "withdraw_address_not_registered", "등록된 출금 주소가 아닙니다.")
        t = net.upbit
        fee = t.fee
        if kind == "internal":
            owner = self.transfers.owner(net.network, address, tag)
            if owner is None or owner[0] != "upbit":
                return self._err(400, "validation_error", "internal transfer is only available to Upbit addresses")
            fee = Decimal(0)
        if amount % t.step:
            return self._err(400, "validation_error", f"amount must have at most {t.fixed} decimal places")
        if amount < t.minimum:
            return self._err(400, "under_min_amount", f"최소 출금 수량은 {u(t.minimum)} {net.coin} 입니다.")
        if account.balances.get(net.coin, Decimal(0)) < amount + fee:
            return self._err(400, "insufficient_funds", f"출금가능 금액({net.coin})이 부족합니다.")
        w = self.transfers.withdraw("upbit", key, net, amount, fee, address, tag, transaction_type=kind)
        return self._ok(self.withdrawal_view(w), status=201)

    def _own_withdrawal(self, key: str, params) -> Withdrawal | None:
        uuid_, txid, currency = params.get("uuid"), params.get("txid"), params.get("currency")
        mine = [w for w in self.transfers.withdrawals.values()
                if w.exchange == "upbit" and w.api_key == key and (not currency or w.coin == currency)]
        if uuid_:
            mine = [w for w in mine if w.id == uuid_]
        elif txid:
            mine = [w for w in mine if w.txid == txid]
        return max(mine, key=lambda w: w.created_ms, default=None)

    def cancel_withdrawal(self, request, account: Account, key: str, params) -> web.Response:
        if not params.get("uuid"):
            return self._err(400, "validation_error", "uuid is missing")
        w = self._own_withdrawal(key, {"uuid": params["uuid"]})
        if w is None:
            return self._err(404, "withdraw_not_found", "출금 내역을 찾지 못했습니다.")
        if not w.cancelable:
            return self._err(400, "withdraw_not_cancelable", "취소할 수 없는 출금입니다.")
        self.transfers.cancel(w)
        return self._ok(self.withdrawal_view(w))

    def withdrawals(self, request, account: Account, key: str, params) -> web.Response:
        rows = self._records(self.transfers.withdrawals.values(), key, params)
        if isinstance(rows, web.Response):
            return rows
        return self._ok([self.withdrawal_view(w) for w in rows])

    def withdrawal(self, request, account: Account, key: str, params) -> web.Response:
        w = self._own_withdrawal(key, params)
        if w is None:
            return self._err(404, "withdraw_not_found", "출금 내역을 찾지 못했습니다.")
        return self._ok(self.withdrawal_view(w))

    def _records(self, records, key: str, params) -> list | web.Response:
        uuids, txids = params.getall("uuids[]", []), params.getall("txids[]", [])
        if uuids and txids:
            return self._err(400, "validation_error", "uuids and txids cannot be used together")
        if len(uuids) > 100 or len(txids) > 100:
            return self._err(400, "validation_error", "at most 100 uuids or txids")
        currency, state = params.get("currency"), (params.get("state") or "").upper()
        rows = [r for r in records if r.exchange == "upbit" and r.api_key == key
                and (not currency or r.coin == currency) and (not state or r.state == state)
                and (not uuids or r.id in uuids) and (not txids or r.txid in txids)]
        page = self._page(params, rows, lambda r: r.created_ms)
        if isinstance(page, str):
            return self._err(400, "validation_error", page)
        return page

    # --- deposits ------------------------------------------------------------------------------------------
    def deposit_view(self, d: Deposit) -> dict:
        return {
            "type": "deposit", "uuid": d.id, "currency": d.coin, "net_type": d.network, "txid": d.txid, "state": d.state,
            "created_at": kst(d.created_ms), "done_at": kst(d.credited_ms) if d.credited_ms else None,
            "amount": u(d.amount), "fee": "0.0", "transaction_type": "default",
        }

    def deposit_chance(self, request, account: Account, key: str, params) -> web.Response:
        net = self._network(params)
        if isinstance(net, web.Response):
            return net
        _withdraw, deposit = self._switches(net)
        t = net.upbit
        return self._ok({
            "currency": net.coin, "net_type": net.network, "is_deposit_possible": deposit,
            "deposit_impossible_reason": None if deposit else "Deposits are temporarily suspended due to wallet maintenance",
            "minimum_deposit_amount": u(t.step), "minimum_deposit_confirmations": t.confirmations,
            "decimal_precision": t.fixed,
        })

    def _address(self, key: str, net: Network) -> tuple[str, str] | None:
        """The address once generated (None while generating); KeyError when never asked for."""
        ready_at = self.generating[(key, net.coin, net.network)]
        if time.time() < ready_at:
            return None
        return self.transfers.deposit_address("upbit", key, net)

    def _address_view(self, net: Network, address: tuple[str, str] | None) -> dict:
        return {"currency": net.coin, "net_type": net.network, "deposit_address": address[0] if address else None,
                "secondary_address": (address[1] or None) if address else None}

    def generate_address(self, request, account: Account, key: str, data: dict) -> web.Response:
        net = self._network(data)
        if isinstance(net, web.Response):
            return net
        slot = (key, net.coin, net.network)
        if slot not in self.generating:
            self.generating[slot] = time.time() + ADDRESS_READY_S
        address = self._address(key, net)
        if address is None:
            return self._ok({"success": True, "message": f"Creating {net.coin} deposit address."}, status=201)
        return self._ok(self._address_view(net, address), status=201)

    def coin_address(self, request, account: Account, key: str, params) -> web.Response:
        net = self._network(params)
        if isinstance(net, web.Response):
            return net
        try:
            address = self._address(key, net)
        except KeyError:
            return self._err(404, "coin_address_not_found", "입금 주소를 찾을 수 없습니다.")
        return self._ok(self._address_view(net, address))

    def coin_addresses(self, request, account: Account, key: str, params) -> web.Response:
        out = []
        for (owner, coin, network) in list(self.generating):
            if owner == key:
                net = self.transfers.network("upbit", coin, network)
                out.append(self._address_view(net, self._address(key, net)))
        return self._ok(out)

    def deposits(self, request, account: Account, key: str, params) -> web.Response:
        rows = self._records(self.transfers.deposits.values(), key, params)
        if isinstance(rows, web.Response):
            return rows
        return self._ok([self.deposit_view(d) for d in rows])

    def deposit(self, request, account: Account, key: str, params) -> web.Response:
        uuid_, txid, currency = params.get("uuid"), params.get("txid"), params.get("currency")
        mine = [d for d in self.transfers.deposits.values()
                if d.exchange == "upbit" and d.api_key == key and (not currency or d.coin == currency)
                and (not uuid_ or d.id == uuid_) and (not txid or d.txid == txid)]
        d = max(mine, key=lambda d: d.created_ms, default=None)
        if d is None:
            return self._err(404, "deposit_not_found", "입금 내역을 찾지 못했습니다.")
        return self._ok(self.deposit_view(d))

    # --- status ------------------------------------------------------------------------------------------
    def wallet_status(self, request, account: Account, key: str, params) -> web.Response:
        now = datetime.now(UTC)
        out = []
        for net in self.transfers.networks("upbit"):
            withdraw, deposit = self._switches(net)
            out.append({
                "currency": net.coin, "wallet_state": WALLET_STATES[(withdraw, deposit)], "block_state": "normal",
                "block_height": int(now.timestamp() // 10), "block_updated_at": now.isoformat(timespec="milliseconds"),
                "block_elapsed_minutes": 0, "net_type": net.network, "network_name": net.name,
            })
        return self._ok(out)

