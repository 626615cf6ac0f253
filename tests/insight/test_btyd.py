"""The buy-till-you-die models recover known parameters and predict what the story generates."""

from __future__ import annotations

import numpy as np
import pytest

from tests.insight.simulate import simulate_beta_geo, simulate_gamma_gamma
from trouw.domain.insight.btyd import BetaGeo, GammaGamma, ParetoNBD

TRUE = {"r": 0.6, "alpha": 30.0, "a": 0.8, "b": 2.5}


@pytest.fixture(scope="module")
def customers() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(7)
    T = rng.uniform(200, 400, size=6000).round()
    return simulate_beta_geo(6000, **TRUE, T=T, seed=11, until=T + 180)


def test_bgnbd_recovers_the_parameters_it_was_simulated_with(
    customers: tuple[np.ndarray, ...],
) -> None:
    x, t_x, T, _ = customers
    fitted = BetaGeo.fit(x, t_x, T)
    assert fitted.r == pytest.approx(TRUE["r"], rel=0.2)
    assert fitted.alpha == pytest.approx(TRUE["alpha"], rel=0.25)
    assert fitted.a == pytest.approx(TRUE["a"], rel=0.35)
    assert fitted.b == pytest.approx(TRUE["b"], rel=0.4)
    # The fitted likelihood is at least the truth's: a maximum, not a point near it.
    ll = BetaGeo.log_likelihood
    truth = np.array(list(TRUE.values()))
    found = np.array([fitted.r, fitted.alpha, fitted.a, fitted.b])
    assert ll(found, x, t_x, T).sum() >= ll(truth, x, t_x, T).sum()


def test_bgnbd_forecasts_the_holdout_it_did_not_see(customers: tuple[np.ndarray, ...]) -> None:
    x, t_x, T, later = customers
    fitted = BetaGeo.fit(x, t_x, T)
    expected = fitted.expected_orders(180.0, x, t_x, T)
    assert expected.sum() == pytest.approx(later.sum(), rel=0.08)
    p_order = fitted.p_order_within(180.0, x, t_x, T)
    assert p_order.sum() == pytest.approx(np.count_nonzero(later), rel=0.08)
    assert np.all((p_order >= 0) & (p_order <= 1))


def test_bgnbd_equals_lifetimes_on_the_same_data(customers: tuple[np.ndarray, ...]) -> None:
    lifetimes = pytest.importorskip("lifetimes")
    x, t_x, T, _ = customers
    ours = BetaGeo.fit(x, t_x, T)
    theirs = lifetimes.BetaGeoFitter().fit(x, t_x, T)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(ours, name) == pytest.approx(theirs.params_[name], rel=2e-3)
    np.testing.assert_allclose(
        ours.expected_orders(90.0, x, t_x, T),
        theirs.conditional_expected_number_of_purchases_up_to_time(90.0, x, t_x, T),
        rtol=5e-3,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        ours.p_alive(x, t_x, T),
        theirs.conditional_probability_alive(x, t_x, T),
        rtol=5e-3,
        atol=1e-6,
    )


def test_gamma_gamma_recovers_its_parameters() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(1, 8, size=5000).astype(float)
    m = simulate_gamma_gamma(x, p=6.0, q=4.0, gamma=15.0, seed=5)
    fitted = GammaGamma.fit(x, m)
    assert fitted.p == pytest.approx(6.0, rel=0.2)
    assert fitted.q == pytest.approx(4.0, rel=0.25)
    assert fitted.gamma == pytest.approx(15.0, rel=0.35)
    spend = fitted.expected_spend(x, m)
    # Shrinkage: every estimate lies between the customer's own mean and the population mean.
    low = np.minimum(m, fitted.population_mean()) - 1e-9
    high = np.maximum(m, fitted.population_mean()) + 1e-9
    assert np.all((spend >= low) & (spend <= high))


def test_pareto_nbd_equals_lifetimes_on_the_same_data(customers: tuple[np.ndarray, ...]) -> None:
    lifetimes = pytest.importorskip("lifetimes")
    x, t_x, T, later = customers
    x, t_x, T = x[:2000], t_x[:2000], T[:2000]
    ours = ParetoNBD.fit(x, t_x, T)
    theirs = lifetimes.ParetoNBDFitter().fit(x, t_x, T)
    params = np.array([ours.r, ours.alpha, ours.s, ours.beta])
    ll = ParetoNBD.log_likelihood
    # Same maximum: our likelihood at their parameters is no higher than at ours.
    their_params = np.array([theirs.params_[k] for k in ("r", "alpha", "s", "beta")])
    assert ll(params, x, t_x, T).sum() >= ll(their_params, x, t_x, T).sum() - 1e-6
    np.testing.assert_allclose(
        ours.expected_orders(90.0, x, t_x, T),
        theirs.conditional_expected_number_of_purchases_up_to_time(90.0, x, t_x, T),
        rtol=2e-2,
        atol=1e-4,
    )
    np.testing.assert_allclose(
        ours.p_alive(x, t_x, T),
        theirs.conditional_probability_alive(x, t_x, T),
        rtol=2e-2,
        atol=1e-4,
    )
