"""The offset regressions recover known coefficients, and learned corrections stay sane."""

from __future__ import annotations

import numpy as np
import pytest

from trouw.domain.insight.glm import OffsetGlm


@pytest.mark.parametrize("family", ["poisson", "logistic"])
def test_offset_glm_recovers_the_coefficients_it_was_simulated_with(family: str) -> None:
    rng = np.random.default_rng(5)
    features = rng.normal(size=(20000, 3))
    offset = rng.normal(scale=0.5, size=20000)
    true = np.array([0.3, 0.8, -0.5, 0.0])
    eta = offset + true[0] + features @ true[1:]
    if family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = (rng.random(20000) < 1 / (1 + np.exp(-eta))).astype(float)
    fitted = OffsetGlm.fit(family, features, y, offset, l2=0.0)  # type: ignore[arg-type]
    # Back from standardised features to the raw scale.
    slopes = fitted.coef[1:] / fitted.scale
    intercept = fitted.coef[0] - float(np.sum(fitted.mean * slopes))
    np.testing.assert_allclose([intercept, *slopes], true, atol=0.06)
    predicted = fitted.predict(features, offset)
    assert np.all(np.isfinite(predicted))


def test_a_constant_feature_does_not_break_the_fit() -> None:
    features = np.column_stack([np.ones(50), np.arange(50.0)])
    y = (np.arange(50) > 25).astype(float)
    fitted = OffsetGlm.fit("logistic", features, y, np.zeros(50))
    p = fitted.predict(features, np.zeros(50))
    assert np.all((p >= 0) & (p <= 1)) and p[-1] > p[0]
