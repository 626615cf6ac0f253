"""Intake limits and the one error body: 413 over the size limit, 422 for deep JSON, 405 + Allow."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import Api, add_customer, events, shopify_headers
from trouw.ways_in.api.limits import too_deep

LIMIT = 1_048_576


def _nested(depth: int) -> bytes:
    """A custom event whose JSON nests `depth` levels deep (built as text: json.dumps recurses)."""
    inner = '{"k": ' * (depth - 1) + '"leaf"' + "}" * (depth - 1)
    return (
        '{"id": "deep", "type": "custom", "customer": "c1", "name": "deep", '
        f'"properties": {inner}}}'
    ).encode()


def _post(api: Api, body: bytes) -> httpx.Response:
    headers = {**api.auth("ingest"), "Content-Type": "application/json"}
    return api.client.post("/v1/events", content=body, headers=headers)


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert not too_deep(b'{"a": "[[[[[[[[[[[[{{{{{{", "b": [1, {"c": [2]}]}', 4)
    assert too_deep(b'{"a": [[[1]]]}', 3)
    assert not too_deep(b'{"a": "\\"[[[[", "b": [[1]]}', 3)
    assert not too_deep(b"[" * 5 + b"]" * 5, 5)
    assert too_deep(b"[" * 6 + b"]" * 6, 5)


@pytest.mark.parametrize("depth", [33, 900, 5000])
def test_a_custom_event_nested_too_deep_is_422_not_500(api: Api, depth: int) -> None:
    add_customer(api.engine)
    response = _post(api, _nested(depth))
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {"field": "", "message": "the JSON body is nested deeper than the limit of 32 levels"}
        ]
    }
    assert events(api.engine) == []


def test_a_custom_event_within_the_depth_limit_is_accepted(api: Api) -> None:
    add_customer(api.engine)
    # The event object is level 1, `properties` level 2: 30 more levels fit.
    assert _post(api, _nested(32)).status_code == 202


@pytest.mark.parametrize(
    "path",
    [
        "/v1/events",
        "/v1/customers",
        "/v1/webhooks/shopify",
        "/v1/webhooks/woocommerce",
        "/v1/callbacks/sendgrid",
        "/v1/callbacks/twilio/inbound",
    ],
)
def test_every_body_over_the_limit_is_413_with_the_limit(api: Api, path: str) -> None:
    body = json.dumps({"id": "big", "padding": "x" * LIMIT}).encode()
    response = api.client.post(
        path, content=body, headers={**api.auth("ingest"), "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    [problem] = response.json()["detail"]
    assert problem["message"] == f"the request body is larger than the limit of {LIMIT} bytes"
    assert events(api.engine) == []


def test_a_streamed_body_without_length_is_counted(api: Api) -> None:
    chunks = [b'{"padding": "', b"x" * LIMIT, b'"}']
    response = api.client.post(
        "/v1/webhooks/shopify",
        content=iter(chunks),
        headers={"X-Shopify-Topic": "orders/create", "Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_a_verified_webhook_under_the_limit_still_reaches_the_signature_check(api: Api) -> None:
    body = json.dumps({"id": 1, "padding": "x" * 1000}).encode()
    headers = shopify_headers(body, "orders/create", "w-1", secret="wrong")
    response = api.client.post("/v1/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": [{"field": "", "message": "invalid signature"}]}


def test_every_error_has_the_one_body(api: Api) -> None:
    keyless = api.client.get("/v1/customers/c1")
    assert keyless.status_code == 401
    assert keyless.json()["detail"][0]["field"] == ""
    scope = api.get("/v1/api-keys", scope="read")
    assert scope.status_code == 403
    assert scope.json() == {
        "detail": [{"field": "", "message": "this API key lacks the admin scope"}]
    }
    missing = api.get("/v1/customers/nobody")
    assert missing.status_code == 404
    assert missing.json() == {
        "detail": [{"field": "customer_id", "message": "unknown customer 'nobody'"}]
    }
    blank = api.client.post(
        "/v1/api-keys", json={"name": " ", "scopes": ["read"]}, headers=api.auth()
    )
    assert blank.status_code == 422 and blank.json()["detail"][0]["field"] == "name"


def test_a_method_a_path_lacks_is_405_listing_every_method_it_has(api: Api) -> None:
    response = api.client.put("/v1/api-keys", headers=api.auth())
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "POST"}
    assert response.json()["detail"][0]["message"] == "Method Not Allowed"
