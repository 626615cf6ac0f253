"""Journeys and templates published into the database, so that every worker runs one version.

`trouw publish` checks the folders as a worker's guarded reload does and stores them as one
immutable bundle (table content_bundle). With `content_source = "database"` each process loads
the newest bundle, unpacks it into a folder named by its digest under its home (checked against
the digest before use), and runs journeys and templates from there, never from its own
journeys/ and templates/ folders; it polls the newest digest and swaps to a new bundle at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import shutil
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trouw.domain.content import FOLDERS, files_digest, folder_files, set_digest
from trouw.domain.db.models import ContentBundle, utcnow
from trouw.domain.render import TemplateStore
from trouw.language.journey.catalog import STATE_FILE, Check, JourneyCatalog
from trouw.settings import Settings

log = logging.getLogger("trouw.publish")

Files = dict[tuple[int, str], bytes]
CONTENT_DIR = "content"


class BundleError(ValueError):
    """A stored bundle that cannot be unpacked as it was published."""


@dataclass(frozen=True)
class Bundle:
    """One published version: its files, digest, and who published it when."""

    digest: str
    files: Files
    published_at: datetime
    published_by: str


def pack(files: Files) -> bytes:
    """The files as one compressed JSON object keyed 'journeys/<path>' and 'templates/<path>'."""
    data = {
        f"{FOLDERS[number]}/{name}": base64.b64encode(raw).decode("ascii")
        for (number, name), raw in sorted(files.items())
    }
    return zlib.compress(json.dumps(data, sort_keys=True).encode("utf-8"), 6)


def unpack(payload: bytes) -> Files:
    """The files of a packed bundle; refuses names that would leave the bundle's folders."""
    try:
        data = json.loads(zlib.decompress(payload))
    except (zlib.error, ValueError) as exc:
        raise BundleError(f"bundle payload unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise BundleError("bundle payload is not an object")
    files: Files = {}
    for key, value in data.items():
        path = PurePosixPath(str(key))
        parts = path.parts
        if len(parts) < 2 or parts[0] not in FOLDERS or ".." in parts or path.is_absolute():
            raise BundleError(f"bundle file name refused: {key!r}")
        try:
            raw = base64.b64decode(str(value), validate=True)
        except binascii.Error:
            raise BundleError(f"bundle file {key!r} is not base64") from None
        files[(FOLDERS.index(parts[0]), "/".join(parts[1:]))] = raw
    return files


def check_folders(settings: Settings, journeys_dir: Path, templates_dir: Path) -> list[str]:
    """Problems (file:line:col: message) the guarded reload of a worker would refuse files for."""
    from activities.services import journey_check
    from trouw.language.journey.loader import journey_files

    if not journeys_dir.is_dir():
        return [f"{journeys_dir}:1:1: journeys folder not found"]
    if not templates_dir.is_dir():
        return [f"{templates_dir}:1:1: templates folder not found"]
    files = journey_files(journeys_dir)
    loaded, problems = journey_check(settings, templates_dir=templates_dir)(files)
    found = [str(problem) for problem in problems]
    read = {item.doc.file for item in loaded if item.journey is not None}
    flagged = {problem.file for problem in problems}
    # The catalog refuses a file that yields no journey even when no check names it.
    found += [
        f"{path}:1:1: the file could not be read as a journey"
        for path in files
        if str(path) not in read and str(path) not in flagged
    ]
    return found


@dataclass(frozen=True)
class Published:
    """What `trouw publish` did: the bundle that is now the newest, or the problems refused."""

    problems: list[str]
    bundle: Bundle | None = None
    unchanged: bool = False  # the folders were the newest bundle already: nothing stored


def publish(
    engine: Engine, settings: Settings, journeys_dir: Path, templates_dir: Path, *, by: str
) -> Published:
    """Check the folders, then store them as the newest bundle; a refusal stores nothing."""
    problems = check_folders(settings, journeys_dir, templates_dir)
    if problems:
        return Published(problems)
    files = folder_files(journeys_dir, templates_dir)
    digest = files_digest(files)
    with engine.begin() as connection:
        newest = _newest(connection)
        if newest is not None and newest.digest == digest:
            return Published([], _bundle_of(newest), unchanged=True)
        bundle = Bundle(digest, files, utcnow(), by[:200])
        connection.execute(
            sa.insert(ContentBundle).values(
                digest=digest,
                published_at=bundle.published_at,
                published_by=bundle.published_by,
                files=len(files),
                payload=pack(files),
            )
        )
    return Published([], bundle)


def _newest(connection: sa.Connection) -> sa.Row[Any] | None:
    table = ContentBundle.__table__  # type: ignore[attr-defined]
    query = sa.select(table).order_by(table.c.id.desc()).limit(1)
    return connection.execute(query).first()


def _bundle_of(row: sa.Row[Any]) -> Bundle:
    values = row._mapping
    files = unpack(values["payload"])
    if files_digest(files) != values["digest"]:
        raise BundleError(f"bundle {values['digest']}: the files do not match the digest")
    return Bundle(values["digest"], files, values["published_at"], values["published_by"])


def newest_digest(engine: Engine) -> str | None:
    """The digest of the newest bundle (one small indexed query); None before any publish."""
    table = ContentBundle.__table__  # type: ignore[attr-defined]
    query = sa.select(table.c.digest).order_by(table.c.id.desc()).limit(1)
    with engine.connect() as connection:
        value = connection.execute(query).scalar()
    return str(value) if value is not None else None


def newest_bundle(engine: Engine) -> Bundle | None:
    """The newest published bundle, checked against its digest; None before any publish."""
    with engine.connect() as connection:
        row = _newest(connection)
    return _bundle_of(row) if row is not None else None


def unpack_to(bundle: Bundle, root: Path) -> Path:
    """The bundle's files under root/<digest>/{journeys,templates}, written once and checked."""
    target = root / bundle.digest
    if _holds(target, bundle.digest):
        return target
    root.mkdir(parents=True, exist_ok=True)
    scratch = root / f".{bundle.digest}.{os.getpid()}.{threading.get_ident()}"
    shutil.rmtree(scratch, ignore_errors=True)
    for (number, name), raw in bundle.files.items():
        path = scratch / FOLDERS[number] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
    for folder in FOLDERS:
        (scratch / folder).mkdir(exist_ok=True)
    if files_digest(folder_files(*(scratch / f for f in FOLDERS))) != bundle.digest:
        shutil.rmtree(scratch, ignore_errors=True)
        raise BundleError(f"bundle {bundle.digest}: unpacked files do not match the digest")
    if target.exists():  # a partial or altered copy: replaced, never trusted
        shutil.rmtree(target, ignore_errors=True)
    try:
        os.rename(scratch, target)
    except OSError:
        # Another process on this host unpacked the same bundle first: keep theirs if it holds.
        shutil.rmtree(scratch, ignore_errors=True)
        if not _holds(target, bundle.digest):
            raise
    return target


def _holds(folder: Path, digest: str) -> bool:
    if not folder.is_dir():
        return False
    return files_digest(folder_files(*(folder / f for f in FOLDERS))) == digest


@dataclass(frozen=True)
class Snapshot:
    """The journeys and templates a process runs now; replaced whole, never edited."""

    catalog: JourneyCatalog
    templates: TemplateStore
    digest: str | None = None  # the published bundle's; None when read from the folders
    published_at: datetime | None = None
    published_by: str | None = None


def _snapshot(
    settings: Settings,
    journeys: Path,
    templates: Path,
    bundle: Bundle | None = None,
    *,
    check: Check | None = None,
) -> Snapshot:
    from activities.services import journey_check

    return Snapshot(
        catalog=JourneyCatalog(
            journeys,
            check=check or journey_check(settings, templates_dir=templates),
            state_file=settings.home / STATE_FILE,
        ),
        templates=TemplateStore(templates, locale_fallback=settings.locale_fallback),
        digest=bundle.digest if bundle is not None else None,
        published_at=bundle.published_at if bundle is not None else None,
        published_by=bundle.published_by if bundle is not None else None,
    )


class ContentSource(Protocol):
    def current(self) -> Snapshot: ...

    def latest(self) -> Snapshot:
        """The snapshot with everything published before this call (the relay judges events
        by it: a journey published before an event was stored must hear of it)."""
        ...


class FolderContent:
    """content_source = "folder": the process's own journeys/ and templates/ folders."""

    def __init__(self, settings: Settings, *, check: Check | None = None) -> None:
        # `check`: instead of `trouw validate`'s (the simulator's, answered from its own check).
        self._snapshot = _snapshot(
            settings, settings.journeys_dir, settings.templates_dir, check=check
        )

    def current(self) -> Snapshot:
        return self._snapshot

    def latest(self) -> Snapshot:
        return self._snapshot  # its catalog re-reads a changed folder on every journeys()


class PublishedContent:
    """content_source = "database": the newest published bundle, polled and swapped whole."""

    def __init__(
        self, settings: Settings, engine: Engine, *, poll_seconds: float | None = None
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.poll_seconds = settings.content_poll_seconds if poll_seconds is None else poll_seconds
        self._root = settings.home / CONTENT_DIR
        self._empty = settings.home / CONTENT_DIR / ".none"
        self._lock = threading.Lock()
        self._polled = float("-inf")
        self._snapshot: Snapshot | None = None

    def current(self) -> Snapshot:
        """The snapshot to use now; asks the database for a newer digest at most every poll."""
        snapshot = self._snapshot
        if snapshot is None or time.monotonic() - self._polled >= self.poll_seconds:
            return self.refresh()
        return snapshot

    def latest(self) -> Snapshot:
        return self.refresh()

    def refresh(self) -> Snapshot:
        """Swap to the newest bundle if it changed; on a database error keep what runs."""
        with self._lock:
            self._polled = time.monotonic()
            running = self._snapshot
            try:
                digest = newest_digest(self.engine)
                if running is not None and digest == running.digest:
                    return running
                fresh = self._load(digest)
            except (sa.exc.SQLAlchemyError, OSError, BundleError) as exc:
                if running is not None:
                    log.warning("keeping content %s: %s", running.digest, exc)
                    return running
                log.error("cannot load the published journeys and templates: %s", exc)
                fresh = self._nothing()
            self._snapshot = fresh
            return fresh

    def _load(self, digest: str | None) -> Snapshot:
        bundle = newest_bundle(self.engine) if digest is not None else None
        if bundle is None:
            log.error("no journeys and templates published yet: run `trouw publish`")
            return self._nothing()
        folder = unpack_to(bundle, self._root)
        snapshot = _snapshot(self.settings, folder / FOLDERS[0], folder / FOLDERS[1], bundle)
        snapshot.catalog.journeys()  # checked and compiled before any run sees it
        log.info(
            "journeys and templates: published %s (%s by %s)",
            bundle.digest,
            bundle.published_at.isoformat(timespec="seconds"),
            bundle.published_by,
        )
        return snapshot

    def _nothing(self) -> Snapshot:
        """No bundle: no journey starts, every render fails naming the missing template."""
        for folder in FOLDERS:
            (self._empty / folder).mkdir(parents=True, exist_ok=True)
        return _snapshot(self.settings, self._empty / FOLDERS[0], self._empty / FOLDERS[1])


async def watch_published(content: PublishedContent) -> None:
    """Poll for a new bundle even while idle, and export the digest this process runs."""
    while True:
        snapshot = await asyncio.to_thread(content.refresh)
        set_digest(snapshot.digest or "none")
        await asyncio.sleep(content.poll_seconds)


def content_source(settings: Settings, engine: Engine) -> ContentSource:
    """The content source the settings ask for."""
    if settings.content_source == "database":
        return PublishedContent(settings, engine)
    return FolderContent(settings)
