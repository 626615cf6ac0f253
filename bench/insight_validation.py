"""Choosing the expected-orders model without the 39-week holdout: validations inside CDNOW's
calibration period only (orders up to 1997-09-30).

Usage: .venv/bin/python bench/insight_validation.py [--holdout]

The product learns a correction of BG/NBD's expected orders at an earlier cut of the shop's
own data (docs/insight.md, "Models"). These checks ask whether that, or a variant, should be
chosen, using nothing after 1997-09-30:
  cv        customer-grouped 5-fold cross-validation at the product's learning cut (one learning
            window, 136 days, before 1997-09-30): RMSE of the correction's counts over the
            window for customers it did not learn from. Variants: the product's Poisson fit;
            a least-squares fit (the loss RMSE scores); Poisson pooled over cuts 1, 2/3 and 1/3
            of the window before 1997-09-30 (customers at the later cuts are older, closer to
            today's ages, which the product's correction must extrapolate to).
  mirror    the product's whole procedure one learning window earlier: as of 1997-05-17,
            horizon 136 days, learning at half of that shop's history, as the product does.
  backtest  rolling origins every 15 days (day 30 to 180 of 1997), horizon 90 days (the
            product's default): the product's expected orders and P(order) against BG/NBD's,
            and recency alone for the ranking.
With --holdout, and only then, the cross-validation's choice is scored once on the 39 weeks
after 1997-09-30, beside the product (decided before looking: docs/decisions.md).
Read the load average printed: the machine is shared, the figures are not timings.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from scipy import optimize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from insight_bench import CALIBRATION_END, HORIZON, load_cdnow  # noqa: E402

from trouw.domain.insight import InsightSettings, OrderFact, score_customers  # noqa: E402
from trouw.domain.insight.btyd import BetaGeo  # noqa: E402
from trouw.domain.insight.forecast import _EPS, _finite, auc, features, fit_beta_geo  # noqa: E402
from trouw.domain.insight.glm import OffsetGlm  # noqa: E402
from trouw.domain.insight.history import Histories, build_histories  # noqa: E402
from trouw.domain.insight.scoring import _earlier_cut  # noqa: E402

Array = np.ndarray
SETTINGS = InsightSettings()
START = CALIBRATION_END - timedelta(days=HORIZON)  # 1997-01-01, the first order day
FOLDS = 5
L2 = 10.0  # the product's CORRECTION_L2


def order_days(orders: list[OrderFact], ids: list[str], after: datetime, until: datetime) -> Array:
    days: dict[str, set[object]] = {}
    for o in orders:
        if after < o.ordered_at <= until:
            days.setdefault(o.customer_id, set()).add(o.ordered_at.date())
    return np.array([len(days.get(c, ())) for c in ids], dtype=float)


def rmse(expected: Array, actual: Array) -> float:
    return float(np.sqrt(np.mean((expected - actual) ** 2)))


def aggregate(expected: Array, actual: Array) -> float:
    return float(expected.sum() / actual.sum() - 1)


def least_squares(z: Array, y: Array, offset: Array, start: OffsetGlm) -> OffsetGlm:
    """The same log-link correction, fitted by squared error (started from the Poisson fit)."""
    mean, scale = start.mean, start.scale
    design = np.column_stack([np.ones(len(y)), (z - mean) / scale])
    n = float(len(y))

    def objective(coef: Array) -> tuple[float, Array]:
        mu = np.exp(np.minimum(offset + design @ coef, 50.0))
        ridge = coef.copy()
        ridge[0] = 0.0
        loss = 0.5 * float((mu - y) @ (mu - y)) / n + L2 / n * float(ridge @ ridge)
        return loss, design.T @ ((mu - y) * mu) / n + 2 * L2 / n * ridge

    result = optimize.minimize(objective, start.coef, jac=True, method="BFGS")
    return OffsetGlm("poisson", mean, scale, np.asarray(result.x))


class Cut:
    """The shop `days` before as_of, BG/NBD fitted then, and what its customers did since."""

    def __init__(self, orders: list[OrderFact], now: Histories, as_of: datetime, days: int):
        earlier = build_histories(
            orders, [], as_of=as_of - timedelta(days=days), settings=SETTINGS, habits=False
        )
        model, _ = fit_beta_geo(earlier)
        x_now = dict(zip(now.customer_ids, now.x, strict=True))
        self.ids = earlier.customer_ids
        self.z = features(earlier, model)
        self.y = np.maximum(
            np.array([x_now[c] - x for c, x in zip(earlier.customer_ids, earlier.x, strict=True)]),
            0.0,
        )
        base = model.expected_orders(float(days), earlier.x, earlier.t_x, earlier.T)
        self.offset = np.log(_finite(base, 0.0) + _EPS)


Fit = Callable[[Array, Array, Array], OffsetGlm]


def poisson(z: Array, y: Array, offset: Array) -> OffsetGlm:
    return OffsetGlm.fit("poisson", z, y, offset, l2=L2)


def squares(z: Array, y: Array, offset: Array) -> OffsetGlm:
    return least_squares(z, y, offset, poisson(z, y, offset))


def cross_validation(orders: list[OrderFact]) -> str:
    now = build_histories(orders, [], as_of=CALIBRATION_END, settings=SETTINGS, habits=False)
    _, _, window = _earlier_cut(
        orders, now, as_of=CALIBRATION_END, horizon_days=HORIZON, settings=SETTINGS
    )
    pooled_days = (window, round(window * 2 / 3), round(window / 3))
    cuts = {d: Cut(orders, now, CALIBRATION_END, d) for d in pooled_days}
    fold = dict(
        zip(now.customer_ids, np.random.default_rng(7).integers(0, FOLDS, len(now.x)), strict=True)
    )
    scored = cuts[window]
    scored_fold = np.array([fold[c] for c in scored.ids])
    print(f"\ncv: customer-grouped {FOLDS}-fold at the learning cut ({window} days before)")
    base = np.exp(scored.offset)
    print(f"  {'BG/NBD, no correction':<34} RMSE {rmse(base, scored.y):.4f}")
    variants: dict[str, tuple[Fit, tuple[int, ...]]] = {
        "poisson (the product)": (poisson, (window,)),
        "least squares": (squares, (window,)),
        f"poisson pooled over cuts {pooled_days}": (poisson, pooled_days),
    }
    best, best_rmse = "", np.inf
    for name, (fit, days) in variants.items():
        predicted = np.zeros(len(scored.y))
        for k in range(FOLDS):
            parts = [(cuts[d], np.array([fold[c] != k for c in cuts[d].ids])) for d in days]
            glm = fit(
                np.vstack([c.z[m] for c, m in parts]),
                np.concatenate([c.y[m] for c, m in parts]),
                np.concatenate([c.offset[m] for c, m in parts]),
            )
            held = scored_fold == k
            predicted[held] = glm.predict(scored.z[held], scored.offset[held])
        error = rmse(predicted, scored.y)
        print(f"  {name:<34} RMSE {error:.4f}  aggregate {aggregate(predicted, scored.y):+.1%}")
        if error < best_rmse:
            best, best_rmse = name, error
    print(f"  chosen: {best}")
    return best


def product_counts(orders: list[OrderFact], as_of: datetime, horizon: int) -> tuple[Array, Array]:
    scored = score_customers(orders, [], as_of=as_of, horizon_days=horizon)
    return (
        np.array([c.expected_orders for c in scored]),
        np.array([c.p_order for c in scored]),
    )


def bgnbd(h: Histories, horizon: int) -> tuple[Array, Array]:
    model: BetaGeo = fit_beta_geo(h)[0]
    expected = _finite(model.expected_orders(float(horizon), h.x, h.t_x, h.T), 0.0)
    return expected, _finite(model.p_order_within(float(horizon), h.x, h.t_x, h.T), 0.0)


def mirror(orders: list[OrderFact]) -> None:
    window = HORIZON // 2  # the product's learning window at 1997-09-30
    as_of = CALIBRATION_END - timedelta(days=window)
    h = build_histories(orders, [], as_of=as_of, settings=SETTINGS, habits=False)
    actual = order_days(orders, h.customer_ids, as_of, CALIBRATION_END)
    print(f"\nmirror: as of {as_of.date()}, horizon {window} days (the procedure, one window back)")
    for name, (expected, p) in {
        "BG/NBD": bgnbd(h, window),
        "the product": product_counts(orders, as_of, window),
    }.items():
        print(
            f"  {name:<12} RMSE {rmse(expected, actual):.4f}  "
            f"aggregate {aggregate(expected, actual):+.1%}  AUC {auc(actual, p):.4f}"
        )


def backtest(orders: list[OrderFact]) -> None:
    horizon = 90
    print(f"\nbacktest: rolling origins, horizon {horizon} days")
    print(
        f"  {'day':>4} {'RMSE BG/NBD':>12} {'product':>8} {'aggr. BG/NBD':>13} {'product':>8}"
        f" {'AUC BG/NBD':>11} {'product':>8} {'recency':>8}"
    )
    rows = []
    for day in range(30, HORIZON - horizon + 1, 15):
        as_of = START + timedelta(days=day)
        h = build_histories(orders, [], as_of=as_of, settings=SETTINGS, habits=False)
        actual = order_days(orders, h.customer_ids, as_of, as_of + timedelta(days=horizon))
        bg_e, bg_p = bgnbd(h, horizon)
        tr_e, tr_p = product_counts(orders, as_of, horizon)
        row = (
            rmse(bg_e, actual),
            rmse(tr_e, actual),
            aggregate(bg_e, actual),
            aggregate(tr_e, actual),
            auc(actual, bg_p),
            auc(actual, tr_p),
            auc(actual, -h.recency_days),
        )
        rows.append(row)
        print(
            f"  {day:>4} {row[0]:>12.3f} {row[1]:>8.3f} {row[2]:>+13.1%} {row[3]:>+8.1%}"
            f" {row[4]:>11.4f} {row[5]:>8.4f} {row[6]:>8.4f}",
            flush=True,
        )
    table = np.array(rows)
    print(
        f"  mean RMSE BG/NBD {table[:, 0].mean():.4f}, product {table[:, 1].mean():.4f}; "
        f"product's RMSE lower at {int(np.sum(table[:, 1] < table[:, 0]))}/{len(rows)} origins, "
        f"its AUC higher at {int(np.sum(table[:, 5] > table[:, 4]))}/{len(rows)}"
    )


def holdout(orders: list[OrderFact], chosen: str) -> None:
    """The cross-validation's choice, scored once on the 39 weeks after the calibration."""
    now = build_histories(orders, [], as_of=CALIBRATION_END, settings=SETTINGS, habits=False)
    _, _, window = _earlier_cut(
        orders, now, as_of=CALIBRATION_END, horizon_days=HORIZON, settings=SETTINGS
    )
    days = {
        "poisson (the product)": (window,),
        "least squares": (window,),
    }.get(chosen, (window, round(window * 2 / 3), round(window / 3)))
    fit: Fit = squares if chosen == "least squares" else poisson
    cuts = [Cut(orders, now, CALIBRATION_END, d) for d in days]
    glm = fit(
        np.vstack([c.z for c in cuts]),
        np.concatenate([c.y for c in cuts]),
        np.concatenate([c.offset for c in cuts]),
    )
    model = fit_beta_geo(now)[0]
    base = _finite(model.expected_orders(float(HORIZON), now.x, now.t_x, now.T), 0.0)
    expected = _finite(glm.predict(features(now, model), np.log(base + _EPS)), base)
    product, _ = product_counts(orders, CALIBRATION_END, HORIZON)
    end = CALIBRATION_END + timedelta(days=HORIZON)
    actual = order_days(orders, now.customer_ids, CALIBRATION_END, end)
    print(f"\nholdout (39 weeks after {CALIBRATION_END.date()}), scored once:")
    for name, values in {f"chosen: {chosen}": expected, "the product": product}.items():
        print(
            f"  {name:<48} RMSE {rmse(values, actual):.4f}  "
            f"aggregate {aggregate(values, actual):+.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout", action="store_true", help="score the choice on the holdout")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}")
    orders = [o for o in load_cdnow() if o.ordered_at <= CALIBRATION_END or args.holdout]
    chosen = cross_validation(orders)
    mirror(orders)
    backtest(orders)
    if args.holdout:
        holdout(orders, chosen)
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
