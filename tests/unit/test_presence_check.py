"""The worker-versions check of `trouw status`: stale heartbeats and digests other than expected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from trouw.domain.db.models import WorkerPresence
from trouw.stack.health import presence_check
from trouw.stack.presence import GONE_AFTER, STALE_AFTER

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def worker(identity: str, digest: str | None, age: timedelta) -> WorkerPresence:
    return WorkerPresence(
        identity=identity,
        host="h",
        pid=1,
        task_queue="trouw",
        digest=digest,
        started_at=NOW - timedelta(hours=1),
        seen_at=NOW - age,
    )


def test_fresh_workers_on_the_expected_digest_are_healthy() -> None:
    check = presence_check(
        [worker("1@a", "abc", timedelta(seconds=3)), worker("2@b", "abc", STALE_AFTER)],
        expected="abc",
        now=NOW,
    )
    assert check.ok
    assert check.summary.startswith("2 worker(s)")
    assert [item["identity"] for item in check.items] == ["1@a", "2@b"]
    assert all(item["expected_digest"] and not item["stale"] for item in check.items)


def test_a_worker_on_an_old_digest_is_flagged() -> None:
    check = presence_check(
        [worker("1@a", "abc", timedelta(seconds=3)), worker("2@b", "old", timedelta(seconds=3))],
        expected="abc",
        now=NOW,
    )
    assert not check.ok
    assert "NOT the expected abc" in check.details[1] and "runs old" in check.details[1]
    assert [item["expected_digest"] for item in check.items] == [True, False]


def test_a_worker_that_has_loaded_nothing_is_flagged() -> None:
    check = presence_check([worker("1@a", None, timedelta(0))], expected="abc", now=NOW)
    assert not check.ok and "runs nothing yet" in check.details[0]


def test_a_stale_heartbeat_is_flagged_until_the_worker_counts_as_gone() -> None:
    stale = presence_check(
        [worker("1@a", "abc", STALE_AFTER + timedelta(seconds=1))], expected="abc", now=NOW
    )
    assert not stale.ok and "STALE" in stale.details[0] and stale.items[0]["stale"]
    assert stale.summary.startswith("0 worker(s)")
    gone = presence_check(
        [worker("1@a", "old", GONE_AFTER + timedelta(seconds=1))], expected="abc", now=NOW
    )
    assert gone.ok and "gone (not flagged)" in gone.details[0] and gone.items[0]["gone"]


def test_nothing_to_compare_with_flags_only_stale_workers() -> None:
    check = presence_check([worker("1@a", "none", timedelta(0))], expected=None, now=NOW)
    assert check.ok
    assert presence_check([], expected="abc", now=NOW).ok
