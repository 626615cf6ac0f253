"""The outbox viewer: only with the development (outbox) provider, never with a real one."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.conftest import ApiSettings
from trouw.api.app import create_app


def test_outbox_is_served_with_the_outbox_provider(
    engine: Engine, api_settings: ApiSettings
) -> None:
    assert api_settings.email_provider == "outbox"
    with TestClient(create_app(api_settings, engine)) as client:
        assert client.get("/outbox").status_code == 200
        assert client.get("/outbox/view/nothing").status_code == 404


def test_outbox_does_not_exist_with_real_providers(
    engine: Engine, api_settings: ApiSettings
) -> None:
    settings = api_settings.model_copy(
        update={
            "email_provider": "sendgrid",
            "sendgrid_api_key": "SG.test",
            "sms_provider": "twilio",
            "twilio_account_sid": "AC123",
        }
    )
    with TestClient(create_app(settings, engine)) as client:
        assert client.get("/outbox").status_code == 404
        assert client.get("/outbox/view/anything").status_code == 404
        assert client.get("/healthz").status_code == 200
