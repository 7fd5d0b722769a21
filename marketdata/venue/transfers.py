"""Coin transfers between the venue's accounts: one simulated world behind both dialects.

Both dialects of a VenueServer share one `Transfers`: a withdrawal from an account on one dialect
to the deposit address of an account on either dialect arrives there as a deposit, with the same
txid, after a confirmation delay. This module holds the venue's own network table (fees, minimums,
steps, confirmations per coin, network and exchange, written from the exchanges' docs and the
recorded payloads in tests/fixtures, never taken from the adapters), the deposit addresses, the
records and their clocks, and it moves the balances. binance_wallet.py and upbit_wallet.py check
the requests and render the records in each exchange's own shapes and errors.

One transfer, with d = `delay` seconds (control `transfer_delay`, default 3) fixed when it is made:

    t0          accepted; amount + fee leave `free` for `locked` at once   Upbit WAITING   Binance 2
    t0 + 0.2 d  the cancel window closes                                   PROCESSING      4
    t0 + 0.4 d  sent: a txid, the locked funds leave the account           DONE            6
                the receiver sees a pending deposit with that txid         PROCESSING      0
    t0 + 0.8 d  Binance credits it but keeps it locked (in `locked`)                       6
    t0 + d      credited and usable                                        ACCEPTED        1

An Upbit deposit coming from Binance while the travel-rule hold is on stops in
TRAVEL_RULE_SUSPECTED instead of ACCEPTED, not credited, until released. A phase waits while its
network is suspended (the sender's withdrawals for the first two, the receiver's deposits after).
`lose_deposit` makes withdrawals accepted meanwhile complete (DONE, funds gone) with no deposit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from .accounts import Account, Accounts

log = logging.getLogger(__name__)

DEFAULT_DELAY_S = 3.0
WAITING, PROCESSING, DONE, FAILED, CANCELLED, REJECTED = "WAITING", "PROCESSING", "DONE", "FAILED", "CANCELLED", "REJECTED"
# Deposit states (Upbit's names; binance_wallet.py maps them to status ints). CREDITED is Binance's
# status 6: on the account but locked until the unlock confirmations.
CREDITED, ACCEPTED, TRAVEL_RULE_SUSPECTED = "CREDITED", "ACCEPTED", "TRAVEL_RULE_SUSPECTED"
EXCHANGES = ("binance", "upbit")

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
# Address style -> (prefix, alphabet, length after the prefix, Binance-style addressRegex).
STYLES = {
    "btc": ("bc1q", _BECH32, 38, r"^(bc1q[02-9ac-hj-np-z]{38,58}|[13][1-9A-HJ-NP-Za-km-z]{25,34})$"),
    "evm": ("0x", "0123456789abcdef", 40, r"^(0x)[0-9A-Fa-f]{40}$"),
    "xrp": ("r", _B58, 33, r"^r[1-9A-HJ-NP-Za-km-z]{24,34}$"),
    "trx": ("T", _B58, 33, r"^T[1-9A-HJ-NP-Za-km-z]{33}$"),
    "sol": ("", _B58, 44, r"^[1-9A-HJ-NP-Za-km-z]{32,44}$"),
    "doge": ("D", _B58, 33, r"^(D|A|9)[1-9A-HJ-NP-Za-km-z]{33}$"),
    "ada": ("addr1", _BECH32, 98, r"^addr1[02-9ac-hj-np-z]{53,}$"),
    "dot": ("1", _B58, 47, r"^1[1-9A-HJ-NP-Za-km-z]{46,47}$"),
}
MEMO_REGEX = r"^[0-9]{1,10}$"


@dataclass(frozen=True)
class Terms:
    """One exchange's terms for a coin on a network."""

    fee: Decimal
    minimum: Decimal
    step: Decimal  # Binance withdrawIntegerMultiple; Upbit 10^-fixed (its decimal places)
    confirmations: int  # to credit: Binance minConfirm, Upbit minimum_deposit_confirmations
    unlock: int = 0  # Binance unLockConfirm
    default: bool = True  # Binance isDefault
    maximum: Decimal = Decimal("9999999999")
    arrival_min: int = 1  # Binance estimatedArrivalTime

    @property
    def fixed(self) -> int:
        return max(0, -self.step.normalize().as_tuple().exponent)


