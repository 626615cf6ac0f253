"""Buy-till-you-die models as published, fitted by maximum likelihood with numpy and scipy.

BG/NBD: Fader, Hardie and Lee (2005), "Counting your customers the easy way", Marketing Science
24(2); Pareto/NBD: Schmittlein, Morrison and Colombo (1987), likelihood as in Fader and Hardie's
note "A note on deriving the Pareto/NBD model and related expressions" (2005); Gamma-Gamma:
Fader, Hardie and Lee (2005), "RFM and CLV: using iso-value curves", JMR 42(4), and Fader and
Hardie's note "The Gamma-Gamma model of monetary value" (2013).

Every function takes arrays of the customer summary: `x` repeat purchases (days with an order
after the first), `t_x` the day of the last purchase and `T` the age of the customer, both in
days since the first purchase. Customers are grouped by identical (x, t_x, T) before fitting,
so fitting 100,000 customers costs what their distinct histories cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

Array = NDArray[np.float64]


class FitError(Exception):
    """The likelihood could not be maximised to finite parameters (too little or degenerate data)."""


def _compress(*columns: Array) -> tuple[tuple[Array, ...], Array]:
    """Distinct rows of the columns and how often each occurs."""
    stacked = np.column_stack(columns)
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return tuple(unique[:, i] for i in range(unique.shape[1])), counts.astype(np.float64)


def _maximise(
    negative_ll: object, start: Array, *, penalty: float, prior: Array | None = None
) -> Array:
    """Minimise a negative log likelihood over log-parameters; raise FitError when it fails."""
    centre = np.zeros_like(start) if prior is None else prior

    def objective(log_params: Array) -> float:
        # Trial points far out give inf or NaN; they are refused below, not worth a warning.
        with np.errstate(all="ignore"):
            value = float(negative_ll(np.exp(log_params)))  # type: ignore[operator]
        if not np.isfinite(value):
            return 1e300
        return value + penalty * float(np.sum((log_params - centre) ** 2))

    best: optimize.OptimizeResult | None = None
    for method in ("BFGS", "Nelder-Mead"):
        result = optimize.minimize(
            objective,
            start,
            method=method,
            options={"maxiter": 2000, "gtol": 1e-8}
            if method == "BFGS"
            else {"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-9},
        )
        if best is None or result.fun < best.fun:
            best = result
        # BFGS status 2 is "precision loss" at the optimum of a flat likelihood: a maximum too.
        if (result.success or (method == "BFGS" and result.status == 2)) and result.fun < 1e299:
            break
    assert best is not None
    params: Array = np.exp(np.asarray(best.x, dtype=np.float64))
    if not (np.all(np.isfinite(params)) and np.isfinite(best.fun) and best.fun < 1e299):
        raise FitError("the likelihood has no finite maximum for these customers")
    return params


@dataclass(frozen=True)
class BetaGeo:
    """BG/NBD parameters: purchase rates ~ Gamma(r, alpha), drop-out after a purchase ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    @staticmethod
    def log_likelihood(params: Array, x: Array, t_x: Array, T: Array) -> Array:
        r, alpha, a, b = params
        a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
        a2 = (
            special.gammaln(a + b)
            + special.gammaln(b + x)
            - special.gammaln(b)
            - special.gammaln(a + b + x)
        )
        a3 = -(r + x) * np.log(alpha + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            a4 = np.where(
                x > 0,
                np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x),
                -np.inf,
            )
        return np.asarray(a1 + a2 + np.logaddexp(a3, a4), dtype=np.float64)

    @classmethod
    def fit(
        cls, x: Array, t_x: Array, T: Array, *, penalty: float = 0.0, prior: Array | None = None
    ) -> BetaGeo:
        """Maximum likelihood; with `penalty` > 0, a ridge on log-parameters toward `prior`."""
        (ux, ut, uT), weight = _compress(x, t_x, T)
        total = float(weight.sum())

        def negative_ll(params: Array) -> float:
            return -float(np.sum(weight * cls.log_likelihood(params, ux, ut, uT))) / total

        scale = max(float(np.mean(T)), 1.0)
        start = np.log(np.array([0.5, scale, 1.0, 2.0])) if prior is None else prior
        fitted = _maximise(negative_ll, start, penalty=penalty, prior=prior)
        return cls(*(float(v) for v in fitted))

    def p_alive(self, x: Array, t_x: Array, T: Array) -> Array:
        """P(still active at T | history); 1 for customers without a repeat purchase (BG/NBD)."""
        with np.errstate(divide="ignore", over="ignore"):
            log_ratio = (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
            odds = np.where(
                x > 0, self.a / np.maximum(self.b + x - 1, 1e-300) * np.exp(log_ratio), 0.0
            )
        return np.asarray(1.0 / (1.0 + odds), dtype=np.float64)

    def p_order_within(self, t: float | Array, x: Array, t_x: Array, T: Array) -> Array:
        """P(at least one order in (T, T + t] | history).

        Drop-out happens only right after a purchase, so an active customer with no purchase
        in the window is still active: P = p_alive * (1 - ((alpha + T) / (alpha + T + t))^(r + x)).
        """
        none = np.exp((self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + T + t)))
        return np.asarray(self.p_alive(x, t_x, T) * (1.0 - none), dtype=np.float64)

    def expected_orders(self, t: float | Array, x: Array, t_x: Array, T: Array) -> Array:
        """E[orders in (T, T + t] | history], equation (10) of the BG/NBD paper."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        # The formula is continuous in a, but divides by a - 1: step off the removable point.
        a = a if abs(a - 1.0) > 1e-6 else 1.0 + 1e-6
        z = t / (alpha + T + t)
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
        head = (a + b + x - 1) / (a - 1)
        body = 1.0 - np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t))) * hyp
        with np.errstate(divide="ignore", over="ignore"):
            tail = np.where(
                x > 0,
                a
                / np.maximum(b + x - 1, 1e-300)
                * np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + t_x))),
                0.0,
            )
        return np.asarray(head * body / (1.0 + tail), dtype=np.float64)


@dataclass(frozen=True)
class GammaGamma:
    """Gamma-Gamma: spend per order ~ Gamma(p, nu), nu ~ Gamma(q, gamma), independent of counts."""

    p: float
    q: float
    gamma: float

    @staticmethod
    def log_likelihood(params: Array, x: Array, m: Array) -> Array:
        p, q, g = params
        return np.asarray(
            special.gammaln(p * x + q)
            - special.gammaln(p * x)
            - special.gammaln(q)
            + q * np.log(g)
            + (p * x - 1) * np.log(m)
            + p * x * np.log(x)
            - (p * x + q) * np.log(x * m + g),
            dtype=np.float64,
        )

    @classmethod
    def fit(cls, x: Array, m: Array, *, penalty: float = 0.0) -> GammaGamma:
        """Fit on customers with x >= 1 orders of mean value m > 0 (others are ignored)."""
        keep = (x >= 1) & (m > 0)
        if int(keep.sum()) < 2:
            raise FitError("the Gamma-Gamma model needs spend of at least two customers")
        (ux, um), weight = _compress(x[keep], m[keep])
        total = float(weight.sum())

        def negative_ll(params: Array) -> float:
            return -float(np.sum(weight * cls.log_likelihood(params, ux, um))) / total

        start = np.log(np.array([2.0, 3.0, float(np.mean(m[keep]))]))
        fitted = cls(*(float(v) for v in _maximise(negative_ll, start, penalty=penalty)))
        if fitted.q <= 1.0:
            raise FitError("the Gamma-Gamma fit has no finite mean spend (q <= 1)")
        return fitted

    def population_mean(self) -> float:
        return self.p * self.gamma / (self.q - 1.0)

    def expected_spend(self, x: Array, m: Array) -> Array:
        """E[spend per order | x orders of mean m]; the population mean when x is 0."""
        weight = (self.q - 1.0) / (self.p * x + self.q - 1.0)
        return np.asarray(
            weight * self.population_mean() + (1.0 - weight) * np.where(x > 0, m, 0.0),
            dtype=np.float64,
        )


@dataclass(frozen=True)
class ParetoNBD:
    """Pareto/NBD: purchase rates ~ Gamma(r, alpha), exponential lifetimes with rates ~ Gamma(s, beta)."""

    r: float
    alpha: float
    s: float
    beta: float

    @staticmethod
    def _log_a0(params: Array, x: Array, t_x: Array, T: Array) -> Array:
        r, alpha, s, beta = params
        # The hypergeometric series converges for the larger of alpha and beta in the denominator.
        if alpha >= beta:
            high, low, second = alpha, beta, s + 1.0
        else:
            high, low, second = beta, alpha, r + x
        rsx = r + s + x
        gap = high - low
        with np.errstate(divide="ignore", invalid="ignore"):
            one = np.log(special.hyp2f1(rsx, second, rsx + 1.0, gap / (high + t_x))) - rsx * np.log(
                high + t_x
            )
            two = np.log(special.hyp2f1(rsx, second, rsx + 1.0, gap / (high + T))) - rsx * np.log(
                high + T
            )
            out = special.logsumexp([one, two], axis=0, b=[np.ones_like(x), -np.ones_like(x)])
        return np.asarray(out, dtype=np.float64)

    @classmethod
    def log_likelihood(cls, params: Array, x: Array, t_x: Array, T: Array) -> Array:
        r, alpha, s, beta = params
        head = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        gone = np.log(s) + cls._log_a0(params, x, t_x, T) - np.log(r + s + x)
        # T == t_x makes A0 zero (log -inf): the customer is then surely alive, as it should be.
        return np.asarray(head + np.logaddexp(alive, gone), dtype=np.float64)

    @classmethod
    def fit(cls, x: Array, t_x: Array, T: Array, *, penalty: float = 0.0) -> ParetoNBD:
        (ux, ut, uT), weight = _compress(x, t_x, T)
        total = float(weight.sum())

        def negative_ll(params: Array) -> float:
            return -float(np.sum(weight * cls.log_likelihood(params, ux, ut, uT))) / total

        scale = max(float(np.mean(T)), 1.0)
        start = np.log(np.array([0.5, scale, 0.5, scale]))
        return cls(*(float(v) for v in _maximise(negative_ll, start, penalty=penalty)))

    def _log_alive_numerator(self, x: Array, T: Array) -> Array:
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        return np.asarray(
            special.gammaln(r + x)
            - special.gammaln(r)
            + r * np.log(alpha)
            + s * np.log(beta)
            - (r + x) * np.log(alpha + T)
            - s * np.log(beta + T),
            dtype=np.float64,
        )

    def p_alive(self, x: Array, t_x: Array, T: Array) -> Array:
        params = np.array([self.r, self.alpha, self.s, self.beta])
        log_l = self.log_likelihood(params, x, t_x, T)
        return np.asarray(
            np.exp(np.minimum(self._log_alive_numerator(x, T) - log_l, 0.0)), dtype=np.float64
        )

    def expected_orders(self, t: float | Array, x: Array, t_x: Array, T: Array) -> Array:
        """E[orders in (T, T + t] | history] (Schmittlein, Morrison and Colombo 1987)."""
        s = self.s if abs(self.s - 1.0) > 1e-6 else 1.0 + 1e-6
        rate = (self.r + x) * (self.beta + T) / (self.alpha + T)
        lifetime = (1.0 - ((self.beta + T) / (self.beta + T + t)) ** (s - 1.0)) / (s - 1.0)
        return np.asarray(self.p_alive(x, t_x, T) * rate * lifetime, dtype=np.float64)
