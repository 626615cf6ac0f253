"""Which arm of a split a customer lands in: one pure function for the workflow and the reports."""

from __future__ import annotations

from trouw.language.journey.expressions import bucket
from trouw.language.journey.model import SplitArm, SplitStep


def choose_arm(customer_id: str, journey: str, step: SplitStep) -> SplitArm | None:
    """The arm of `step` for this customer: a hash, not workflow.random(), so the same customer
    lands in the same arm on every run, and `trouw report split` can say so before any run.

    None only if the hash hits the float edge at exactly 1.0 (about once in 2**53): the workflow
    then follows the step's default next step, as it always did.
    """
    total = sum(arm.weight for arm in step.split)
    point = bucket(customer_id, journey, step.id) * total
    for arm in step.split:
        point -= arm.weight
        if point < 0:
            return arm
    return None
