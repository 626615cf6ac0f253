"""The local outbox: messages become files for development, previews and simulation."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trouw.providers.base import (
    OutgoingEmail,
    OutgoingSms,
    ProviderResult,
    check_header_values,
)
from trouw.providers.mime import build_email_message, message_id_for

if TYPE_CHECKING:
    from trouw.settings import Settings

try:  # POSIX: serialise index appends between processes (simulator and worker share it)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

INDEX_FILE = "index.jsonl"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_key(message_key: str) -> str:
    """A file name for a message key: readable when the key is, never a path, and distinct
    keys never share a name (a hash is added whenever characters were replaced)."""
    cleaned = _UNSAFE.sub("_", message_key).lstrip(".")[:150]
    if cleaned == message_key and cleaned:
        return cleaned
    digest = hashlib.sha256(message_key.encode("utf-8")).hexdigest()[:10]
    return f"{cleaned}-{digest}" if cleaned else digest


@dataclass(frozen=True)
class OutboxEntry:
    """One line of outbox/index.jsonl."""

    message_key: str
    channel: str  # email | sms
    to: str
    subject: str | None
    body: str | None
    category: str
    journey: str
    files: tuple[str, ...]
    at: datetime
    message_id: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutboxEntry:
        return cls(
            message_key=data["message_key"],
            channel=data["channel"],
            to=data["to"],
            subject=data.get("subject"),
            body=data.get("body"),
            category=data.get("category", ""),
            journey=data.get("journey", ""),
            files=tuple(data.get("files", ())),
            at=datetime.fromisoformat(data["at"]),
            message_id=data.get("message_id"),
        )


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@contextlib.contextmanager
def _index_lock(outbox_dir: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        yield
        return
    with (outbox_dir / ".index.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _append_index(outbox_dir: Path, entry: dict[str, Any]) -> None:
    line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
    with (outbox_dir / INDEX_FILE).open("a", encoding="utf-8") as handle:
        handle.write(line)


class OutboxProvider:
    """Email and SMS provider that writes files under outbox_dir instead of sending.

    Idempotent by message key: the first send of a key writes the files and one index line;
    later sends of the same key change nothing and return the same result. `eml=False` (the
    simulator) leaves out the .eml, the RFC 5322 message no one reads there: building it was a
    sixth of a simulated customer's CPU.
    """

    name = "outbox"

    def __init__(
        self,
        outbox_dir: Path,
        *,
        email_from: str,
        reply_to: str | None = None,
        clock: Callable[[], datetime] | None = None,
        eml: bool = True,
    ) -> None:
        self.outbox_dir = Path(outbox_dir)
        self.eml = eml
        self.email_from = email_from
        self.reply_to = reply_to
        # The simulator passes its simulated clock so `at` matches the timeline.
        self._clock = clock or (lambda: datetime.now(UTC))

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxProvider:
        return cls(
            settings.outbox_dir, email_from=settings.email_from, reply_to=settings.email_reply_to
        )

    def _result(self, message_key: str, at: datetime | None) -> ProviderResult:
        return ProviderResult(
            provider=self.name, provider_id=f"outbox:{message_key}", accepted_at=at
        )

    async def send_email(
        self, email: OutgoingEmail, *, deadline: float | None = None
    ) -> ProviderResult:
        # A local file write: no connection to bound, so the deadline has nothing to cut short.
        check_header_values(email, provider=self.name)
        return self._write_email(email)

    async def send_sms(self, sms: OutgoingSms, *, deadline: float | None = None) -> ProviderResult:
        return self._write_sms(sms)

    async def aclose(self) -> None:
        """Nothing to release; here so every provider can be closed the same way."""

    def _write_email(self, email: OutgoingEmail) -> ProviderResult:
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        stem = safe_key(email.message_key)
        html_name, eml_name = f"{stem}.html", f"{stem}.eml"
        with _index_lock(self.outbox_dir):
            # The .html file is written last, so it marks a completed send.
            if (self.outbox_dir / html_name).exists():
                return self._result(email.message_key, None)
            at = self._clock()
            if self.eml:
                message = build_email_message(
                    email, sender=self.email_from, reply_to=email.reply_to or self.reply_to, date=at
                )
                # CRLF, as on the wire: the .eml is byte for byte what the SMTP provider sends.
                _write_atomic(self.outbox_dir / eml_name, message.as_bytes(policy=SMTP_POLICY))
            _append_index(
                self.outbox_dir,
                {
                    "message_key": email.message_key,
                    "channel": "email",
                    "to": email.to,
                    "subject": email.subject,
                    "preheader": email.preheader,
                    "category": email.category,
                    "journey": email.journey,
                    "unsubscribe_url": email.unsubscribe_url,
                    "message_id": message_id_for(email.message_key, sender=self.email_from),
                    "files": [html_name, eml_name] if self.eml else [html_name],
                    "at": at.isoformat(),
                },
            )
            _write_atomic(self.outbox_dir / html_name, email.html.encode("utf-8"))
        return self._result(email.message_key, at)

    def _write_sms(self, sms: OutgoingSms) -> ProviderResult:
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        name = f"{safe_key(sms.message_key)}.sms.txt"
        with _index_lock(self.outbox_dir):
            if (self.outbox_dir / name).exists():
                return self._result(sms.message_key, None)
            at = self._clock()
            _append_index(
                self.outbox_dir,
                {
                    "message_key": sms.message_key,
                    "channel": "sms",
                    "to": sms.to,
                    "body": sms.body,
                    "category": sms.category,
                    "journey": sms.journey,
                    "files": [name],
                    "at": at.isoformat(),
                },
            )
            _write_atomic(self.outbox_dir / name, f"To: {sms.to}\n\n{sms.body}\n".encode())
        return self._result(sms.message_key, at)


def list_outbox(outbox_dir: Path) -> list[OutboxEntry]:
    """Every message in the outbox, newest first (one entry per message key)."""
    index = Path(outbox_dir) / INDEX_FILE
    if not index.exists():
        return []
    latest: dict[str, tuple[int, OutboxEntry]] = {}
    with index.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if not line.strip():
                continue
            try:
                entry = OutboxEntry.from_json(json.loads(line))
            except (ValueError, KeyError):
                continue  # a line cut short by a crash; the rest of the index still counts
            # A crash between the index line and the final file can repeat a key: keep one.
            latest.setdefault(entry.message_key, (number, entry))
    ordered = sorted(latest.values(), key=lambda item: (item[1].at, item[0]), reverse=True)
    return [entry for _, entry in ordered]
