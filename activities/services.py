"""What activities depend on (settings, database, templates, journeys, providers), built once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from trouw.domain.db.engine import get_engine
from trouw.domain.publish import ContentSource, content_source
from trouw.domain.render import TemplateStore
from trouw.language.journey.catalog import JourneyCatalog
from trouw.language.journey.loader import LoadedJourney, Problem
from trouw.settings import Settings


def journey_check(
    settings: Settings, *, templates_dir: Path | None = None
) -> Callable[[list[Path]], tuple[list[LoadedJourney], list[Problem]]]:
    """What `trouw validate` checks, as the catalog runs it on every change of the folder
    (templates from settings.templates_dir, or from a published bundle's folder)."""
    templates = templates_dir if templates_dir is not None else settings.templates_dir

    def check(files: list[Path]) -> tuple[list[LoadedJourney], list[Problem]]:
        from activities.custom import CUSTOM_ACTIVITY_NAMES
        from trouw.domain.checks.validate import validate_paths
        from trouw.language.attributes import declared_attributes

        return validate_paths(
            files,
            templates_dir=templates,
            activities=CUSTOM_ACTIVITY_NAMES,
            attributes=declared_attributes(settings),
        )

    return check


@dataclass
class Services:
    settings: Settings
    engine: Engine
    # Journeys and templates: the process's folders or the published bundle (trouw.domain.publish).
    content: ContentSource
    _providers: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        engine: Engine | None = None,
        content: ContentSource | None = None,
    ) -> Services:
        """`content`: instead of the one the settings ask for (the simulator's)."""
        from trouw.domain.loyalty.ledger import configure_from

        configure_from(settings)
        engine = engine or get_engine(settings.effective_database_url)
        return cls(
            settings=settings,
            engine=engine,
            content=content or content_source(settings, engine),
        )

    @property
    def catalog(self) -> JourneyCatalog:
        return self.content.current().catalog

    @property
    def templates(self) -> TemplateStore:
        return self.content.current().templates

    def use_provider(self, channel: str, provider: Any) -> None:
        """Use this provider for the channel instead of the configured one (the simulator's
        outbox without .eml files)."""
        with self._lock:
            self._providers[channel] = provider

    def provider(self, channel: str) -> Any:
        """The configured provider for a channel, made on first use."""
        with self._lock:
            if channel not in self._providers:
                from trouw.providers import email_provider, sms_provider

                factory = email_provider if channel == "email" else sms_provider
                self._providers[channel] = factory(self.settings)
            return self._providers[channel]
