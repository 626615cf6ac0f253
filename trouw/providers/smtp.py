"""Email over SMTP with the standard library: one total deadline per call, enforced by closing
the connection, and every failure classified by the protocol phase it happened in."""

from __future__ import annotations

import asyncio
import contextlib
import re
import smtplib
import socket
import ssl
import threading
from datetime import UTC, datetime
from email.policy import SMTP as SMTP_POLICY
from typing import TYPE_CHECKING, Any, Literal

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
from trouw.providers.deadline import CallDeadline
from trouw.providers.mime import build_email_message, message_id_for, parse_sender
from trouw.providers.ratelimit import TokenBucket, bucket_for

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from trouw.settings import Settings

# RFC 3463 / 5321 replies that mean "this mailbox", not "this message" or "this server".
RECIPIENT_CODES = frozenset({550, 551, 553})
# After an abort the worker thread has nothing left to wait for; this only bounds a thread
# stuck in name resolution, which cannot send anything either (see SmtpSession.abort).
ABORT_GRACE_SECONDS = 2.0
DEADLINE_SLACK_SECONDS = 0.05

# The phases of one call, in order. The server takes responsibility for a message only when
# it answers 250 to the final dot (RFC 5321 4.1.1.4), so a failure in any phase but "reply"
# means not accepted; a connection lost in "reply" (the dot has left, its answer has not
# come) is the one unknown outcome (RFC 1047).
Phase = Literal[
    "connect", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "body", "reply", "done"
]


class DeadlinePassedError(OSError):
    """The call's deadline passed (or the call was cancelled); the connection is closed."""


class _DeadlineMixin:
    """smtplib with one deadline for the whole session, the phase it reached, and an abort
    that another thread may call: it shuts the socket down, so no later write can leave."""

    sock: socket.socket | None
    phase: Phase

    def _init_deadline(self, deadline: CallDeadline) -> None:
        self.deadline = deadline
        self.phase = "connect"
        self.aborted = threading.Event()

    def _time_left(self) -> float:
        left = self.deadline.remaining()
        if self.aborted.is_set() or left <= 0:
            raise DeadlinePassedError(f"call deadline passed during {self.phase}")
        return left

    def connect(self, host: str = "localhost", port: int = 0, source_address: Any = None) -> Any:
        # smtplib learns the TLS server name only when the constructor connects.
        self._host = host
        return super().connect(host, port, source_address)  # type: ignore[misc]

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, self._time_left())  # type: ignore[misc]
        if self.aborted.is_set():  # aborted while connecting: nothing was said yet
            sock.close()
            raise DeadlinePassedError("call deadline passed during connect")
        return sock

    def send(self, s: ReadableBuffer | str) -> None:
        left = self._time_left()  # checked before every write: an aborted call says nothing
        if self.sock is not None:
            self.sock.settimeout(left)
        super().send(s)  # type: ignore[misc]

    def getreply(self) -> tuple[int, bytes]:
        left = self._time_left()
        if self.sock is not None:
            self.sock.settimeout(left)
        reply: tuple[int, bytes] = super().getreply()  # type: ignore[misc]
        return reply

    def abort(self) -> None:
        """End the call now, from any thread: later writes fail, a blocked read returns."""
        self.aborted.set()
        sock = self.sock
        if sock is None:
            return
        with contextlib.suppress(OSError):
            # The plain socket call on purpose: SSLSocket.shutdown would drop its SSL object
            # under the reading thread's feet; shutting the descriptor down is what we want.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def data_in_phases(self, message: bytes) -> tuple[int, bytes]:
        """smtplib's data(), with the phase moved at the points that decide the outcome."""
        self.phase = "data"
        self.putcmd("data")  # type: ignore[attr-defined]
        code, reply = self.getreply()
        if code != 354:
            return code, reply
        self.phase = "body"
        quoted = re.sub(rb"(?m)^\.", b"..", message)
        if not quoted.endswith(b"\r\n"):
            quoted += b"\r\n"
        self.send(quoted + b".\r\n")
        # Every byte up to the final dot is with the kernel now: the server may take it.
        self.phase = "reply"
        return self.getreply()


class SmtpSession(_DeadlineMixin, smtplib.SMTP):
    """A plain or STARTTLS session under one deadline."""

    def __init__(self, deadline: CallDeadline, **kwargs: Any) -> None:
        self._init_deadline(deadline)
        super().__init__(timeout=max(deadline.remaining(), 0.001), **kwargs)


