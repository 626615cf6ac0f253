"""Fault injection at the provider boundary: real workers SIGKILLed into their send windows,
providers that fail on purpose and never deduplicate; the counts are printed as figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.harness import Report, Scenario, run

# A run waits for killed attempts to time out (45 s, the production profile) before retrying.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def show(report: Report, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print()
        for line in report.lines():
            print(line)


async def test_smtp_with_faulty_connections_and_worker_kills(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await run(
        Scenario(sends=100, provider="smtp", fault_rate=0.3, call_seconds=2.0, kill_every=(2, 8)),
        tmp_path,
    )
    show(report, capsys)
    assert report.unfinished == 0
    assert report.lost_silently == 0
    assert report.orphaned_copies == 0
    # A second copy only where the server took the message and its answer was lost after the
    # final dot, and the category rule then resent it.
    assert report.extra_unexplained == 0
    # The first kill is timed on a provider call seen in progress (harness.first_kill_in_a_call).
    assert report.faulty_calls > 0 and report.kills_in_send_window > 0


async def test_smtp_server_holding_answers_past_the_deadline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await run(
        Scenario(
            sends=40,
            provider="smtp",
            fault_rate=0.3,
            call_seconds=1.0,
            kill_every=None,
            hold_only=True,
            latency=(0.0, 0.0),
        ),
        tmp_path,
    )
    show(report, capsys)
    assert report.orphaned_copies == 0, "no call outlived its deadline"
    assert report.extra_unexplained == 0
    assert report.lost_silently == 0 and report.unfinished == 0


@pytest.mark.parametrize("provider", ["sendgrid", "twilio"])
async def test_http_providers_are_reconciled_without_duplicates(
    provider: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await run(
        Scenario(sends=50, provider=provider, fault_rate=0.3, call_seconds=1.0, kill_every=(2, 8)),  # type: ignore[arg-type]
        tmp_path,
    )
    show(report, capsys)
    assert report.unfinished == 0
    assert report.lost_silently == 0
    # The provider can be asked: nothing stays unknown, nothing is sent twice.
    assert report.unknown == 0
    assert report.duplicated == 0
    # The first kill is timed on a provider call seen in progress (harness.first_kill_in_a_call).
    assert report.faulty_calls > 0 and report.kills_in_send_window > 0
