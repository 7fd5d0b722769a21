"""The venue's accounts and how each dialect authenticates a private request.

Verification works as the exchanges describe it, so a client that signs correctly for the real
exchange passes here, and one that does not gets the exchange's own error.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import unquote

import jwt


@dataclass
class Account:
    secret: str
    balances: dict[str, Decimal] = field(default_factory=dict)
    locked: dict[str, Decimal] = field(default_factory=dict)
    nonces: set[str] = field(default_factory=set)
    # Binance "spot BNB burn": fees paid in BNB at a discount while the account holds enough BNB.
    bnb_burn: bool = False
    # Upbit's withdrawal allow-list (/v1/withdraws/coin_addresses rows): registered on the website, never by API.
    withdraw_addresses: list[dict] = field(default_factory=list)

    def move(self, asset: str, amount: Decimal) -> None:
        self.balances[asset] = self.balances.get(asset, Decimal(0)) + amount

    def lock(self, asset: str, amount: Decimal) -> None:
        """Move `amount` from free to locked (a negative amount unlocks)."""
        self.move(asset, -amount)
        self.locked[asset] = self.locked.get(asset, Decimal(0)) + amount


class AuthFailure(Exception):
    def __init__(self, status: int, name, message: str):
        super().__init__(message)
        self.status, self.name, self.message = status, name, message


class Accounts:
    """API key -> account, per dialect."""

    def __init__(self):
        self.upbit: dict[str, Account] = {}
        self.binance: dict[str, Account] = {}

    def add(self, exchange: str, api_key: str, secret: str, balances: dict[str, str | Decimal] | None = None, *,
            bnb_burn: bool = False) -> Account:
        account = Account(secret, {k: Decimal(str(v)) for k, v in (balances or {}).items()}, bnb_burn=bnb_burn)
        (self.upbit if exchange == "upbit" else self.binance)[api_key] = account
        return account

    def register_address(self, api_key: str, currency: str, net_type: str, address: str, tag: str = "", *,
                         exchange_name: str | None = "Binance", network_name: str | None = None) -> dict:
        """Allow an Upbit account to withdraw to an address (as done on Upbit's website); idempotent."""
        row = {
            "currency": currency, "net_type": net_type, "network_name": network_name or net_type,
            "withdraw_address": address, "secondary_address": tag or None, "beneficiary_name": None,
            "beneficiary_company_name": None, "beneficiary_type": "individual" if exchange_name else None,
            "exchange_name": exchange_name, "wallet_type": None if exchange_name else "personal",
        }
        rows = self.upbit[api_key].withdraw_addresses
        rows[:] = [r for r in rows if (r["currency"], r["net_type"], r["withdraw_address"], r["secondary_address"])
                   != (currency, net_type, address, tag or None)]
        rows.append(row)
        return row


def verify_binance(accounts: Accounts, headers, raw_query: str, body: str = "", now_ms: int | None = None) -> Account:
    """Check X-MBX-APIKEY, the HMAC signature over query + body, and the timestamp window."""
    api_key = headers.get("X-MBX-APIKEY", "")
    if not api_key or len(api_key) > 256 or not api_key.isprintable():
        raise AuthFailure(401, -2014, "API-key format invalid.")
    account = accounts.binance.get(api_key)
    if account is None:
        raise AuthFailure(401, -2015, "Invalid API-key, IP, or permissions for action.")
    # The signature is the last parameter of the query or of the body; it signs query + body.
    if "signature=" in raw_query:
        signed_query, signature = _split_signature(raw_query)
        payload, signed_body = signed_query + body, body
    elif "signature=" in body:
        signed_body, signature = _split_signature(body)
        payload, signed_query = raw_query + signed_body, raw_query
    else:
        raise AuthFailure(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
    expected = hmac.new(account.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise AuthFailure(400, -1022, "Signature for this request is not valid.")
    # When both carry a parameter, the query wins (Binance's rule).
    params = _form(signed_body)
    params.update(_form(signed_query))
    try:
        timestamp = int(params["timestamp"])
    except (KeyError, ValueError):
        raise AuthFailure(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.") from None
    recv_window = float(params.get("recvWindow", 5000))
    server = now_ms if now_ms is not None else int(time.time() * 1000)
    if timestamp >= server + 1000:
        raise AuthFailure(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if server - timestamp > recv_window:
        raise AuthFailure(400, -1021, "Timestamp for this request is outside of the recvWindow.")
    return account


def _split_signature(text: str) -> tuple[str, str]:
    signed, _, signature = ("&" + text).rpartition("&signature=")
    return signed[1:], signature


def _form(text: str) -> dict[str, str]:
    return {unquote(k): unquote(v) for k, _, v in (p.partition("=") for p in text.split("&") if p)}


def verify_upbit(accounts: Accounts, headers, raw_query: str, json_body: dict | None = None) -> Account:
    """Check the Bearer JWT: known key, valid HS256/HS512 signature, fresh nonce, matching query hash."""
    auth = headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        raise AuthFailure(401, "no_authorization_token", "인증 토큰이 존재하지 않습니다.")
    token = auth[7:]
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        algorithm = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError:
        raise AuthFailure(401, "jwt_verification", "Jwt 토큰 검증에 실패했습니다.") from None
    account = accounts.upbit.get(claims.get("access_key", ""))
    if account is None:
        raise AuthFailure(401, "invalid_access_key", "잘못된 엑세스 키입니다.")
    if algorithm not in ("HS256", "HS512"):
        raise AuthFailure(401, "jwt_verification", "Jwt 토큰 검증에 실패했습니다.")
    try:
        jwt.decode(token, account.secret, algorithms=[algorithm])
    except jwt.PyJWTError:
        raise AuthFailure(401, "jwt_verification", "Jwt 토큰 검증에 실패했습니다.") from None
    nonce = claims.get("nonce")
    if not nonce or nonce in account.nonces:
        raise AuthFailure(401, "nonce_used", "이미 요청한 nonce값이 다시 사용되었습니다.")
    # POST bodies are hashed as their k=v&... form, in body order; queries as sent, unencoded.
    query = "&".join(f"{k}={v}" for k, v in json_body.items()) if json_body else unquote(raw_query)
    if query:
        expected = hashlib.sha512(query.encode()).hexdigest()
        if claims.get("query_hash") != expected:
            raise AuthFailure(401, "invalid_query_payload", "JWT 헤더의 페이로드가 올바르지 않습니다.")
    account.nonces.add(nonce)
    return account
