"""An endpoint's database work: in a thread, in one transaction or in one that only reads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from sqlmodel import Session

from trouw.domain.db.engine import read_scope, session_scope
from trouw.ways_in.api.state import ApiState

T = TypeVar("T")


async def in_session(
    state: ApiState, work: Callable[[Session], T], *, read_only: bool = False
) -> T:
    """work(session) in a thread: in one transaction, or (read_only) in one that takes no write
    lock on SQLite, so a read never queues behind the stack's writers (sends, redemptions)."""

    def run() -> T:
        with (read_scope if read_only else session_scope)(state.engine) as session:
            return work(session)

    return await asyncio.to_thread(run)
