"""Customer insight models side by side on CDNOW, small shops, scoring speed and rule speed.

Usage: .venv/bin/python bench/insight_bench.py [--quick] [--pymc-python PATH] [--json FILE]

CDNOW: the transaction log shipped inside the `lifetimes` 0.11.3 wheel
(lifetimes/datasets/CDNOW_master.txt, 23,570 customers, 1997-01-01..1998-06-30), read from the
installed package. Calibrate on orders up to 1997-09-30, score the next 39 weeks (273 days) up
to 1998-06-30. Every model sees the same summary of the same orders (order days, as the models
count them) and is scored on the same holdout, in one run:
  trouw         score_customers (BG/NBD + learned corrections + Gamma-Gamma), the product
  bgnbd         our BG/NBD alone (maximum likelihood, numpy/scipy)
  pareto        our Pareto/NBD alone
  lifetimes-*   lifetimes 0.11.3 BetaGeoFitter / ParetoNBDFitter / GammaGammaFitter
  pymc-bgnbd    pymc-marketing BetaGeoModel (MAP), when --pymc-python names a Python that has
                it (it does not install in the product's venv: see docs/decisions.md)
  recency       days since the last order alone (ranking only)
Measures: RMSE of orders per customer and aggregate error over the horizon; AUC of "orders
again in the horizon"; F1 of "next order within 13 weeks" (the model's next-order date, or
P(order in 91 days) >= 1/2 for the bare models); share of holdout revenue held by the top 10 %
by expected value. Small shops: random samples of CDNOW customers. Speed: pure scoring of a
synthetic shop (100,000 customers, 1,000,000 lines) and rules on 150,000 baskets x 50,000
products, each in a child process for a clean peak RSS. The machine is shared: load is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trouw.domain.insight import InsightSettings, LineFact, OrderFact, score_customers  # noqa: E402
from trouw.domain.insight.btyd import BetaGeo, GammaGamma, ParetoNBD  # noqa: E402
from trouw.domain.insight.forecast import auc  # noqa: E402
from trouw.domain.insight.history import build_histories  # noqa: E402

CALIBRATION_END = datetime(1997, 9, 30, 23, 59, 59, tzinfo=UTC)
HOLDOUT_END = datetime(1998, 6, 30, 23, 59, 59, tzinfo=UTC)
HORIZON = 273
WEEKS_13 = 91
SIZES = (100, 300, 1000, 3000)


def cdnow_path() -> Path:
    import lifetimes

    return Path(lifetimes.__file__).parent / "datasets" / "CDNOW_master.txt"


def load_cdnow() -> list[OrderFact]:
    orders = []
    with cdnow_path().open() as handle:
        next(handle)
        for number, row in enumerate(handle):
            customer, day, _cds, value = row.split()
            at = datetime.strptime(day, "%Y%m%d").replace(hour=12, tzinfo=UTC)
            orders.append(OrderFact(customer, f"{customer}-{number}", at, float(value)))
    return orders


def f1(actual: np.ndarray, predicted: np.ndarray) -> float:
    tp = float(np.sum(actual & predicted))
    denominator = float(np.sum(actual) + np.sum(predicted))
    return 2 * tp / denominator if denominator else 0.0


def holdout(orders: list[OrderFact], ids: list[str]) -> dict[str, np.ndarray]:
    days: defaultdict[str, set[Any]] = defaultdict(set)
    soon: set[str] = set()
    revenue: defaultdict[str, float] = defaultdict(float)
    for o in orders:
        if CALIBRATION_END < o.ordered_at <= HOLDOUT_END:
            days[o.customer_id].add(o.ordered_at.date())
            revenue[o.customer_id] += o.revenue
            if o.ordered_at <= CALIBRATION_END + timedelta(days=WEEKS_13):
                soon.add(o.customer_id)
    return {
        "orders": np.array([len(days[c]) for c in ids], dtype=float),
        "soon": np.array([c in soon for c in ids]),
        "revenue": np.array([revenue[c] for c in ids]),
    }


def top_share(value: np.ndarray, revenue: np.ndarray) -> float:
    top = np.argsort(-value, kind="stable")[: max(1, len(value) // 10)]
    return float(revenue[top].sum() / revenue.sum())


def measures(
    truth: dict[str, np.ndarray],
    *,
    expected: np.ndarray | None,
    ranking: np.ndarray,
    soon: np.ndarray | None,
    value: np.ndarray | None,
    seconds: float,
) -> dict[str, float | None]:
    actual = truth["orders"]
    return {
        "rmse": None if expected is None else float(np.sqrt(np.mean((expected - actual) ** 2))),
        "aggregate": None if expected is None else float(expected.sum() / actual.sum() - 1),
        "auc": auc(actual > 0, ranking),
        "f1_13w": None if soon is None else f1(truth["soon"], soon),
        "top10_revenue": None if value is None else top_share(value, truth["revenue"]),
        "seconds": seconds,
    }


def pymc_run(python: str, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> dict[str, Any] | None:
    """pymc-marketing's BetaGeoModel (MAP) in its own interpreter; None when it is not there."""
    script = ROOT / "bench" / "insight_pymc.py"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "summary.csv"
        rows = "\n".join(
            f"{i},{a},{b},{c}" for i, (a, b, c) in enumerate(zip(x, t_x, T, strict=True))
        )
        data.write_text("customer_id,frequency,recency,T\n" + rows + "\n")
        done = subprocess.run(
            [python, str(script), str(data), str(HORIZON), str(WEEKS_13)],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        print(f"pymc-marketing run failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def cdnow(args: argparse.Namespace) -> dict[str, Any]:
    orders = load_cdnow()
    print(f"CDNOW: {cdnow_path()} ({len(orders):,} orders)")
    settings = InsightSettings()
    h = build_histories(orders, [], as_of=CALIBRATION_END, settings=settings)
    truth = holdout(orders, h.customer_ids)
    x, t_x, T = h.x, h.t_x, h.T
    results: dict[str, dict[str, float | None]] = {}

    start = time.perf_counter()
    scored = score_customers(orders, [], as_of=CALIBRATION_END, horizon_days=HORIZON)
    seconds = time.perf_counter() - start
    assert [c.customer_id for c in scored] == h.customer_ids
    next_at = [c.expected_next_order_at for c in scored]
    results["trouw"] = measures(
        truth,
        expected=np.array([c.expected_orders for c in scored]),
        ranking=np.array([c.p_order for c in scored]),
        soon=np.array(
            [d is not None and d <= CALIBRATION_END + timedelta(days=WEEKS_13) for d in next_at]
        ),
        value=np.array([c.expected_value for c in scored]),
        seconds=seconds,
    )
    model_name = scored[0].model

    start = time.perf_counter()
    bg = BetaGeo.fit(x, t_x, T)
    gg = GammaGamma.fit(x, h.repeat_avg)
    seconds = time.perf_counter() - start
    bg_value = bg.expected_orders(365.0, x, t_x, T) * gg.expected_spend(x, h.repeat_avg)
    results["bgnbd"] = measures(
        truth,
        expected=bg.expected_orders(float(HORIZON), x, t_x, T),
        ranking=bg.p_order_within(float(HORIZON), x, t_x, T),
        soon=bg.p_order_within(float(WEEKS_13), x, t_x, T) >= 0.5,
        value=bg_value,
        seconds=seconds,
    )
    start = time.perf_counter()
    pn = ParetoNBD.fit(x, t_x, T)
    seconds = time.perf_counter() - start
    pn_expected = pn.expected_orders(float(HORIZON), x, t_x, T)
    results["pareto"] = measures(
        truth,
        expected=pn_expected,
        ranking=pn_expected,
        soon=None,
        value=pn.expected_orders(365.0, x, t_x, T) * gg.expected_spend(x, h.repeat_avg),
        seconds=seconds,
    )

    import lifetimes

    start = time.perf_counter()
    lbg = lifetimes.BetaGeoFitter().fit(x, t_x, T)
    repeaters = (x > 0) & (h.repeat_avg > 0)  # lifetimes refuses zero spend
    lgg = lifetimes.GammaGammaFitter().fit(x[repeaters], h.repeat_avg[repeaters])
    seconds = time.perf_counter() - start
    l_expected = np.asarray(
        lbg.conditional_expected_number_of_purchases_up_to_time(HORIZON, x, t_x, T)
    )
    l_spend = np.asarray(
        lgg.conditional_expected_average_profit(x, np.where(repeaters, h.repeat_avg, 1.0))
    )
    l_spend = np.where(
        repeaters,
        l_spend,
        float(np.asarray(lgg.conditional_expected_average_profit(np.zeros(1), np.ones(1)))[0]),
    )
    results["lifetimes-bgnbd"] = measures(
        truth,
        expected=l_expected,
        ranking=np.asarray(lbg.conditional_probability_alive(x, t_x, T))
        * (
            1
            - ((lbg.params_["alpha"] + T) / (lbg.params_["alpha"] + T + HORIZON))
            ** (lbg.params_["r"] + x)
        ),
        soon=None,
        value=np.asarray(lbg.conditional_expected_number_of_purchases_up_to_time(365, x, t_x, T))
        * l_spend,
        seconds=seconds,
    )
    if not args.quick:
        start = time.perf_counter()
        lpn = lifetimes.ParetoNBDFitter().fit(x, t_x, T)
        seconds = time.perf_counter() - start
        lpn_expected = np.asarray(
            lpn.conditional_expected_number_of_purchases_up_to_time(HORIZON, x, t_x, T)
        )
        results["lifetimes-pareto"] = measures(
            truth,
            expected=lpn_expected,
            ranking=lpn_expected,
            soon=None,
            value=None,
            seconds=seconds,
        )
    if args.pymc_python:
        run = pymc_run(args.pymc_python, x, t_x, T)
        if run is not None:
            results["pymc-bgnbd"] = measures(
                truth,
                expected=np.array(run["expected"]),
                ranking=np.array(run["p_order"]),
                soon=np.array(run["p_order_13w"]) >= 0.5,
                value=None,
                seconds=run["fit_s"],
            )
            results["pymc-bgnbd"]["import_seconds"] = run["import_s"]
    results["recency"] = measures(
        truth, expected=None, ranking=-h.recency_days, soon=None, value=None, seconds=0.0
    )

    print(f"\ntrouw answered with model {model_name!r}")
    header = f"{'model':<18}{'RMSE':>8}{'aggr.':>9}{'AUC':>8}{'F1 13w':>8}{'top10%':>8}{'fit s':>8}"
    print(header)
    print("-" * len(header))

    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for name, m in results.items():
        print(
            f"{name:<18}{cell(m['rmse'], '.3f'):>8}{cell(m['aggregate'], '+.1%'):>9}"
            f"{cell(m['auc'], '.4f'):>8}{cell(m['f1_13w'], '.3f'):>8}"
            f"{cell(m['top10_revenue'], '.1%'):>8}{cell(m['seconds'], '.2f'):>8}"
        )
    print("targets: RMSE <= 1.70, aggregate within +-10 %, AUC >= 0.77, F1 >= 0.50, top10% >= 52 %")
    return {"model": model_name, "results": results}


def small_shops(args: argparse.Namespace) -> dict[str, Any]:
    """Random samples of CDNOW customers: every customer answered, AUC against recency alone."""
    orders = load_cdnow()
    by_customer: defaultdict[str, list[OrderFact]] = defaultdict(list)
    for o in orders:
        by_customer[o.customer_id].append(o)
    ids = sorted(by_customer)
    rng = np.random.default_rng(2026)
    draws = 5 if args.quick else 20
    out: dict[str, Any] = {}
    print(f"\nsmall shops: {draws} random samples each")
    print(f"{'customers':>10}{'answered':>10}{'AUC':>8}{'recency':>9}{'not worse':>11}{'models'}")
    for size in SIZES:
        answered = 0
        aucs, recency_aucs, not_worse = [], [], 0
        models: set[str] = set()
        for _ in range(draws):
            chosen = list(rng.choice(ids, size=size, replace=False))
            sample = [o for c in chosen for o in by_customer[c]]
            scored = score_customers(sample, [], as_of=CALIBRATION_END, horizon_days=HORIZON)
            in_calibration = {o.customer_id for o in sample if o.ordered_at <= CALIBRATION_END}
            finite = all(
                np.isfinite([c.p_order, c.expected_orders, c.expected_value]).all() for c in scored
            )
            answered += int(finite and len(scored) == len(in_calibration))
            models.update(c.model for c in scored[:1])
            truth = holdout(sample, [c.customer_id for c in scored])
            ours = auc(truth["orders"] > 0, np.array([c.p_order for c in scored]))
            theirs = auc(
                truth["orders"] > 0, -np.array([c.recency_days for c in scored], dtype=float)
            )
            aucs.append(ours)
            recency_aucs.append(theirs)
            not_worse += int(ours >= theirs - 1e-12)
        out[str(size)] = {
            "answered": answered,
            "draws": draws,
            "auc_mean": float(np.nanmean(aucs)),
            "recency_auc_mean": float(np.nanmean(recency_aucs)),
            "not_worse": not_worse,
            "models": sorted(models),
        }
        print(
            f"{size:>10}{answered:>6}/{draws:<3}{np.nanmean(aucs):>8.4f}{np.nanmean(recency_aucs):>9.4f}"
            f"{not_worse:>7}/{draws:<3} {', '.join(sorted(models))}"
        )
    return out


def cpu_seconds() -> float:
    """CPU time of this process: on the shared machine the wall clock mostly waits for others."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def synthetic_shop(
    customers: int, lines: int, seed: int = 1
) -> tuple[list[OrderFact], list[LineFact]]:
    rng = np.random.default_rng(seed)
    orders_per_customer = rng.geometric(0.3, size=customers)
    total_orders = int(orders_per_customer.sum())
    lines_per_order = np.maximum(1, rng.poisson(lines / total_orders, size=total_orders))
    end = datetime(2026, 6, 30, tzinfo=UTC)
    order_facts: list[OrderFact] = []
    line_facts: list[LineFact] = []
    k = 0
    for c in range(customers):
        cid = f"C{c:06d}"
        start_day = rng.uniform(0, 900)
        for j in range(int(orders_per_customer[c])):
            at = end - timedelta(
                days=float(start_day) * (1 - j / (orders_per_customer[c] + 1)),
                hours=float(rng.uniform(0, 12)),
            )
            oid = f"O{k:08d}"
            skus = rng.integers(0, 5000, size=int(lines_per_order[k]))
            revenue = 0.0
            for s in skus:
                price = float(5 + s % 50)
                revenue += price
                line_facts.append(LineFact(cid, oid, f"SKU{s:05d}", f"CAT{s % 40:02d}", 1, price))
            order_facts.append(OrderFact(cid, oid, at, revenue))
            k += 1
    return order_facts, line_facts


def child_score(customers: int, lines: int) -> dict[str, Any]:
    orders, line_facts = synthetic_shop(customers, lines)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu = time.perf_counter(), cpu_seconds()
    scored = score_customers(
        orders, line_facts, as_of=datetime(2026, 6, 30, tzinfo=UTC), horizon_days=90
    )
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "cpu_seconds": cpu,
        "customers": len(scored),
        "orders": len(orders),
        "lines": len(line_facts),
        "seconds": seconds,
        "peak_rss_mb": peak / 1024,
        "rss_before_mb": before / 1024,
        "model": scored[0].model,
    }


def synthetic_baskets(baskets: int, products: int, seed: int = 3) -> list[LineFact]:
    rng = np.random.default_rng(seed)
    # Zipf's law over the assortment: the k-th best seller sells in proportion to 1/k.
    popularity = 1.0 / np.arange(1, products + 1)
    popularity /= popularity.sum()
    popularity = popularity[rng.permutation(products)]
    sizes = np.maximum(1, rng.poisson(3.0, size=baskets))
    items = rng.choice(products, size=int(sizes.sum()), p=popularity)
    lines = []
    k = 0
    for b, size in enumerate(sizes):
        for s in items[k : k + size]:
            lines.append(
                LineFact(f"C{b % 60000}", f"O{b}", f"P{s:05d}", f"K{s % 300:03d}", 1, 10.0)
            )
        k += size
    return lines


def child_rules(baskets: int, products: int, min_support: float) -> dict[str, Any]:
    from trouw.domain.insight import association_rules

    lines = synthetic_baskets(baskets, products)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out: dict[str, Any] = {
        "baskets": baskets,
        "products": products,
        "lines": len(lines),
        "min_support": min_support,
    }
    for level in ("product", "category"):
        start, cpu = time.perf_counter(), cpu_seconds()
        rules = association_rules(lines, level=level, min_support=min_support)  # type: ignore[arg-type]
        out[f"{level}_seconds"] = time.perf_counter() - start
        out[f"{level}_cpu_seconds"] = cpu_seconds() - cpu
        out[f"{level}_rules"] = len(rules)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rss_before_mb"] = before / 1024
    from trouw.domain.insight import recommend

    start, cpu = time.perf_counter(), cpu_seconds()
    recommended = recommend(lines, customer_ids=None, top=5)
    out["recommend_seconds"] = time.perf_counter() - start
    out["recommend_cpu_seconds"] = cpu_seconds() - cpu
    out["recommend_customers"] = len(recommended)
    out["recommend_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def in_child(*argv: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *argv], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer draws, smaller speed runs")
    parser.add_argument("--pymc-python", default=os.environ.get("TROUW_BENCH_PYMC_PYTHON"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = (
            child_score(int(rest[0]), int(rest[1]))
            if kind == "score"
            else child_rules(int(rest[0]), int(rest[1]), float(rest[2]))
        )
        print(json.dumps(result))
        return
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (shared machine)")
    report: dict[str, Any] = {"cdnow": cdnow(args), "small_shops": small_shops(args)}
    customers, lines = (20_000, 200_000) if args.quick else (100_000, 1_000_000)
    score = in_child("score", str(customers), str(lines))
    print(
        f"\npure scoring: {score['customers']:,} customers, {score['orders']:,} orders, {score['lines']:,} lines: "
        f"{score['seconds']:.1f} s ({score['cpu_seconds']:.1f} s CPU), peak RSS {score['peak_rss_mb']:.0f} MB "
        f"(facts alone {score['rss_before_mb']:.0f} MB); model {score['model']}"
    )
    baskets, products = (30_000, 10_000) if args.quick else (150_000, 50_000)
    rules = in_child("rules", str(baskets), str(products), "0.0001")
    print(
        f"rules: {rules['baskets']:,} baskets x {rules['products']:,} products ({rules['lines']:,} lines), "
        f"min_support {rules['min_support']}: product level {rules['product_seconds']:.2f} s "
        f"({rules['product_cpu_seconds']:.2f} s CPU, {rules['product_rules']:,} rules), "
        f"category level {rules['category_seconds']:.2f} s "
        f"({rules['category_cpu_seconds']:.2f} s CPU, {rules['category_rules']:,} rules), peak RSS {rules['peak_rss_mb']:.0f} MB "
        f"(baskets alone {rules['rss_before_mb']:.0f} MB); recommend top 5 for all "
        f"{rules['recommend_customers']:,} customers: {rules['recommend_seconds']:.1f} s "
        f"({rules['recommend_cpu_seconds']:.1f} s CPU), "
        f"peak RSS {rules['recommend_peak_rss_mb']:.0f} MB"
    )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    report.update({"scoring": score, "rules": rules})
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
