"""Every loyalty journey's messages are written for nl-BE, nl-NL, fr-BE and en (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from trouw.domain.render import SHIPPED_LOCALES, TemplateStore, sample_context
from trouw.language.journey.loader import load_journeys
from trouw.language.journey.model import Journey, SendStep

# The events Trouw derives from the loyalty ledgers and the vouchers.
LOYALTY_EVENTS = {
    "points_changed",
    "level_reached",
    "voucher_issued",
    "voucher_expiring",
    "voucher_redeemed",
    "referral_converted",
}
# A template's own word files: strings.nl.yaml is Belgian Dutch (nl-BE), strings.nl-NL.yaml what
# the Netherlands say differently, strings.fr.yaml French as in Belgium, strings.en.yaml.
WORD_FILES = {"nl", "nl-NL", "fr", "en"}
EMAILS = ROOT / "templates" / "email"


def loyalty_journeys() -> dict[str, Journey]:
    """Journeys that start on a loyalty event or only for members."""
    return {
        name: loaded.journey
        for name, loaded in load_journeys(ROOT / "journeys").items()
        if loaded.journey.trigger.event in LOYALTY_EVENTS
        or "loyalty." in str(loaded.journey.trigger.when or "")
    }


def loyalty_templates() -> list[str]:
    return sorted(
        {
            step.template
            for journey in loyalty_journeys().values()
            for step in journey.steps
            if isinstance(step, SendStep)
        }
    )


def words(template: str, locale: str) -> dict[str, str]:
    loaded = yaml.safe_load(Path(EMAILS / template / f"strings.{locale}.yaml").read_text())
    return dict(loaded or {})


def test_the_loyalty_journeys_and_their_templates_are_the_shipped_set() -> None:
    assert sorted(loyalty_journeys()) == [
        "loyalty_level",
        "loyalty_welcome",
        "points_expiring",
        "referral",
        "referral_reward",
        "voucher_expiry",
    ]
    assert loyalty_templates() == [
        "loyalty_level",
        "loyalty_welcome",
        "points_expiring",
        "referral_invite",
        "referral_reward",
        "voucher_expiry",
    ]


@pytest.mark.parametrize("template", loyalty_templates())
def test_every_loyalty_template_speaks_each_shipped_locale(template: str) -> None:
    store = TemplateStore(ROOT / "templates")
    assert store.channels(template) == {"email"}
    assert WORD_FILES <= set(store.locales("email", template))
    # nl-NL is not Belgian Dutch under another flag: its own file says something differently.
    belgian = words(template, "nl")
    dutch = words(template, "nl-NL")
    assert dutch and all(dutch[key] != belgian.get(key) for key in dutch)
    for locale in SHIPPED_LOCALES:
        email = store.render_email(template, locale, sample_context(template, locale))
        assert email.locale == locale
    subjects = {
        locale: store.strings(template, locale)["subject"] for locale in ("nl-BE", "fr-BE", "en")
    }
    assert len(set(subjects.values())) == 3  # three languages, three subjects


# What the level mail's gift box says in each shipped locale (strings.*.yaml of loyalty_level).
GIFT_WORDS = {
    "nl-BE": ("Je niveaugeschenk", "klantenkaart scant"),
    "nl-NL": ("Je niveaugeschenk", "klantenpas wordt gescand"),
    "fr-BE": ("Votre cadeau de niveau", "carte de fidélité"),
    "en": ("Your level gift", "loyalty card"),
}


@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
def test_the_level_mail_shows_the_gift_voucher_and_no_box_without_one(locale: str) -> None:
    store = TemplateStore(ROOT / "templates")
    context = sample_context("loyalty_level", locale)
    code = context["voucher"]["code"]
    gift = store.render_email("loyalty_level", locale, context)
    label, terms = GIFT_WORDS[locale]
    for part in (gift.html, gift.text):
        assert code in part and label in part and terms in part
    # A level without a gift (issue_level_voucher returns nothing), or a run of the version
    # before the gift (no `voucher` at all): the same mail without the box.
    for without in (
        {**context, "voucher": {}},
        {k: v for k, v in context.items() if k != "voucher"},
    ):
        plain = store.render_email("loyalty_level", locale, without)
        assert code not in plain.html and label not in plain.text
        assert plain.subject == gift.subject


@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
def test_the_win_back_mail_shows_its_voucher_in_each_locale(locale: str) -> None:
    store = TemplateStore(ROOT / "templates")
    assert store.category("email", "winback") == "promotional"
    assert WORD_FILES <= set(store.locales("email", "winback"))
    context = sample_context("winback", locale)
    email = store.render_email("winback", locale, context)
    assert email.locale == locale
    for part in (email.html, email.text):
        assert context["voucher"]["code"] in part
    assert context["links"]["loyalty"] in email.html
