"""Could a small shop's own history refuse a P(order) ranking that then ranks worse than recency?

Usage: .venv/bin/python bench/insight_small_shops.py [--seed N] [--sizes N ...] [--draws N]

The draws are insight_bench.py's small shops (random samples of CDNOW customers, the same
random generator and order of sizes, so --seed 2026 gives the same 20 draws per size). For each
draw the product is scored as of 1997-09-30 (horizon 273 days) and, where its backtest picked a
P(order) ranking other than recency's, that pick is judged again by more evidence from the
shop's own history, every piece scored as the backtest scores (the candidate's AUC minus
recency's at telling who ordered in a window, and DeLong's standard error of the difference):
  origin    a window of the product's rule ending half a window before today (its own cut and
            learning one window earlier): another origin of the same backtest;
  share 2/3, share 1/3
            shorter windows ending today, from later cuts (customers closer in age to today's);
  halves    the held-back window's two halves scored separately (the same cut and fits);
  older     the held-back window scored on its older half of customers only (age at the cut at
            or above the median);
  trend     the pick's advantage over recency at the horizon asked for (273 days), carried from
            the first half of the held-back window to all of it and on, in log days
            (d_H = d_W + (d_W - d_W/2) * log(H / W) / log 2, the same cut and fits): the pick stays only
            while that is above zero, so an advantage that shrinks as the window grows is not
            trusted beyond it (a sixth round, docs/decisions.md).
Each rule but "trend" keeps the pick only when it is also more than 2 standard errors ahead of recency in
that piece of evidence (an intersection-union test; "halves": in both halves), and otherwise
ranks by recency (the product's recency candidate, as it answers today). Then, and only then,
every rule is scored on the 39-week holdout: mean AUC against recency alone, and the draws not
worse than recency. Nothing here changes the product; read the load average printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from insight_bench import CALIBRATION_END, HORIZON, SIZES, holdout, load_cdnow  # noqa: E402

from trouw.domain.insight import InsightSettings, OrderFact, score_shop  # noqa: E402
from trouw.domain.insight import forecast as product  # noqa: E402
from trouw.domain.insight.choice import SIGNIFICANCE_Z  # noqa: E402
from trouw.domain.insight.history import Histories, build_histories  # noqa: E402
from trouw.domain.insight.scoring import _earlier_cut  # noqa: E402

Array = np.ndarray
SETTINGS = InsightSettings()
Evidence = dict[str, tuple[float, float]]  # candidate -> (AUC minus recency's, standard error)
RULES = ("product", "origin", "share 2/3", "share 1/3", "halves", "older", "trend")


def histories(orders: list[OrderFact], as_of: datetime) -> Histories:
    return build_histories(orders, [], as_of=as_of, settings=SETTINGS, habits=False)


def candidates_at(
    orders: list[OrderFact], end: datetime, window: int
) -> tuple[Histories, Array, int, dict[str, Array]] | None:
    """Each candidate's P(order) at the cut `window` (at most half the history) before `end`,
    fitted and learned as the product's backtest does, and the order days in the window."""
    now = histories(orders, end)
    earlier, later, days = _earlier_cut(
        orders, now, as_of=end, horizon_days=window, settings=SETTINGS
    )
    if earlier is None or later is None:
        return None
    cut = end - timedelta(days=days)
    before, before_counts, before_days = _earlier_cut(
        orders, earlier, as_of=cut, horizon_days=days, settings=SETTINGS
    )
    model, name = product.fit_beta_geo(earlier)
    learned = None
    if name == "bgnbd":
        learned = product._learned_at(model, before, before_counts, before_days)
    answers = product._answers(earlier, product._Corrected(model), learned, float(days))
    return earlier, later, days, answers.p


def evidence(p: dict[str, Array], ordered: Array, keep: Array | None = None) -> Evidence:
    """Per candidate, its AUC minus recency's at telling who ordered, with its standard error."""
    sel = np.ones(len(ordered), dtype=bool) if keep is None else keep
    return {
        name: product.auc_difference(ordered[sel], values[sel], p["recency"][sel])
        for name, values in p.items()
        if name != "recency"
    }


def significant(found: Evidence, pick: str) -> bool:
    difference, error = found.get(pick, (float("nan"), float("nan")))
    return bool(
        np.isfinite(difference) and np.isfinite(error) and difference > SIGNIFICANCE_Z * error
    )


