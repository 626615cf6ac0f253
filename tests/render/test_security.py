"""Sandbox, escaping and refusal rules for marketer-edited templates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from trouw.domain.render import TemplateError, TemplateStore, sample_context
from trouw.domain.render.preview import check_templates

MakeEmail = Callable[..., TemplateStore]


def test_missing_variable_names_file_and_line(store: TemplateStore) -> None:
    ctx = sample_context("order_confirmation", "nl-BE")
    del ctx["order"]["lines"][0]["qty"]
    with pytest.raises(TemplateError) as caught:
        store.render_email("order_confirmation", "nl-BE", ctx)
    assert str(caught.value) == (
        "templates/email/order_confirmation/body.mjml:25: 'dict object' has no attribute 'qty'"
    )


def test_missing_variable_in_a_partial_names_the_partial(store: TemplateStore) -> None:
    ctx = sample_context("birthday", "en")
    del ctx["links"]["shop"]
    with pytest.raises(TemplateError, match=r"^templates/email/_layout/header\.mjml:8: "):
        store.render_email("birthday", "en", ctx)


def test_missing_variable_in_a_string_names_the_strings_file(store: TemplateStore) -> None:
    ctx = sample_context("birthday", "nl-BE")
    del ctx["voucher"]
    with pytest.raises(TemplateError) as caught:
        store.render_email("birthday", "nl-BE", ctx)
    assert str(caught.value) == "templates/email/birthday/strings.nl.yaml:2: 'voucher' is undefined"


def test_missing_variable_in_body_string_points_at_body_and_string(make_email: MakeEmail) -> None:
    store = make_email(
        body="line one</mj-text><mj-text>[[ hello ]]", extra="hello: 'Hi {{ nobody }}'\n"
    )
    with pytest.raises(TemplateError) as caught:
        store.render_email("probe", "en", sample_context("probe", "en"))
    message = str(caught.value)
    assert message.startswith("templates/email/probe/body.mjml:8 (string 'hello' at ")
    assert message.endswith("strings.en.yaml:3): 'nobody' is undefined")


def test_missing_sms_variable_names_file(store: TemplateStore) -> None:
    ctx = sample_context("refill_reminder", "en")
    del ctx["refill"]
    with pytest.raises(TemplateError) as caught:
        store.render_sms("refill_reminder", "en", ctx)
    assert str(caught.value) == "templates/sms/refill_reminder/text.en.txt:1: 'refill' is undefined"


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ customer.__class__ }}",
        "{{ customer.first_name.format.__globals__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ self.__init__.__globals__ }}",
        "{{ ''|attr('__class__') }}",
        "{{ order.lines.append(1) }}",
    ],
)
def test_injection_payloads_are_refused(make_email: MakeEmail, payload: str) -> None:
    store = make_email(body=payload)
    with pytest.raises(TemplateError, match=r"^templates/email/probe/body\.mjml:8: "):
        store.render_email("probe", "en", sample_context("probe", "en"))


def test_injection_in_subject_is_refused(make_email: MakeEmail) -> None:
    store = make_email(subject="{{ ''.__class__.__mro__ }}")
    with pytest.raises(TemplateError, match=r"strings\.en\.yaml:1: .*unsafe"):
        store.render_email("probe", "en", sample_context("probe", "en"))


def test_script_in_customer_data_is_escaped(store: TemplateStore) -> None:
    ctx = sample_context("order_confirmation", "en")
    ctx["customer"]["first_name"] = "<script>alert(1)</script>"
    ctx["order"]["lines"][0]["name"] = '"><img src=x onerror=alert(1)>'
    email = store.render_email("order_confirmation", "en", ctx)
    assert "<script>alert(1)</script>" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "<img src=x" not in email.html


def test_line_break_in_subject_is_refused(store: TemplateStore) -> None:
    ctx = sample_context("review_request", "en")
    ctx["customer"]["first_name"] = "Emma\r\nBcc: everyone@example.com"
    with pytest.raises(TemplateError, match="line break"):
        store.render_email("review_request", "en", ctx)


def test_line_break_written_into_subject_template_is_refused(make_email: MakeEmail) -> None:
    store = make_email(subject="Hello{{ '\\n' }}Bcc: x")
    with pytest.raises(TemplateError, match="line break"):
        store.render_email("probe", "en", sample_context("probe", "en"))


def test_line_break_in_sms_value_is_refused(store: TemplateStore) -> None:
    ctx = sample_context("delivery_notice", "en")
    ctx["order"] = {**ctx["order"], "name": "A1\nSTOP"}
    with pytest.raises(TemplateError, match="line break"):
        store.render_sms("delivery_notice", "en", ctx)


def test_safe_filter_is_refused_at_check_time(make_email: MakeEmail) -> None:
    store = make_email(body="{{ customer.first_name|safe }}")
    problems = check_templates(store)
    assert any(
        p.startswith("templates/email/probe/body.mjml:8: filter 'safe' is not allowed")
        for p in problems
    ), problems


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{% include 'x.html' %}", "{% include %} is not allowed"),
        ("{% import 'x.html' as x %}", "{% import %} is not allowed"),
        ("{% extends 'x.html' %}", "{% extends %} is not allowed"),
        ("{{ customer.first_name", "body.mjml:8: unexpected"),
    ],
)
def test_forbidden_or_broken_tags_are_reported_with_line(
    make_email: MakeEmail, body: str, message: str
) -> None:
    store = make_email(body=body)
    with pytest.raises(TemplateError, match=r"^templates/email/probe/body\.mjml:8") as caught:
        store.render_email("probe", "en", sample_context("probe", "en"))
    assert message in str(caught.value)


def test_javascript_links_are_refused(make_email: MakeEmail) -> None:
    store = make_email(body='<a href="{{ customer.email }}">me</a>')
    ctx = sample_context("probe", "en")
    ctx["customer"]["email"] = "javascript:alert(1)"
    with pytest.raises(TemplateError, match="not http"):
        store.render_email("probe", "en", ctx)


def test_include_outside_templates_dir_is_refused(copied_templates: Path) -> None:
    (copied_templates.parent / "secret.mjml").write_text("<mj-text>secret</mj-text>")
    body = copied_templates / "email" / "reactivation" / "body.mjml"
    body.write_text(body.read_text().replace("../_layout/header.mjml", "../../../secret.mjml"))
    with pytest.raises(TemplateError, match="leaves the templates directory"):
        TemplateStore(copied_templates).version("email", "reactivation")


def test_unknown_string_key_names_body_line(make_email: MakeEmail) -> None:
    store = make_email(body="[[ not_there ]]")
    with pytest.raises(TemplateError) as caught:
        store.render_email("probe", "en", sample_context("probe", "en"))
    assert str(caught.value) == (
        "templates/email/probe/body.mjml:8: no string 'not_there' for this locale"
    )


def test_check_reports_missing_unsubscribe_and_missing_locale(make_email: MakeEmail) -> None:
    problems = check_templates(make_email())
    assert "templates/email/probe/body.mjml: no link to {{ links.unsubscribe }}" in problems
    assert "templates/email/probe: no nl-BE text; it falls back to en" in problems
