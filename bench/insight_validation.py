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
  tracking  BG/NBD's and Pareto/NBD's expected repeat order days per month against the actual
            ones, in the calibration period (with --holdout also after it, as a diagnosis).
  alternatives  ways to reach the targets by the shop's own data, each judged at the same
            rolling origins (horizon 90 days, and horizon = history as at 1997-09-30): Pareto/NBD
            as a backtest candidate (chosen by RMSE, or by RMSE among those within +-10 %
            aggregate), BG/NBD and the learned model blended by inverse backtest MSE, a
            cross-fitted backtest of the learned model, and BG/NBD's bias trend over the held-back
            window extrapolated beyond it (always, or when a half-window backtest picks it).
With --holdout, and only then, the cross-validation's choice and every alternative are scored
once on the 39 weeks after 1997-09-30, beside the product (decided before looking:
docs/decisions.md). `--only` runs some of the checks.
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
from scipy import optimize, special

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from insight_bench import CALIBRATION_END, HORIZON, load_cdnow  # noqa: E402

from trouw.domain.insight import InsightSettings, OrderFact, score_customers  # noqa: E402
from trouw.domain.insight import forecast as product  # noqa: E402
from trouw.domain.insight.btyd import BetaGeo, ParetoNBD  # noqa: E402
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


def tracking(orders: list[OrderFact], with_holdout: bool) -> None:
    """Expected repeat order days per month (BG/NBD and Pareto/NBD fitted on the calibration
    period, unconditional on each customer's history) against the actual ones."""
    h = build_histories(
        [o for o in orders if o.ordered_at <= CALIBRATION_END],
        [],
        as_of=CALIBRATION_END,
        settings=SETTINGS,
        habits=False,
    )
    bg = BetaGeo.fit(h.x, h.t_x, h.T)
    pn = ParetoNBD.fit(h.x, h.t_x, h.T)

    def bg_curve(t: Array) -> Array:
        r, alpha, a, b = bg.r, bg.alpha, bg.a, bg.b
        head = (a + b - 1) / (a - 1)
        return np.asarray(
            head
            * (1 - (alpha / (alpha + t)) ** r * special.hyp2f1(r, b, a + b - 1, t / (alpha + t)))
        )

    def pn_curve(t: Array) -> Array:
        r, alpha, s, beta = pn.r, pn.alpha, pn.s, pn.beta
        return np.asarray(r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + t)) ** (s - 1)))

    first: dict[str, object] = {}
    for o in sorted(orders, key=lambda o: o.ordered_at):
        first.setdefault(o.customer_id, o.ordered_at.date())
    repeat: dict[str, int] = {}
    for customer, day in {(o.customer_id, o.ordered_at.date()) for o in orders}:
        if day != first[customer]:
            repeat[f"{day:%Y-%m}"] = repeat.get(f"{day:%Y-%m}", 0) + 1
    first_day = np.array([(f - START).total_seconds() / 86400 for f in h.first_order_at])
    end = HORIZON * 2 if with_holdout else HORIZON
    print(f"\ntracking: repeat order days per month, calibration fit (to {CALIBRATION_END.date()})")
    print(f"  {'month':<8} {'actual':>7} {'BG/NBD':>8} {'ratio':>6} {'Pareto':>8} {'ratio':>6}")
    # START is the last second of 1996: the first month is January 1997.
    month = (START + timedelta(seconds=1)).replace(day=1, hour=0, minute=0, second=0)
    while (month - START).days < end:
        following = (month + timedelta(days=32)).replace(day=1)
        low = np.clip((month - START).total_seconds() / 86400 - first_day, 0, None)
        high = np.clip(min((following - START).days, end) - first_day, 0, None)
        expected_bg = float((bg_curve(high) - bg_curve(low)).sum())
        expected_pn = float((pn_curve(high) - pn_curve(low)).sum())
        actual = repeat.get(f"{month:%Y-%m}", 0)
        mark = " (holdout)" if month > CALIBRATION_END else ""
        print(
            f"  {month:%Y-%m}  {actual:>7} {expected_bg:>8.0f} {actual / expected_bg:>6.2f}"
            f" {expected_pn:>8.0f} {actual / expected_pn:>6.2f}{mark}"
        )
        month = following