def judge(
    orders: list[OrderFact], pick: str, window: int, rules: tuple[str, ...] = RULES
) -> dict[str, bool]:
    """Whether each rule keeps the product's pick (True) or hands the ranking to recency."""
    keeps = {"product": True}
    held = candidates_at(orders, CALIBRATION_END, window)
    assert held is not None  # the product's backtest ran on it
    earlier, later, days, p = held
    cut = CALIBRATION_END - timedelta(days=days)
    middle = histories(orders, cut + timedelta(days=days // 2))
    at_middle = dict(zip(middle.customer_ids, middle.x, strict=True))
    first = np.maximum(
        np.array([at_middle[c] - x for c, x in zip(earlier.customer_ids, earlier.x, strict=True)]),
        0.0,
    )
    second = np.maximum(later - first, 0.0)
    keeps["halves"] = significant(evidence(p, first), pick) and significant(
        evidence(p, second), pick
    )
    keeps["older"] = significant(evidence(p, later, earlier.T >= np.median(earlier.T)), pick)
    # Cumulative windows: who ordered within the first half, and within all of it.
    half = evidence(p, first).get(pick, (float("nan"), 0.0))[0]
    whole = evidence(p, later).get(pick, (float("nan"), 0.0))[0]
    at_horizon = whole + (whole - half) * np.log(HORIZON / days) / np.log(days / (days // 2))
    keeps["trend"] = bool(np.isfinite(at_horizon) and at_horizon > 0)
    print(
        f"    trend: {pick} ahead of recency by {half:+.4f} over the first {days // 2} days, "
        f"{whole:+.4f} over {days}, carried to {HORIZON}: {at_horizon:+.4f}",
        flush=True,
    )
    others: dict[str, Callable[[], tuple[Histories, Array, int, dict[str, Array]] | None]] = {
        "origin": lambda: candidates_at(
            orders, CALIBRATION_END - timedelta(days=window // 2), window
        ),
        "share 2/3": lambda: candidates_at(orders, CALIBRATION_END, (2 * window) // 3),
        "share 1/3": lambda: candidates_at(orders, CALIBRATION_END, window // 3),
    }
    for rule, build in others.items():
        if rule not in rules:
            keeps[rule] = True
            continue
        other = build()
        keeps[rule] = other is not None and significant(evidence(other[3], other[1]), pick)
    return keeps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 3000])
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument(
        "--rules", nargs="+", choices=RULES[1:], default=list(RULES[1:]), help="the rules judged"
    )
    args = parser.parse_args()
    rules = ("product", *args.rules)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (shared machine)")
    orders = load_cdnow()
    by_customer: defaultdict[str, list[OrderFact]] = defaultdict(list)
    for o in orders:
        by_customer[o.customer_id].append(o)
    ids = sorted(by_customer)
    rng = np.random.default_rng(args.seed)
    for size in SIZES:  # every size draws, in insight_bench's order: the same samples
        aucs: dict[str, list[float]] = {rule: [] for rule in rules}
        recency: list[float] = []
        for draw in range(args.draws):
            chosen = list(rng.choice(ids, size=size, replace=False))
            if size not in args.sizes:
                continue
            sample = [o for c in chosen for o in by_customer[c]]
            scored = score_shop(sample, [], as_of=CALIBRATION_END, horizon_days=HORIZON)
            ordered = holdout(sample, [c.customer_id for c in scored.customers])["orders"] > 0
            ours = product.auc(ordered, np.array([c.p_order for c in scored.customers]))
            alone = product.auc(ordered, -np.array([c.recency_days for c in scored.customers]))
            recency.append(alone)
            pick = scored.choice.p_order.model
            if pick == "recency":
                for rule in rules:
                    aucs[rule].append(ours)
                continue
            # The product's recency candidate today: BG/NBD's answers handed out by recency.
            h = build_histories(sample, [], as_of=CALIBRATION_END, settings=SETTINGS)
            model, _ = product.fit_beta_geo(h)
            handed = product._answers(h, product._Corrected(model), None, float(HORIZON))
            by_recency = product.auc(ordered, handed.p["recency"])
            keeps = judge(sample, pick, scored.choice.window_days, rules)
            for rule in rules:
                aucs[rule].append(ours if keeps[rule] else by_recency)
            print(
                f"  {size} draw {draw:2d}: {pick} picked, holdout {ours - alone:+.4f} against "
                f"recency alone; kept by "
                + (", ".join(rule for rule in rules[1:] if keeps[rule]) or "none"),
                flush=True,
            )
        if size not in args.sizes:
            continue
        print(
            f"{size} customers (seed {args.seed}, load {os.getloadavg()[0]:.1f}): "
            f"recency alone {np.mean(recency):.4f}"
        )
        for rule in rules:
            worse = sum(a >= r - 1e-12 for a, r in zip(aucs[rule], recency, strict=True))
            print(
                f"  {rule:<10} mean AUC {np.mean(aucs[rule]):.4f} "
                f"({np.mean(aucs[rule]) - np.mean(recency):+.4f}), not worse {worse}/{len(recency)}",
                flush=True,
            )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
