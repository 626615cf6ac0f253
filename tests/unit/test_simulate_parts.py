"""A parallel simulation's parts: progress counted in whatever order they finish, a forked
part's failure brought back, forked only before the Temporal runtime runs, the clock's moves given
time on a busy machine, and the emails compiled once before the parts are forked."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import ROOT
from trouw.commands.simulate import (
    PartResult,
    _advance,
    _as_finished,
    _compile_emails,
    _forked_result,
    _run_forked_part,
)
from trouw.domain.render import TemplateStore
from trouw.domain.render import store as render_store
from trouw.settings import Settings


async def test_progress_counts_the_parts_that_finished_not_the_first_ones() -> None:
    parts = [["a", "b", "c"], ["d"], ["e", "f"]]
    loop = asyncio.get_running_loop()
    works: list[asyncio.Future[PartResult]] = [loop.create_future() for _ in parts]
    seen: list[tuple[int, str]] = []

    async def collect() -> None:
        async for finished, (_, _, outbox, _) in _as_finished(list(works), parts):
            seen.append((finished, outbox))

    collecting = asyncio.ensure_future(collect())
    for number in (1, 2, 0):  # the one-customer part first, the first part last
        works[number].set_result(([], [], f"part-{number}", []))
        for _ in range(5):  # let the collector take it before the next one finishes
            await asyncio.sleep(0)
    await collecting
    assert seen == [(1, "part-1"), (3, "part-2"), (6, "part-0")]


def _forked(target: Any, *args: Any) -> tuple[Any, Any]:
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(sending, *args), name="part-test")
    process.start()
    sending.close()
    return process, receiving


def test_a_forked_part_that_fails_raises_its_error_with_the_traceback() -> None:
    # A payload without customers: the part fails in _simulate_part_here, before Temporal.
    process, receiving = _forked(_run_forked_part, {"events": []}, ["c1"], "j", "t", "w")
    with pytest.raises(KeyError) as raised:
        _forked_result(process, receiving)
    process.join()
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert "_simulate_part_here" in str(raised.value.__cause__)


def _dies(sending: Any) -> None:
    os._exit(3)  # nothing sent back, as a part killed by the system


def test_a_forked_part_that_dies_is_an_error_naming_its_exit_code() -> None:
    process, receiving = _forked(_dies)
    with pytest.raises(RuntimeError, match=r"part-test ended without a result \(exit code 3\)"):
        _forked_result(process, receiving)


class _TestService:
    def __init__(self) -> None:
        self.sleeps: list[tuple[timedelta, timedelta | None]] = []

    async def unlock_time_skipping_with_sleep(
        self,
        request: Any,
        timeout: timedelta | None = None,  # noqa: ASYNC109 - the SDK's parameter, recorded
    ) -> None:
        self.sleeps.append((request.duration.ToTimedelta(), timeout))


class _Env:
    def __init__(self, now: datetime) -> None:
        self.now = now
        self.client = SimpleNamespace(test_service=_TestService())

    async def get_current_time(self) -> datetime:
        return self.now


async def test_the_clock_moves_with_a_deadline_longer_than_the_clients_30_seconds() -> None:
    # env.sleep's own call gives up after 30 s of real time ("Timeout expired"), which a busy
    # machine reached with 4 parts: the simulator's sleep sets its own deadline.
    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    env = _Env(now)
    await _advance(env, now + timedelta(days=3))
    await _advance(env, now - timedelta(seconds=1))  # already past: no sleep
    [(slept, deadline)] = env.client.test_service.sleeps
    assert slept == timedelta(days=3)
    assert deadline is not None and deadline >= timedelta(minutes=5)


def test_parts_are_forked_only_before_the_temporal_runtime_runs_its_threads() -> None:
    # A part forked from a process running the runtime's threads died of SIGSEGV (2 of 5 runs).
    script = (
        "from trouw.commands.simulate import _can_fork\n"
        "from trouw.stack.temporal import quiet_runtime\n"
        "before = _can_fork()\n"
        "quiet_runtime()\n"
        "print(before, _can_fork())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["True", "False"]


def test_emails_compiled_before_the_fork_are_not_compiled_again_in_a_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    templates = ROOT / "templates"
    monkeypatch.setattr(render_store, "_COMPILED", {})  # nothing compiled yet in this process
    _compile_emails(templates, {"nl-BE", "fr-BE"})

    def compile_again(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compiled again")

    monkeypatch.setattr(TemplateStore, "_compile_email", compile_again)
    # A part's own store (its Services build a new one), as the worker renders for a send.
    store = TemplateStore(templates, locale_fallback=Settings().locale_fallback)
    emails = [name for name in store.names() if "email" in store.channels(name)]
    assert emails
    for name in emails:
        for locale in ("nl-BE", "fr-BE"):
            assert store.compiled_html(name, locale)
