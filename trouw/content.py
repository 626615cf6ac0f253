"""The version of the journeys and templates a process runs, as one digest of their files.

Every worker must run the same journeys and templates (docs/operations.md): each exports its
digest as `trouw_content_info{digest=...}`, and an alert fires when the workers disagree.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

from trouw import metrics

log = logging.getLogger("trouw.content")
DIGEST_LENGTH = 12


def content_digest(*folders: Path) -> str:
    """SHA-256 over every file's path (relative to its folder) and bytes, in a stable order."""
    digest = hashlib.sha256()
    for number, folder in enumerate(folders):
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        for path in files:
            digest.update(f"{number}:{path.relative_to(folder).as_posix()}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:DIGEST_LENGTH]


def export_digest(*folders: Path) -> str:
    """Set the content gauge to this process's digest (one label value at a time)."""
    digest = content_digest(*folders)
    metrics.CONTENT_INFO.clear()
    metrics.CONTENT_INFO.labels(digest=digest).set(1)
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
