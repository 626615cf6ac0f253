"""Email over SMTP with the standard library, in a thread, with RFC 5321 replies classified."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from datetime import UTC, datetime
from email.policy import SMTP as SMTP_POLICY
from typing import TYPE_CHECKING

from trouw.providers.base import (
    AmbiguousDeliveryError,
    DeliveryError,
    OutgoingEmail,
    PermanentDeliveryError,
    ProviderConfigError,
    ProviderResult,
    TransientDeliveryError,
    check_header_values,
)
from trouw.providers.mime import build_email_message, message_id_for, parse_sender
from trouw.providers.ratelimit import TokenBucket, bucket_for

if TYPE_CHECKING:
    from trouw.settings import Settings

# RFC 3463 / 5321 replies that mean "this mailbox", not "this message" or "this server".
RECIPIENT_CODES = frozenset({550, 551, 553})


class SmtpProvider:
    """Email through any SMTP server; one connection per message (simple, and the worker's
    send rate is far below what connection set-up costs)."""

    name = "smtp"

    def __init__(
        self,
        *,
        host: str,
        email_from: str,
        port: int = 587,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 30.0,
        reply_to: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        limiter: TokenBucket | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout
        self.email_from = email_from
        self.envelope_from = parse_sender(email_from)[1]
        self.reply_to = reply_to
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.limiter = limiter

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpProvider:
        if not settings.smtp_host:
            raise ProviderConfigError("email provider 'smtp' needs TROUW_SMTP_HOST")
        if settings.smtp_username and not settings.smtp_password:
            raise ProviderConfigError(
                "email provider 'smtp' has TROUW_SMTP_USERNAME but needs TROUW_SMTP_PASSWORD"
            )
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
            email_from=settings.email_from,
            reply_to=settings.email_reply_to,
            limiter=bucket_for(cls.name, settings.send_rate_per_second),
        )

    async def send_email(self, email: OutgoingEmail) -> ProviderResult:
        check_header_values(email, provider=self.name)
        if self.limiter is not None:
            await self.limiter.acquire()
        return await asyncio.to_thread(self._send, email)

    async def aclose(self) -> None:
        """Nothing to release: each message opens and closes its own connection."""

    def _connect(self) -> smtplib.SMTP:
        try:
            if self.port == 465:  # implicit TLS (RFC 8314) rather than STARTTLS
                return smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self.ssl_context
                )
            return smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except smtplib.SMTPConnectError as exc:  # a 4xx/5xx greeting: try again later
            raise TransientDeliveryError(
                _reply_text(exc), provider=self.name, code=str(exc.smtp_code)
            ) from exc
        except OSError as exc:  # refused, DNS, TLS handshake, connect timeout
            raise TransientDeliveryError(
                f"cannot connect to {self.host}:{self.port}: {exc}",
                provider=self.name,
                code="connection",
            ) from exc

    def _send(self, email: OutgoingEmail) -> ProviderResult:
        message = build_email_message(
            email,
            sender=self.email_from,
            reply_to=email.reply_to or self.reply_to,
            date=datetime.now(UTC),
        )
        data = message.as_bytes(policy=SMTP_POLICY)
        smtp = self._connect()
        # Until DATA's final reply, the server has not taken responsibility: any failure
        # before it means "not sent"; a lost answer after the message body is ambiguous.
        sent_data = False
        try:
            smtp.ehlo()
            self._secure(smtp)
            if self.username:
                smtp.login(self.username, self.password or "")
            code, reply = smtp.mail(self.envelope_from)
            if code != 250:
                raise _reply_error(self.name, code, reply, what="sender")
            code, reply = smtp.rcpt(email.to)
            if code not in (250, 251):
                raise _reply_error(self.name, code, reply, what="recipient", recipient=True)
            sent_data = True
            code, reply = smtp.data(data)
            if code != 250:
                raise _reply_error(self.name, code, reply, what="message")
        except DeliveryError:
            _quietly_close(smtp)
            raise
        except smtplib.SMTPNotSupportedError as exc:
            _quietly_close(smtp)
            raise PermanentDeliveryError(
                f"{self.host}:{self.port} does not support {exc}; check TROUW_SMTP_USERNAME",
                provider=self.name,
                code="not_supported",
            ) from exc
        except smtplib.SMTPAuthenticationError as exc:
            _quietly_close(smtp)
            raise PermanentDeliveryError(
                f"login refused: {_reply_text(exc)}", provider=self.name, code=str(exc.smtp_code)
            ) from exc
        except smtplib.SMTPResponseException as exc:
            _quietly_close(smtp)
            raise _reply_error(self.name, exc.smtp_code, exc.smtp_error, what="command") from exc
        except (smtplib.SMTPException, OSError) as exc:
            _quietly_close(smtp)
            if sent_data:
                raise AmbiguousDeliveryError(
                    f"connection lost during DATA: {exc!r}", provider=self.name, code="data"
                ) from exc
            raise TransientDeliveryError(
                f"connection lost before DATA: {exc!r}", provider=self.name, code="connection"
            ) from exc
        _quietly_quit(smtp)
        return ProviderResult(
            provider=self.name,
            provider_id=message_id_for(email.message_key, sender=self.email_from),
            accepted_at=datetime.now(UTC),
        )

    def _secure(self, smtp: smtplib.SMTP) -> None:
        if not self.starttls or isinstance(smtp, smtplib.SMTP_SSL):
            return
        if not smtp.has_extn("starttls"):
            # Sending in clear text when TLS was asked for would leak customer data; it is a
            # configuration problem that no retry fixes.
            raise PermanentDeliveryError(
                f"{self.host}:{self.port} does not offer STARTTLS; set TROUW_SMTP_STARTTLS=false "
                "only for a trusted local relay",
                provider=self.name,
                code="starttls_unavailable",
            )
        smtp.starttls(context=self.ssl_context)
        smtp.ehlo()


def _reply_text(exc: smtplib.SMTPResponseException) -> str:
    error = exc.smtp_error
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    return f"{exc.smtp_code} {text}"


def _reply_error(
    provider: str, code: int, reply: bytes | str, *, what: str, recipient: bool = False
) -> DeliveryError:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    detail = f"{what} refused: {code} {text}"
    if 400 <= code < 500:
        # 4yz: the server did not take the message and asks us to try later.
        return TransientDeliveryError(detail, provider=provider, code=str(code))
    if code == -1 or code < 400:  # smtplib's "no reply" marker or a nonsensical reply
        return TransientDeliveryError(detail, provider=provider, code=str(code))
    return PermanentDeliveryError(
        detail,
        provider=provider,
        code=str(code),
        invalid_recipient=recipient and code in RECIPIENT_CODES,
    )


def _quietly_quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()  # the message is already accepted; a failed QUIT changes nothing


def _quietly_close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.close()
    except OSError:
        pass
