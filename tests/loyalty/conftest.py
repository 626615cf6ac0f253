"""Loyalty fixtures: each test starts from the default rules and a known code key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from trouw.domain.loyalty import ledger
from trouw.domain.loyalty.rules import LoyaltyRules


@pytest.fixture(autouse=True)
def loyalty_config() -> Iterator[None]:
    before = ledger.config()
    ledger.configure(ledger.LoyaltyConfig(rules=LoyaltyRules(), key=b"test-key"))
    yield
    ledger.configure(before)
