"""The rule for an unknown send outcome: the provider's answer first, then the deadline, then
the category."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from trouw.domain.send_ledger import reconcile_verdict
from trouw.providers.base import LookupAnswer

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
FOUND = LookupAnswer(found=True, settled=True, provider_id="m1")
ABSENT = LookupAnswer(found=False, settled=True)
NOT_YET = LookupAnswer(found=False, settled=False)


@pytest.mark.parametrize(
    ("answer", "deadline_passed", "resend", "expected"),
    [
        (FOUND, False, False, "accepted"),
        (FOUND, True, True, "accepted"),  # found after the deadline: still never resent
        (ABSENT, False, False, "resend"),  # not accepted: no duplicate possible
        (ABSENT, True, False, "resend"),
        (NOT_YET, False, True, "wait"),
        (None, False, False, "wait"),
        (NOT_YET, True, True, "resend"),  # transactional: at least once
        (None, True, True, "resend"),
        (NOT_YET, True, False, "give_up"),  # service, promotional: at most once, recorded
        (None, True, False, "give_up"),
    ],
)
def test_reconcile_verdict(
    answer: LookupAnswer | None, deadline_passed: bool, resend: bool, expected: str
) -> None:
    answer_by = NOW - timedelta(seconds=1) if deadline_passed else NOW + timedelta(minutes=5)
    assert reconcile_verdict(answer, now=NOW, answer_by=answer_by, resend=resend) == expected
