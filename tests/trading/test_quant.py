"""Quant modules against independent computations: hand-worked numbers, arch's own fit, analytic results."""

import math
import time
from decimal import Decimal as D

import numpy as np
import pytest
from arch import arch_model

from trading.quant import PortfolioOptimizer, QuantitativeRiskManager, VolatilityPredictor
from trading.quant.portfolio import ledoit_wolf
from trading.quant.volatility import ewma_update, ewma_variance, garch_volatility


def test_ewma_matches_the_hand_worked_riskmetrics_recursion():
    # 0.0001 -> 0.94 x 0.0001 + 0.06 x 0.0004 = 0.000118 -> 0.94 x 0.000118 + 0.06 x 0.0009 = 0.00016492
    assert ewma_variance([0.01, -0.02, 0.03]) == pytest.approx(0.00016492, rel=1e-12)
    var = ewma_update(None, 100.0, 101.0)
    assert var == pytest.approx(math.log(1.01) ** 2)
    assert ewma_update(var, 101.0, 99.0) == pytest.approx(0.94 * var + 0.06 * math.log(99 / 101) ** 2)


def test_predict_batch_gives_ewma_vol_per_symbol_and_nan_without_history():
    prices = {"BTC": [100, 101, 99, 102], "NEW": [5]}
    vol = VolatilityPredictor().predict_batch(prices)
    r = [math.log(101 / 100), math.log(99 / 101), math.log(102 / 99)]
    expected = r[0] ** 2
    for x in r[1:]:
        expected = 0.94 * expected + 0.06 * x * x
    assert vol["BTC"] == pytest.approx(math.sqrt(expected))
    assert math.isnan(vol["NEW"])


def test_garch_forecast_equals_arch_fitted_directly():
    rng = np.random.default_rng(7)
    returns = rng.standard_normal(800) * 0.002
    vol, params = garch_volatility(returns)
    direct = arch_model(returns * 1000, mean="Zero", vol="GARCH", p=1, q=1, rescale=False).fit(disp="off")
    forecast = direct.forecast(horizon=1, reindex=False).variance.values[-1, 0]
    assert vol == pytest.approx(math.sqrt(forecast) / 1000, rel=1e-6)
    assert params["alpha[1]"] == pytest.approx(direct.params["alpha[1]"], rel=1e-6)


def test_position_size_targets_the_risk_budget():
    predictor = VolatilityPredictor(risk_budget=0.002)
    # A 1 % move on 200,000 KRW loses 2,000 KRW = 0.2 % of 1,000,000.
    assert predictor.calculate_position_size(0.01, D("1000000")) == D("200000")
    assert predictor.calculate_position_size(0.0001, D("1000000")) == D("1000000")  # never above the balance
    assert predictor.calculate_position_size(float("nan"), D("1000000")) == D("0")


def test_min_variance_weights_of_uncorrelated_assets_are_inverse_variance():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(20000) * 0.01, rng.standard_normal(20000) * 0.02
    opt = PortfolioOptimizer(max_history=20000, shrink=False)
    opt.add_returns_batch({"A": a, "B": b})
    w = opt.get_optimal_weights(["A", "B"])
    inv = np.array([1 / a.var(), 1 / b.var()])
    analytic = inv / inv.sum()  # 0.8 / 0.2 for sigmas 1 % and 2 %
    assert w["A"] == pytest.approx(analytic[0], abs=0.01)
    assert sum(w.values()) == pytest.approx(1.0)


def test_weights_match_the_closed_form_when_no_bound_binds():
    rng = np.random.default_rng(4)
    returns = rng.multivariate_normal([0, 0, 0], [[1, 0.3, 0.1], [0.3, 2, 0.2], [0.1, 0.2, 1.5]], size=5000) * 1e-3
    opt = PortfolioOptimizer(max_history=5000, shrink=False)
    opt.add_returns_batch({s: returns[:, i] for i, s in enumerate("XYZ")})
    w = opt.get_optimal_weights(list("XYZ"))
    cov = np.cov(returns, rowvar=False, bias=True)
    closed = np.linalg.solve(cov, np.ones(3))
    closed /= closed.sum()
    assert [w[s] for s in "XYZ"] == pytest.approx(list(closed), abs=1e-4)


