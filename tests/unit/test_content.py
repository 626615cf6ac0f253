"""The digest of the journeys and templates a worker runs: the same for the same files, another
for any change (content, name or a file more), exported as one gauge label."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from tests.conftest import ROOT
from trouw.domain.content import content_digest, export_digest


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    journeys, templates = tmp_path / "journeys", tmp_path / "templates"
    (templates / "email").mkdir(parents=True)
    journeys.mkdir()
    (journeys / "post_purchase.yaml").write_text("journey: post_purchase\n")
    (templates / "email" / "receipt.mjml").write_text("<mjml></mjml>\n")
    return journeys, templates


def test_same_files_same_digest_any_change_another(tmp_path: Path) -> None:
    journeys, templates = _folders(tmp_path)
    first = content_digest(journeys, templates)
    assert len(first) == 12 and first == content_digest(journeys, templates)
    (templates / "email" / "receipt.mjml").write_text("<mjml> </mjml>\n")
    edited = content_digest(journeys, templates)
    (journeys / "refill.yaml").write_text("journey: refill\n")
    added = content_digest(journeys, templates)
    assert len({first, edited, added}) == 3
    # A file moved from one folder to the other is a change too.
    assert content_digest(journeys, templates) != content_digest(templates, journeys)


def test_the_gauge_holds_only_the_current_digest(tmp_path: Path) -> None:
    journeys, templates = _folders(tmp_path)
    old = export_digest(journeys, templates)
    (journeys / "post_purchase.yaml").write_text("journey: post_purchase\nversion: 2\n")
    new = export_digest(journeys, templates)
    assert REGISTRY.get_sample_value("trouw_content_info", {"digest": new}) == 1
    assert REGISTRY.get_sample_value("trouw_content_info", {"digest": old}) is None


def test_the_shipped_content_has_a_digest() -> None:
    assert len(content_digest(ROOT / "journeys", ROOT / "templates")) == 12
