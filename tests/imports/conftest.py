"""Fixtures for import tests: the data folder, a catalogue, and row counts of every table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trouw.domain.db.engine import session_scope
from trouw.domain.ingest import ProductIn, upsert_product
from trouw.ways_in.imports.mapping import load_mapping

DATA = Path(__file__).parent / "data"
MAPPINGS = Path(__file__).resolve().parents[2] / "config" / "import_mappings.toml"
TABLES = (
    "customer",
    "consent_record",
    "product",
    "purchase_order",
    "order_line",
    "inbound_event",
)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A private copy of the data folder: imports write reject files next to their input."""
    target = tmp_path / "data"
    shutil.copytree(DATA, target)
    return target


@pytest.fixture
def catalogue(engine: Engine) -> Engine:
    """The engine with the three products the order files use."""
    with session_scope(engine) as session:
        for sku, name, price in (
            ("LAWN-10", "Gazonmest 10 kg", "24.95"),
            ("POT-1", "Bloempot", "3.50"),
            ("GRILL-1", "Barbecue Weber", "1234.50"),
        ):
            upsert_product(session, ProductIn(sku=sku, name=name, price=price))
    return engine


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in TABLES
        }


def kassa(kind: str):  # type: ignore[no-untyped-def]
    return load_mapping(kind, "kassa", path=MAPPINGS)  # type: ignore[arg-type]
