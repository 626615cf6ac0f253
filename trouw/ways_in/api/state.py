"""What every endpoint shares: settings, the database engine and (when connected) Temporal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Request
from sqlalchemy.engine import Engine
from temporalio.client import Client

from trouw.settings import Settings

if TYPE_CHECKING:
    from trouw.ways_in.api.clicks import ClickWriter


@dataclass
class ApiState:
    """Settings, engine, the Temporal client (None leaves hand-offs to the relay) and the click
    writer."""

    settings: Settings
    engine: Engine
    client: Client | None = None
    clicks: ClickWriter | None = None  # the app's lifespan starts and stops it

    def setting(self, name: str, default: Any = None) -> Any:
        # Settings added for the API after the settings model was written are read leniently,
        # so the API runs on a settings model that does not know them yet.
        return getattr(self.settings, name, default)


def api_state(request: Request) -> ApiState:
    """The ApiState of the app serving this request (a FastAPI dependency)."""
    state: ApiState = request.app.state.trouw
    return state