def trend(
    orders: list[OrderFact], model: BetaGeo, cohort: Histories, cut: datetime, span: float
) -> float:
    """Slope of log(actual / BG/NBD's expected order days) over log(days since the cut), at a
    quarter, a half, three quarters and all of `span` days: how BG/NBD's bias moves with the
    length of the forecast."""
    points = [span * k / 4 for k in (1, 2, 3, 4)]
    ratios = []
    for t in points:
        actual = order_days(orders, cohort.customer_ids, cut, cut + timedelta(days=t)).sum()
        expected = model.expected_orders(t, cohort.x, cohort.t_x, cohort.T).sum()
        ratios.append(np.log(max(actual, 0.5) / expected))
    return float(np.polyfit(np.log(points), ratios, 1)[0])


def cross_fitted_rmse(earlier: Histories, later: Array, window: int) -> tuple[float, float]:
    """BG/NBD's backtest RMSE and the learned correction's, learned on four fifths of the
    customers at the same cut and scored on the fifth it did not see."""
    model = BetaGeo.fit(earlier.x, earlier.t_x, earlier.T)
    z = features(earlier, model)
    base = _finite(model.expected_orders(float(window), earlier.x, earlier.t_x, earlier.T), 0.0)
    offset = np.log(base + _EPS)
    fold = np.random.default_rng(7).integers(0, FOLDS, len(later))
    predicted = np.zeros(len(later))
    for k in range(FOLDS):
        glm = poisson(z[fold != k], later[fold != k], offset[fold != k])
        predicted[fold == k] = glm.predict(z[fold == k], offset[fold == k])
    return rmse(base, later), rmse(predicted, later)


WITHIN = 0.10  # the aggregate target's tolerance, for the rule that looks at it


def alternatives_at(orders: list[OrderFact], as_of: datetime, horizon: int) -> dict[str, Array]:
    """Every alternative's expected orders as of `as_of` over `horizon` days, chosen by what
    the shop's orders up to `as_of` show (the product's cuts: docs/insight.md)."""
    h = build_histories(orders, [], as_of=as_of, settings=SETTINGS, habits=False)
    kept = [o for o in orders if o.ordered_at <= as_of]
    earlier, later, window = _earlier_cut(
        kept, h, as_of=as_of, horizon_days=horizon, settings=SETTINGS
    )
    assert earlier is not None and later is not None
    cut = as_of - timedelta(days=window)
    before, before_counts, before_window = _earlier_cut(
        kept, earlier, as_of=cut, horizon_days=window, settings=SETTINGS
    )
    fc = product.forecast(
        h,
        horizon_days=horizon,
        value_days=365,
        earlier=earlier,
        later_counts=later,
        window_days=window,
        before=before,
        before_counts=before_counts,
        before_window=before_window,
    )
    bg = BetaGeo.fit(h.x, h.t_x, h.T)
    learned = product._learned_at(bg, earlier, later, window)
    today = product._answers(h, product._Corrected(bg), learned, float(horizon)).counts
    today["pareto"] = ParetoNBD.fit(h.x, h.t_x, h.T).expected_orders(
        float(horizon), h.x, h.t_x, h.T
    )
    # The backtest: every candidate fitted at the cut, scored on the window after it.
    bg_cut = BetaGeo.fit(earlier.x, earlier.t_x, earlier.T)
    learned_cut = product._learned_at(bg_cut, before, before_counts, before_window)
    held = product._answers(earlier, product._Corrected(bg_cut), learned_cut, float(window)).counts
    held["pareto"] = ParetoNBD.fit(earlier.x, earlier.t_x, earlier.T).expected_orders(
        float(window), earlier.x, earlier.t_x, earlier.T
    )
    scores = {name: rmse(values, later) for name, values in held.items() if name in today}
    off = {name: abs(aggregate(values, later)) for name, values in held.items() if name in today}
    by_rmse = min(scores, key=lambda name: scores[name])
    near = [name for name in scores if off[name] <= WITHIN]
    by_both = min(near, key=lambda name: scores[name]) if near else by_rmse
    out = {
        "the product": fc.expected_orders,
        "BG/NBD": today["bgnbd"],
        "Pareto/NBD": today["pareto"],
        "+Pareto, RMSE": today[by_rmse],
        "+Pareto, RMSE within 10 %": today[by_both],
    }
    if "learned" in scores:
        inverse = {name: 1 / scores[name] ** 2 for name in ("bgnbd", "learned")}
        share = inverse["learned"] / sum(inverse.values())
        out["blend by 1/MSE"] = share * today["learned"] + (1 - share) * today["bgnbd"]
    else:
        out["blend by 1/MSE"] = today["bgnbd"]
    if "learned" in today and product._can_learn(earlier, later, window):
        plain, crossed = cross_fitted_rmse(earlier, later, window)
        out["cross-fitted backtest"] = today["learned"] if crossed < plain else today["bgnbd"]
    else:
        out["cross-fitted backtest"] = today["bgnbd"]
    slope = trend(kept, bg_cut, earlier, cut, float(window))
    beyond = max(np.log(horizon / window), 0.0)
    out["drift beyond the window"] = today["bgnbd"] * np.exp(slope * beyond)
    half = trend(kept, bg_cut, earlier, cut, window / 2)
    base = held["bgnbd"]
    picked = rmse(base * np.exp(half * np.log(2.0)), later) < rmse(base, later)
    out["drift if its backtest picks it"] = (
        out["drift beyond the window"] if picked else today["bgnbd"]
    )
    return out


