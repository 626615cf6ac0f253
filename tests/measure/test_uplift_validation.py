"""The uplift statistics validated by simulation: 200 random splits of real-looking customers.

With no treatment, about 5 % of splits may look significant at 5 % (we accept 3-7 %); with an
injected effect, the 95 % interval must contain the true effect in at least 90 % of runs. The
splits come from the workflow's own arm function (a different journey name per run), so this
also checks that the hash split is as good as a random one.
"""

from __future__ import annotations

import numpy as np

from tests.measure.population import make_population
from trouw.domain.measure.uplift import ArmSample, Uplift, compare
from trouw.language.journey.model import SplitStep
from trouw.language.journey.split import choose_arm

RUNS = 200
CUSTOMERS = 3000
STEP = SplitStep.model_validate(
    {
        "id": "test",
        "split": [{"name": "mail", "weight": 1}, {"name": "holdout", "weight": 1, "holdout": True}],
    }
)


def _run(seed: int, lift: float) -> tuple[Uplift, float]:
    rng = np.random.default_rng(seed)
    pop = make_population(rng, CUSTOMERS)
    arms = np.array([choose_arm(c, f"journey{seed}", STEP).name for c in pop.ids])  # type: ignore[union-attr]
    treated = np.flatnonzero(arms == "mail")
    held = np.flatnonzero(arms == "holdout")
    conv_t, rev_t = pop.outcomes(rng, treated, lift)
    conv_h, rev_h = pop.outcomes(rng, held)
    up = compare(
        ArmSample("mail", conv_t, rev_t, pop.pre_spend[treated]),
        ArmSample("holdout", conv_h, rev_h, pop.pre_spend[held], holdout=True),
    )
    # Extra buyers spend like any buyer: the true revenue effect is lift x the mean basket.
    return up, lift * float(pop.expected_basket().mean())


def test_without_treatment_about_five_percent_of_splits_look_significant() -> None:
    ups = [_run(seed, 0.0)[0] for seed in range(RUNS)]
    for metric in ("conversion", "revenue"):
        p = [getattr(u, metric).p_value for u in ups]
        assert None not in p
        share = sum(v < 0.05 for v in p) / RUNS
        assert 0.03 <= share <= 0.07, (metric, share)
    # CUPED is on by default and the pre-period spend explains part of the variance.
    assert all(u.method == "cuped+welch" for u in ups)
    assert np.mean([u.revenue.variance_reduction for u in ups]) > 0.02


def test_with_an_injected_effect_the_interval_contains_it_in_ninety_percent_of_runs() -> None:
    lift = 0.03
    covered = {"conversion": 0, "revenue": 0}
    for seed in range(1000, 1000 + RUNS):
        up, true_revenue = _run(seed, lift)
        for metric, truth in (("conversion", lift), ("revenue", true_revenue)):
            ci = getattr(up, metric).ci95
            assert ci is not None
            covered[metric] += ci[0] <= truth <= ci[1]
    assert covered["conversion"] >= 0.9 * RUNS, covered
    assert covered["revenue"] >= 0.9 * RUNS, covered
