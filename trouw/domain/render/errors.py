"""The one error a template can raise: it names the template file and line."""

from __future__ import annotations


class TemplateError(Exception):
    """A template is broken or refused; the message starts with file and line.

    Example: "templates/email/birthday/body.mjml:12: 'voucher' is undefined".
    Permanent by nature: retrying the same render with the same data fails the same way.
    """
