"""/v1/admin: pauses and resumes recorded with who and why, admin keys only, health as JSON."""

from __future__ import annotations

from collections.abc import Iterator
from unittest.mock import MagicMock

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from temporalio.client import Client

from tests.api.conftest import Api, ApiSettings, add_customer, make_keys, rows
from tests.e2e.test_slice import free_port
from trouw.domain.db.models import ContactPause, JourneyControl
from trouw.ways_in.api.app import create_app


@pytest.fixture
def admin_api(engine: Engine, api_settings: ApiSettings) -> Iterator[Api]:
    """The API without Temporal: status must say so, Temporal routes answer 503."""
    settings = api_settings.model_copy(update={"temporal_port": free_port()})
    keys = make_keys(engine)
    with TestClient(create_app(settings, engine)) as client:
        yield Api(client, engine, settings, keys)


def test_admin_routes_need_the_admin_scope(admin_api: Api) -> None:
    for scope in ("ingest", "read"):
        response = admin_api.client.post(
            "/v1/admin/journeys/post_purchase/pause", json={}, headers=admin_api.auth(scope)
        )
        assert response.status_code == 403
        status = admin_api.client.get("/v1/admin/status", headers=admin_api.auth(scope))
        assert status.status_code == 403
    keyless = admin_api.client.post("/v1/admin/customers/c1/pause", json={})
    assert keyless.status_code == 401
    assert not rows(admin_api.engine, JourneyControl)


def test_pause_and_resume_a_journey_are_recorded_with_who_and_why(admin_api: Api) -> None:
    paused = admin_api.post(
        "/v1/admin/journeys/post_purchase/pause", {"reason": "wrong price"}, scope="admin"
    )
    assert paused.status_code == 200, paused.text
    body = paused.json()
    assert (body["paused"], body["changed"], body["by"], body["reason"]) == (
        True,
        True,
        "api:test-admin",
        "wrong price",
    )
    again = admin_api.post("/v1/admin/journeys/post_purchase/pause", {}, scope="admin")
    assert again.json() == {
        "paused": True,
        "changed": False,
        "at": None,
        "by": None,
        "reason": None,
    }
    resumed = admin_api.post("/v1/admin/journeys/post_purchase/resume", {}, scope="admin")
    assert (resumed.json()["paused"], resumed.json()["changed"]) == (False, True)
    ledger = rows(admin_api.engine, JourneyControl)
    assert [(row.journey, row.paused, row.by) for row in ledger] == [
        ("post_purchase", True, "api:test-admin"),
        ("post_purchase", False, "api:test-admin"),
    ]


def test_pausing_an_unknown_journey_is_404(admin_api: Api) -> None:
    response = admin_api.post("/v1/admin/journeys/nope/pause", {}, scope="admin")
    assert response.status_code == 404
    assert response.json()["detail"][0]["field"] == "journey"
    quoted = admin_api.post("/v1/admin/journeys/a'b/pause", {}, scope="admin")
    assert quoted.status_code == 422


def test_pause_and_resume_a_customer(admin_api: Api) -> None:
    add_customer(admin_api.engine, "c1")
    paused = admin_api.post(
        "/v1/admin/customers/c1/pause", {"reason": "complaint by phone"}, scope="admin"
    )
    assert paused.status_code == 200 and paused.json()["paused"] is True
    consents = admin_api.get("/v1/customers/c1/consents", scope="admin").json()
    pauses = [s for s in consents["current"]["suppressions"] if s["reason"] == "operator_pause"]
    assert pauses and pauses[0]["detail"] == "complaint by phone"
    resumed = admin_api.post("/v1/admin/customers/c1/resume", {}, scope="admin")
    assert resumed.json()["paused"] is False
    assert [row.paused for row in rows(admin_api.engine, ContactPause)] == [True, False]
    unknown = admin_api.post("/v1/admin/customers/nobody/pause", {}, scope="admin")
    assert unknown.status_code == 404


def test_runs_in_flight_and_cancel_exist_only_with_temporal(admin_api: Api, engine: Engine) -> None:
    # This API process has no Temporal client: the routes that need one are not there.
    assert admin_api.get("/v1/admin/journeys", scope="admin").status_code == 404
    cancel = admin_api.post(
        "/v1/admin/journeys/post_purchase/cancel", {"customer": "c1"}, scope="admin"
    )
    assert cancel.status_code == 404
    paths = admin_api.client.get("/openapi.json").json()["paths"]
    assert "/v1/admin/journeys" not in paths and "/v1/admin/status" in paths
    with TestClient(create_app(admin_api.settings, engine, MagicMock(spec=Client))) as connected:
        auth = admin_api.auth()
        url = "/v1/admin/journeys/post_purchase/cancel"
        assert connected.post(url, json={}, headers=auth).status_code == 422
        both = connected.post(url, json={"customer": "c1", "all": True}, headers=auth)
        assert both.status_code == 422
        assert "give either customer or all: true" in both.text
        assert (
            connected.post(url, json={"all": True}, headers=admin_api.auth("read")).status_code
            == 403
        )


def test_status_says_what_is_down(admin_api: Api) -> None:
    response = admin_api.get("/v1/admin/status", scope="admin")
    assert response.status_code == 200
    body = response.json()
    assert body["healthy"] is False
    checks = {check["name"]: check for check in body["checks"]}
    assert checks["temporal"]["ok"] is False
    assert "cannot reach Temporal" in checks["temporal"]["summary"]
    assert checks["parked events"]["ok"] is True
    assert checks["journeys"]["ok"] is True
    assert checks["worker versions"]["ok"] is True and "items" not in checks["worker versions"]


def test_status_names_a_worker_on_another_content_version(admin_api: Api) -> None:
    from trouw.domain.db.models import WorkerPresence, utcnow
    from trouw.stack.presence import beat

    row = WorkerPresence(identity="9@old", host="old", pid=9, task_queue="q", digest="0ld")
    row.seen_at = utcnow()
    beat(admin_api.engine, row)
    body = admin_api.get("/v1/admin/status", scope="admin").json()
    [check] = [check for check in body["checks"] if check["name"] == "worker versions"]
    assert check["ok"] is False
    assert [(item["identity"], item["digest"]) for item in check["items"]] == [("9@old", "0ld")]
    assert check["items"][0]["expected_digest"] is False
