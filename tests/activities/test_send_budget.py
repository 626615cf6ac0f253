"""The send timing budget (workflows/options.py): a provider call ends before its lease does,
and a worker configured for longer calls than the lease allows refuses to start."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from activities.messaging import MessagingActivities
from activities.services import Services
from tests.activities.test_send_message import add_customer, request, send
from tests.conftest import ROOT
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Message
from trouw.providers.base import OutgoingEmail, ProviderConfigError, ProviderResult
from trouw.settings import Settings
from workflows.options import (
    PROVIDER_CALL_MAX,
    SEND_ATTEMPT_TIMEOUT,
    SEND_LEASE_MARGIN,
    SEND_OPTIONS,
    SEND_RECORD_MARGIN,
)


def budget_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(
        home=tmp_path / "home",
        journeys_dir=ROOT / "journeys",
        templates_dir=ROOT / "templates",
        signing_keys=["test-key"],
        public_url="https://trouw.example",
        **overrides,
    )


class Recording:
    """An email provider that notes the deadline it was given and accepts the message."""

    name = "recording"

    def __init__(self) -> None:
        self.deadlines: list[float | None] = []

    async def send_email(
        self, email: OutgoingEmail, *, deadline: float | None = None
    ) -> ProviderResult:
        self.deadlines.append(deadline)
        return ProviderResult(provider=self.name, provider_id="r-1")


def test_the_attempt_timeout_outlasts_the_longest_lease() -> None:
    assert SEND_OPTIONS["start_to_close_timeout"] == SEND_ATTEMPT_TIMEOUT
    assert SEND_ATTEMPT_TIMEOUT > PROVIDER_CALL_MAX + SEND_LEASE_MARGIN
    assert SEND_RECORD_MARGIN < SEND_LEASE_MARGIN


@pytest.mark.parametrize("setting", ["provider_timeout_seconds", "smtp_timeout_seconds"])
def test_a_call_budget_above_the_lease_is_refused_at_start(
    setting: str, tmp_path: Path, engine: Engine
) -> None:
    settings = budget_settings(tmp_path, **{setting: PROVIDER_CALL_MAX.total_seconds() + 1})
    with pytest.raises(ProviderConfigError, match=setting.upper()):
        MessagingActivities(Services.from_settings(settings, engine=engine))


async def test_the_call_deadline_ends_before_the_lease(tmp_path: Path, engine: Engine) -> None:
    services = Services.from_settings(
        budget_settings(tmp_path, provider_timeout_seconds=12), engine=engine
    )
    provider = Recording()
    services._providers["email"] = provider
    add_customer(engine)
    input = request()
    assert (await send(services, input)).outcome == "sent"
    with session_scope(engine) as session:
        row = session.exec(select(Message).where(Message.message_key == input.message_key)).one()
        sending = next(e for e in row.status_history if e["status"] == "sending")
    lease = datetime.fromisoformat(sending["lease_until"]) - datetime.fromisoformat(
        sending["started"]
    )
    assert lease == timedelta(seconds=12) + SEND_LEASE_MARGIN
    (deadline,) = provider.deadlines
    assert deadline is not None
    # On the wall clock, the call's deadline is the lease's end minus the record margin.
    on_the_wall = datetime.now(UTC) + timedelta(seconds=deadline - time.monotonic())
    lease_until = datetime.fromisoformat(sending["lease_until"])
    assert abs(on_the_wall - (lease_until - SEND_RECORD_MARGIN)) < timedelta(seconds=1)
