"""What activities depend on (settings, database, templates, journeys, providers), built once."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from trouw.db.engine import get_engine
from trouw.journey.loader import LoadedJourney, load_journeys
from trouw.render import TemplateStore
from trouw.settings import Settings


class JourneyCatalog:
    """The journeys folder, re-read when a file changes: new runs get the edited version."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[str, float], ...] | None = None
        self._journeys: dict[str, LoadedJourney] = {}

    def _current_stamp(self) -> tuple[tuple[str, float], ...]:
        return tuple(
            (str(path), path.stat().st_mtime) for path in sorted(self.directory.glob("*.yaml"))
        )

    def journeys(self) -> dict[str, LoadedJourney]:
        with self._lock:
            stamp = self._current_stamp()
            if stamp != self._stamp:
                self._journeys = load_journeys(self.directory)
                self._stamp = stamp
            return self._journeys


@dataclass
class Services:
    settings: Settings
    engine: Engine
    templates: TemplateStore
    catalog: JourneyCatalog
    _providers: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings, *, engine: Engine | None = None) -> Services:
        return cls(
            settings=settings,
            engine=engine or get_engine(settings.effective_database_url),
            templates=TemplateStore(settings.templates_dir),
            catalog=JourneyCatalog(settings.journeys_dir),
        )

    def provider(self, channel: str) -> Any:
        """The configured provider for a channel, made on first use."""
        with self._lock:
            if channel not in self._providers:
                from trouw.providers import email_provider, sms_provider

                factory = email_provider if channel == "email" else sms_provider
                self._providers[channel] = factory(self.settings)
            return self._providers[channel]