def alternatives(orders: list[OrderFact], with_holdout: bool, plans: list[str]) -> None:
    calibration = [o for o in orders if o.ordered_at <= CALIBRATION_END]
    every = {
        "90": (
            "rolling origins, horizon 90 days",
            [(day, 90) for day in range(30, HORIZON - 90 + 1, 15)],
        ),
        "history": (
            "rolling origins, horizon = history",
            [(day, min(day, HORIZON - day)) for day in range(45, HORIZON // 2 + 1, 15)]
            + [(HORIZON // 2, HORIZON // 2)],
        ),
    }
    for title, plan in (every[name] for name in plans):
        print(f"\nalternatives: {title} (RMSE, aggregate)")
        table: dict[str, list[tuple[float, float]]] = {}
        for day, horizon in plan:
            as_of = START + timedelta(days=day)
            h = build_histories(calibration, [], as_of=as_of, settings=SETTINGS, habits=False)
            actual = order_days(calibration, h.customer_ids, as_of, as_of + timedelta(days=horizon))
            row = alternatives_at(calibration, as_of, horizon)
            cells = []
            for name, values in row.items():
                table.setdefault(name, []).append((rmse(values, actual), aggregate(values, actual)))
                cells.append(f"{rmse(values, actual):.3f} {aggregate(values, actual):+.0%}")
            print(f"  day {day:>3}, {horizon:>3} days: " + " | ".join(cells), flush=True)
        reference = np.array(table["the product"])
        print(f"  {'':<32} {'mean RMSE':>9} {'mean |aggr.|':>12} {'RMSE below the product':>23}")
        for name, scored in table.items():
            values = np.array(scored)
            wins = int(np.sum(values[:, 0] < reference[:, 0] - 1e-9))
            print(
                f"  {name:<32} {values[:, 0].mean():>9.4f} {np.abs(values[:, 1]).mean():>12.1%}"
                f" {wins:>19}/{len(values)}"
            )
    if with_holdout:
        h = build_histories(calibration, [], as_of=CALIBRATION_END, settings=SETTINGS, habits=False)
        actual = order_days(
            orders, h.customer_ids, CALIBRATION_END, CALIBRATION_END + timedelta(days=HORIZON)
        )
        print(
            f"\nalternatives on the holdout (39 weeks after {CALIBRATION_END.date()}), scored once:"
        )
        for name, values in alternatives_at(calibration, CALIBRATION_END, HORIZON).items():
            print(
                f"  {name:<32} RMSE {rmse(values, actual):.4f}  aggregate {aggregate(values, actual):+.1%}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout", action="store_true", help="score the choice on the holdout")
    parser.add_argument(
        "--only", choices=("cv", "mirror", "backtest", "tracking", "alternatives"), nargs="*"
    )
    parser.add_argument(
        "--plans",
        choices=("90", "history"),
        nargs="*",
        default=["90", "history"],
        help="which rolling origins the alternatives are judged at (none: the holdout alone)",
    )
    args = parser.parse_args()
    run = set(args.only or ("cv", "mirror", "backtest", "tracking", "alternatives"))
    print(f"load average {os.getloadavg()}")
    orders = [o for o in load_cdnow() if o.ordered_at <= CALIBRATION_END or args.holdout]
    chosen = cross_validation(orders) if "cv" in run else ""
    if "mirror" in run:
        mirror(orders)
    if "backtest" in run:
        backtest(orders)
    if "tracking" in run:
        tracking(orders, args.holdout)
    if "alternatives" in run:
        alternatives(orders, args.holdout, args.plans)
    if args.holdout and chosen:
        holdout(orders, chosen)
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
