"""Shared fixtures: the shipped templates, and throwaway template trees for negative cases."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from trouw.domain.render import TemplateStore

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.fixture(scope="session")
def store() -> TemplateStore:
    return TemplateStore(TEMPLATES)


@pytest.fixture
def copied_templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES, target)
    return target


BODY = """<mjml>
  <mj-head>
    <mj-include path="../_layout/head.mjml" />
  </mj-head>
  <mj-body>
    <mj-section>
      <mj-column>
        <mj-text>{body}</mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
"""


@pytest.fixture
def make_email(copied_templates: Path) -> Callable[..., TemplateStore]:
    """make_email(body=..., subject=..., strings_extra=...) -> a store with email/probe."""

    def make(body: str = "Hallo", subject: str = "Onderwerp", extra: str = "") -> TemplateStore:
        folder = copied_templates / "email" / "probe"
        folder.mkdir()
        (folder / "body.mjml").write_text(BODY.format(body=body), encoding="utf-8")
        (folder / "strings.en.yaml").write_text(
            f"subject: {subject!r}\npreheader: Hi\n{extra}", encoding="utf-8"
        )
        return TemplateStore(copied_templates)

    return make
