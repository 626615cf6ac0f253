"""Customers drawn from the published generative stories, for tests with known parameters."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def simulate_beta_geo(
    n: int,
    *,
    r: float,
    alpha: float,
    a: float,
    b: float,
    T: Array,
    seed: int,
    until: Array | None = None,
) -> tuple[Array, Array, Array, Array]:
    """BG/NBD customers observed over (0, T]: (x, t_x, T, repeat purchases in (T, until])."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(r, 1.0 / alpha, size=n)
    drop = rng.beta(a, b, size=n)
    end = T if until is None else until
    x = np.zeros(n)
    t_x = np.zeros(n)
    later = np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1.0 / rate[i]) if rate[i] > 0 else np.inf
            if t > end[i]:
                break
            if t <= T[i]:
                x[i] += 1
                t_x[i] = t
            else:
                later[i] += 1
            if rng.random() < drop[i]:
                break
    return x, t_x, T.astype(np.float64), later


def simulate_gamma_gamma(x: Array, *, p: float, q: float, gamma: float, seed: int) -> Array:
    """Mean spend over each customer's x transactions (x >= 1)."""
    rng = np.random.default_rng(seed)
    nu = rng.gamma(q, 1.0 / gamma, size=len(x))
    return np.array([rng.gamma(p, 1.0 / nu[i], size=int(k)).mean() for i, k in enumerate(x)])