@dataclass(frozen=True)
class Network:
    coin: str
    network: str  # Binance `network` = Upbit `net_type`
    name: str
    style: str
    explorer: str  # deposit address URL, {address}
    tag: bool  # the address needs a memo / secondary address
    binance: Terms | None
    upbit: Terms | None

    def terms(self, exchange: str) -> Terms | None:
        return self.binance if exchange == "binance" else self.upbit

    @property
    def address_regex(self) -> str:
        return STYLES[self.style][3]

    def valid_address(self, address: str) -> bool:
        return bool(re.fullmatch(self.address_regex, address or ""))

    def valid_tag(self, tag: str) -> bool:
        return bool(re.fullmatch(MEMO_REGEX, tag or ""))


def _b(fee, minimum, step, confirmations, unlock=0, default=True) -> Terms:
    return Terms(Decimal(fee), Decimal(minimum), Decimal(step), confirmations, unlock, default)


def _u(fee, minimum, fixed, confirmations) -> Terms:
    return Terms(Decimal(fee), Decimal(minimum), Decimal(1).scaleb(-fixed), confirmations)


# The venue's own table. Binance's amounts follow its capital/config/getall documentation and the
# recorded withdrawals (USDT on TRX: fee 1, 2024; XRP: fee 0.25); Upbit's follow /v1/withdraws/chance
# and /v1/deposits/chance/coin (BTC fee 0.0008, minimum 0.00001, 8 decimals, 1 confirmation; ADA fee
# 0.5; USDT on TRX fee 0.0 as the withdrawal tutorial records). Network ids are the coin's symbol,
# USDT on TRX (TRC20) by default and on ETH (ERC20), BNB on BSC (Binance only: Upbit lists no BNB).
NETWORKS: tuple[Network, ...] = (
    Network("BTC", "BTC", "Bitcoin", "btc", "https://mempool.space/address/{address}", False,
            _b("0.0002", "0.001", "0.00000001", 1, 2), _u("0.0008", "0.00001", 8, 1)),
    Network("ETH", "ETH", "Ethereum (ERC20)", "evm", "https://etherscan.io/address/{address}", False,
            _b("0.0012", "0.0024", "0.00000001", 12, 64), _u("0.01", "0.01", 8, 12)),
    Network("XRP", "XRP", "Ripple", "xrp", "https://xrpscan.com/account/{address}", True,
            _b("0.25", "2", "0.000001", 1, 1), _u("1", "2", 6, 1)),
    Network("SOL", "SOL", "Solana", "sol", "https://solscan.io/account/{address}", False,
            _b("0.008", "0.1", "0.00000001", 1, 1), _u("0.009", "0.05", 8, 1)),
    Network("DOGE", "DOGE", "DogeCoin", "doge", "https://dogechain.info/address/{address}", False,
            _b("4", "25", "0.00000001", 50, 50), _u("5", "10", 8, 40)),
    Network("ADA", "ADA", "Cardano", "ada", "https://cardanoscan.io/address/{address}", False,
            _b("0.8", "10", "0.000001", 30, 30), _u("0.5", "1", 6, 20)),
    Network("TRX", "TRX", "Tron (TRC20)", "trx", "https://tronscan.org/#/address/{address}", False,
            _b("1", "10", "0.000001", 1, 1), _u("1", "1", 6, 20)),
    Network("LINK", "LINK", "Chainlink (ERC20)", "evm", "https://etherscan.io/address/{address}", False,
            _b("0.16", "0.32", "0.00000001", 12, 64), _u("1.2", "2", 8, 12)),
    Network("AVAX", "AVAX", "AVAX C-Chain", "evm", "https://snowtrace.io/address/{address}", False,
            _b("0.008", "0.016", "0.00000001", 12, 12), _u("0.01", "0.1", 8, 12)),
    Network("DOT", "DOT", "Polkadot", "dot", "https://polkadot.subscan.io/account/{address}", False,
            _b("0.05", "1.5", "0.00000001", 1, 1), _u("0.1", "1.5", 8, 1)),
    Network("USDT", "TRX", "Tron (TRC20)", "trx", "https://tronscan.org/#/address/{address}", False,
            _b("1", "10", "0.000001", 1, 1), _u("0", "1", 6, 20)),
    Network("USDT", "ETH", "Ethereum (ERC20)", "evm", "https://etherscan.io/address/{address}", False,
            _b("3", "10", "0.000001", 12, 64, default=False), _u("3", "10", 6, 12)),
    Network("BNB", "BSC", "BNB Smart Chain (BEP20)", "evm", "https://bscscan.com/address/{address}", False,
            _b("0.0005", "0.01", "0.00000001", 15, 0), None),
)
COIN_NAMES = {"BTC": "Bitcoin", "ETH": "Ethereum", "XRP": "Ripple", "SOL": "Solana", "DOGE": "Dogecoin",
              "ADA": "Cardano", "TRX": "TRON", "LINK": "ChainLink", "AVAX": "Avalanche", "DOT": "Polkadot",
              "USDT": "TetherUS", "BNB": "BNB"}