class SmtpsSession(_DeadlineMixin, smtplib.SMTP_SSL):
    """An implicit-TLS session (port 465) under one deadline."""

    def __init__(self, deadline: CallDeadline, **kwargs: Any) -> None:
        self._init_deadline(deadline)
        super().__init__(timeout=max(deadline.remaining(), 0.001), **kwargs)


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

    async def send_email(
        self, email: OutgoingEmail, *, deadline: float | None = None
    ) -> ProviderResult:
        check_header_values(email, provider=self.name)
        if self.limiter is not None:
            await self.limiter.acquire()
        call = CallDeadline.within(self.timeout, until=deadline)
        call.before_start(self.name)
        message = build_email_message(
            email,
            sender=self.email_from,
            reply_to=email.reply_to or self.reply_to,
            date=datetime.now(UTC),
        )
        data = message.as_bytes(policy=SMTP_POLICY)
        session = self._session(call)
        loop = asyncio.get_running_loop()
        # The watchdog ends the call at its deadline even while smtplib sits in a read that a
        # slow server keeps alive byte by byte (socket timeouts are per operation).
        watchdog = loop.call_later(max(call.remaining(), 0), session.abort)
        future = loop.run_in_executor(None, self._send, email, session, data)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The activity was cancelled or timed out: close the connection before giving the
            # slot back, so no thread is left that could still send this message.
            session.abort()
            await asyncio.wait([future], timeout=ABORT_GRACE_SECONDS)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: the caller hears the cancellation instead
            raise
        finally:
            watchdog.cancel()

    async def aclose(self) -> None:
        """Nothing to release: each message opens and closes its own connection."""

    def _session(self, call: CallDeadline) -> SmtpSession | SmtpsSession:
        if self.port == 465:  # implicit TLS (RFC 8314) rather than STARTTLS
            return SmtpsSession(call, context=self.ssl_context)
        return SmtpSession(call)

    def _send(
        self, email: OutgoingEmail, smtp: SmtpSession | SmtpsSession, data: bytes
    ) -> ProviderResult:
        try:
            try:
                smtp.connect(self.host, self.port)
            except smtplib.SMTPConnectError as exc:  # a 4xx/5xx greeting: try again later
                raise TransientDeliveryError(
                    _reply_text(exc), provider=self.name, code=str(exc.smtp_code)
                ) from exc
            smtp.phase = "ehlo"
            code, reply = smtp.ehlo()
            if code != 250:
                raise _reply_error(self.name, code, reply, what="EHLO")
            self._secure(smtp)
            if self.username:
                smtp.phase = "auth"
                smtp.login(self.username, self.password or "")
            smtp.phase = "mail"
            code, reply = smtp.mail(self.envelope_from)
            if code != 250:
                raise _reply_error(self.name, code, reply, what="sender")
            smtp.phase = "rcpt"
            code, reply = smtp.rcpt(email.to)
            if code not in (250, 251):
                raise _reply_error(self.name, code, reply, what="recipient", recipient=True)
            code, reply = smtp.data_in_phases(data)
            if code != 250:
                # An answer to DATA or to the final dot: either way the server said no.
                raise _reply_error(self.name, code, reply, what="message")
            smtp.phase = "done"
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
            raise self._lost(smtp, exc) from exc
        _quietly_quit(smtp)
        return ProviderResult(
            provider=self.name,
            provider_id=message_id_for(email.message_key, sender=self.email_from),
            accepted_at=datetime.now(UTC),
        )

    def _lost(self, smtp: SmtpSession | SmtpsSession, exc: BaseException) -> DeliveryError:
        """The connection ended without an answer: only in "reply" may the server have it."""
        # A read that timed out was given only the time left, so it ends at the deadline too.
        passed = smtp.aborted.is_set() or smtp.deadline.remaining() <= DEADLINE_SLACK_SECONDS
        why = "deadline passed" if passed else "connection lost"
        if smtp.phase == "reply":
            return AmbiguousDeliveryError(
                f"{why} after the final dot, before the server answered: {exc!r}",
                provider=self.name,
                code="reply",
            )
        if smtp.phase == "connect" and not passed:
            return TransientDeliveryError(
                f"cannot connect to {self.host}:{self.port}: {exc!r}",
                provider=self.name,
                code="connection",
            )
        return TransientDeliveryError(
            f"{why} during {smtp.phase}, before the message was complete: {exc!r}",
            provider=self.name,
            code="deadline" if passed else smtp.phase,
        )

    def _secure(self, smtp: SmtpSession | SmtpsSession) -> None:
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
        smtp.phase = "starttls"
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
