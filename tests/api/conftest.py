"""API fixtures: the app over each database, keys per scope, signing secrets for the webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tests.conftest import ROOT
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import (
    ConsentRecord,
    Customer,
    Engagement,
    InboundEvent,
    Message,
    Suppression,
)
from trouw.domain.ingest import CustomerIn, upsert_customer
from trouw.settings import Settings
from trouw.ways_in.api.app import create_app
from trouw.ways_in.api.auth import create_api_key

PUBLIC_URL = "https://trouw.example"
SHOPIFY_SECRET = "shpss_test_secret"
WOO_SECRET = "woo-test-secret"
TWILIO_TOKEN = "12345"


class ApiSettings(Settings):
    """Settings with the webhook secrets the API reads (until the settings model has them)."""

    shopify_webhook_secret: str | None = None
    woocommerce_webhook_secret: str | None = None


@dataclass
class SendGridSigner:
    """Signs bodies as SendGrid's Event Webhook does: ECDSA P-256 over timestamp + raw body."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def public_key(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: str = "1700000000") -> dict[str, str]:
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json",
        }


@pytest.fixture(scope="session")
def sendgrid_signer() -> SendGridSigner:
    return SendGridSigner()


@pytest.fixture
def api_settings(tmp_path: Path, sendgrid_signer: SendGridSigner) -> ApiSettings:
    return ApiSettings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'home' / 'trouw.db'}",
        journeys_dir=ROOT / "journeys",
        templates_dir=ROOT / "templates",
        signing_keys=["test-key"],
        public_url=PUBLIC_URL,
        shop_name="Tuincentrum De Linde",
        sendgrid_webhook_public_key=sendgrid_signer.public_key,
        twilio_auth_token=TWILIO_TOKEN,
        shopify_webhook_secret=SHOPIFY_SECRET,
        woocommerce_webhook_secret=WOO_SECRET,
    )


@dataclass
class Api:
    """The app under test, its database, and one key per scope."""

    client: TestClient
    engine: Engine
    settings: ApiSettings
    keys: dict[str, str]

    def auth(self, scope: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    def post(self, path: str, body: Any, scope: str = "ingest") -> Any:
        return self.client.post(path, json=body, headers=self.auth(scope))

    def get(self, path: str, scope: str = "read") -> Any:
        return self.client.get(path, headers=self.auth(scope))


def make_keys(engine: Engine) -> dict[str, str]:
    with session_scope(engine) as session:
        return {
            scope: create_api_key(session, name=f"test-{scope}", scopes=[scope])
            for scope in ("ingest", "read", "admin")
        }


@pytest.fixture
def api(engine: Engine, api_settings: ApiSettings) -> Iterator[Api]:
    """The API over SQLite and PostgreSQL (the `engine` fixture's two parameters)."""
    keys = make_keys(engine)
    with TestClient(create_app(api_settings, engine)) as client:
        yield Api(client, engine, api_settings, keys)


# --- data helpers ---------------------------------------------------------------------------


def add_customer(engine: Engine, customer_id: str = "c1", **fields: Any) -> None:
    data = {"email": "bart@example.com", "phone": "+32470000001", "locale": "nl-BE", **fields}
    with session_scope(engine) as session:
        upsert_customer(session, CustomerIn(id=customer_id, **data), at=now(), source="pos")


def add_message(engine: Engine, key: str, customer_id: str = "c1", **fields: Any) -> None:
    values: dict[str, Any] = {
        "message_key": key,
        "customer_id": customer_id,
        "journey": "order_followup",
        "step": "confirm",
        "channel": "email",
        "category": "transactional",
        "template": "order_confirmation",
        "created_at": now(),
        "decision": "send",
        "state": "sent",
        "status": "sent",
        "provider": "sendgrid",
        **fields,
    }
    with session_scope(engine) as session:
        session.add(Message(**values))


def now() -> datetime:
    return datetime.now(UTC)


def until(found: Callable[[], bool]) -> bool:
    """Whether `found` comes true within a minute: for what the API does behind its answer
    (the click writer). A liveness wait, nothing is timed."""
    for _ in range(600):
        if found():
            return True
        time.sleep(0.1)
    return False


def clicks_recorded(engine: Engine, n: int) -> bool:
    """Whether the click writer has written `n` redirect clicks (within a minute)."""
    return until(lambda: len(rows(engine, Engagement, Engagement.source == "redirect")) == n)


def rows(engine: Engine, model: Any, *where: Any) -> list[Any]:
    with Session(engine) as session:
        return list(session.exec(select(model).where(*where)).all())


def consents(engine: Engine, customer_id: str = "c1") -> list[ConsentRecord]:
    return rows(engine, ConsentRecord, ConsentRecord.customer_id == customer_id)


def suppressions(engine: Engine) -> list[Suppression]:
    return rows(engine, Suppression)


def events(engine: Engine) -> list[InboundEvent]:
    return rows(engine, InboundEvent)


def message(engine: Engine, key: str) -> Message:
    found: Message = rows(engine, Message, Message.message_key == key)[0]
    return found


def customer(engine: Engine, customer_id: str) -> Customer | None:
    with Session(engine) as session:
        return session.get(Customer, customer_id)


def shopify_headers(
    body: bytes, topic: str, webhook_id: str, secret: str = SHOPIFY_SECRET
) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Shop-Domain": "de-linde.myshopify.com",
        "X-Shopify-API-Version": "2025-01",
        "Content-Type": "application/json",
    }


def woo_headers(body: bytes, topic: str, secret: str = WOO_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": topic.split(".")[0],
        "X-WC-Webhook-Event": topic.split(".")[1],
        "X-WC-Webhook-Signature": base64.b64encode(digest).decode(),
        "X-WC-Webhook-ID": "7",
        "X-WC-Webhook-Delivery-ID": "d41d8cd98f00b204e9800998ecf8427e",
        "Content-Type": "application/json",
    }


def dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode()


T = TypeVar("T")


def answered_while_write_locked(engine: Engine, ask: Callable[[], T]) -> tuple[T, bool]:
    """ask()'s answer while another thread holds SQLite's write lock, and whether it came before
    that lock was released: in order, not in time (the holder lets go after 60 s, so a read that
    waits for the lock ends the test, and the answer comes after the release)."""
    held, answered, released = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")  # its transaction is BEGIN IMMEDIATE
            held.set()
            answered.wait(60)
            released.set()
            connection.rollback()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        answer = ask()
        return answer, not released.is_set()
    finally:
        answered.set()
        holder.join()
