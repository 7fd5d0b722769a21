"""Risk on what a premium book holds (issue 9.5): volatility and VaR of each coin's premium, of the
book of positions and of equity; weights on premium changes; a size cap that binds; weight edge cases."""

import math
import statistics
from decimal import Decimal as D
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from trading.quant.premium import (
    GARCH_MIN_OBSERVATIONS,
    book_path,
    grid_path,
    pooled_variance_ratio,
    premium_volatility,
    premium_weights,
)
from trading.quant.risk import horizon_risk, var_cvar
from trading.quant.service import VAR_HORIZON_SECONDS, book_exposures, position_cap, refit, sizing_cap

T0 = 1_700_000_000.0
Z95 = 1.6448536269514722


def put_series(state, symbol, values, start=T0, step=1.0, keep=86400):
    for i, value in enumerate(values):
        state.sample_premium(symbol, start + i * step, D(repr(round(float(value), 8))), keep)
    state.redis.zadd("arbitrage:index:premiums", {symbol: start})


def random_walk(seed, n, sigma):
    """A premium (percent) whose one-second changes are N(0, sigma^2)."""
    return 2.0 + np.cumsum(np.random.default_rng(seed).standard_normal(n) * sigma)


def mean_reverting(seed, n, sigma, kappa=0.02):
    rng, p, out = np.random.default_rng(seed), 2.0, []
    for _ in range(n):
        p += kappa * (2.0 - p) + rng.standard_normal() * sigma
        out.append(p)
    return np.array(out)


def position(symbol, side, quantity, price):
    return SimpleNamespace(symbol=symbol, side=side, quantity=D(quantity), entry_buy_price=D(price))


# --- volatility of the premium -------------------------------------------------------------------

def test_ewma_of_premium_changes_worked_by_hand():
    # Premium 1.00 -> 1.01 -> 0.99 -> 1.02 %, a second apart: changes 0.01, -0.02, 0.03 points.
    # 0.0001 -> 0.94 x 0.0001 + 0.06 x 0.0004 = 0.000118 -> 0.94 x 0.000118 + 0.06 x 0.0009 = 0.00016492
    model = premium_volatility([(T0, 1.00), (T0 + 1, 1.01), (T0 + 2, 0.99), (T0 + 3, 1.02)], 3600)
    assert model.method == "ewma" and model.observations == 3
    assert model.per_second == pytest.approx(math.sqrt(0.00016492), rel=1e-9)
    assert model.variance_ratio is None  # four samples: no lag longer than one step to measure it on
    # Over an hour at the square root of time: sqrt(0.00016492 x 3600) = sqrt(0.593712) = 0.770527 points.
    assert model.over(3600, 1.0, 0.05) == pytest.approx(math.sqrt(0.00016492 * 3600), rel=1e-9)
    assert model.over(3600, 1.0, 0.05) == pytest.approx(0.770527, abs=1e-6)


def test_changes_are_normalised_to_one_second_when_samples_are_irregular():
    # 1.00 -> 1.02 four seconds later -> 1.00 one second later: z = 0.02 / 2 = 0.01, then -0.02.
    model = premium_volatility([(T0, 1.00), (T0 + 4, 1.02), (T0 + 5, 1.00)], 3600)
    assert model.per_second ** 2 == pytest.approx(0.94 * 0.0001 + 0.06 * 0.0004, rel=1e-9)


def test_variance_ratio_analytic_cases():
    # A straight line: a change over L steps is L times a one-step change, so VR(L) = L^2 / L = L.
    line = [(T0 + i, 2.0 + 0.01 * i) for i in range(41)]  # lag = min(3600, 40 // 4) = 10 steps
    model = premium_volatility(line, 3600)
    assert model.lag_seconds == 10 and model.variance_ratio == pytest.approx(10.0)
    # A pure bounce (2.0, 2.1, 2.0, ...): every even-lag change is zero, so VR(10) = 0.
    bounce = [(T0 + i, 2.0 + 0.1 * (i % 2)) for i in range(41)]
    assert premium_volatility(bounce, 3600).variance_ratio == pytest.approx(0.0, abs=1e-12)
    # A random walk has VR about 1; a mean-reverting premium (half-life ~35 s) far less over 15 minutes.
    walk = premium_volatility(list(zip(T0 + np.arange(3600.0), random_walk(1, 3600, 0.01), strict=True)), 3600)
    reverting = premium_volatility(list(zip(T0 + np.arange(3600.0), mean_reverting(1, 3600, 0.01), strict=True)), 3600)
    assert 0.4 < walk.variance_ratio < 2.0
    assert reverting.variance_ratio < 0.2
    assert walk.method == reverting.method == "garch"  # 3,599 changes >= GARCH_MIN_OBSERVATIONS


