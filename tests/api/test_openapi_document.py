"""The OpenAPI document itself: one error body everywhere, typed events, declared attributes."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.conftest import Api, ApiSettings
from trouw.language.attributes import AttributeDeclaration
from trouw.ways_in.api.app import create_app

ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


def test_every_error_answer_is_documented_with_the_one_error_body(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/"):
            continue  # pages for people (the hosted copy) answer in HTML, documented as such
        for method, operation in operations.items():
            statuses = operation["responses"]
            assert {"401", "422"} <= set(statuses), (method, path)
            for status, answer in statuses.items():
                if status.startswith(("4", "5")):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == ERROR_BODY, (method, path, status)
            if "requestBody" in operation:
                assert "413" in statuses, (method, path)


def test_events_are_one_schema_per_type(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    body = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    mapping = body["schema"]["discriminator"]["mapping"]
    assert mapping["purchase"] == "#/components/schemas/PurchaseEvent"
    purchase = document["components"]["schemas"]["PurchaseEvent"]
    assert {"id", "type", "customer", "order", "channel", "lines"} <= set(purchase["required"])
    assert "rating" not in purchase["properties"]


def test_the_document_lists_the_declared_attributes(
    engine: Engine, api_settings: ApiSettings
) -> None:
    declared = [AttributeDeclaration(name="pets", type="integer")]
    settings = api_settings.model_copy(update={"attributes": declared})
    with TestClient(create_app(settings, engine)) as client:
        document = client.get("/openapi.json").json()
    attributes = document["components"]["schemas"]["CustomerIn"]["properties"]["attributes"]
    [declared_schema, _null] = attributes["anyOf"]
    assert declared_schema["additionalProperties"] is False
    assert declared_schema["properties"] == {
        "pets": {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    }
