"""Every shipped template renders in every locale, and the catalogue behaves."""

from __future__ import annotations

from pathlib import Path

import pytest

from trouw.domain.render import SHIPPED_LOCALES, TemplateError, TemplateStore, sample_context
from trouw.domain.render.preview import check_templates

EMAILS = [
    "order_confirmation",
    "delivery_notice",
    "care_tips",
    "review_request",
    "refill_reminder",
    "reactivation",
    "inactive_notice",
    "birthday",
    "birthday_ask",
    "voucher_expiry",
    "loyalty_welcome",
    "loyalty_level",
    "points_expiring",
    "referral_invite",
    "referral_reward",
    "next_order",
    "winback",
]
SMSES = ["delivery_notice", "refill_reminder"]


def test_catalogue_lists_every_shipped_template(store: TemplateStore) -> None:
    assert sorted(store.names()) == sorted(EMAILS)
    assert store.channels("delivery_notice") == {"email", "sms"}
    assert store.channels("birthday") == {"email"}
    assert store.channels("nope") == set()


@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
@pytest.mark.parametrize("name", EMAILS)
def test_every_email_renders_in_every_locale(store: TemplateStore, name: str, locale: str) -> None:
    context = sample_context(name, locale)
    email = store.render_email(name, locale, context)
    assert email.locale == locale
    assert email.subject and "\n" not in email.subject
    assert email.preheader
    assert email.template_version == store.version("email", name)
    links = context["links"]
    assert links["view_in_browser"] in email.html and links["preferences"] in email.html
    if store.meta(name)["category"] != "transactional":
        assert links["unsubscribe"] in email.html
        assert links["unsubscribe"] in email.text
    assert "{{" not in email.html and "{%" not in email.html and "[[" not in email.html
    assert "{{" not in email.text and context["customer"]["first_name"] in email.text


@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
@pytest.mark.parametrize("name", SMSES)
def test_every_sms_renders_in_every_locale(store: TemplateStore, name: str, locale: str) -> None:
    sms = store.render_sms(name, locale, sample_context(name, locale))
    assert sms.locale == locale
    assert sms.encoding == "GSM-7"  # no stray accent or no-break space doubling the price
    assert 1 <= sms.segments <= 2
    assert "{{" not in sms.text


def test_shipped_templates_pass_the_check(store: TemplateStore) -> None:
    assert check_templates(store) == []


def test_locale_falls_back_to_language_then_english(store: TemplateStore) -> None:
    ctx = sample_context("birthday", "fr-BE")
    assert store.render_email("birthday", "fr-FR", ctx).locale == "fr-FR"  # strings.fr.yaml
    assert store.render_email("birthday", "nl_be", ctx).locale == "nl-BE"
    assert store.render_email("birthday", "de-DE", ctx).locale == "en"
    assert store.render_sms("delivery_notice", "nl", ctx).locale == "nl-BE"  # a sibling
    assert store.render_sms("delivery_notice", "es", ctx).locale == "en"


def test_netherlands_and_belgian_dutch_differ_where_they_should(store: TemplateStore) -> None:
    be = store.render_email("delivery_notice", "nl-BE", sample_context("x", "nl-BE"))
    nl = store.render_email("delivery_notice", "nl-NL", sample_context("x", "nl-NL"))
    assert "geleverd" in be.subject and "bezorgd" in nl.subject
    assert "Dag Bart," in be.text and "Hoi Sanne," in nl.text


def test_order_lines_and_totals_appear_formatted(store: TemplateStore) -> None:
    email = store.render_email("order_confirmation", "nl-BE", sample_context("x", "nl-BE"))
    assert "Gazonmest 10 kg" in email.text
    assert "€\u00a0110,40" in email.html
    assert "Olijfboom 80 cm €\u00a039,00 | 1 | €\u00a039,00" in email.text


def test_pos_order_mentions_the_store(store: TemplateStore) -> None:
    ctx = sample_context("order_confirmation", "nl-NL")
    ctx["order"] = {**ctx["order"], "channel": "pos", "store": "De Linde Utrecht"}
    email = store.render_email("order_confirmation", "nl-NL", ctx)
    assert "in onze winkel in De Linde Utrecht" in email.text
    assert "kassabon" in email.text


def test_care_tips_show_every_tip_and_skip_products_without_care(store: TemplateStore) -> None:
    ctx = sample_context("care_tips", "en")
    ctx["products"] = [*ctx["products"], {**ctx["products"][0], "name": "No care", "care": None}]
    email = store.render_email("care_tips", "en", ctx)
    for product in ctx["products"][:-1]:
        for tip in product["care"]["tips"]:
            assert f"- {tip}" in email.text
    assert "No care" not in email.text


def test_empty_recommendations_leave_no_section(store: TemplateStore) -> None:
    ctx = sample_context("birthday", "en")
    ctx["recommendations"] = []
    email = store.render_email("birthday", "en", ctx)
    assert "You might also like" not in email.text


def test_version_changes_when_a_partial_changes(copied_templates: Path) -> None:
    before = TemplateStore(copied_templates).version("email", "birthday")
    other = TemplateStore(copied_templates).version("email", "review_request")
    partial = copied_templates / "email" / "_partials" / "recommendations.mjml"
    partial.write_text(partial.read_text() + "\n", encoding="utf-8")
    after_store = TemplateStore(copied_templates)
    assert after_store.version("email", "birthday") != before
    assert after_store.version("email", "review_request") == other  # does not include it
    layout = copied_templates / "email" / "_layout" / "strings.fr.yaml"
    layout.write_text(layout.read_text() + "\n# touched\n", encoding="utf-8")
    assert TemplateStore(copied_templates).version("email", "review_request") != other


def test_reload_picks_up_edited_copy(copied_templates: Path) -> None:
    store = TemplateStore(copied_templates)
    ctx = sample_context("birthday_ask", "en")
    assert store.render_email("birthday_ask", "en", ctx).subject.startswith("May we")
    strings = copied_templates / "email" / "birthday_ask" / "strings.en.yaml"
    strings.write_text(strings.read_text().replace("May we", "Can we"), encoding="utf-8")
    store.reload()
    assert store.render_email("birthday_ask", "en", ctx).subject.startswith("Can we")


def test_text_part_file_replaces_the_generated_one(copied_templates: Path) -> None:
    folder = copied_templates / "email" / "reactivation"
    (folder / "text.txt").write_text(
        "[[ greeting ]]\n\nShop: {{ links.shop }}\nStop: {{ links.unsubscribe }}\n",
        encoding="utf-8",
    )
    store = TemplateStore(copied_templates)
    email = store.render_email("reactivation", "nl-BE", sample_context("x", "nl-BE"))
    assert email.text.startswith("Dag Bart,\n\nShop: https://")


def test_unknown_template_is_a_template_error(store: TemplateStore) -> None:
    with pytest.raises(TemplateError, match="unknown email template"):
        store.render_email("../etc", "en", {})
    with pytest.raises(TemplateError, match="unknown sms template"):
        store.render_sms("birthday", "en", {})