def test_pooled_variance_ratio_is_the_median_of_the_coins_that_have_one():
    models = {s: premium_volatility([(T0 + i, 0.01 * i * k) for i in range(41)], 3600) for s, k in (("A", 1), ("B", 2))}
    short = premium_volatility([(T0, 1.0), (T0 + 1, 1.1), (T0 + 2, 1.0)], 3600)
    assert pooled_variance_ratio({**models, "SHORT": short}) == pytest.approx(10.0)
    assert pooled_variance_ratio({"SHORT": short}) == 1.0 and pooled_variance_ratio({}) == 1.0


# --- VaR -----------------------------------------------------------------------------------------

def test_var_and_cvar_of_a_known_sample():
    sample = [k - 5.0 for k in range(20)]  # -5 .. 14
    m = var_cvar(sample)
    assert m["var_95"] == pytest.approx(4.05)  # 5 % quantile: -5 + 0.95 x (-4 - -5) = -4.05
    assert m["cvar_95"] == pytest.approx(5.0)  # only -5 lies at or beyond it
    sd = math.sqrt(35.0)  # sample sd of 20 consecutive integers: sqrt(20 x 21 / 12)
    assert m["var_95_parametric"] == pytest.approx(-(4.5 - Z95 * sd))
    assert m["cvar_95_parametric"] == pytest.approx(-(4.5 - sd * math.exp(-Z95 ** 2 / 2) / math.sqrt(2 * math.pi) / 0.05))
    flat = var_cvar([0.0] * 10)
    assert all(v == 0 for v in flat.values())


def test_horizon_var_uses_lagged_changes_scaled_by_the_square_root_of_time():
    path = [0, 0, -1, 1, 1, 3, 0, 2, 2]  # nine points: lag = (9 - 1) // 4 = 2 steps
    risk = horizon_risk(path, step_seconds=1.0, horizon_seconds=8)
    changes = [-1, 1, 2, 2, -1, -1, 2]  # path[k + 2] - path[k]
    scale = math.sqrt(8 / 2)
    assert risk["lag_seconds"] == 2 and risk["observations"] == 7
    assert risk["var_95_historical"] == pytest.approx(1.0 * scale)  # the 5 % quantile is -1
    assert risk["cvar_95_historical"] == pytest.approx(1.0 * scale)
    param = -(statistics.mean(changes) - Z95 * statistics.stdev(changes)) * scale
    assert risk["var_95_parametric"] == pytest.approx(param)
    assert risk["method"] == "parametric" and risk["var_95"] == risk["var_95_parametric"]  # 7 < 50 changes
    assert horizon_risk([1.0, 2.0], 1.0, 8) is None


def test_book_var_is_the_premium_var_times_the_signed_exposure():
    premium = list(zip(T0 + np.arange(600.0), random_walk(3, 600, 0.02), strict=True))
    # Long Upbit 0.01 BTC bought at 140,000,000 KRW: 1,400,000 KRW gaining 14,000 KRW per premium point.
    exposures = book_exposures([position("BTC", "long_upbit", "0.01", "140000000")])
    assert exposures == {"BTC": pytest.approx(1_400_000.0)}
    path, step, held = book_path({"BTC": premium}, exposures)
    assert held == ["BTC"] and step == 1.0
    premium_path, _ = grid_path(premium)
    assert path == pytest.approx(premium_path * 14_000.0)
    book = horizon_risk(path, step, VAR_HORIZON_SECONDS)
    alone = horizon_risk(premium_path, step, VAR_HORIZON_SECONDS)
    assert book["var_95"] == pytest.approx(alone["var_95"] * 14_000.0)
    # The same coin held the other way round loses on the other tail.
    short = horizon_risk(book_path({"BTC": premium}, book_exposures([position("BTC", "long_binance", "0.01", "140000000")]))[0],
                         step, VAR_HORIZON_SECONDS)
    assert short["var_95"] == pytest.approx(horizon_risk(-premium_path, step, VAR_HORIZON_SECONDS)["var_95"] * 14_000.0)


def test_a_book_hedged_across_coins_has_no_var_and_gives_no_budget(state):
    values = random_walk(4, 300, 0.02)
    put_series(state, "BTC", values)
    put_series(state, "ETH", values)  # the same premium path
    held = [position("BTC", "long_upbit", "0.01", "100000000"), position("ETH", "long_binance", "0.2", "5000000")]
    result = refit(state, positions=held)  # +1,000,000 and -1,000,000 KRW on the same premium: flat
    assert result["book"]["var_95"] == pytest.approx(0.0, abs=1e-6)
    assert result["var_95_krw"] is None and state.var_budget_krw() is None and state.var_budget() is None


