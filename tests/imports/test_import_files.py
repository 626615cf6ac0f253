"""Importing customers, products and order lines from CSV and JSON, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tests.imports.conftest import counts, kassa
from trouw.domain.consent import current_consent
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Customer, InboundEvent, Order, OrderLine, Product
from trouw.domain.gdpr import erase
from trouw.domain.ingest import CustomerIn, upsert_customer
from trouw.settings import Settings
from trouw.ways_in.imports import ImportFileError, import_file

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def rejects(path: Path) -> list[tuple[int, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        sample = handle.readline()
        handle.seek(0)
        reader = csv.reader(handle, delimiter=";" if sample.count(";") > 1 else ",")
        header = next(reader)
        assert header[:2] == ["_line", "_reason"]
        return [(int(row[0]), row[1]) for row in reader]


def order(engine: Engine, order_id: str) -> tuple[Order, list[OrderLine]]:
    with Session(engine) as session:
        found = session.get(Order, order_id)
        assert found is not None, order_id
        lines = session.exec(
            select(OrderLine).where(OrderLine.order_id == order_id).order_by(col(OrderLine.line_no))
        ).all()
        return found, list(lines)


def test_broken_rows_go_to_the_reject_file_with_line_and_reason(
    engine: Engine, settings: Settings, data: Path
) -> None:
    report = import_file(
        kind="orders", path=data / "orders_broken.csv", engine=engine, settings=settings, now=NOW
    )
    assert (report.rows_read, report.rows_imported, report.rows_rejected) == (11, 3, 8)
    assert report.records_new == 2
    assert report.reject_file == data / "orders_broken.csv.rejects.csv"
    found = rejects(report.reject_file)
    assert [line for line, _ in found] == [4, 5, 6, 7, 8, 9, 10, 11]
    reasons = dict(found)
    assert reasons[4] == (
        "placed_at (column 'placed_at'): not a date: 'not-a-date' "
        "(expected dd-mm-yyyy, dd/mm/yyyy or ISO 8601)"
    )
    assert reasons[5] == "qty (column 'qty'): not a whole number: 'two'"
    assert reasons[6] == "order o3 has a rejected row on line 5"
    assert reasons[7] == "empty customer_id"
    assert reasons[8] == (
        "channel 'shop' is not pos or web (map the column's values with values.channel, "
        "or set default_channel)"
    )
    assert reasons[9] == (
        "unknown product 'UNKNOWN-1' and no unit price: import the products first, "
        "or give the line's price"
    )
    assert reasons[10].startswith("customer_email (column 'customer_email'): value is not a valid")
    assert reasons[11] == "11 cells but the header has 10 columns"
    with Session(engine) as session:
        assert sorted(session.exec(select(Order.id)).all()) == ["o1", "o9"]


def test_benelux_export_decimal_comma_day_first_semicolon_and_bom(
    engine: Engine, settings: Settings, data: Path
) -> None:
    report = import_file(
        kind="orders",
        path=data / "orders_kassa_bom.csv",
        engine=engine,
        settings=settings,
        mapping=kassa("orders"),
        now=NOW,
    )
    assert report.encoding == "utf-8-sig"
    assert (report.rows_imported, report.rows_rejected, report.records_new) == (3, 0, 2)
    first, lines = order(engine, "B-1001")
    assert first.channel == "pos" and first.store == "Gent"
    # 14:05 in Brussels in March is 13:05 UTC.
    assert first.placed_at == datetime(2026, 3, 2, 13, 5, tzinfo=UTC)
    assert [(line.sku, line.qty, line.unit_price) for line in lines] == [
        ("LAWN-10", 2, Decimal("24.95")),
        ("GRILL-1", 1, Decimal("1234.50")),
    ]
    assert lines[1].name == 'Barbecue "Weber"; zwart'
    assert first.total == Decimal("1284.40")
    second, lines = order(engine, "B-1002")
    assert second.channel == "web"
    assert second.placed_at == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # midnight in Brussels
    assert [(line.qty, line.unit_price) for line in lines] == [(3, Decimal("3.50"))]
    with Session(engine) as session:
        bart = session.get(Customer, "K-1")
        zoe = session.get(Customer, "K-2")
        assert bart is not None and zoe is not None
        assert (bart.email, bart.phone, bart.last_name) == (
            "bart@example.com",
            "+32470123456",
            "Peeters",
        )
        assert zoe.first_name == "Zoë"


def test_windows_1252_export_keeps_its_accents(
    engine: Engine, settings: Settings, data: Path
) -> None:
    report = import_file(
        kind="customers",
        path=data / "customers_kassa_cp1252.csv",
        engine=engine,
        settings=settings,
        mapping=kassa("customers"),
        now=NOW,
    )
    assert report.encoding == "cp1252"
    assert (report.rows_read, report.rows_imported, report.rows_rejected) == (4, 3, 1)
    assert report.reject_file is not None
    [(line, reason)] = rejects(report.reject_file)
    assert line == 5 and reason.startswith("email (column 'E-mail'): value is not a valid")
    with Session(engine) as session:
        rene = session.get(Customer, "K-3")
        zoe = session.get(Customer, "K-2")
        bart = session.get(Customer, "K-1")
        assert rene is not None and zoe is not None and bart is not None
        assert (rene.first_name, rene.last_name, rene.locale) == ("René", "Lefèvre", "fr-BE")
        assert rene.phone == "+32475112233"
        assert zoe.first_name == "Zoë"
        assert bart.birthday is not None and bart.birthday.isoformat() == "1979-04-24"
        assert bart.attributes == {"loyalty_card": "1234"}
        assert bart.locale == "nl-BE"
        assert current_consent(session, "K-1").promotional("email")
        assert not current_consent(session, "K-1").promotional("sms")
        assert current_consent(session, "K-3").promotional("sms")


def test_reimporting_the_same_files_changes_nothing(
    engine: Engine, settings: Settings, data: Path
) -> None:
    def run_all() -> list[int]:
        news = []
        for kind, name, mapping in (
            ("customers", "customers_kassa_cp1252.csv", kassa("customers")),
            ("products", "products.csv", None),
            ("orders", "orders_kassa_bom.csv", kassa("orders")),
            ("orders", "orders_broken.csv", None),
            ("orders", "orders.jsonl", None),
        ):
            report = import_file(
                kind=kind,  # type: ignore[arg-type]
                path=data / name,
                engine=engine,
                settings=settings,
                mapping=mapping,
                now=datetime.now(UTC),
            )
            news.append(report.records_new)
            if news[-1] == 0:
                assert report.rows_imported == 0
                assert report.rows_unchanged == report.rows_read - report.rows_rejected
        return news

    first = run_all()
    before = counts(engine)
    with Session(engine) as session:
        stamps = {c.id: c.updated_at for c in session.exec(select(Customer)).all()}
    second = run_all()
    assert all(first) and second == [0, 0, 0, 0, 0]
    assert counts(engine) == before
    with Session(engine) as session:
        assert {c.id: c.updated_at for c in session.exec(select(Customer)).all()} == stamps


def test_backfill_stores_history_as_already_relayed(
    catalogue: Engine, settings: Settings, data: Path
) -> None:
    report = import_file(
        kind="orders",
        path=data / "orders.jsonl",
        engine=catalogue,
        settings=settings,
        backfill=True,
        now=NOW,
    )
    assert report.records_new == 2
    with Session(catalogue) as session:
        events = session.exec(select(InboundEvent)).all()
        assert {e.source_id for e in events} == {"import:orders:w-1", "import:orders:w-2"}
        assert all(e.relayed_at == NOW for e in events)
        assert session.get(Order, "w-1") is not None  # history still feeds segments


def test_normal_import_leaves_events_for_the_relay(
    catalogue: Engine, settings: Settings, data: Path
) -> None:
    import_file(kind="orders", path=data / "orders.jsonl", engine=catalogue, settings=settings)
    with Session(catalogue) as session:
        events = session.exec(select(InboundEvent)).all()
        assert len(events) == 2 and all(e.relayed_at is None for e in events)
        assert {e.type for e in events} == {"purchase"}


def test_json_lines_with_nested_and_flat_order_lines(
    catalogue: Engine, settings: Settings, data: Path
) -> None:
    report = import_file(
        kind="orders", path=data / "orders.jsonl", engine=catalogue, settings=settings, now=NOW
    )
    assert report.source_format == "jsonl"
    assert (report.rows_read, report.rows_imported, report.rows_rejected) == (5, 3, 2)
    assert report.reject_file is not None
    assert rejects(report.reject_file) == [
        (4, "invalid JSON: Expecting ',' delimiter"),
        (5, "not a JSON object"),
    ]
    w1, lines = order(catalogue, "w-1")
    # POT-1 has no price in the file: the catalogue price is used.
    assert [(line.sku, line.qty, line.unit_price) for line in lines] == [
        ("LAWN-10", 2, Decimal("24.95")),
        ("POT-1", 1, Decimal("3.50")),
    ]
    assert w1.total == Decimal("53.40") and w1.channel == "web"
    with Session(catalogue) as session:
        bart = session.get(Customer, "c1")
        assert bart is not None and bart.email == "bart@example.com"


def test_json_array_read_element_by_element(
    catalogue: Engine, settings: Settings, data: Path
) -> None:
    report = import_file(
        kind="orders", path=data / "orders_array.json", engine=catalogue, settings=settings
    )
    assert report.source_format == "json"
    assert (report.rows_read, report.rows_imported, report.rows_rejected) == (3, 2, 1)
    assert report.reject_file is not None
    assert rejects(report.reject_file) == [
        (
            18,
            "channel 'bike' is not pos or web (map the column's values with values.channel, "
            "or set default_channel)",
        )
    ]
    a1, lines = order(catalogue, "a-1")
    assert len(lines) == 2 and a1.total == Decimal("24.95") + 4 * Decimal("3.50")


@pytest.mark.parametrize("batch_rows", [1, 2, 500])
def test_grouped_lines_make_one_order_with_the_right_total(
    engine: Engine, settings: Settings, tmp_path: Path, batch_rows: int
) -> None:
    path = tmp_path / "orders.csv"
    rows = ["order_id;customer_id;placed_at;channel;sku;qty;unit_price"]
    rows += [f"big;c1;02-03-2026;pos;SKU-{n};{n};1,25" for n in range(1, 6)]
    rows += ["small;c2;03-03-2026;web;SKU-1;1;9,99"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = import_file(
        kind="orders", path=path, engine=engine, settings=settings, batch_rows=batch_rows
    )
    assert (report.records_new, report.rows_imported, report.reject_file) == (2, 6, None)
    big, lines = order(engine, "big")
    assert [line.line_no for line in lines] == [1, 2, 3, 4, 5]
    assert big.total == Decimal("1.25") * 15


def test_repeat_of_an_order_further_down_is_rejected_as_duplicate(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "order_id,customer_id,placed_at,channel,sku,qty,unit_price\n"
        "o1,c1,2026-03-02,pos,A,1,1.00\n"
        "o2,c2,2026-03-02,pos,A,1,1.00\n"
        "o1,c1,2026-03-02,pos,B,1,2.00\n",
        encoding="utf-8",
    )
    report = import_file(kind="orders", path=path, engine=engine, settings=settings, batch_rows=1)
    assert report.reject_file is not None
    assert rejects(report.reject_file) == [
        (
            4,
            "duplicate: order o1 was already imported earlier in this file "
            "(the rows of one order must be adjacent)",
        )
    ]
    _, lines = order(engine, "o1")
    assert [line.sku for line in lines] == ["A"]


def test_unknown_product_without_price_is_rejected_with_a_clear_reason(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "order_id,customer_id,placed_at,channel,sku,qty\no1,c1,2026-03-02,pos,NEW-SKU,1\n",
        encoding="utf-8",
    )
    report = import_file(kind="orders", path=path, engine=engine, settings=settings)
    assert report.reject_file is not None
    assert rejects(report.reject_file) == [
        (
            2,
            "unknown product 'NEW-SKU' and no unit price: import the products first, "
            "or give the line's price",
        )
    ]
    assert counts(engine)["purchase_order"] == 0


def test_products_keep_what_the_file_does_not_say(
    engine: Engine, settings: Settings, data: Path, tmp_path: Path
) -> None:
    import_file(kind="products", path=data / "products.csv", engine=engine, settings=settings)
    price_list = tmp_path / "prices.csv"
    price_list.write_text("sku;price\nLAWN-10;26,95\nNEW-1;1,00\n", encoding="utf-8")
    report = import_file(kind="products", path=price_list, engine=engine, settings=settings)
    assert (report.records_new, report.rows_rejected) == (1, 1)
    assert report.reject_file is not None
    assert rejects(report.reject_file) == [(3, "new product 'NEW-1' needs a name")]
    with Session(engine) as session:
        lawn = session.get(Product, "LAWN-10")
        grill = session.get(Product, "GRILL-1")
        assert lawn is not None and grill is not None
        assert (lawn.price, lawn.consumption_days, lawn.category) == (
            Decimal("26.95"),
            60,
            "garden",
        )
        assert grill.price == Decimal("1234.50")


def test_a_file_without_a_required_column_is_refused_whole(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order_id,sku\no1,A\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match=r"needs column\(s\) for customer_id"):
        import_file(kind="orders", path=path, engine=engine, settings=settings)
    assert counts(engine)["purchase_order"] == 0


def test_rows_of_an_erased_customer_are_rejected_with_the_reason(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    with session_scope(engine) as session:
        upsert_customer(
            session, CustomerIn(id="c1", email="bart@example.com"), at=NOW, source="pos"
        )
    with session_scope(engine) as session:
        erase(session, customer_id="c1", at=NOW)
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "order_id,customer_id,customer_email,placed_at,channel,sku,qty,unit_price\n"
        "o1,c1,bart@example.com,2026-03-02,pos,A,1,1.00\n"
        "o2,c1,,2026-03-03,pos,A,1,1.00\n"
        "o3,c2,an@example.com,2026-03-03,pos,A,1,1.00\n",
        encoding="utf-8",
    )
    report = import_file(kind="orders", path=orders, engine=engine, settings=settings)
    assert report.reject_file is not None
    found = rejects(report.reject_file)
    assert [line for line, _ in found] == [2, 3]
    assert all(r.startswith("customer 'c1' was erased") for _, r in found), found
    assert all("new customer id" in r for _, r in found)
    customers = tmp_path / "customers.csv"
    customers.write_text(
        "customer_id,email,first_name\nc1,bart@example.com,Bart\n", encoding="utf-8"
    )
    report = import_file(kind="customers", path=customers, engine=engine, settings=settings)
    assert report.reject_file is not None
    [(line, reason)] = rejects(report.reject_file)
    assert line == 2 and reason.startswith("customer 'c1' was erased")
    with Session(engine) as session:
        tombstone = session.get(Customer, "c1")
        assert tombstone is not None and tombstone.erased
        assert (tombstone.email, tombstone.first_name) == (None, None)
        assert session.exec(select(InboundEvent.customer_id)).all() == ["c2"]


def test_order_name_currency_phone_and_locale_cells(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "order_id,order_name,currency,customer_id,placed_at,channel,sku,qty,unit_price\n"
        "o1,Bon 0001,gbp,c1,2026-03-02,pos,A,1,1.00\n"
        "o2,Bon 0002,XYZ,c1,2026-03-02,pos,A,1,1.00\n",
        encoding="utf-8",
    )
    report = import_file(kind="orders", path=orders, engine=engine, settings=settings)
    found, _ = order(engine, "o1")
    assert (found.name, found.currency) == ("Bon 0001", "GBP")
    assert report.reject_file is not None
    assert rejects(report.reject_file) == [
        (3, "currency (column 'currency'): unknown currency 'XYZ' (ISO 4217, e.g. EUR)")
    ]
    customers = tmp_path / "customers.csv"
    customers.write_text(
        "id,phone,locale\n"
        "k1,+32 470 12 34 56,de-BE\n"
        "k2,+32 470 12 34 57 ext. 5,nl-BE\n"
        "k3,+32470123458,nl_BE\n",
        encoding="utf-8",
    )
    report = import_file(kind="customers", path=customers, engine=engine, settings=settings)
    with Session(engine) as session:
        k1 = session.get(Customer, "k1")
        assert k1 is not None and (k1.phone, k1.locale) == ("+32470123456", "de-BE")
    assert report.reject_file is not None
    assert rejects(report.reject_file) == [
        (
            3,
            "phone (column 'phone'): '+32 470 12 34 57 ext. 5' has an extension (5): SMS cannot "
            "reach it (set phone_country in the mapping to read local numbers)",
        ),
        (4, "locale (column 'locale'): locale 'nl_BE' is not BCP 47: write 'nl-BE' (with -)"),
    ]
