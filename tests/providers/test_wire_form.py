"""The raw bytes an SMTP server process receives (and the outbox .eml keeps): RFC 2369, 8058, 5322.

A parser decodes RFC 2047 words and unfolds lines, which is how an encoded List-Unsubscribe
once passed every test; these tests read the octets as a mail client's header scan would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from email.header import decode_header, make_header
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

import pytest

from tests.fakes.smtp_spool import SmtpServerProcess, smtp_server_process
from trouw.domain.tokens import TokenPayload, sign_token
from trouw.providers import email_provider
from trouw.providers.base import MAX_LINE_OCTETS, OutgoingEmail, PermanentDeliveryError
from trouw.providers.mime import message_id_for
from trouw.providers.outbox import OutboxProvider, safe_key
from trouw.providers.smtp import SmtpProvider
from trouw.settings import Settings

SENDER = "Tuincentrum Dé Linde <hallo@delinde.example>"


def raw_fields(data: bytes) -> list[tuple[str, bytes]]:
    """(name, raw value with its folds) per header field, straight from the octets."""
    head, blank, _ = data.partition(b"\r\n\r\n")
    assert blank, "no CRLF CRLF between header and body"
    fields: list[tuple[str, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        else:
            name, colon, value = line.partition(b":")
            assert colon, f"not a header line: {line!r}"
            fields.append((name.decode("ascii"), value.removeprefix(b" ")))
    return fields


def field(data: bytes, name: str) -> list[bytes]:
    return [value for key, value in raw_fields(data) if key.lower() == name.lower()]


def decoded(raw: bytes) -> str:
    return str(make_header(decode_header(raw.decode("ascii").replace("\r\n", ""))))


def assert_conforming_octets(data: bytes) -> None:
    """RFC 5322 2.1.1 and 2.2: CRLF only, lines of at most 998 octets, 7-bit header."""
    assert b"\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in data.replace(b"\r\n", b""), "bare CR"
    for line in data.split(b"\r\n"):
        assert len(line) <= MAX_LINE_OCTETS, f"line of {len(line)} octets: {line[:60]!r}..."
    head = data.partition(b"\r\n\r\n")[0]
    assert head.isascii(), "8-bit octets in the header without SMTPUTF8"


def realistic_token_url(length_hint: int) -> str:
    """A real signed unsubscribe link; message keys of a few hundred characters do occur."""
    payload = TokenPayload(
        customer_id="shopify:7351234567890",
        channel="email",
        category="all",
        message_key="wf:customer:shopify:7351234567890:journey:after-purchase:" + "s" * length_hint,
    )
    return "https://trouw.example/u/" + sign_token(payload, [b"k1"])


URLS = {
    "short": "https://trouw.example/u/tok123",
    "signed-300": realistic_token_url(240),
    # The longest value that fits one line: "List-Unsubscribe: <" + url + ">" is 998 octets.
    "at-the-limit": "https://trouw.example/u/"
    + "A" * (MAX_LINE_OCTETS - len("List-Unsubscribe: <>") - len("https://trouw.example/u/")),
}
NAMES = {
    "ascii": ("Bart Peeters", "Bedankt voor je bestelling"),
    "accents": ("Zoë Ëlsa-Çelik", "Merci pour votre commande, Zoë — à très bientôt"),
    "long-non-ascii": (
        "Jérôme Van den Bossche-Dupré 山田 🌱",
        "Je bestelling is onderweg, Jérôme: gazonmest, kruidenmix en één 🌱 "
        "bloembollenpakket — bedankt voor je vertrouwen in Tuincentrum Dé Linde",
    ),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServerProcess]:
    with smtp_server_process(tmp_path_factory.mktemp("spool")) as running:
        yield running


def smtp_provider(server: SmtpServerProcess, tmp_path: Path) -> SmtpProvider:
    settings = Settings(
        home=tmp_path,
        public_url="https://trouw.example",
        email_provider="smtp",
        email_from=SENDER,
        smtp_host=server.host,
        smtp_port=server.port,
        smtp_starttls=False,
        smtp_timeout_seconds=20.0,
        send_rate_per_second=10_000,
    )
    provider = email_provider(settings)
    assert isinstance(provider, SmtpProvider)
    return provider


def make_email(key: str, url: str | None, name: str, subject: str) -> OutgoingEmail:
    return OutgoingEmail(
        message_key=key,
        to="zoe@example.com",
        to_name=name,
        subject=subject,
        preheader="",
        html='<!doctype html><html lang="nl-BE"><body><p>Dag Zoë, één 🌱</p></body></html>',
        text="Dag Zoë, één 🌱",
        category="service" if url else "transactional",
        journey="after-purchase",
        unsubscribe_url=url,
    )


def sent_bytes(server: SmtpServerProcess, before: int) -> list[bytes]:
    return [mail.data for mail in server.received()[before:]]


@pytest.mark.parametrize("url_kind", list(URLS))
@pytest.mark.parametrize("name_kind", list(NAMES))
async def test_smtp_wire_has_rfc2369_unsubscribe_and_encoded_words_only_where_allowed(
    server: SmtpServerProcess, tmp_path: Path, url_kind: str, name_kind: str
) -> None:
    url = URLS[url_kind]
    name, subject = NAMES[name_kind]
    key = f"run-{url_kind}-{name_kind}:confirm:email"
    email = make_email(key, url, name, subject)
    before = len(server.received())

    provider = smtp_provider(server, tmp_path)
    await provider.send_email(email)
    await provider.send_email(email)  # a resend of the same ledger message

    first, again = sent_bytes(server, before)
    for data in (first, again):
        assert_conforming_octets(data)
        assert field(data, "List-Unsubscribe") == [f"<{url}>".encode()]
        assert field(data, "List-Unsubscribe-Post") == [b"List-Unsubscribe=One-Click"]
        [subject_raw] = field(data, "Subject")
        assert decoded(subject_raw) == subject
        if not subject.isascii():
            assert b"=?utf-8?" in subject_raw
        [to_raw] = field(data, "To")
        assert decoded(to_raw) == f"{name} <zoe@example.com>"
        [from_raw] = field(data, "From")
        assert decoded(from_raw) == SENDER
    [message_id] = field(first, "Message-ID")
    assert field(again, "Message-ID") == [message_id]
    assert message_id == message_id_for(key, sender=SENDER).encode()
    assert message_id.endswith(b"@delinde.example>")
    parsed = BytesParser(policy=default_policy).parsebytes(first)
    html = parsed.get_body(("html",))
    assert html is not None and "Dag Zoë, één 🌱" in html.get_content()


async def test_transactional_email_has_no_unsubscribe_headers(
    server: SmtpServerProcess, tmp_path: Path
) -> None:
    before = len(server.received())
    receipt = make_email("run-receipt:confirm:email", None, "Bart", "Je bestelling")

    await smtp_provider(server, tmp_path).send_email(receipt)

    [data] = sent_bytes(server, before)
    assert_conforming_octets(data)
    assert field(data, "List-Unsubscribe") == []
    assert field(data, "List-Unsubscribe-Post") == []


async def test_unsubscribe_url_too_long_for_one_line_is_refused_before_sending(
    server: SmtpServerProcess, tmp_path: Path
) -> None:
    before = len(server.received())
    email = make_email("run-long:confirm:email", URLS["at-the-limit"] + "A", "Bart", "Hallo")

    with pytest.raises(PermanentDeliveryError) as caught:
        await smtp_provider(server, tmp_path).send_email(email)

    assert caught.value.code == "invalid_header"
    assert "998" in caught.value.detail
    assert sent_bytes(server, before) == []


async def test_service_email_without_unsubscribe_url_is_refused(
    server: SmtpServerProcess, tmp_path: Path
) -> None:
    email = dataclasses.replace(
        make_email("run-x:confirm:email", None, "Bart", "Hallo"), category="promotional"
    )
    with pytest.raises(PermanentDeliveryError, match="needs an unsubscribe URL"):
        await smtp_provider(server, tmp_path).send_email(email)


@pytest.mark.parametrize("url_kind", list(URLS))
async def test_outbox_eml_is_the_same_wire_form(tmp_path: Path, url_kind: str) -> None:
    provider = OutboxProvider(tmp_path / "outbox", email_from=SENDER)
    name, subject = NAMES["long-non-ascii"]
    email = make_email(f"run-{url_kind}:confirm:email", URLS[url_kind], name, subject)

    await provider.send_email(email)

    data = (tmp_path / "outbox" / f"{safe_key(email.message_key)}.eml").read_bytes()
    assert_conforming_octets(data)
    assert field(data, "List-Unsubscribe") == [f"<{URLS[url_kind]}>".encode()]
    assert field(data, "List-Unsubscribe-Post") == [b"List-Unsubscribe=One-Click"]
    assert field(data, "Message-ID") == [message_id_for(email.message_key, sender=SENDER).encode()]
    [subject_raw] = field(data, "Subject")
    assert decoded(subject_raw) == subject
