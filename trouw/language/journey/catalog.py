"""The journeys a worker runs: re-read on change, each file validated alone, a bad file refused.

A file that fails validation never replaces the version that was running: the last good
version of that journey keeps starting runs, every other journey is untouched, and the refusal
is logged at ERROR (file:line:col) and written to a state file that `trouw status` shows. The
state file also keeps the last good definitions, so a worker restarted while a file is broken
still runs the last good version.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from trouw.language.journey.loader import LoadedJourney, Problem, journey_files
from trouw.language.journey.model import Journey

log = logging.getLogger("trouw.journeys")

FileStateName = Literal["loaded", "refused"]
STATE_FILE = "journeys-status.json"


@dataclass(frozen=True)
class FileState:
    """What the catalog made of one journey file."""

    file: str
    state: FileStateName
    journey: str | None = None
    version: str | None = None  # the version new runs get: the last good one when refused
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        name = self.journey or "?"
        if self.state == "loaded":
            return f"loaded   {self.file}: {name} version {self.version}"
        running = (
            f"last good version {self.version} keeps running"
            if self.version
            else "not running (no good version yet)"
        )
        return f"REFUSED  {self.file}: {len(self.problems)} problem(s); {name}: {running}"


@dataclass(frozen=True)
class CatalogState:
    directory: str
    checked_at: str
    files: list[FileState]

    @property
    def refused(self) -> list[FileState]:
        return [item for item in self.files if item.state == "refused"]

    def to_json(self, good: dict[str, Journey]) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "checked_at": self.checked_at,
            "files": [asdict(item) for item in self.files],
            "last_good": {
                name: journey.model_dump(mode="json", by_alias=True)
                for name, journey in sorted(good.items())
            },
        }


def read_state(path: Path) -> tuple[CatalogState, dict[str, Journey]] | None:
    """The state a worker wrote, with its last good definitions; None when there is none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        state = CatalogState(
            directory=str(data["directory"]),
            checked_at=str(data["checked_at"]),
            files=[FileState(**item) for item in data["files"]],
        )
        good = {name: Journey.model_validate(d) for name, d in data.get("last_good", {}).items()}
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return None
    return state, good


Check = Callable[[list[Path]], tuple[list[LoadedJourney], list[Problem]]]


class JourneyCatalog:
    """The journeys folder as the worker runs it; `journeys()` never raises for a bad file."""

    def __init__(
        self,
        directory: Path,
        *,
        check: Check,
        state_file: Path | None = None,
    ) -> None:
        self.directory = directory
        self._check = check
        self._state_file = state_file
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[str, float], ...] | None = None
        self._good: dict[str, Journey] = {}  # journey name -> last good version
        self._file_of: dict[str, str] = {}  # journey name -> the file it came from
        self.state = CatalogState(str(directory), "", [])
        if state_file is not None:
            previous = read_state(state_file)
            if previous is not None and previous[0].directory == str(directory):
                self._good = previous[1]

    def _current_stamp(self) -> tuple[tuple[str, float], ...]:
        try:
            paths = sorted(self.directory.glob("*.yaml"))
            return tuple((str(path), path.stat().st_mtime) for path in paths)
        except OSError:
            return ()

    def journeys(self) -> dict[str, Journey]:
        with self._lock:
            stamp = self._current_stamp()
            if stamp != self._stamp:
                self._reload()
                self._stamp = stamp
            return dict(self._good)

    def _reload(self) -> None:
        files = journey_files(self.directory) if self.directory.is_dir() else []
        try:
            loaded, problems = self._check(files)
        except Exception:  # a bug in a check must not stop the journeys that run
            log.exception("journey validation crashed; keeping the journeys that run")
            return
        by_file: dict[str, list[str]] = {}
        for problem in problems:
            by_file.setdefault(problem.file, []).append(str(problem))
        states: list[FileState] = []
        good: dict[str, Journey] = {}
        seen_names: set[str] = set()
        for path in files:
            name = str(path)
            item = next((i for i in loaded if i.doc.file == name), None)
            journey = item.journey if item is not None else None
            refused = by_file.get(name, [])
            if journey is not None:
                seen_names.add(journey.name)
            if journey is not None and not refused:
                good[journey.name] = journey
                self._file_of[journey.name] = name
                states.append(FileState(name, "loaded", journey.name, journey.version))
                continue
            if not refused:
                refused = [f"{name}:1:1: the file could not be read as a journey"]
            keep_name = journey.name if journey is not None else self._name_from(name)
            previous = self._good.get(keep_name) if keep_name else None
            if previous is not None and keep_name is not None:
                good[keep_name] = previous
                seen_names.add(keep_name)
            for text in refused:
                log.error("journey file refused: %s", text)
            log.error(
                "journey file %s refused (%d problem(s)); %s",
                name,
                len(refused),
                f"journey {keep_name} keeps running version {previous.version}"
                if previous is not None
                else "no earlier good version: it starts no runs",
            )
            states.append(
                FileState(
                    name,
                    "refused",
                    keep_name,
                    previous.version if previous is not None else None,
                    refused,
                )
            )
        self._good = good
        self._file_of = {n: f for n, f in self._file_of.items() if n in good}
        self.state = CatalogState(
            str(self.directory), datetime.now(UTC).isoformat(timespec="seconds"), states
        )
        self._write_state()

    def _name_from(self, file: str) -> str | None:
        """The journey a broken file held: the one that came from it last time."""
        for name, origin in self._file_of.items():
            if origin == file:
                return name
        stem = Path(file).stem
        return stem if stem in self._good else None

    def _write_state(self) -> None:
        if self._state_file is None:
            return
        try:
            self._state_file.parent.mkdir(parents=True, exist_ok=True)
            temporary = self._state_file.with_suffix(".tmp")
            temporary.write_text(
                json.dumps(self.state.to_json(self._good), indent=2) + "\n", encoding="utf-8"
            )
            os.replace(temporary, self._state_file)
        except OSError as exc:
            log.error("cannot write %s: %s", self._state_file, exc)
