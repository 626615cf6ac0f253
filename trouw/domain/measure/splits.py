"""Split arms from the database and from the journey files: uplift per split, plans before one.

The arms come from `split_assignment` (what each run took), never from re-hashing; the plan
(`trouw report split`) uses the workflow's own arm function for customers who have no run yet.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func
from sqlmodel import Session, col, select

from trouw.domain.db.models import Order, SplitAssignment
from trouw.domain.measure.uplift import ArmSample, Difference, Uplift, compare
from trouw.language.journey.loader import JourneyError, journey_files, load_journey
from trouw.language.journey.model import Journey, SplitStep
from trouw.language.journey.split import choose_arm

DEFAULT_WINDOW = timedelta(days=30)
DEFAULT_PRE_PERIOD = timedelta(days=365)


class ReportError(ValueError):
    """A report cannot be made as asked (unknown journey or step, no split there)."""


def find_journey(directory: Path, name: str) -> Journey:
    """The journey called `name` in the journeys folder (a broken other file is no matter)."""
    for path in journey_files(directory) if directory.is_dir() else []:
        try:
            journey = load_journey(path).journey
        except JourneyError:
            continue
        if journey.name == name:
            return journey
    raise ReportError(f"no journey named {name} in {directory}")


def split_step(journey: Journey, step_id: str | None) -> SplitStep:
    """The split step asked for, or the journey's only one."""
    splits = [s for s in journey.steps if isinstance(s, SplitStep)]
    if step_id is None:
        if len(splits) != 1:
            names = ", ".join(s.id for s in splits) or "none"
            raise ReportError(f"journey {journey.name} has split steps {names}: name one")
        return splits[0]
    for step in splits:
        if step.id == step_id:
            return step
    raise ReportError(f"journey {journey.name} has no split step {step_id}")


def plan(journey: Journey, step: SplitStep, customers: Iterable[str]) -> list[tuple[str, str]]:
    """(customer id, arm) for each customer: the arm a run would take (planning only)."""
    rows = []
    for customer in customers:
        arm = choose_arm(customer, journey.name, step)
        # None only on the hash's 2**-53 edge: the run then follows the step's default path.
        rows.append((customer, arm.name if arm else ""))
    return rows


@dataclass(frozen=True)
class SplitReport:
    journey: str
    step: str
    start: datetime | None
    end: datetime | None
    window: timedelta
    reference: str | None
    comparisons: list[Uplift]
    arms: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """The stable JSON of `trouw report uplift` (docs/measurement.md)."""
        first = self.comparisons[0] if self.comparisons else None
        body: dict[str, Any] = {
            "journey": self.journey,
            "step": self.step,
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "window_days": self.window.total_seconds() / 86400,
            "reference": self.reference,
            "arms": self.arms,
        }
        body.update(_comparison_json(first))
        body["comparisons"] = [_comparison_json(c) for c in self.comparisons]
        return body


def _diff_json(d: Difference | None, prefix: str) -> dict[str, Any]:
    return {
        f"{prefix}diff": d.diff if d else None,
        f"{prefix}ci95": list(d.ci95) if d and d.ci95 else None,
        f"{prefix}p_value": d.p_value if d else None,
        f"{prefix}mde": d.mde if d else None,
        f"{prefix}variance_reduction": d.variance_reduction if d else None,
    }


def _comparison_json(up: Uplift | None) -> dict[str, Any]:
    conv = _diff_json(up.conversion if up else None, "")
    rev = _diff_json(up.revenue if up else None, "revenue_")
    return {
        "arm": up.treatment.name if up else None,
        "conversion_diff": conv["diff"],
        "ci95": conv["ci95"],
        "p_value": conv["p_value"],
        "conversion_mde": conv["mde"],
        "conversion_variance_reduction": conv["variance_reduction"],
        **rev,
        "method": up.method if up else None,
        "verdict": up.verdict if up else "no customers have reached this split yet",
        "notes": up.notes if up else [],
    }


