"""The typed description of the context (trouw/domain/checks/scope.py) matches what the code builds,
and the sample data for templates contains everything a journey can pass."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import get_args

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tests.conftest import ROOT
from trouw.domain.checks.scope import (
    EVENT_DATA,
    Declarations,
    Shape,
    base_scope,
    template_scope,
    uncovered,
    undescribed,
)
from trouw.domain.context import build_context
from trouw.domain.ingest import EventIn, EventType, LineIn, ProductIn, ingest_event, upsert_product
from trouw.domain.render import SHIPPED_LOCALES, TemplateStore, sample_context
from trouw.domain.render.preview import check_templates

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def whole(scope: dict[str, Shape]) -> Shape:
    return Shape("record", fields=scope)


@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
def test_sample_data_holds_everything_a_journey_can_pass(locale: str) -> None:
    scope = whole(template_scope(Declarations()))
    for name in TemplateStore(ROOT / "templates").names():
        sample = sample_context(name, locale)
        assert uncovered(scope, sample, "") == [], name
        assert undescribed(scope, sample, "") == [], name


def test_every_event_type_is_described() -> None:
    declared = {name for name in get_args(EventType) if name != "custom"}
    assert declared <= set(EVENT_DATA)


def test_the_real_context_is_described(engine: Engine) -> None:
    with Session(engine) as session:
        upsert_product(
            session,
            ProductIn(
                sku="LAWN-10",
                name="Gazonmest",
                price=Decimal("24.95"),
                care={"summary": "Droog strooien.", "tips": ["Water geven."]},
                consumption_days=60,
                warranty_months=0,
            ),
        )
        row, _new = ingest_event(
            session,
            EventIn(
                id="e1",
                type="purchase",
                customer="c1",
                order="o1",
                channel="web",
                store="Gent",
                lines=[LineIn(sku="LAWN-10")],
                at=NOW,
            ),
        )
        context = build_context(session, customer_id="c1", order_id="o1", skus=["LAWN-10"], now=NOW)
        purchase_data = dict(row.payload["data"])
        others = {}
        for number, (kind, extra) in enumerate(
            [
                ("review", {"rating": 5}),
                ("opt_in", {"channel": "email"}),
                ("opt_out", {"channel": "sms"}),
                ("unsubscribe", {"channel": "email"}),
                ("sms_stop", {}),
                ("delivered", {"order": "o1"}),
                ("returned", {"order": "o1"}),
                ("bounce", {}),
            ]
        ):
            stored, _new = ingest_event(
                session,
                EventIn(id=f"x{number}", type=kind, customer="c1", at=NOW, **extra),  # type: ignore[arg-type]
            )
            others[kind] = set(stored.payload["data"])
    scope = whole(base_scope(Declarations()))
    # What ingest hands to the journeys for each event is what the description says.
    assert others == {kind: set(EVENT_DATA[kind]) for kind in others}
    assert set(context) == set(base_scope(Declarations()))
    assert undescribed(scope, context, "") == []
    assert uncovered(scope, context, "") == []
    assert set(purchase_data) == set(EVENT_DATA["purchase"])


def test_templates_may_use_trigger_and_events_without_guards(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    for text in (templates / "sms/delivery_notice").glob("text.*.txt"):
        text.write_text(
            text.read_text().rstrip()
            + " {{ trigger.code }} {{ events.delivered.at|date }} {{ history.orders }}\n"
        )
    assert check_templates(TemplateStore(templates)) == []
    bad = templates / "sms/delivery_notice/text.en.txt"
    bad.write_text(bad.read_text().replace("events.delivered", "events.deliverd"))
    assert check_templates(TemplateStore(templates)) == [
        "templates/sms/delivery_notice/text.en.txt:1: unknown name 'events.deliverd' "
        "(did you mean 'events.delivered'?)"
    ]


def test_templates_know_the_declared_attributes(tmp_path: Path) -> None:
    from trouw.domain.checks.scope import NUMBER

    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    for text in (templates / "sms/delivery_notice").glob("text.*.txt"):
        text.write_text(text.read_text().rstrip() + " {{ customer.attributes.points }}\n")
    store = TemplateStore(templates)
    assert check_templates(store, attributes={"points": NUMBER}) == []
    assert check_templates(store)[0] == (
        "templates/sms/delivery_notice/text.nl-BE.txt:1: unknown name "
        "'customer.attributes.points' (nothing is declared under customer.attributes)"
    )
