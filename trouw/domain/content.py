"""The version of the journeys and templates a process runs, as one digest of their files.

Every worker must run the same journeys and templates (docs/operations.md): each exports its
digest as `trouw_content_info{digest=...}`, and an alert fires when the workers disagree.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path

from trouw.stack import metrics

log = logging.getLogger("trouw.content")
DIGEST_LENGTH = 12
# The digest this process shows on the gauge, for its worker presence row (trouw/stack/presence.py).
_running: str | None = None


# The folders of a bundle, in digest order: a file moved from one to the other is a change.
FOLDERS = ("journeys", "templates")


def folder_files(*folders: Path) -> dict[tuple[int, str], bytes]:
    """Every file under the folders, keyed by (folder number, path relative to its folder)."""
    found: dict[tuple[int, str], bytes] = {}
    for number, folder in enumerate(folders):
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if path.is_file():
                found[(number, path.relative_to(folder).as_posix())] = path.read_bytes()
    return found


def files_digest(files: Mapping[tuple[int, str], bytes]) -> str:
    """SHA-256 over every file's folder number, relative path and bytes, in a stable order."""
    digest = hashlib.sha256()
    for number, name in sorted(files):
        digest.update(f"{number}:{name}\0".encode())
        digest.update(hashlib.sha256(files[(number, name)]).digest())
    return digest.hexdigest()[:DIGEST_LENGTH]


def content_digest(*folders: Path) -> str:
    """The digest of the files under the folders (journeys, templates): what a process runs."""
    return files_digest(folder_files(*folders))


def set_digest(digest: str) -> None:
    """Show this digest, and only it, on the content gauge."""
    global _running
    _running = digest
    metrics.CONTENT_INFO.clear()
    metrics.CONTENT_INFO.labels(digest=digest).set(1)


def running_digest() -> str | None:
    """The digest this process runs (as on its gauge), None before its content was loaded."""
    return _running


def export_digest(*folders: Path) -> str:
    """Set the content gauge to this process's digest (one label value at a time)."""
    digest = content_digest(*folders)
    set_digest(digest)
    return digest


async def watch_content(*folders: Path, every: float = 30.0) -> None:
    """Re-read the digest now and then: a folder changed under a running worker shows too."""
    last = None
    while True:
        try:
            digest = await asyncio.to_thread(export_digest, *folders)
            if digest != last:
                log.info("journeys and templates: digest %s", digest)
                last = digest
        except OSError as exc:
            log.warning("cannot read the journeys or templates: %s", exc)
        await asyncio.sleep(every)