def _chars(seed: str, alphabet: str, length: int) -> str:
    digest = b""
    counter = 0
    while len(digest) < length:
        digest += hashlib.sha512(f"{seed}#{counter}".encode()).digest()
        counter += 1
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def make_address(net: Network, seed: str) -> str:
    prefix, alphabet, length, _regex = STYLES[net.style]
    body = _chars(seed, alphabet, length)
    if net.style == "sol":
        body = _chars(seed, _B58[1:], 1) + body[1:]  # never a leading "1"
    return prefix + body


def make_tag(seed: str) -> str:
    return str(100_000_000 + int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big") % 900_000_000)


def make_txid(net: Network, seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).hexdigest()
    if net.style == "evm":
        return "0x" + digest
    return digest.upper() if net.style == "xrp" else digest


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Deposit:
    exchange: str  # the receiving dialect
    api_key: str
    id: str
    coin: str
    network: str
    amount: Decimal
    address: str
    tag: str
    txid: str
    source_exchange: str
    source_address: str
    delay: float
    created_ms: int = field(default_factory=now_ms)
    state: str = PROCESSING
    credited_ms: int | None = None  # usable (Binance 1, Upbit ACCEPTED)
    next_at: float = 0.0

    @property
    def done(self) -> bool:
        return self.state == ACCEPTED


@dataclass
class Withdrawal:
    exchange: str  # the sending dialect
    api_key: str
    id: str
    coin: str
    network: str
    amount: Decimal  # what goes on chain and is credited to the receiver
    fee: Decimal  # kept by the sending venue
    address: str
    tag: str
    delay: float
    client_id: str = ""  # Binance withdrawOrderId
    transaction_type: str = "default"
    lose: bool = False  # lose_deposit was on: no deposit will ever appear
    created_ms: int = field(default_factory=now_ms)
    state: str = WAITING
    done_ms: int | None = None
    txid: str = ""
    info: str = ""  # why it failed
    next_at: float = 0.0
    deposit: Deposit | None = None

    @property
    def debit(self) -> Decimal:
        """What left the account's balance (locked while processing)."""
        return self.amount + self.fee

    @property
    def cancelable(self) -> bool:
        return self.state == WAITING

    @property
    def open(self) -> bool:
        return self.state in (WAITING, PROCESSING)


class Transfers:
    """The transfer world: networks and their switches, deposit addresses, withdrawals, deposits."""

    tick_s = 0.05

    def __init__(self, accounts: Accounts, *, delay: float = DEFAULT_DELAY_S):
        self.accounts = accounts
        self.delay = delay
        self.travel_rule_hold = False
        self.lose_deposit = False
        self.suspended: dict[tuple[str, str, str], set[str]] = {}  # (exchange, coin, network) -> {"withdraw", "deposit"}
        self.withdrawals: dict[str, Withdrawal] = {}
        self.deposits: dict[str, Deposit] = {}
        self.addresses: dict[tuple[str, str, str, str], tuple[str, str]] = {}  # (exchange, key, coin, network)
        self.owners: dict[tuple[str, str, str], tuple[str, str, str]] = {}  # (network, address, tag) -> (exchange, key, coin)
        self._open_withdrawals: list[Withdrawal] = []
        self._open_deposits: list[Deposit] = []
        self._deposit_ids = itertools.count(int(time.time()) * 1000)
        self._task: asyncio.Task | None = None

    # --- the table and its switches ------------------------------------------------------------
    def networks(self, exchange: str, coin: str | None = None) -> list[Network]:
        return [n for n in NETWORKS if n.terms(exchange) is not None and (coin is None or n.coin == coin)]

    def coins(self, exchange: str) -> list[str]:
        return sorted({n.coin for n in self.networks(exchange)})

    def network(self, exchange: str, coin: str, network: str | None = None) -> Network | None:
        """The coin's network on that exchange; without a network id, its default one."""
        nets = self.networks(exchange, coin)
        if network:
            return next((n for n in nets if n.network == network), None)
        return next((n for n in nets if n.terms(exchange).default), nets[0] if nets else None)

    def enabled(self, exchange: str, net: Network, what: str) -> bool:
        return what not in self.suspended.get((exchange, net.coin, net.network), ())

    def set_network(self, exchange: str, coin: str, network: str | None = None, *, withdraw: bool | None = None,
                    deposit: bool | None = None) -> list[str]:
        """Switch withdrawals and/or deposits of a coin (one network, or all) on or off."""
        nets = [n for n in self.networks(exchange, coin) if network in (None, "", n.network)]
        if not nets:
            raise ValueError(f"{exchange} has no network {network or '(any)'} for {coin}")
        for net in nets:
            off = self.suspended.setdefault((exchange, net.coin, net.network), set())
            for what, on in (("withdraw", withdraw), ("deposit", deposit)):
                if on is True:
                    off.discard(what)
                elif on is False:
                    off.add(what)
        return [n.network for n in nets]

    # --- addresses -------------------------------------------------------------------------------
    def deposit_address(self, exchange: str, api_key: str, net: Network) -> tuple[str, str]:
        """The account's deposit address and tag on a network: the same every time, and routable."""
        key = (exchange, api_key, net.coin, net.network)
        if key not in self.addresses:
            if net.tag:  # one shared address per exchange, the tag tells the accounts apart
                address = make_address(net, f"{exchange}|shared|{net.network}")
                tag = make_tag(f"{exchange}|{api_key}|{net.coin}|{net.network}")
            else:
                address, tag = make_address(net, f"{exchange}|{api_key}|{net.coin}|{net.network}"), ""
            self.addresses[key] = (address, tag)
            self.owners[(net.network, address, tag)] = (exchange, api_key, net.coin)
        return self.addresses[key]

    def owner(self, network: str, address: str, tag: str) -> tuple[str, str, str] | None:
        return self.owners.get((network, address, tag or ""))

    def hot_address(self, exchange: str, net: Network) -> str:
        """Where the exchange's withdrawals come from (a deposit's sourceAddress)."""
        return make_address(net, f"{exchange}|hot|{net.network}")

    # --- withdrawals ------------------------------------------------------------------------------
    def account(self, exchange: str, api_key: str) -> Account:
        return (self.accounts.upbit if exchange == "upbit" else self.accounts.binance)[api_key]

    def withdraw(self, exchange: str, api_key: str, net: Network, amount: Decimal, fee: Decimal, address: str, tag: str,
                 *, client_id: str = "", transaction_type: str = "default") -> Withdrawal:
        """Accept a checked withdrawal: amount + fee move from free to locked at once."""
        wid = uuid.uuid4().hex if exchange == "binance" else str(uuid.uuid4())
        w = Withdrawal(exchange, api_key, wid, net.coin, net.network, amount, fee, address, tag or "", self.delay,
                       client_id=client_id, transaction_type=transaction_type, lose=self.lose_deposit)
        w.next_at = time.time() + 0.2 * w.delay
        self.account(exchange, api_key).lock(net.coin, w.debit)
        self.withdrawals[wid] = w
        self._open_withdrawals.append(w)
        return w

    def cancel(self, w: Withdrawal, state: str = CANCELLED, info: str = "") -> None:
        """End a withdrawal that has not been sent: its funds go back to free."""
        if not w.open:
            raise ValueError(f"withdrawal {w.id} is {w.state}")
        self.account(w.exchange, w.api_key).lock(w.coin, -w.debit)
        w.state, w.info, w.done_ms = state, info, now_ms()
        with contextlib.suppress(ValueError):
            self._open_withdrawals.remove(w)

    def fail(self, withdrawal_id: str, state: str = FAILED, reason: str = "") -> Withdrawal:
        w = self.withdrawals.get(withdrawal_id)
        if w is None:
            raise ValueError(f"no withdrawal {withdrawal_id!r}")
        if state not in (FAILED, REJECTED):
            raise ValueError("state must be FAILED or REJECTED")
        self.cancel(w, state, reason or "The withdrawal failed.")
        return w

    def release(self, deposit_id: str | None = None) -> int:
        """Let travel-rule-held deposits (all, or one) through: credited now."""
        held = [d for d in self.deposits.values() if d.state == TRAVEL_RULE_SUSPECTED and deposit_id in (None, "", d.id)]
        for d in held:
            self._credit(d, locked=False)
        return len(held)

    # --- the clock ---------------------------------------------------------------------------------
    def advance(self, now: float | None = None) -> None:
        """Move every transfer whose time has come to its next state."""
        now = time.time() if now is None else now
        for w in list(self._open_withdrawals):
            if now < w.next_at or not self.enabled(w.exchange, self._net(w.coin, w.network), "withdraw"):
                continue
            if w.state == WAITING:
                w.state, w.next_at = PROCESSING, now + 0.2 * w.delay
            else:
                self._send(w, now)
        for d in list(self._open_deposits):
            if now < d.next_at or not self.enabled(d.exchange, self._net(d.coin, d.network), "deposit"):
                continue
            if d.exchange == "binance" and d.state == PROCESSING:
                self._credit(d, locked=True)
                d.state, d.next_at = CREDITED, now + 0.2 * d.delay
            elif d.exchange == "binance":
                account = self.account(d.exchange, d.api_key)
                account.lock(d.coin, -d.amount)
                d.state, d.credited_ms = ACCEPTED, now_ms()
                self._open_deposits.remove(d)
            elif self.travel_rule_hold and d.source_exchange == "binance":
                d.state = TRAVEL_RULE_SUSPECTED
                self._open_deposits.remove(d)
            else:
                self._credit(d, locked=False)

    def _net(self, coin: str, network: str) -> Network:
        return next(n for n in NETWORKS if n.coin == coin and n.network == network)

    def _send(self, w: Withdrawal, now: float) -> None:
        account = self.account(w.exchange, w.api_key)
        account.locked[w.coin] = account.locked.get(w.coin, Decimal(0)) - w.debit
        net = self._net(w.coin, w.network)
        w.state, w.done_ms, w.txid = DONE, now_ms(), make_txid(net, f"tx|{w.id}")
        self._open_withdrawals.remove(w)
        target = None if w.lose else self.owner(w.network, w.address, w.tag)
        if target is None or target[2] != w.coin:
            return  # an outside address, a lost deposit, or another coin's address: nothing arrives here
        exchange, api_key, _coin = target
        did = str(next(self._deposit_ids)) if exchange == "binance" else str(uuid.uuid4())
        d = Deposit(exchange, api_key, did, w.coin, w.network, w.amount, w.address, w.tag, w.txid, w.exchange,
                    self.hot_address(w.exchange, net), w.delay)
        d.next_at = now + (0.4 if exchange == "binance" else 0.6) * w.delay
        w.deposit = d
        self.deposits[did] = d
        self._open_deposits.append(d)

    def _credit(self, d: Deposit, *, locked: bool) -> None:
        account = self.account(d.exchange, d.api_key)
        if locked:  # Binance status 6: on the account, not yet withdrawable or tradable
            account.balances.setdefault(d.coin, Decimal(0))
            account.locked[d.coin] = account.locked.get(d.coin, Decimal(0)) + d.amount
            return
        account.move(d.coin, d.amount)
        d.state, d.credited_ms = ACCEPTED, now_ms()
        with contextlib.suppress(ValueError):
            self._open_deposits.remove(d)

    def confirmations(self, d: Deposit, required: int) -> int:
        """How many confirmations a pending deposit shows (grows with its age)."""
        if d.state != PROCESSING:
            return required
        elapsed = time.time() - d.created_ms / 1000
        span = max(1e-6, 0.4 * d.delay)
        return min(required - 1, int(required * elapsed / span)) if required else 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _tick(self) -> None:
        while True:
            try:
                self.advance()
            except Exception:  # the venue must outlive a bad step
                log.exception("venue: advancing transfers failed")
            await asyncio.sleep(self.tick_s)

    # --- the control API -------------------------------------------------------------------------
    def register_address(self, api_key: str, coin: str, network: str, address: str, tag: str = "",
                         exchange_name: str | None = None) -> dict:
        """Put an address on an Upbit account's withdrawal allow-list (Upbit: website only, never by API)."""
        net = self.network("upbit", coin, network)
        if net is None:
            raise ValueError(f"upbit has no network {network} for {coin}")
        if api_key not in self.accounts.upbit:
            raise ValueError(f"no upbit account {api_key!r}")
        if not net.valid_address(address):
            raise ValueError(f"{address!r} is not a {net.network} address")
        if net.tag != bool(tag) or (tag and not net.valid_tag(tag)):
            raise ValueError(f"{net.network} {'needs a numeric tag' if net.tag else 'takes no tag'}")
        owner = self.owner(net.network, address, tag)
        if exchange_name is None and owner is not None:
            exchange_name = {"binance": "Binance", "upbit": "Upbit"}[owner[0]]
        return self.accounts.register_address(api_key, coin, net.network, address, tag, exchange_name=exchange_name,
                                              network_name=net.name)

    def clear_switches(self) -> None:
        """Back to defaults: delay, holds, lost deposits and suspensions (records and addresses stay)."""
        self.delay = DEFAULT_DELAY_S
        self.travel_rule_hold = False
        self.lose_deposit = False
        self.suspended.clear()

    def summary(self) -> dict:
        return {
            "delay": self.delay,
            "travel_rule_hold": self.travel_rule_hold,
            "lose_deposit": self.lose_deposit,
            "suspended": sorted(f"{e}:{c}:{n}:{w}" for (e, c, n), off in self.suspended.items() for w in sorted(off)),
            "withdrawals": len(self.withdrawals),
            "deposits": len(self.deposits),
            "in_flight": len(self._open_withdrawals) + len(self._open_deposits),
            "held": sum(1 for d in self.deposits.values() if d.state == TRAVEL_RULE_SUSPECTED),
        }
