"""The outbox: real .eml files, one index line per message key, newest first."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from trouw.providers import email_provider, sms_provider
from trouw.providers.base import OutgoingEmail, OutgoingSms
from trouw.providers.mime import message_id_for
from trouw.providers.outbox import OutboxProvider, list_outbox, safe_key
from trouw.settings import Settings


class StepClock:
    """Each call is one minute later than the last."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def index_lines(outbox: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (outbox / "index.jsonl").read_text().splitlines()]


async def test_email_becomes_html_and_a_real_eml(settings: Settings, email: OutgoingEmail) -> None:
    provider = email_provider(settings)
    assert isinstance(provider, OutboxProvider)

    result = await provider.send_email(email)

    outbox = settings.outbox_dir
    stem = safe_key(email.message_key)
    assert result.provider_id == "outbox:run-1:confirm:email"
    assert (outbox / f"{stem}.html").read_text() == email.html
    parsed = email_module_parse((outbox / f"{stem}.eml").read_bytes())
    assert parsed["Message-ID"] == message_id_for(email.message_key, sender=settings.email_from)
    assert parsed["List-Unsubscribe"] == "<https://trouw.example/u/tok123>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed.get_content_type() == "multipart/alternative"
    [line] = index_lines(outbox)
    assert line["message_key"] == email.message_key
    assert line["channel"] == "email"
    assert line["subject"] == email.subject
    assert line["files"] == [f"{stem}.html", f"{stem}.eml"]


async def test_without_eml_the_email_is_its_html_and_index_line(
    tmp_path: Path, email: OutgoingEmail
) -> None:
    """The simulator's outbox: no RFC 5322 message is built, the rest is as always."""
    provider = OutboxProvider(tmp_path, email_from="Shop <shop@x.example>", eml=False)

    result = await provider.send_email(email)
    again = await provider.send_email(email)

    stem = safe_key(email.message_key)
    assert result.provider_id == again.provider_id == "outbox:run-1:confirm:email"
    assert sorted(os.listdir(tmp_path)) == sorted([".index.lock", f"{stem}.html", "index.jsonl"])
    assert (tmp_path / f"{stem}.html").read_text() == email.html
    [line] = index_lines(tmp_path)
    assert line["files"] == [f"{stem}.html"]
    assert line["message_id"] == message_id_for(email.message_key, sender="shop@x.example")
    assert [entry.message_key for entry in list_outbox(tmp_path)] == [email.message_key]


def email_module_parse(data: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


async def test_same_message_key_twice_writes_once(
    settings: Settings, email: OutgoingEmail, sms: OutgoingSms
) -> None:
    provider = email_provider(settings)
    first = await provider.send_email(email)
    eml = next(settings.outbox_dir.glob("*.eml")).read_bytes()
    second = await provider.send_email(dataclasses.replace(email, subject="changed"))
    await sms_provider(settings).send_sms(sms)
    await sms_provider(settings).send_sms(sms)

    assert first.provider_id == second.provider_id
    assert next(settings.outbox_dir.glob("*.eml")).read_bytes() == eml
    assert [line["message_key"] for line in index_lines(settings.outbox_dir)] == [
        email.message_key,
        sms.message_key,
    ]


async def test_sms_is_a_text_file(settings: Settings, sms: OutgoingSms) -> None:
    result = await sms_provider(settings).send_sms(sms)

    assert result.provider_id == "outbox:run-1:refill:sms"
    text = (settings.outbox_dir / f"{safe_key(sms.message_key)}.sms.txt").read_text()
    assert sms.body in text and sms.to in text
    [line] = index_lines(settings.outbox_dir)
    assert line["body"] == sms.body and line["channel"] == "sms"


async def test_list_outbox_is_newest_first(
    tmp_path: Path, email: OutgoingEmail, sms: OutgoingSms
) -> None:
    provider = OutboxProvider(tmp_path, email_from="Shop <shop@x.example>", clock=StepClock())
    await provider.send_email(email)
    await provider.send_sms(sms)
    await provider.send_email(dataclasses.replace(email, message_key="run-2:confirm:email"))

    entries = list_outbox(tmp_path)

    assert [e.message_key for e in entries] == [
        "run-2:confirm:email",
        "run-1:refill:sms",
        "run-1:confirm:email",
    ]
    assert entries[0].at == datetime(2026, 3, 2, 9, 3, tzinfo=UTC)
    assert entries[1].body == sms.body and entries[1].subject is None
    assert list_outbox(tmp_path / "missing") == []


async def test_list_outbox_survives_a_torn_last_line(tmp_path: Path, sms: OutgoingSms) -> None:
    provider = OutboxProvider(tmp_path, email_from="shop@x.example")
    await provider.send_sms(sms)
    with (tmp_path / "index.jsonl").open("a") as handle:
        handle.write('{"message_key": "half')

    assert [e.message_key for e in list_outbox(tmp_path)] == [sms.message_key]


def test_safe_key_never_escapes_the_outbox_and_never_collides() -> None:
    assert safe_key("run-1:confirm:email") != "run-1:confirm:email"
    assert safe_key("plain-key_1.2") == "plain-key_1.2"
    assert "/" not in safe_key("../../etc/passwd")
    assert not safe_key("../../etc/passwd").startswith(".")
    assert safe_key("a:b") != safe_key("a_b")
    assert len(safe_key("x" * 1000)) < 200
