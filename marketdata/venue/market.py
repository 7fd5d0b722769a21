"""The simulated market: coins, fair prices, the Upbit premium, and books on each venue's rules.

The latent model (fair USD prices, FX, premium) is a stochastic process in float; everything a
client can see (book prices and sizes) is Decimal snapped to the exchange's tick and lot rules.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal

from .rules import SymbolFilters, upbit_tick

Level = tuple[Decimal, Decimal]


@dataclass(frozen=True)
class Coin:
    symbol: str
    english_name: str
    korean_name: str
    usd_price: float
    filters: SymbolFilters
    beta: float = 1.0  # loading on the common market factor
    premium_mean: float = 0.001


def _coin(symbol, english, korean, usd, tick, step, beta=1.0, premium=0.001):
    return Coin(symbol, english, korean, usd, SymbolFilters(Decimal(tick), Decimal(step)), beta, premium)


DEFAULT_COINS: tuple[Coin, ...] = (
    _coin("BTC", "Bitcoin", "비트코인", 95000.0, "0.01", "0.00001", 1.0, 0.0015),
    _coin("ETH", "Ethereum", "이더리움", 3500.0, "0.01", "0.0001", 1.2, 0.0012),
    _coin("XRP", "XRP", "엑스알피(리플)", 2.2, "0.0001", "0.1", 1.3, 0.002),
    _coin("SOL", "Solana", "솔라나", 180.0, "0.01", "0.001", 1.4, 0.001),
    _coin("DOGE", "Dogecoin", "도지코인", 0.32, "0.00001", "1", 1.5, 0.0025),
    _coin("ADA", "Cardano", "에이다", 0.9, "0.0001", "0.1", 1.3, 0.0018),
    _coin("TRX", "TRON", "트론", 0.25, "0.00001", "0.1", 0.8, 0.0008),
    _coin("LINK", "Chainlink", "체인링크", 20.0, "0.01", "0.01", 1.2, 0.0014),
    _coin("AVAX", "Avalanche", "아발란체", 35.0, "0.01", "0.01", 1.4, 0.0011),
    _coin("DOT", "Polkadot", "폴카닷", 6.0, "0.001", "0.01", 1.2, 0.0016),
)

USDT = "USDT"

# Binance's fee coin: listed on the venue whatever coins a model trades, so an account paying its
# fees in BNB has a BNBUSDT book to be charged (and valued) at. It moves on a random stream of its
# own, so adding it leaves every other coin's seeded path as it was.
BNB = _coin("BNB", "BNB", "비앤비", 600.0, "0.01", "0.001", 1.0, 0.001)


def make_coins(count: int, seed: int = 1) -> tuple[Coin, ...]:
    """The ten real coins, then synthetic ones (C011, C012, ...) up to `count`, for load tests."""
    if count <= len(DEFAULT_COINS):
        return DEFAULT_COINS[:count]
    rng = random.Random(seed)
    extra = []
    for i in range(len(DEFAULT_COINS) + 1, count + 1):
        usd = round(10 ** rng.uniform(-1, 3), 4)
        tick = "0.0001" if usd < 10 else "0.01"
        step = "0.1" if usd < 10 else "0.001"
        extra.append(_coin(f"C{i:03d}", f"Coin {i}", f"코인{i}", usd, tick, step, rng.uniform(0.6, 1.5),
                           rng.uniform(-0.001, 0.003)))
    return DEFAULT_COINS + tuple(extra)


@dataclass
class ModelParams:
    market_vol: float = 0.00008  # per sqrt(second), common factor (~45 % a year)
    idio_vol: float = 0.00006
    fx_vol: float = 0.00002
    usdt_premium: float = 0.004  # Upbit KRW-USDT over USD/KRW
    premium_reversion: float = 0.05  # per second
    premium_vol: float = 0.0003  # per sqrt(second)
    jump_rate: float = 1 / 90  # jumps per coin per second
    jump_min: float = 0.006
    jump_max: float = 0.02
    binance_levels: int = 50
    upbit_levels: int = 30
    keep_size_prob: float = 0.8
    level_spacing: float = 0.00002  # fraction of price between book levels, at least one tick


@dataclass
class CoinState:
    coin: Coin
    usd: float
    premium: float
    forced_premium: float | None = None
    binance_bids: list[Level] = field(default_factory=list)
    binance_asks: list[Level] = field(default_factory=list)
    upbit_bids: list[Level] = field(default_factory=list)
    upbit_asks: list[Level] = field(default_factory=list)


class MarketModel:
    """Correlated random-walk fair prices and a mean-reverting, jumping Upbit premium."""

    def __init__(self, coins=DEFAULT_COINS, seed: int = 7, params: ModelParams | None = None, usd_krw: float = 1380.0):
        self.rng = random.Random(seed)
        self.fee_coin_rng = random.Random(f"{seed}-{BNB.symbol}")
        self.params = params or ModelParams()
        self.usd_krw = usd_krw
        if all(c.symbol != BNB.symbol for c in coins):
            coins = (*coins, BNB)
        self.coins = {c.symbol: CoinState(c, c.usd_price, c.premium_mean) for c in coins}
        self.usdt_bids: list[Level] = []
        self.usdt_asks: list[Level] = []
        self.elapsed = 0.0
        self._build_all()

    # --- dynamics ------------------------------------------------------------------------------
    def step(self, dt: float) -> None:
        """Advance every price by dt seconds and rebuild the books."""
        p, rng = self.params, self.rng
        root = math.sqrt(dt)
        market = rng.gauss(0, p.market_vol * root)
        self.usd_krw *= math.exp(rng.gauss(0, p.fx_vol * root))
        for state in self.coins.values():
            rng = self._rng(state)
            state.usd *= math.exp(state.coin.beta * market + rng.gauss(0, p.idio_vol * root))
            if state.forced_premium is not None:
                state.premium = state.forced_premium
                continue
            state.premium += p.premium_reversion * (state.coin.premium_mean - state.premium) * dt
            state.premium += rng.gauss(0, p.premium_vol * root)
            if rng.random() < p.jump_rate * dt:
                state.premium += rng.choice((-1, 1)) * rng.uniform(p.jump_min, p.jump_max)
        self.elapsed += dt
        self._build_all()

    def force_premium(self, symbol: str, premium: float | None) -> None:
        """Pin a coin's premium (a fraction, 0.03 = 3 %), or release it with None."""
        state = self.coins[symbol]
        state.forced_premium = premium
        if premium is not None:
            state.premium = premium
            self._build(state)

    @property
    def usdt_krw(self) -> float:
        return self.usd_krw * (1 + self.params.usdt_premium)

    def upbit_krw(self, symbol: str) -> float:
        state = self.coins[symbol]
        return state.usd * self.usdt_krw * (1 + state.premium)

    # --- books ---------------------------------------------------------------------------------
    def _build_all(self) -> None:
        self.usdt_bids, self.usdt_asks = self._ladder(
            self.usdt_krw, lambda price: upbit_tick(price, "KRW-USDT"), Decimal("0.00000001"),
            self.params.upbit_levels, 20_000_000 / self.usdt_krw, self.usdt_bids, self.usdt_asks,
        )
        for state in self.coins.values():
            self._build(state)

    def _rng(self, state: CoinState) -> random.Random:
        """The fee coin draws from its own stream; every other coin from the model's."""
        return self.fee_coin_rng if state.coin is BNB else self.rng

    def _build(self, state: CoinState) -> None:
        f = state.coin.filters
        rng = self._rng(state)
        state.binance_bids, state.binance_asks = self._ladder(
            state.usd, lambda _price: f.tick_size, f.step_size, self.params.binance_levels,
            20_000 / state.usd, state.binance_bids, state.binance_asks, rng,
        )
        market = f"KRW-{state.coin.symbol}"
        state.upbit_bids, state.upbit_asks = self._ladder(
            self.upbit_krw(state.coin.symbol), lambda price: upbit_tick(price, market), Decimal("0.00000001"),
            self.params.upbit_levels, 25_000_000 / self.upbit_krw(state.coin.symbol),
            state.upbit_bids, state.upbit_asks, rng,
        )

    def _ladder(self, mid: float, tick_for, step: Decimal, levels: int, typical_qty: float, old_bids, old_asks,
                rng: random.Random | None = None):
        rng = rng or self.rng
        mid_dec = Decimal(repr(mid))
        tick = tick_for(mid_dec)
        best_bid = (mid_dec / tick).to_integral_value(rounding=ROUND_FLOOR) * tick
        if best_bid >= mid_dec:
            best_bid -= tick
        best_ask = best_bid + tick * (1 if rng.random() < 0.8 else 2)
        old_b, old_a = dict(old_bids), dict(old_asks)
        # Levels sit on a grid of whole ticks so that a small move shifts only a few of them.
        grid = max(1, int(mid * self.params.level_spacing / float(tick))) * tick
        bids, asks = [], []
        price = best_bid
        for _ in range(levels):
            if price <= 0:
                break
            bids.append((price, self._size(old_b.get(price), typical_qty, step, rng)))
            price = ((price - grid) / grid).to_integral_value(rounding=ROUND_FLOOR) * grid
        price = best_ask
        for _ in range(levels):
            asks.append((price, self._size(old_a.get(price), typical_qty, step, rng)))
            price = ((price + grid) / grid).to_integral_value(rounding=ROUND_FLOOR) * grid
        return bids, asks

    def _size(self, old: Decimal | None, typical_qty: float, step: Decimal, rng: random.Random | None = None) -> Decimal:
        rng = rng or self.rng
        if old is not None and rng.random() < self.params.keep_size_prob:
            return old
        qty = typical_qty * rng.lognormvariate(0, 0.8)
        size = (Decimal(repr(qty)) / step).to_integral_value(rounding=ROUND_FLOOR) * step
        return size if size > 0 else step