# --- the breaker's budget ------------------------------------------------------------------------

def test_breaker_budget_is_the_premium_book_var_over_a_day(state):
    values = random_walk(5, 900, 0.01)
    put_series(state, "BTC", values)
    put_series(state, "XRP", random_walk(6, 900, 0.05))  # moves more, but is not held
    result = refit(state, positions=[position("BTC", "long_upbit", "0.01", "140000000")])
    path, _ = grid_path(list(zip(T0 + np.arange(900.0), values, strict=True)))
    expected = horizon_risk(path * 14_000.0, 1.0, 86400)["var_95"]
    assert result["var_source"] == "book" and result["var_95_krw"] == pytest.approx(expected, rel=1e-6)
    assert state.var_budget_krw() == D(repr(result["var_95_krw"]))
    # maybe_trip_breaker multiplies the published total balance by var_budget(): that is the KRW budget.
    state.redis.hset(state.metrics_key(), "total_balance", "250000000")
    assert float(state.var_budget() * D("250000000")) == pytest.approx(result["var_95_krw"])
    # Scaled to a day: lag 224 s (a quarter of the window), x sqrt(86400 / 224).
    assert result["book"]["lag_seconds"] == 224 and result["book"]["horizon_seconds"] == 86400


def test_equity_samples_are_kept_a_day_and_drive_the_budget_when_present(state):
    state.sample_equity(T0, D("100000000"))
    state.sample_equity(T0 + 86400 + 1, D("100000500"))  # the first is now more than a day old
    assert state.equity_history() == [(T0 + 86400 + 1, D("100000500"))]
    state.redis.delete(state.EQUITY_HISTORY_KEY)
    equity = 100_000_000 + np.cumsum(np.random.default_rng(7).standard_normal(400) * 2_000)
    for i, value in enumerate(equity):
        state.sample_equity(T0 + i, D(f"{value:.2f}"))
    put_series(state, "BTC", random_walk(8, 400, 0.01))
    result = refit(state, positions=[position("BTC", "long_upbit", "0.01", "140000000")])
    expected = horizon_risk(np.round(equity, 2), 1.0, 86400)
    assert result["var_source"] == "equity"
    assert result["var_95_krw"] == pytest.approx(expected["var_95"], rel=1e-9)
    assert result["book"]["var_95"] > 0  # reported beside it
    model = state.risk_model()
    assert float(model["equity_var_95_krw"]) == pytest.approx(expected["var_95"]) and model["var_source"] == "equity"


# --- the cap -------------------------------------------------------------------------------------

def test_the_cap_binds_at_realistic_premium_volatility_under_the_default_budget():
    # 3,000 KRW per one-sigma move over the hour: a premium moving 0.3 points an hour -> 3,000 / 0.003.
    assert position_cap(0.3, 0.5, 2) == D("1000000")
    assert position_cap(0.6, 0.5, 2) == D("500000")
    assert position_cap(1.2, 0.25, 4) == D("250000")
    assert position_cap(0.3, 0.5, 2, D("400000")) == D("400000")  # never above a known balance


def test_twice_the_premium_volatility_gets_about_half_the_size(state):
    # Two coins, independent seeded premiums, one with twice the other's volatility, refitted from Redis.
    put_series(state, "CALM", mean_reverting(11, 1800, 0.005), keep=86400)
    put_series(state, "WILD", mean_reverting(12, 1800, 0.010), keep=86400)
    result = refit(state, positions=[])
    assert result["vols"]["WILD"] / result["vols"]["CALM"] == pytest.approx(2.0, rel=0.15)
    calm, wild = sizing_cap(state, "CALM"), sizing_cap(state, "WILD")
    assert float(wild / calm) == pytest.approx(0.5, rel=0.15)
    assert D("50000") < wild < calm < D("5000000")  # of the order of the 1,000,000 KRW position limit


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_twice_the_volatility_halves_the_size_for_random_walk_premiums_too(state, seed):
    put_series(state, "A", random_walk(seed, 1800, 0.005))
    put_series(state, "B", random_walk(seed + 100, 1800, 0.010))
    refit(state, positions=[])
    assert float(sizing_cap(state, "B") / sizing_cap(state, "A")) == pytest.approx(0.5, rel=0.15)