def test_weights_are_long_only_and_stable_with_little_history():
    opt = PortfolioOptimizer(min_observations=20)
    opt.add_returns_batch({"OLD": np.linspace(-0.01, 0.01, 50), "NEW": [0.001]})
    w = opt.get_optimal_weights(["OLD", "NEW", "NONE"])
    assert all(v >= 0 for v in w.values()) and sum(w.values()) == pytest.approx(1.0)
    assert PortfolioOptimizer().get_optimal_weights(["A", "B"]) == {"A": 0.5, "B": 0.5}


def test_ledoit_wolf_shrinks_a_singular_sample_into_a_positive_definite_one():
    rng = np.random.default_rng(5)
    returns = rng.standard_normal((5, 10))  # fewer observations than assets
    cov, intensity = ledoit_wolf(returns)
    assert 0 < intensity <= 1
    assert np.all(np.linalg.eigvalsh(cov) > 0)


def test_risk_metrics_against_a_hand_worked_series():
    returns = [-0.05 + 0.005 * k for k in range(20)]
    m = QuantitativeRiskManager().calculate_risk_metrics(returns)
    # 5 % quantile, linear interpolation: -0.05 + 0.95 x 0.005 = -0.04525
    assert m["var_95"] == pytest.approx(0.04525)
    assert m["cvar_95"] == pytest.approx(0.05)  # only -0.05 lies beyond
    std = 0.005 * math.sqrt(20 * 21 / 12)  # sample std of an arithmetic sequence
    assert m["volatility"] == pytest.approx(std)
    assert m["var_95_parametric"] == pytest.approx(0.0025 + 1.6448536269514722 * std)
    # Ten losses in a row from the start, then gains: the trough is after the tenth.
    assert m["max_drawdown"] == pytest.approx(1 - math.prod(1 + r for r in returns[:10]))
    assert m["sharpe"] == pytest.approx(-0.0025 / std * math.sqrt(365 * 24 * 3600))


def test_breaker_rule_trips_when_loss_exceeds_balance_times_var():
    risk = QuantitativeRiskManager()
    assert risk.breaker_should_trip(D("50001"), D("1000000"), 0.05)
    assert not risk.breaker_should_trip(D("50000"), D("1000000"), 0.05)


def test_refit_stores_premium_vols_weights_and_no_budget_without_a_book(state):
    from datetime import UTC, datetime, timedelta

    from trading.quant.service import refit, sizing_cap
    from trading.state import PremiumRecord

    rng = np.random.default_rng(9)
    start = datetime.now(UTC) - timedelta(seconds=200)
    premiums = {"BTC": 2.0, "ETH": 1.5}
    for i in range(120):
        for symbol in premiums:
            premiums[symbol] += rng.standard_normal() * 0.01
            state.save_premium(PremiumRecord(symbol, D(f"{premiums[symbol]:.8f}"), D("140000000"), D("1"), D("1400"), None,
                                             None, start + timedelta(seconds=i)), 3600, sample_every=0.001)
        time.sleep(0.0015)  # sampling is throttled on wall time
    result = refit(state, positions=[])
    assert set(result["vols"]) == {"BTC", "ETH"}
    assert sum(result["weights"].values()) == pytest.approx(1.0)
    # The Upbit mid never moved: the volatility is the premium's (0.01 points a second, about 0.6 an hour).
    assert 0.2 < result["vols"]["BTC"] < 1.5
    assert result["var_95_krw"] is None and state.var_budget() is None  # nothing held, no equity samples
    model = state.risk_model()
    assert model["weighted"] == "2" and float(model["vol:BTC"]) == result["vols"]["BTC"]
    assert 0 < sizing_cap(state, "BTC") < D("10000000")
