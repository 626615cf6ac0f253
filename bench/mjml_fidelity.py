"""Compare every shipped email, in every locale, as Trouw renders it vs npm mjml (the reference).

Setup once: (cd bench && npm ci)   # mjml pinned in bench/package.json, into bench/node_modules
Run:        .venv/bin/python bench/mjml_fidelity.py [--json]

Trouw's path: MJML compiled once by mjml-python (MRML), alt="" restored, then Jinja2 per recipient.
Reference:    the same localised MJML, Jinja2-rendered with the same sample context, then
              compiled by npm mjml in one long-lived node process.
Per template and locale it reports the visible-text similarity, the markup similarity, and any
link or image present in npm's output but missing from ours. Exit code 1 if one is missing.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node_lines import NodeLines  # noqa: E402

from trouw.domain.render import SHIPPED_LOCALES, TemplateStore, sample_context  # noqa: E402
from trouw.domain.render.environment import html_environment  # noqa: E402

# Reads one JSON string (MJML) per line, answers one JSON object per line; started once.
ORACLE_JS = r"""
const readline = require('readline');
const mjml2html = require('mjml');
const version = require('mjml/package.json').version;
const rl = readline.createInterface({ input: process.stdin, terminal: false });
process.stdout.write(JSON.stringify({ version }) + '\n');
rl.on('line', async (line) => {
  try {
    const out = await mjml2html(JSON.parse(line), { validationLevel: 'soft', keepComments: true });
    const errors = out.errors.map((e) => e.formattedMessage);
    process.stdout.write(JSON.stringify({ html: out.html, errors }) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: String(e) }) + '\n');
  }
});
"""


class NpmMjml(NodeLines):
    """npm mjml in one node process."""

    def __init__(self) -> None:
        super().__init__(ORACLE_JS, package="mjml")

    def compile(self, source: str) -> str:
        return str(self.ask(source)["html"])


class _Visible(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.words: list[str] = []
        self.links: list[str] = []
        self.images: list[str] = []
        self.alts: list[str | None] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag in ("style", "title", "head", "script"):
            self._skip += 1
        elif tag == "a" and attr.get("href"):
            self.links.append(str(attr["href"]))
        elif tag == "img":
            self.images.append(str(attr.get("src")))
            self.alts.append(attr.get("alt"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title", "head", "script"):
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.words.extend(data.split())


def parse(html: str) -> _Visible:
    parser = _Visible()
    parser.feed(html)
    return parser


def markup_tokens(html: str) -> list[str]:
    tokens = re.findall(r"<[^>]+>|[^<]+", html)
    return [" ".join(t.split()) for t in tokens if t.strip()]


def ratio(a: list[str], b: list[str]) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    store = TemplateStore(ROOT / "templates")
    env = html_environment()
    npm = NpmMjml()
    rows: list[dict[str, Any]] = []
    try:
        for name in store.names():
            if "email" not in store.channels(name):
                continue
            for locale in SHIPPED_LOCALES:
                context = sample_context(name, locale)
                ours = store.render_email(name, locale, context)
                personal = env.from_string(store.localized_mjml(name, locale))
                reference = npm.compile(personal.render({**context, "locale": ours.locale}))
                a, b = parse(ours.html), parse(reference)
                rows.append(
                    {
                        "template": name,
                        "locale": locale,
                        "text_ratio": round(ratio(a.words, b.words), 3),
                        "markup_ratio": round(
                            ratio(markup_tokens(ours.html), markup_tokens(reference)), 3
                        ),
                        "missing_links": sorted(set(b.links) - set(a.links)),
                        "missing_images": sorted(set(b.images) - set(a.images)),
                        "images_without_alt": sum(1 for x in a.alts if x is None),
                        "bytes": [len(ours.html.encode()), len(reference.encode())],
                    }
                )
    finally:
        npm.close()
    bad = [r for r in rows if r["missing_links"] or r["missing_images"] or r["images_without_alt"]]
    if args.json:
        print(json.dumps({"npm_mjml": npm.version, "rows": rows}, indent=2))
    else:
        print(f"Trouw (mjml-python, precompiled) vs npm mjml {npm.version}, sample contexts")
        print(f"{'template':<20}{'locale':<8}{'text':>6}{'markup':>8}  missing   bytes ours/npm")
        for r in rows:
            missing = len(r["missing_links"]) + len(r["missing_images"])
            ours_b, ref_b = r["bytes"]
            print(
                f"{r['template']:<20}{r['locale']:<8}{r['text_ratio']:>6.3f}"
                f"{r['markup_ratio']:>8.3f}  {missing:>7}   {ours_b:,}/{ref_b:,}"
            )
        texts = [r["text_ratio"] for r in rows]
        marks = [r["markup_ratio"] for r in rows]
        print(
            f"{len(rows)} renders: text {min(texts):.3f}-{max(texts):.3f}, "
            f"markup {min(marks):.3f}-{max(marks):.3f}, "
            f"{len(bad)} with a missing link/image or an image without alt"
        )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