def test_weight_edge_cases_are_monotone():
    assert position_cap(None, None, 0) is None  # no model at all: no cap
    assert position_cap(0.3, 0.0, 2) == 0  # weight exactly 0: blocked
    assert position_cap(0.3, 1e-9, 2) == 0  # a tiny weight floors to 0 as well
    assert position_cap(0.3, -0.1, 2) == 0
    weights = [0.0, 1e-12, 1e-9, 1e-6, 1e-3, 0.1, 0.5, 1.0]
    caps = [position_cap(0.3, w, 2) for w in weights]
    assert all(c is not None for c in caps) and caps == sorted(caps)
    vols = [None, 0.0, 0.01, 0.05, 0.1, 0.3, 1.0, 5.0]
    by_vol = [position_cap(v, 0.5, 2) for v in vols]
    assert by_vol == sorted(by_vol, reverse=True)
    # A weight without a volatility uses the floor (0.05 points): 3,000 / 0.0005 x 0.5 x 2.
    assert position_cap(None, 0.5, 2) == D("6000000") == position_cap(0.0, 0.5, 2) == position_cap(float("nan"), 0.5, 2)
    # A volatility without a weight: the equal weight.
    assert position_cap(0.3, None, 0) == D("1000000")


def test_budget_horizon_and_floor_come_from_settings(settings):
    settings.RISK_BUDGET_KRW = "6000"
    assert position_cap(0.3, 0.5, 2) == D("2000000")
    settings.RISK_MIN_PREMIUM_VOL_PP = 1.0
    assert position_cap(0.3, 0.5, 2) == D("600000")
    settings.RISK_HORIZON_SECONDS = 60
    from trading.quant import config

    assert config.risk_horizon_seconds() == 60


# --- weights -------------------------------------------------------------------------------------

def test_weights_do_not_charge_volatility_twice_and_favour_what_diversifies():
    n = 2000
    rng = np.random.default_rng(13)
    common, own = rng.standard_normal(n), rng.standard_normal((3, n))
    steps = T0 + np.arange(n + 1.0)

    def series(changes):
        return list(zip(steps, np.concatenate(([2.0], 2.0 + np.cumsum(changes))), strict=True))

    base = {"A": series(own[0] * 0.01), "B": series(own[1] * 0.01)}
    scaled = {"A": base["A"], "B": series(own[1] * 0.04)}  # B four times as volatile, same shape
    w_base, info = premium_weights(base)
    w_scaled, _ = premium_weights(scaled)
    assert info["method"] == "min_variance"
    assert w_scaled["B"] == pytest.approx(w_base["B"], abs=1e-6)  # the cap's 1/sigma already sizes B
    assert w_base["A"] == pytest.approx(0.5, abs=0.05)
    # Two coins whose premiums move together and one on its own: the lone one gets the most.
    together = {"X": series((common + 0.3 * own[0]) * 0.01), "Y": series((common + 0.3 * own[1]) * 0.01),
                "Z": series(own[2] * 0.01)}
    w, _ = premium_weights(together)
    assert w["Z"] > w["X"] and w["Z"] > w["Y"] and sum(w.values()) == pytest.approx(1.0)


def test_weights_fall_back_to_equal_with_short_or_flat_history():
    short = {s: [(T0 + i, 2.0 + 0.01 * ((i * k) % 3)) for i in range(10)] for s, k in (("A", 1), ("B", 2))}
    assert premium_weights(short)[0] == {"A": 0.5, "B": 0.5}
    rng = np.random.default_rng(14)
    moving = {s: list(zip(T0 + np.arange(200.0), 2 + np.cumsum(rng.standard_normal(200) * 0.01), strict=True)) for s in "AB"}
    flat = {"F": [(T0 + i, 2.0) for i in range(200)]}
    w, info = premium_weights({**moving, **flat})
    assert w["F"] == pytest.approx(1 / 3) and sum(w.values()) == pytest.approx(1.0)
    assert premium_weights({"ONE": flat["F"]})[0] == {"ONE": 1.0} and premium_weights({})[0] == {}


# --- refit edge cases ----------------------------------------------------------------------------

def _finite(value) -> bool:
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def test_refit_with_no_data_stores_an_empty_model_and_no_cap(state):
    result = refit(state, positions=[])
    assert result["vols"] == {} and result["weights"] == {} and result["var_95_krw"] is None
    model = state.risk_model()
    assert model["weighted"] == "0" and model["var_95_krw"] == ""
    assert sizing_cap(state, "BTC") is None and state.var_budget() is None
    ctx = state.evaluation_context("BTC", "upbit")
    assert (ctx.volatility, ctx.weight, ctx.weighted_symbols) == (None, None, 0)


