"""The API takes only declared customer attributes, each of its declared type."""

from __future__ import annotations

from tests.api.conftest import Api, customer


def test_declared_attributes_are_stored_typed(api: Api) -> None:
    body = {"id": "c1", "attributes": {"points": 120, "loyal_since": "2024-05-01T09:00:00Z"}}
    assert api.post("/v1/customers", body).status_code == 200
    stored = customer(api.engine, "c1")
    assert stored is not None
    assert stored.attributes == {"points": 120, "loyal_since": "2024-05-01"}


def test_an_undeclared_attribute_is_refused_naming_it(api: Api) -> None:
    response = api.post("/v1/customers", {"id": "c1", "attributes": {"shoe_size": 42}})
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["field"] == "attributes.shoe_size"
    assert problem["message"].startswith("unknown attribute 'shoe_size' (declared in config")
    assert customer(api.engine, "c1") is None


def test_an_attribute_of_the_wrong_type_is_refused_in_an_event_profile(api: Api) -> None:
    event = {
        "id": "r1",
        "type": "register",
        "customer": "c1",
        "profile": {"id": "c1", "attributes": {"points": "many"}},
    }
    response = api.post("/v1/events", event)
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "field": "profile.attributes.points",
            "message": "attribute 'points' is an integer: 'many' is not",
        }
    ]
    assert customer(api.engine, "c1") is None
