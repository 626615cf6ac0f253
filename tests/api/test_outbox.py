"""The outbox viewer: only with the outbox email provider, and then only in development or to an
admin key; it holds every message's signed unsubscribe and preference links."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.conftest import ApiSettings, make_keys
from trouw.ways_in.api.app import create_app

PAGES = ("/outbox", "/outbox/view/nothing")


def test_outbox_is_open_in_development(engine: Engine, api_settings: ApiSettings) -> None:
    settings = api_settings.model_copy(update={"development": True})
    assert settings.email_provider == "outbox"
    with TestClient(create_app(settings, engine)) as client:
        assert client.get("/outbox").status_code == 200
        assert client.get("/outbox/view/nothing").status_code == 404


def test_outbox_needs_an_admin_key_outside_development(
    engine: Engine, api_settings: ApiSettings
) -> None:
    assert not api_settings.development
    keys = make_keys(engine)
    with TestClient(create_app(api_settings, engine)) as client:
        for page in PAGES:
            assert client.get(page).status_code == 401, page
            assert client.get(page, headers={"X-API-Key": "trw_guess"}).status_code == 401
            for scope in ("ingest", "read"):
                answer = client.get(page, headers={"X-API-Key": keys[scope]})
                assert answer.status_code == 403, (page, scope)
        admin = {"Authorization": f"Bearer {keys['admin']}"}
        assert client.get("/outbox", headers=admin).status_code == 200
        assert client.get("/outbox/view/nothing", headers=admin).status_code == 404


@pytest.mark.parametrize("development", [False, True])
def test_outbox_does_not_exist_without_the_outbox_email_provider(
    engine: Engine, api_settings: ApiSettings, development: bool
) -> None:
    # The SMS outbox alone (the default SMS provider) no longer opens the page.
    settings = api_settings.model_copy(
        update={
            "email_provider": "sendgrid",
            "sendgrid_api_key": "SG.test",
            "sms_provider": "outbox",
            "development": development,
        }
    )
    keys = make_keys(engine)
    with TestClient(create_app(settings, engine)) as client:
        for page in PAGES:
            assert client.get(page).status_code == 404
            assert client.get(page, headers={"X-API-Key": keys["admin"]}).status_code == 404
        assert client.get("/healthz").status_code == 200
