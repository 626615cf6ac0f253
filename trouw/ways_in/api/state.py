"""What every endpoint shares: settings, the database engine and (when connected) Temporal."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request
from sqlalchemy.engine import Engine
from temporalio.client import Client

from trouw.language.journey.interest import EVERYTHING, Interest
from trouw.settings import Settings

if TYPE_CHECKING:
    from trouw.ways_in.api.clicks import ClickWriter


# How long the API trusts what the workers said they hand to Temporal (a hint: see Heard).
HEARD_SECONDS = 5.0


@dataclass
class Heard:
    """The event types the workers' relays hand to Temporal, as the API last read them: a new
    event of another type is left to the relay, which judges it itself (trouw.stack.relay)."""

    value: Interest = EVERYTHING
    read_at: float = float("-inf")

    async def now(self, engine: Engine) -> Interest:
        from trouw.stack.presence import heard_by_workers

        if time.monotonic() - self.read_at >= HEARD_SECONDS:
            self.read_at = time.monotonic()
            heard = await asyncio.to_thread(heard_by_workers, engine)
            self.value = EVERYTHING if heard is None else heard
        return self.value


@dataclass
class ApiState:
    """Settings, engine, the Temporal client (None leaves hand-offs to the relay) and the click
    writer."""

    settings: Settings
    engine: Engine
    client: Client | None = None
    clicks: ClickWriter | None = None  # the app's lifespan starts and stops it
    heard: Heard = field(default_factory=Heard)

    def setting(self, name: str, default: Any = None) -> Any:
        # Settings added for the API after the settings model was written are read leniently,
        # so the API runs on a settings model that does not know them yet.
        return getattr(self.settings, name, default)


def api_state(request: Request) -> ApiState:
    """The ApiState of the app serving this request (a FastAPI dependency)."""
    state: ApiState = request.app.state.trouw
    return state
