"""Imports take only declared customer attributes, typed from the file's text."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from trouw.domain.db.models import Customer
from trouw.settings import Settings
from trouw.ways_in.imports import ImportFileError, import_file
from trouw.ways_in.imports.mapping import Mapping, load_mapping

MAPPINGS = """
[customers.loyalty]
id = "id"
attributes.points = "Punten"
attributes.loyalty_card = "Kaart"

[customers.shoes]
id = "id"
attributes.shoe_size = "Maat"
"""


def mapping(tmp_path: Path, name: str) -> Mapping:
    path = tmp_path / "mappings.toml"
    path.write_text(MAPPINGS, encoding="utf-8")
    return load_mapping("customers", name, path=path)


def test_attribute_cells_are_typed_and_a_wrong_one_rejects_its_row(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    csv = tmp_path / "klanten.csv"
    csv.write_text("id;Punten;Kaart\nk1;120;0042\nk2;veel;0043\n", encoding="utf-8")
    report = import_file(
        kind="customers",
        path=csv,
        engine=engine,
        settings=settings,
        mapping=mapping(tmp_path, "loyalty"),
    )
    assert (report.rows_imported, report.rows_rejected) == (1, 1)
    assert report.reject_file is not None
    assert "attribute 'points' is an integer: 'veel' is not" in report.reject_file.read_text()
    with Session(engine) as session:
        k1 = session.get(Customer, "k1")
        assert k1 is not None and k1.attributes == {"points": 120, "loyalty_card": "0042"}
        assert session.get(Customer, "k2") is None


def test_a_mapping_with_an_undeclared_attribute_is_refused_before_reading(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    csv = tmp_path / "klanten.csv"
    csv.write_text("id;Maat\nk1;42\n", encoding="utf-8")
    with pytest.raises(ImportFileError) as caught:
        import_file(
            kind="customers",
            path=csv,
            engine=engine,
            settings=settings,
            mapping=mapping(tmp_path, "shoes"),
        )
    assert str(caught.value) == (
        "mapping customers.shoes: attribute 'shoe_size' is not declared "
        "(config/trouw.toml `attributes`: favourite_store, loyal_since, loyalty_card, points)"
    )
