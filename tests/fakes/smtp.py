"""An SMTP server (aiosmtpd) on 127.0.0.1 that records mail and refuses what it is told to."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class ReceivedMail:
    """One message as the server accepted (or, for a dropped connection, received) it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Handler:
    def __init__(self, fake: FakeSmtpServer) -> None:
        self.fake = fake

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        reply = self.fake.refused.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        received = ReceivedMail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(envelope.original_content or b""),
        )
        with self.fake.lock:
            self.fake.received.append(received)
            drop = self.fake.drop_after_data > 0
            reply = self.fake.data_replies.pop(0) if self.fake.data_replies else None
            if drop:
                self.fake.drop_after_data -= 1
        if drop:
            # The message is in, but the reply never arrives: the RFC 1047 ambiguous case.
            transport = server.transport
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            return "250 OK"
        if reply is not None:
            with self.fake.lock:
                self.fake.received.pop()
            return reply
        return "250 OK: queued"


class PortZeroController(Controller):
    """aiosmtpd's Controller, but asked for port 0 it learns the real port before its
    readiness probe connects."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class ControlledServer:
    """start/stop and the context manager for a server run by an aiosmtpd Controller."""

    _controller: Controller
    port: int

    def start(self) -> Self:
        self._controller.start()
        self.port = self._controller.port
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class FakeSmtpServer(ControlledServer):
    """Use as a context manager; `host`, `port` after start. Refuse recipients with
    refuse(address, "550 ..."), fail the next DATA with fail_next_data("451 ..."), or drop
    the connection after the next DATA with drop_next_data()."""

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.received: list[ReceivedMail] = []
        self.refused: dict[str, str] = {}
        self.data_replies: list[str] = []
        self.drop_after_data = 0
        self.lock = threading.Lock()
        self.logins: list[str] = []
        kwargs: dict[str, Any] = {}
        if tls_context is not None:
            kwargs["tls_context"] = tls_context  # offers STARTTLS
        if credentials is not None:
            kwargs["authenticator"] = self._authenticator(credentials)
            kwargs["auth_require_tls"] = tls_context is not None
        self._controller = PortZeroController(_Handler(self), hostname=self.host, port=0, **kwargs)

    def _authenticator(self, credentials: tuple[str, str]) -> Any:
        def authenticate(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and (
                    data.login.decode(),
                    data.password.decode(),
                )
                == credentials
            )
            if ok:
                self.logins.append(credentials[0])
            return AuthResult(success=ok, handled=False)

        return authenticate

    def refuse(self, address: str, reply: str = "550 5.1.1 No such user here") -> None:
        self.refused[address.lower()] = reply

    def fail_next_data(self, reply: str = "451 4.3.0 Try again later") -> None:
        with self.lock:
            self.data_replies.append(reply)

    def drop_next_data(self) -> None:
        with self.lock:
            self.drop_after_data += 1


def self_signed_tls(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context that trusts it) for 127.0.0.1, made on the spot."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client
