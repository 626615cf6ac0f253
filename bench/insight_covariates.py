"""A sixth round on CDNOW's expected orders: covariates BG/NBD ignores, and a correction that
learns how BG/NBD's error moves with the horizon; chosen inside the calibration period only.

Usage: .venv/bin/python bench/insight_covariates.py [--holdout] [--only covariates horizon]

  covariates  BG/NBD with each customer's purchase-rate scale set by time-invariant covariates
              (Fader and Hardie 2007, "Incorporating time-invariant covariates into the
              Pareto/NBD and BG/NBD models": alpha_i = alpha0 * exp(-g . z_i)), optionally also
              the drop-out (a_i = a0 * exp(d . z_i)). Covariates a shop has: the first order day's
              size (CDNOW's number of CDs: a shop's line quantities) and spend, and the mean of
              both over the customer's order days up to the cut. Judged at rolling origins
              inside the calibration period (horizon 90 days, and horizon = history as at
              1997-09-30) against BG/NBD: RMSE, aggregate error, AUC of "orders again".
  horizon     a Poisson correction of BG/NBD's expected orders learned on several inner cuts
              pooled, each scored over several horizons, with log(horizon) among its
              inputs (target order days, BG/NBD's forecast for that cut and horizon as offset),
              so that it can say how BG/NBD's error grows with the horizon and apply that at a
              horizon longer than any window it saw. Judged at the same origins, learning only
              from orders before each origin.
With --holdout, and only then, what the rule fixed below picks is scored once on the 39 weeks
after 1997-09-30, beside BG/NBD. The rule (fixed before measuring): a variant is chosen when
its mean RMSE is below BG/NBD's in both sets of origins and its mean |aggregate| is not worse.
Read the load average printed: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from scipy import optimize, special

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from insight_bench import CALIBRATION_END, HORIZON, cdnow_path  # noqa: E402
from insight_validation import START, aggregate, bgnbd, order_days, rmse  # noqa: E402

from trouw.domain.insight import InsightSettings, OrderFact  # noqa: E402
from trouw.domain.insight.btyd import BetaGeo  # noqa: E402
from trouw.domain.insight.forecast import _EPS, _finite, auc, features  # noqa: E402
from trouw.domain.insight.glm import OffsetGlm  # noqa: E402
from trouw.domain.insight.history import Histories, build_histories  # noqa: E402

Array = np.ndarray
SETTINGS = InsightSettings()


def load_cdnow_with_size() -> tuple[list[OrderFact], dict[str, int]]:
    """CDNOW's orders and each order's number of CDs (what the bench's loader drops)."""
    orders, size = [], {}
    with cdnow_path().open() as handle:
        next(handle)
        for number, row in enumerate(handle):
            customer, day, cds, value = row.split()
            at = datetime.strptime(day, "%Y%m%d").replace(hour=12, tzinfo=UTC)
            order_id = f"{customer}-{number}"
            orders.append(OrderFact(customer, order_id, at, float(value)))
            size[order_id] = int(cds)
    return orders, size


def covariates(
    orders: list[OrderFact], size: dict[str, int], h: Histories, as_of: datetime
) -> dict[str, Array]:
    """Per customer of `h`, from orders up to `as_of`: log of the first order day's CDs and
    spend, and of the mean CDs and spend per order day."""
    first_day = {c: f.date() for c, f in zip(h.customer_ids, h.first_order_at, strict=True)}
    first_cds: defaultdict[str, float] = defaultdict(float)
    first_spend: defaultdict[str, float] = defaultdict(float)
    cds: defaultdict[str, float] = defaultdict(float)
    spend: defaultdict[str, float] = defaultdict(float)
    for o in orders:
        if o.ordered_at > as_of:
            continue
        cds[o.customer_id] += size[o.order_id]
        spend[o.customer_id] += o.revenue
        if o.ordered_at.date() == first_day[o.customer_id]:
            first_cds[o.customer_id] += size[o.order_id]
            first_spend[o.customer_id] += o.revenue
    days = h.x + 1.0
    ids = h.customer_ids
    return {
        "first CDs": np.log1p([first_cds[c] for c in ids]),
        "first spend": np.log1p([first_spend[c] for c in ids]),
        "mean CDs": np.log1p(np.array([cds[c] for c in ids]) / days),
        "mean spend": np.log1p(np.array([spend[c] for c in ids]) / days),
    }


@dataclass(frozen=True)
class CovariateBetaGeo:
    """BG/NBD whose purchase-rate scale (and, with `dropout`, Beta's a) follow covariates."""

    r: float
    alpha0: float
    a0: float
    b: float
    g: Array  # on the purchase rate: alpha_i = alpha0 * exp(-g . z)
    d: Array  # on the drop-out: a_i = a0 * exp(d . z) (zeros without `dropout`)
    mean: Array
    scale: Array
    loglik: float

    @staticmethod
    def _split(theta: Array, k: int, dropout: bool) -> tuple[Array, Array, Array]:
        base = np.exp(theta[:4])
        g = theta[4 : 4 + k]
        d = theta[4 + k : 4 + 2 * k] if dropout else np.zeros(k)
        return base, g, d

    @classmethod
    def fit(cls, h: Histories, z: Array, *, dropout: bool = False) -> CovariateBetaGeo:
        mean, scale = z.mean(axis=0), z.std(axis=0)
        scale[scale == 0] = 1.0
        zs = (z - mean) / scale
        k = zs.shape[1]
        plain = BetaGeo.fit(h.x, h.t_x, h.T)
        start = np.concatenate(
            [np.log([plain.r, plain.alpha, plain.a, plain.b]), np.zeros(k * (2 if dropout else 1))]
        )
        n = float(len(h.x))

        def negative(theta: Array) -> float:
            (r, alpha0, a0, b), g, d = cls._split(theta, k, dropout)
            alpha = alpha0 * np.exp(-zs @ g)
            a = a0 * np.exp(zs @ d)
            with np.errstate(all="ignore"):
                # The published likelihood broadcasts over a per-customer alpha and a.
                ll = BetaGeo.log_likelihood((r, alpha, a, b), h.x, h.t_x, h.T)
            value = -float(np.sum(ll)) / n
            return value if np.isfinite(value) else 1e300

        result = optimize.minimize(negative, start, method="BFGS", options={"gtol": 1e-7})
        (r, alpha0, a0, b), g, d = cls._split(result.x, k, dropout)
        return cls(float(r), float(alpha0), float(a0), float(b), g, d, mean, scale, -result.fun * n)

    def _per_customer(self, z: Array) -> tuple[Array, Array]:
        zs = (z - self.mean) / self.scale
        return self.alpha0 * np.exp(-zs @ self.g), self.a0 * np.exp(zs @ self.d)

    def expected_orders(self, t: float, h: Histories, z: Array) -> Array:
        alpha, a = self._per_customer(z)
        return _expected(self.r, alpha, a, self.b, t, h.x, h.t_x, h.T)

    def p_order_within(self, t: float, h: Histories, z: Array) -> Array:
        alpha, a = self._per_customer(z)
        r, b, x = self.r, self.b, h.x
        with np.errstate(divide="ignore", over="ignore"):
            odds = np.where(
                x > 0,
                a / np.maximum(b + x - 1, 1e-300) * ((alpha + h.T) / (alpha + h.t_x)) ** (r + x),
                0.0,
            )
        none = ((alpha + h.T) / (alpha + h.T + t)) ** (r + x)
        return np.asarray((1.0 - none) / (1.0 + odds))


def _expected(
    r: float, alpha: Array, a: Array, b: float, t: float, x: Array, t_x: Array, T: Array
) -> Array:
    """Equation (10) of the BG/NBD paper with a per-customer alpha and a (BetaGeo's own steps
    off a == 1 for a single a only)."""
    a = np.where(np.abs(a - 1.0) > 1e-6, a, 1.0 + 1e-6)
    z = t / (alpha + T + t)
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
    head = (a + b + x - 1) / (a - 1)
    body = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
    with np.errstate(divide="ignore", over="ignore"):
        tail = np.where(
            x > 0, a / np.maximum(b + x - 1, 1e-300) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0
        )
    return _finite(np.asarray(head * body / (1.0 + tail)), 0.0)


COVARIATE_SETS = {
    "first CDs": ("first CDs",),
    "first spend": ("first spend",),
    "mean CDs": ("mean CDs",),
    "mean CDs + mean spend": ("mean CDs", "mean spend"),
    "all four": ("first CDs", "first spend", "mean CDs", "mean spend"),
}


def plans() -> dict[str, list[tuple[int, int]]]:
    return {
        "horizon 90": [(day, 90) for day in range(30, HORIZON - 90 + 1, 15)],
        "horizon = history": [
            (day, min(day, HORIZON - day)) for day in range(45, HORIZON // 2 + 1, 15)
        ]
        + [(HORIZON // 2, HORIZON // 2)],
    }


def covariate_variants(
    orders: list[OrderFact], size: dict[str, int], as_of: datetime, horizon: int
) -> tuple[dict[str, tuple[Array, Array]], dict[str, str]]:
    """Expected orders and P(order) of BG/NBD and of each covariate variant as of `as_of`, and
    per variant its likelihood-ratio statistic against BG/NBD and the coefficients."""
    h = build_histories(orders, [], as_of=as_of, settings=SETTINGS, habits=False)
    cov = covariates(orders, size, h, as_of)
    bg = BetaGeo.fit(h.x, h.t_x, h.T)
    plain_ll = float(
        np.sum(bg.log_likelihood(np.array([bg.r, bg.alpha, bg.a, bg.b]), h.x, h.t_x, h.T))
    )
    out = {"BG/NBD": bgnbd(h, horizon)}
    notes = {}
    for name, keys in COVARIATE_SETS.items():
        z = np.column_stack([cov[k] for k in keys])
        for dropout in (False, True):
            label = f"{name}{' (+drop-out)' if dropout else ''}"
            m = CovariateBetaGeo.fit(h, z, dropout=dropout)
            out[label] = (
                m.expected_orders(float(horizon), h, z),
                _finite(m.p_order_within(float(horizon), h, z), 0.0),
            )
            notes[label] = f"LR {2 * (m.loglik - plain_ll):.1f} g {np.round(m.g, 3).tolist()}" + (
                f" d {np.round(m.d, 3).tolist()}" if dropout else ""
            )
    return out, notes


# The horizon-aware correction: inner cuts at these shares of the history before the origin,
# each scored over these shares of what follows it.
CUT_SHARES = (0.5, 0.6, 0.7, 0.8)
HORIZON_SHARES = (0.25, 0.5, 0.75, 1.0)
L2 = 10.0


def horizon_features(h: Histories, model: BetaGeo, horizon: float) -> Array:
    """The product's horizon-free features, plus the log of the horizon: one term, so that
    its extrapolation beyond the longest window learned is a straight line in log days (a
    ratio to each customer's age ran to a factor of 10^15 at young cuts)."""
    z = features(h, model)
    return np.column_stack([z, np.full(len(h.x), np.log(horizon))])


def horizon_correction(
    orders: list[OrderFact], as_of: datetime, horizon: int
) -> tuple[Array, Array] | None:
    """BG/NBD today with a correction learned on pooled inner cuts and horizons before
    `as_of`; None when the history is too short for a cut."""
    h = build_histories(orders, [], as_of=as_of, settings=SETTINGS, habits=False)
    span = (as_of - min(h.first_order_at)).days
    x_at: dict[int, dict[str, float]] = {}
    rows_z, rows_y, rows_off = [], [], []
    for share in CUT_SHARES:
        cut_day = round(span * share)
        cut = min(h.first_order_at) + timedelta(days=cut_day)
        rest = (as_of - cut).days
        if rest < 7 or cut_day < 14:
            continue
        earlier = build_histories(orders, [], as_of=cut, settings=SETTINGS, habits=False)
        model = BetaGeo.fit(earlier.x, earlier.t_x, earlier.T)
        for hs in HORIZON_SHARES:
            t = max(round(rest * hs), 1)
            key = cut_day * 10_000 + t
            if key not in x_at:
                later = build_histories(
                    orders, [], as_of=cut + timedelta(days=t), settings=SETTINGS, habits=False
                )
                x_at[key] = dict(zip(later.customer_ids, later.x, strict=True))
            y = np.maximum(
                np.array(
                    [x_at[key][c] - x for c, x in zip(earlier.customer_ids, earlier.x, strict=True)]
                ),
                0.0,
            )
            base = _finite(model.expected_orders(float(t), earlier.x, earlier.t_x, earlier.T), 0.0)
            rows_z.append(horizon_features(earlier, model, float(t)))
            rows_y.append(y)
            rows_off.append(np.log(base + _EPS))
    if not rows_z:
        return None
    glm = OffsetGlm.fit(
        "poisson", np.vstack(rows_z), np.concatenate(rows_y), np.concatenate(rows_off), l2=L2
    )
    model = BetaGeo.fit(h.x, h.t_x, h.T)
    base = _finite(model.expected_orders(float(horizon), h.x, h.t_x, h.T), 0.0)
    # Today's customers are older than any the cuts saw: each horizon-free feature is held to
    # the range it was learned on (without it the forecast reached 10^15 at day 45), so only
    # the horizon's own term extrapolates.
    learned = np.vstack(rows_z)
    today = horizon_features(h, model, float(horizon))
    today[:, :-1] = np.clip(today[:, :-1], learned[:, :-1].min(axis=0), learned[:, :-1].max(axis=0))
    corrected = _finite(glm.predict(today, np.log(base + _EPS)), base)
    return corrected, corrected


def answers_at(
    orders: list[OrderFact], size: dict[str, int], which: str, as_of: datetime, horizon: int
) -> tuple[dict[str, tuple[Array, Array]], dict[str, str]]:
    """Expected orders and a ranking for "orders again" per way, as of `as_of` over `horizon`
    days, from orders up to `as_of` only. The horizon-aware correction ranks by its counts."""
    if which == "covariates":
        return covariate_variants(orders, size, as_of, horizon)
    h = build_histories(orders, [], as_of=as_of, settings=SETTINGS, habits=False)
    plain = bgnbd(h, horizon)
    return {
        "BG/NBD": plain,
        "horizon-aware correction": horizon_correction(orders, as_of, horizon) or plain,
    }, {}


def judge(table: dict[str, list[tuple[float, float, float]]]) -> dict[str, tuple[float, float]]:
    reference = np.array(table["BG/NBD"])
    out = {}
    print(
        f"  {'':<34} {'mean RMSE':>9} {'mean |aggr.|':>12} {'mean AUC':>9} {'RMSE below BG/NBD':>18}"
    )
    for name, scored in table.items():
        values = np.array(scored)
        wins = int(np.sum(values[:, 0] < reference[:, 0] - 1e-9))
        out[name] = (float(values[:, 0].mean()), float(np.abs(values[:, 1]).mean()))
        print(
            f"  {name:<34} {values[:, 0].mean():>9.4f} {np.abs(values[:, 1]).mean():>12.1%}"
            f" {values[:, 2].mean():>9.4f} {wins:>14}/{len(values)}"
        )
    return out


def run(
    orders: list[OrderFact], size: dict[str, int], which: str
) -> dict[str, dict[str, tuple[float, float]]]:
    calibration = [o for o in orders if o.ordered_at <= CALIBRATION_END]
    summary = {}
    for title, plan in plans().items():
        print(f"\n{which}: rolling origins, {title} (RMSE, aggregate, AUC)", flush=True)
        table: dict[str, list[tuple[float, float, float]]] = {}
        for day, horizon in plan:
            as_of = START + timedelta(days=day)
            h = build_histories(calibration, [], as_of=as_of, settings=SETTINGS, habits=False)
            actual = order_days(calibration, h.customer_ids, as_of, as_of + timedelta(days=horizon))
            answers, notes = answers_at(calibration, size, which, as_of, horizon)
            cells = []
            for name, (e, p) in answers.items():
                row = (rmse(e, actual), aggregate(e, actual), auc(actual, p))
                table.setdefault(name, []).append(row)
                cells.append(f"{name}: {row[0]:.3f} {row[1]:+.0%} {row[2]:.3f}")
            print(f"  day {day:>3}, {horizon:>3} days: " + " | ".join(cells), flush=True)
            if notes:
                print("    " + "; ".join(f"{k}: {v}" for k, v in notes.items()), flush=True)
        summary[title] = judge(table)
    return summary


def chosen(summary: dict[str, dict[str, tuple[float, float]]]) -> list[str]:
    """Variants better than BG/NBD in mean RMSE in both sets, and not worse in |aggregate|."""
    names = next(iter(summary.values())).keys()
    return [
        name
        for name in names
        if name != "BG/NBD"
        and all(
            s[name][0] < s["BG/NBD"][0] and s[name][1] <= s["BG/NBD"][1] for s in summary.values()
        )
    ]


def holdout(orders: list[OrderFact], size: dict[str, int], which: str, picks: list[str]) -> None:
    calibration = [o for o in orders if o.ordered_at <= CALIBRATION_END]
    h = build_histories(calibration, [], as_of=CALIBRATION_END, settings=SETTINGS, habits=False)
    actual = order_days(
        orders, h.customer_ids, CALIBRATION_END, CALIBRATION_END + timedelta(days=HORIZON)
    )
    answers, notes = answers_at(calibration, size, which, CALIBRATION_END, HORIZON)
    print(
        f"\n{which} on the holdout (39 weeks after {CALIBRATION_END.date()}), scored once; "
        f"chosen inside the calibration: {picks or 'none'}"
    )
    for name, (e, p) in answers.items():
        mark = " (chosen)" if name in picks else ""
        print(
            f"  {name:<34} RMSE {rmse(e, actual):.4f}  aggregate {aggregate(e, actual):+.1%}"
            f"  AUC {auc(actual, p):.4f}{mark}  {notes.get(name, '')}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout", action="store_true")
    parser.add_argument("--only", choices=("covariates", "horizon"), nargs="*")
    parser.add_argument(
        "--skip-origins", action="store_true", help="the holdout alone (after a run)"
    )
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}", flush=True)
    orders, size = load_cdnow_with_size()
    if not args.holdout:
        orders = [o for o in orders if o.ordered_at <= CALIBRATION_END]
    for which in args.only or ("covariates", "horizon"):
        picks: list[str] = []
        if not args.skip_origins:
            picks = chosen(run(orders, size, which))
            print(f"\n{which}: chosen inside the calibration: {picks or 'none'}", flush=True)
        if args.holdout:
            holdout(orders, size, which, picks)
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