def test_refit_with_one_coin_and_with_flat_series_is_finite(state):
    put_series(state, "ONE", random_walk(15, 120, 0.01))
    result = refit(state, positions=[position("ONE", "long_binance", "1", "1000")])
    assert result["weights"] == {"ONE": 1.0}
    assert sizing_cap(state, "ONE") == position_cap(result["vols"]["ONE"], 1.0, 1)
    state.redis.flushdb()
    put_series(state, "FLAT", [2.5] * 300)
    put_series(state, "FLAT2", [1.0] * 300)
    result = refit(state, positions=[position("FLAT", "long_upbit", "0.01", "100000000")])
    assert result["vols"] == {"FLAT": 0.05, "FLAT2": 0.05}  # the floor, not 0
    assert result["weights"] == {"FLAT": 0.5, "FLAT2": 0.5}
    assert sizing_cap(state, "FLAT") == D("6000000")  # 3,000 / 0.0005
    assert result["book"]["var_95"] == 0 and result["var_95_krw"] is None
    report = state.risk_report()
    assert _finite(result["coins"]) and _finite(result["book"]) and "NaN" not in orjson.dumps(report).decode()
    assert isinstance(report["coins"]["FLAT"]["var_95_long_pp"], float)  # numbers, not strings
    assert isinstance(report["book"]["var_95_parametric"], float)
    # Two samples only: no model for that coin (no NaN either).
    state.redis.flushdb()
    put_series(state, "NEW", [2.0, 2.1])
    assert refit(state, positions=[])["vols"] == {}


def test_refit_measures_the_premium_not_the_coin_price(state):
    from datetime import UTC, datetime

    from trading.state import PremiumRecord

    # The coin's price swings 1 % a second while its premium stays at 2.5 %: nothing to size against.
    for i in range(60):
        mid = D(140_000_000) * (D("1.01") if i % 2 else D("0.99"))
        state.sample_premium("BTC", T0 + i, D("2.5"), 3600, upbit_mid=mid)
    state.save_premium(PremiumRecord("BTC", D("2.5"), D(140_000_000), D(100_000), D(1365), None, None,
                                     datetime.fromtimestamp(T0 + 60, UTC)), 86400)
    result = refit(state, positions=[])
    assert result["vols"]["BTC"] == 0.05  # the floor: the premium did not move
    assert len(state.mid_history("BTC")) == 61


def test_evaluation_context_reads_the_coin_model_and_the_weighted_count(state):
    state.set_risk_model(None, {"BTC": 0.4, "ETH": 0.8, "XRP": 1.0}, {"BTC": 0.5, "ETH": 0.3, "XRP": 0.2})
    ctx = state.evaluation_context("ETH", "upbit")
    assert (ctx.volatility, ctx.weight, ctx.weighted_symbols) == (0.8, 0.3, 3)
    assert position_cap(ctx.volatility, ctx.weight, ctx.weighted_symbols) == D("337500")  # 3,000 / 0.008 x 0.9


def test_garch_is_used_once_there_are_enough_changes():
    values = random_walk(16, GARCH_MIN_OBSERVATIONS + 1, 0.01)
    model = premium_volatility(list(zip(T0 + np.arange(values.size * 1.0), values, strict=True)), 3600)
    assert model.method == "garch" and model.per_second == pytest.approx(0.01, rel=0.25)


# --- the engine ----------------------------------------------------------------------------------

JUMP = dict(upbit_bids=(("143000000", "0.02"), ("142900000", "1")), upbit_asks=(("143100000", "1"),),
            binance_bids=(("99000", "1"),), binance_asks=(("99010", "0.005"), ("99020", "1")))


@pytest.mark.django_db
def test_the_engine_sizes_by_the_premium_cap_and_a_zero_weight_blocks(state, market):
    from trading import engine
    from trading.models import Pair

    market("BTC", **JUMP)
    state.set_risk_model(None, {"BTC": 1.0, "ETH": 1.0}, {"BTC": 0.0, "ETH": 1.0})
    assert engine.evaluate_symbol("BTC", state=state) == "none"  # weight 0: no size
    assert not Pair.objects.exists()
    # 1 point an hour at an equal weight: 3,000 / 0.01 = 300,000 KRW, under the 1,000,000 KRW limit.
    state.set_risk_model(None, {"BTC": 1.0, "ETH": 1.0}, {"BTC": 0.5, "ETH": 0.5})
    assert engine.evaluate_symbol("BTC", state=state) == "executed"
    pair = Pair.objects.get()
    assert 0 < pair.quantity * pair.buy_price <= D("300000")
    assert pair.quantity == D("0.00216")  # 300,000 / (99,010 x 1,400) = 0.0021643, floored to 0.00001
