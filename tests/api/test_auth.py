"""API keys: hashed at rest, scoped, required on every /v1 endpoint."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from tests.api.conftest import Api, rows
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import ApiKey
from trouw.ways_in.api.auth import (
    UnknownScopeError,
    create_api_key,
    ensure_key,
    find_principal,
    hash_key,
)

CUSTOMER = {"id": "c1", "email": "bart@example.com"}


def test_keys_are_stored_only_as_their_sha256(api: Api) -> None:
    stored = rows(api.engine, ApiKey)
    assert len(stored) == 3
    for key in api.keys.values():
        assert key.startswith("trw_") and len(key) > 40
        assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
        assert any(row.key_hash == hash_key(key) for row in stored)
        assert all(key not in str(row.model_dump()) for row in stored)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer trw_not-a-real-key"},
        {"X-API-Key": "trw_not-a-real-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-API-Key": ""},
    ],
)
def test_missing_or_unknown_key_is_401(api: Api, headers: dict[str, str]) -> None:
    response = api.client.post("/v1/customers", json=CUSTOMER, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert api.client.get("/v1/customers/c1", headers=headers).status_code == 401


def test_bearer_and_x_api_key_both_work(api: Api) -> None:
    key = api.keys["ingest"]
    assert (
        api.client.post("/v1/customers", json=CUSTOMER, headers={"X-API-Key": key}).status_code
        == 200
    )
    bearer = {"Authorization": f"Bearer {key}"}
    assert api.client.post("/v1/customers", json=CUSTOMER, headers=bearer).status_code == 200


def test_out_of_scope_is_403(api: Api) -> None:
    assert api.post("/v1/customers", CUSTOMER, scope="read").status_code == 403
    assert api.post("/v1/customers", CUSTOMER, scope="ingest").status_code == 200
    assert api.get("/v1/customers/c1", scope="ingest").status_code == 403
    assert api.get("/v1/customers/c1", scope="read").status_code == 200
    assert api.get("/v1/api-keys", scope="read").status_code == 403


def test_admin_may_do_everything(api: Api) -> None:
    assert api.post("/v1/customers", CUSTOMER, scope="admin").status_code == 200
    assert api.get("/v1/customers/c1", scope="admin").status_code == 200


def test_revoked_key_is_401_at_once(api: Api) -> None:
    listed = api.get("/v1/api-keys", scope="admin").json()
    ingest = next(k for k in listed if k["name"] == "test-ingest")
    assert "key_hash" not in ingest
    assert api.client.delete(f"/v1/api-keys/{ingest['id']}", headers=api.auth()).status_code == 204
    assert api.post("/v1/customers", CUSTOMER).status_code == 401
    assert api.client.delete(f"/v1/api-keys/{ingest['id']}", headers=api.auth()).status_code == 404


def test_admin_creates_a_key_shown_once(api: Api) -> None:
    response = api.post("/v1/api-keys", {"name": "pos-gent", "scopes": ["ingest"]}, scope="admin")
    assert response.status_code == 201
    created = response.json()
    assert created["scopes"] == ["ingest"] and created["key"].startswith("trw_")
    headers = {"X-API-Key": created["key"]}
    assert api.client.post("/v1/customers", json=CUSTOMER, headers=headers).status_code == 200
    assert "key" not in api.get("/v1/api-keys", scope="admin").json()[-1]
    bad = api.post("/v1/api-keys", {"name": "x", "scopes": ["root"]}, scope="admin")
    assert bad.status_code == 422


def test_create_refuses_unknown_scopes(engine: Engine) -> None:
    with (
        session_scope(engine) as session,
        pytest.raises(UnknownScopeError, match="ingest, read, admin"),
    ):
        create_api_key(session, name="x", scopes=["write"])
    with session_scope(engine) as session, pytest.raises(UnknownScopeError):
        create_api_key(session, name="x", scopes=[])


def test_ensure_key_rotates_the_named_key(engine: Engine) -> None:
    with session_scope(engine) as session:
        first = ensure_key(session, "demo", ["ingest", "read"])
    with session_scope(engine) as session:
        second = ensure_key(session, "demo", ["ingest", "read"])
    with session_scope(engine) as session:
        assert find_principal(session, first) is None
        principal = find_principal(session, second)
        assert principal is not None and principal.scopes == {"ingest", "read"}


def test_healthz_and_docs_need_no_key(api: Api) -> None:
    assert api.client.get("/healthz").status_code == 200
    assert api.client.get("/docs").status_code == 200
    schema = api.client.get("/openapi.json").json()
    assert {"BearerKey", "ApiKeyHeader"} <= set(schema["components"]["securitySchemes"])


def test_cli_creates_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from trouw.ways_in.api.cli import apikey_create

    monkeypatch.setenv("TROUW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TROUW_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("TROUW_DATABASE_URL", raising=False)
    app = typer.Typer()
    app.command()(apikey_create)
    result = CliRunner().invoke(app, ["pos-gent", "--scope", "ingest", "--scope", "read"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[0]
    assert key.startswith("trw_")
    bad = CliRunner().invoke(app, ["pos-gent", "--scope", "root"])
    assert bad.exit_code == 1 and "unknown scope root" in bad.output


@pytest.mark.parametrize("path", ["/v1/events", "/v1/customers", "/v1/products", "/v1/api-keys"])
@pytest.mark.parametrize(
    "body", [b"{not json", b'{"id": "c1", ', b"\xff\xfe", b"[" * 10 + b"]" * 10]
)
def test_the_key_is_checked_before_the_body(api: Api, path: str, body: bytes) -> None:
    """A keyless caller learns nothing about the body's parsing: 401, never 422 or 400."""
    keyless = api.client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert keyless.status_code == 401, keyless.text
    assert keyless.json()["detail"][0]["message"].startswith("a valid API key is required")
    wrong = api.client.post(
        path,
        content=body,
        headers={"Content-Type": "application/json", "X-API-Key": "trw_not-a-real-key"},
    )
    assert wrong.status_code == 401
    # With a valid key the same body gets its real answer: the body's own problem.
    keyed = api.client.post(
        path,
        content=body,
        headers={"Content-Type": "application/json", "X-API-Key": api.keys["admin"]},
    )
    assert keyed.status_code == 422, keyed.text


def test_a_key_lacking_the_scope_is_403_before_a_bad_body(api: Api) -> None:
    answer = api.client.post(
        "/v1/api-keys",
        content=b"{not json",
        headers={"Content-Type": "application/json", "X-API-Key": api.keys["ingest"]},
    )
    assert answer.status_code == 403
    assert answer.json()["detail"][0]["message"] == "this API key lacks the admin scope"
