"""The insight interfaces: `trouw insight ...`, the two API routes, and the report page in Chromium."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.api.conftest import (  # noqa: F401
    Api,
    add_customer,
    answered_while_write_locked,
    api,
    api_settings,
    sendgrid_signer,
)
from tests.api.test_browser import Browser, _screenshot, chromium  # noqa: F401 - the fixture
from tests.conftest import ROOT
from tests.insight.test_store import AT, _refresh, _regulars, _shop
from trouw.domain.db.engine import make_engine, migrate, session_scope
from trouw.domain.insight.choice import choose
from trouw.domain.insight.report import backtest_note, model_rows
from trouw.domain.insight.store import customer_view
from trouw.settings import Settings

LATER = AT + timedelta(days=240)


def _shop_with_insight(engine: Engine, settings: Settings) -> None:
    _shop(engine, _regulars(240))
    _refresh(engine, settings, "nightly", LATER)


def test_insight_reads_wait_for_no_writer(
    api: Api,  # noqa: F811 - the fixture imported above
    engine: Engine,
    settings: Settings,
) -> None:
    # On SQLite a read that took the write lock queued behind every write (sends, redemptions).
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's one write lock")
    _shop_with_insight(engine, settings)
    statuses, while_held = answered_while_write_locked(
        engine,
        lambda: [
            api.get(path).status_code
            for path in ["/v1/customers/r00/insight", "/v1/insight/segments"]
        ],
    )
    assert statuses == [200, 200] and while_held


def test_api_answers_one_customer_and_the_segments(
    api: Api,  # noqa: F811 - the fixture imported above
    engine: Engine,
    settings: Settings,
) -> None:
    _shop_with_insight(engine, settings)
    add_customer(engine, "r00")
    add_customer(engine, "nobody")

    one = api.get("/v1/customers/r00/insight")
    segments = api.get("/v1/insight/segments")
    unscored = api.get("/v1/customers/nobody/insight")
    keyless = api.client.get("/v1/insight/segments")

    assert one.status_code == 200, one.text
    body = one.json()
    assert body["customer_id"] == "r00" and body["orders"] == 8
    assert body["segment"] and 0 <= body["p_active"] <= 1
    assert body["segment_history"][0]["segment"] == body["segment"]
    assert all(pick["sku"] != "A" for pick in body["recommendations"])  # r00 only bought A
    with session_scope(engine) as session:
        view = customer_view(session, "r00")
    assert view is not None and body["expected_value"] == pytest.approx(view["expected_value"])
    assert segments.status_code == 200
    sizes = segments.json()
    assert sizes["refresh_id"] == "nightly" and sizes["customers"] == 20
    assert sum(s["customers"] for s in sizes["segments"]) == 20
    assert unscored.status_code == 404
    assert keyless.status_code == 401


def trouw(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TROUW_")}
    env.update(
        {
            "TROUW_CONFIG": str(home / "no-config.toml"),
            "TROUW_HOME": str(home),
            "TROUW_DATABASE_URL": f"sqlite:///{home / 'trouw.db'}",
            "TROUW_SIGNING_KEYS": '["cli-key"]',
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "trouw.commands.cli", "insight", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("insight-cli")
    engine = make_engine(f"sqlite:///{home / 'trouw.db'}")
    migrate(engine)
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'trouw.db'}")
    _shop_with_insight(engine, settings)
    engine.dispose()
    return home


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_customers_as_of_ignores_every_later_order(shop: Path) -> None:
    cut = AT + timedelta(days=45)
    early = _json(trouw(shop, "customers", "--as-of", cut.isoformat(), "--format", "json"))
    now = _json(trouw(shop, "customers", "--format", "json", "--horizon", "30"))

    by_id = {row["customer_id"]: row for row in early}
    # Regulars buy every 30 days from AT (days 0 and 30 by the cut), the others on days 0 and 20.
    assert {row["orders"] for row in early} == {2}
    assert by_id["r00"]["recency_days"] == 15 and by_id["s00"]["recency_days"] == 25
    assert len(now) == 20 and {row["orders"] for row in now if row["customer_id"][0] == "r"} == {8}
    for row in early:
        assert set(row) >= {
            "customer_id",
            "orders",
            "recency_days",
            "monetary",
            "r",
            "f",
            "m",
            "segment",
            "p_active",
            "p_order",
            "expected_orders",
            "expected_next_order_at",
            "expected_value",
        }


def test_customers_csv_to_a_file_and_the_table(shop: Path) -> None:
    out = shop / "customers.csv"
    done = trouw(shop, "customers", "--format", "csv", "--out", str(out))
    table = trouw(shop, "customers", "--as-of", "2026-04-15")

    assert done.returncode == 0 and done.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 20 and rows[0]["customer_id"] == "r00"
    assert table.returncode == 0 and "Customers as of 2026-04-15 22:00 UTC" in table.stdout
    assert "r00" in table.stdout and "segment" in table.stdout


def test_rules_and_recommendations(shop: Path) -> None:
    rules = trouw(shop, "rules", "--level", "category", "--min-support", "0.01", "--format", "csv")
    picks = _json(trouw(shop, "recommend", "--customer", "s00", "--top", "2", "--format", "json"))
    every = _json(trouw(shop, "recommend", "--all", "--format", "json"))
    misuse = trouw(shop, "recommend")

    assert rules.returncode == 0, rules.stderr
    header, *lines = rules.stdout.splitlines()
    assert header == "antecedent,consequent,support,confidence,lift"
    assert {tuple(line.split(",")[:2]) for line in lines} >= {
        ("garden", "pets"),
        ("pets", "garden"),
    }
    # s00 bought B, C and D: A is all that is left to suggest, whatever --top says.
    assert [(p["customer_id"], p["rank"], p["sku"]) for p in picks] == [("s00", 1, "A")]
    assert {p["customer_id"] for p in every} <= {f"r{n:02}" for n in range(10)} | {
        f"s{n:02}" for n in range(10)
    }
    assert misuse.returncode == 1 and "give --customer ID or --all" in misuse.stderr


def test_one_customer_in_words_and_as_the_api_json(shop: Path) -> None:
    words = trouw(shop, "customer", "r00")
    data = _json(trouw(shop, "customer", "r00", "--json"))
    missing = trouw(shop, "customer", "zz")

    assert words.returncode == 0, words.stderr
    assert words.stdout.startswith(f"Customer r00: {data['segment'].replace('_', ' ')}")
    assert "8 order(s) from 2026-03-02" in words.stdout
    assert f"As of {LATER:%Y-%m-%d %H:%M} UTC" in words.stdout
    assert data["orders"] == 8 and data["refresh_id"] == "nightly"
    assert missing.returncode == 1 and "no insight for customer 'zz'" in missing.stderr


def test_report_tables_and_a_page_that_loads_nothing(shop: Path) -> None:
    done = trouw(shop, "report", "--html", str(shop / "report"))

    assert done.returncode == 0, done.stderr
    for title in ("Segments", "RFM grid", "Expected next order", "Models in use", "Top rules"):
        assert title in done.stdout
    # Twenty customers: too few for the backtest, and the report says which fallback answers.
    assert "fallback: " in done.stdout and "recency" in done.stdout
    page = (shop / "report" / "index.html").read_text()
    assert "Models in use" in page and "P(order) and next-order date</td><td>recency" in page
    assert page.count("<svg") == 3
    assert "<script" not in page and "src=" not in page and "@import" not in page


@pytest.mark.slow
def test_report_page_in_chromium(shop: Path, chromium: Browser, tmp_path: Path) -> None:  # noqa: F811
    done = trouw(shop, "report", "--html", str(shop / "report"))
    assert done.returncode == 0, done.stderr

    chromium.send("Network.enable")
    chromium.open((shop / "report" / "index.html").as_uri())
    charts = chromium.evaluate(
        "[...document.querySelectorAll('figure svg')].map(s => {"
        " const r = s.getBoundingClientRect(); return [r.width, r.height,"
        " s.querySelectorAll('rect, path').length]; })"
    )
    grid = chromium.evaluate("document.querySelectorAll('table.grid td').length")
    requests = [e for e in chromium.events if e.get("method") == "Network.requestWillBeSent"]
    shots = Path(os.environ.get("TROUW_SCREENSHOT_DIR") or tmp_path)
    shot = _screenshot(chromium, shots / "insight-report.png")

    assert len(charts) == 3
    assert all(width > 300 and height > 150 and shapes > 5 for width, height, shapes in charts)
    assert grid == 25
    # The page itself is the only thing loaded: no script, font or image from anywhere.
    assert [r["params"]["request"]["url"] for r in requests] == [
        (shop / "report" / "index.html").as_uri()
    ] or requests == []
    assert shot.stat().st_size > 20_000


def test_as_of_dates_are_the_end_of_that_day_in_the_shop(shop: Path) -> None:
    from trouw.domain.insight.cli import parse_as_of

    settings = Settings(home=shop, database_url="sqlite://")
    assert parse_as_of("2026-07-01", settings) == datetime(2026, 7, 1, 22, 0, tzinfo=UTC)
    assert parse_as_of("2026-07-01T12:00:00+00:00", settings) == datetime(
        2026, 7, 1, 12, 0, tzinfo=UTC
    )


def test_the_report_names_each_figure_s_model_its_reason_and_backtest_scores() -> None:
    choice = choose(
        {"bgnbd": 1.0722, "recency": 1.263, "learned": 1.1193},
        {"bgnbd": 0.7013, "recency": 0.6855, "learned": 0.7134},
        auc_errors={"bgnbd": 0.004, "learned": 0.004},
        available=frozenset({"bgnbd", "recency", "learned"}),
        window_days=136,
        customers=23570,
        buyers=5732,
    ).as_dict()

    assert model_rows(choice) == [
        (
            "expected orders",
            "bgnbd",
            "lowest backtest RMSE (1.072)",
            "rmse: bgnbd 1.072, recency 1.263, learned 1.119",
        ),
        (
            "P(order) and next-order date",
            "learned",
            "highest backtest AUC (0.713)",
            "auc: bgnbd 0.701, recency 0.685, learned 0.713",
        ),
    ]
    assert "last 136 days held back, 23570 customers" in backtest_note(choice)
    assert model_rows({}) == [] and "did not record" in backtest_note({})
