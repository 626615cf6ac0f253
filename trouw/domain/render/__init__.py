"""Rendering of email (MJML + Jinja2) and SMS templates: compile once, personalise per recipient."""

from trouw.domain.render.errors import TemplateError
from trouw.domain.render.samples import sample_context
from trouw.domain.render.sms import sms_segments
from trouw.domain.render.sources import SHIPPED_LOCALES, normalize_locale, resolve_locale
from trouw.domain.render.store import RenderedEmail, RenderedSms, TemplateStore

__all__ = [
    "SHIPPED_LOCALES",
    "RenderedEmail",
    "RenderedSms",
    "TemplateError",
    "TemplateStore",
    "normalize_locale",
    "resolve_locale",
    "sample_context",
    "sms_segments",
]