def uplift_report(
    session: Session,
    *,
    journey: str,
    step: str,
    start: datetime | None = None,
    end: datetime | None = None,
    window: timedelta = DEFAULT_WINDOW,
    pre_period: timedelta = DEFAULT_PRE_PERIOD,
    cuped: bool = True,
    currency: str = "EUR",
) -> SplitReport:
    """Every arm of one split against its reference, each customer counted once (first entry).

    A customer converts when they place an order in `window` after their split; revenue is what
    those orders total, returned orders excluded; the pre-period spend (CUPED) is what they
    ordered in `pre_period` before it.
    """
    first = (
        select(
            SplitAssignment.customer_id,
            SplitAssignment.arm,
            SplitAssignment.holdout,
            func.min(SplitAssignment.at).label("at"),
        )
        .where(SplitAssignment.journey == journey, SplitAssignment.step == step)
        .group_by(
            col(SplitAssignment.customer_id), col(SplitAssignment.arm), col(SplitAssignment.holdout)
        )
    )
    if start is not None:
        first = first.where(SplitAssignment.at >= start)
    if end is not None:
        first = first.where(SplitAssignment.at < end)
    entries: dict[str, tuple[str, bool, datetime]] = {}
    for customer, arm, holdout, at in session.exec(first).all():
        at = _aware(at)
        # The arm is the same on every run (one hash); only the earliest entry counts.
        if customer not in entries or at < entries[customer][2]:
            entries[customer] = (arm, bool(holdout), at)
    sub = first.subquery()
    orders = session.exec(
        select(
            col(Order.customer_id), col(Order.placed_at), col(Order.total), col(Order.returned_at)
        ).where(col(Order.customer_id).in_(select(sub.c.customer_id)))
    ).all()
    bought: dict[str, list[tuple[datetime, Decimal, bool]]] = defaultdict(list)
    for customer, placed, total, returned_at in orders:
        bought[customer].append((_aware(placed), Decimal(total), returned_at is not None))
    by_arm: dict[str, dict[str, list[float]]] = defaultdict(
        lambda: {"converted": [], "revenue": [], "pre": []}
    )
    holdouts: dict[str, bool] = {}
    for customer, (arm, holdout, at) in entries.items():
        holdouts[arm] = holdout
        converted, revenue, pre = False, 0.0, 0.0
        for placed, total, was_returned in bought.get(customer, []):
            if at - pre_period <= placed <= at:
                pre += 0.0 if was_returned else float(total)
            elif at < placed < at + window and not was_returned:
                converted = True
                revenue += float(total)
        lists = by_arm[arm]
        lists["converted"].append(float(converted))
        lists["revenue"].append(revenue)
        lists["pre"].append(pre)
    samples = {
        arm: ArmSample(
            arm,
            np.asarray(v["converted"], dtype=bool),
            v["revenue"],
            v["pre"],
            holdout=holdouts[arm],
        )
        for arm, v in sorted(by_arm.items())
    }
    reference = _reference(samples)
    comparisons = [
        compare(sample, samples[reference], cuped=cuped, currency=currency)
        for name, sample in samples.items()
        if reference is not None and name != reference
    ]
    arms = []
    for sample in samples.values():
        conv, rev, _pre = sample.arrays()
        arms.append(
            {
                "name": sample.name,
                "holdout": sample.holdout,
                "customers": int(conv.size),
                "conversions": int(conv.sum()),
                "revenue": round(float(rev.sum()), 2),
                "conversion_rate": float(conv.mean()) if conv.size else None,
                "revenue_per_customer": float(rev.mean()) if conv.size else None,
            }
        )
    return SplitReport(journey, step, start, end, window, reference, comparisons, arms)


def split_steps(
    session: Session,
    *,
    journey: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[tuple[str, str]]:
    """(journey, step) of every split that customers reached in the period."""
    query = select(SplitAssignment.journey, SplitAssignment.step).distinct()
    if journey is not None:
        query = query.where(SplitAssignment.journey == journey)
    if start is not None:
        query = query.where(SplitAssignment.at >= start)
    if end is not None:
        query = query.where(SplitAssignment.at < end)
    return sorted((j, s) for j, s in session.exec(query).all())


def _reference(samples: dict[str, ArmSample]) -> str | None:
    """The hold-out if there is one (the biggest, if several), else the first arm by name."""
    if not samples:
        return None
    held = [s for s in samples.values() if s.holdout]
    if held:
        return max(held, key=lambda s: len(s.arrays()[0])).name
    return next(iter(samples))


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)
