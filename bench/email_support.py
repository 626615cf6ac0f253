"""Email client support of every shipped email, measured with caniemail data (doiuse-email).

Setup once: (cd bench && npm ci)   # @jsx-email/doiuse-email pinned in bench/package.json
Run:        .venv/bin/python bench/email_support.py [--json]

Each shipped email is rendered in every shipped locale with its sample context (the HTML a
customer gets) and checked by @jsx-email/doiuse-email, which reads the caniemail.com database,
against every client it knows. A feature is attributed to MJML when the same feature is also
reported for a bare MJML document built from the components the templates use and no style of
our own (MJML ships its own fallbacks for those: Outlook conditional comments, inline widths);
the rest comes from our templates. Per client family it prints the features some client of the
family does not support (errors) and those it supports partly (warnings).
Exit code 1 if a feature of our own is unsupported by Gmail or Outlook.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mjml  # noqa: E402
from node_lines import NodeLines  # noqa: E402

from trouw.domain.render import SHIPPED_LOCALES, TemplateStore, sample_context  # noqa: E402

CHECKER_JS = r"""
const readline = require('readline');
const { doIUseEmail } = require('@jsx-email/doiuse-email');
const version = require('@jsx-email/doiuse-email/package.json').version;
const rl = readline.createInterface({ input: process.stdin, terminal: false });
process.stdout.write(JSON.stringify({ version }) + '\n');
// One client at a time: the checker throws for a whole run when caniemail lacks one
// client's data for one feature, and that client's gap should not hide the others.
const CLIENTS = CLIENT_LIST;
rl.on('line', (line) => {
  const html = JSON.parse(line);
  const errors = [], warnings = [], gaps = [];
  for (const client of CLIENTS) {
    try {
      const out = doIUseEmail(html, { emailClients: [client] });
      errors.push(...(out.errors || []));
      warnings.push(...out.warnings);
    } catch (e) {
      gaps.push(client + ': ' + String(e.message || e));
    }
  }
  process.stdout.write(JSON.stringify({ errors, warnings, gaps }) + '\n');
});
"""
# The components the shipped templates use, with MJML's defaults and no style of our own.
BARE_MJML = """<mjml><mj-head><mj-title>t</mj-title><mj-preview>p</mj-preview>
<mj-attributes><mj-all font-family="Helvetica, Arial, sans-serif" /></mj-attributes></mj-head>
<mj-body background-color="#f4f1ea" width="600px">
<mj-section background-color="#ffffff"><mj-column><mj-text>x</mj-text>
<mj-button href="https://x.example" border-radius="6px">b</mj-button>
<mj-table><tr><td>a</td></tr></mj-table><mj-divider /></mj-column></mj-section>
<mj-section><mj-column width="33%"><mj-text>y</mj-text></mj-column>
<mj-column width="33%"><mj-text>z</mj-text></mj-column></mj-section>
</mj-body></mjml>"""
# doiuse-email's client list (its emailClientsList), as of the pinned version.
CLIENTS = [
    "apple-mail.macos", "apple-mail.ios", "gmail.desktop-webmail", "gmail.ios", "gmail.android",
    "gmail.mobile-webmail", "orange.desktop-webmail", "orange.ios", "orange.android",
    "outlook.windows", "outlook.windows-mail", "outlook.macos", "outlook.ios", "outlook.android",
    "yahoo.desktop-webmail", "yahoo.ios", "yahoo.android", "aol.desktop-webmail", "aol.ios",
    "aol.android", "samsung-email.android", "sfr.desktop-webmail", "sfr.ios", "sfr.android",
    "thunderbird.macos", "protonmail.desktop-webmail", "protonmail.ios", "protonmail.android",
    "hey.desktop-webmail", "mail-ru.desktop-webmail", "fastmail.desktop-webmail",
    "laposte.desktop-webmail",
]  # fmt: skip
_MESSAGE = re.compile(
    r"^`(?P<feature>.+?)` is (?P<kind>not|only partially) supported by `(?P<client>[^`]+)`"
)
GMAIL_OUTLOOK = ("gmail", "outlook")


class Checker(NodeLines):
    """doiuse-email in one node process."""

    def __init__(self) -> None:
        super().__init__(
            CHECKER_JS.replace("CLIENT_LIST", json.dumps(CLIENTS)),
            package="@jsx-email/doiuse-email",
        )
        self.gaps: set[str] = set()  # clients the checker could not judge (missing data)

    def check(self, html: str) -> set[tuple[str, str, str]]:
        """(kind, feature, client) for every unsupported or partly supported feature."""
        answer = self.ask(html)
        self.gaps.update(answer["gaps"])
        found = set()
        for message in [*answer["errors"], *answer["warnings"]]:
            match = _MESSAGE.match(message)
            if match:
                kind = "unsupported" if match["kind"] == "not" else "partial"
                found.add((kind, match["feature"], match["client"]))
        return found


def measure() -> dict[str, Any]:
    checker = Checker()
    try:
        baseline = checker.check(mjml.mjml2html(BARE_MJML))
        store = TemplateStore(ROOT / "templates")
        emails = [name for name in store.names() if "email" in store.channels(name)]
        # (kind, feature, client) -> the emails (name@locale) it was found in
        found: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        for name in emails:
            for locale in SHIPPED_LOCALES:
                html = store.render_email(name, locale, sample_context(name, locale)).html
                for item in checker.check(html):
                    found[item].add(f"{name}@{locale}")
    finally:
        checker.close()
    mjml_features = {(kind, feature) for kind, feature, _client in baseline}
    families: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (kind, feature, client), where in sorted(found.items()):
        family = client.split(".")[0]
        entry = families[family].setdefault(
            f"{kind}:{feature}",
            {
                "kind": kind,
                "feature": feature,
                "origin": "mjml" if (kind, feature) in mjml_features else "templates",
                "clients": set(),
                "emails": set(),
            },
        )
        entry["clients"].add(client)
        entry["emails"].update(where)
    return {
        "checker": f"@jsx-email/doiuse-email {checker.version}",
        "emails": len(emails) * len(SHIPPED_LOCALES),
        "gaps": sorted(checker.gaps),
        "families": {
            family: [
                {**e, "clients": sorted(e["clients"]), "emails": len(e["emails"])}
                for e in sorted(
                    entries.values(), key=lambda e: (e["kind"], e["origin"], e["feature"])
                )
            ]
            for family, entries in sorted(families.items())
        },
    }


def blocking(report: dict[str, Any]) -> list[str]:
    """Features of our own templates that Gmail or Outlook do not support at all."""
    return sorted(
        {
            f"{e['feature']} ({', '.join(e['clients'])})"
            for family in GMAIL_OUTLOOK
            for e in report["families"].get(family, [])
            if e["kind"] == "unsupported" and e["origin"] == "templates"
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    report = measure()
    ours = blocking(report)
    if args.json:
        print(json.dumps({**report, "blocking": ours}, indent=2))
        return 1 if ours else 0
    print(f"{report['emails']} rendered emails checked with {report['checker']}")
    for gap in report["gaps"]:
        print(f"  not judged (caniemail data missing): {gap}")
    for family, entries in report["families"].items():
        print(f"\n{family}")
        for kind in ("unsupported", "partial"):
            for origin in ("templates", "mjml"):
                names = [
                    e["feature"] for e in entries if e["kind"] == kind and e["origin"] == origin
                ]
                if names:
                    print(f"  {kind:<11} ({origin:<9}): {', '.join(names)}")
    print()
    if ours:
        print("Unsupported by Gmail or Outlook and coming from our templates:")
        for line in ours:
            print(f"  {line}")
        return 1
    print("Nothing from our templates is unsupported by Gmail or Outlook.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
