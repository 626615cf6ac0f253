"""Choose an MJML renderer by measurement: mjml-python vs mrml vs pure-Python mjml, on our templates.

Run:   .venv/bin/python bench/mjml_compare.py [--workdir /tmp/mjmlcmp] [--json]
Needs: npm mjml in bench/node_modules (cd bench && npm ci), python3 -m venv and pip.

The PyPI packages `mjml` (pure Python) and `mjml-python` (the one we ship) both install the
import name `mjml`, so the candidates live in scratch venvs OUTSIDE the repo, made on first run:
  <workdir>/venv-pure  mjml[css-inlining] + jinja2
  <workdir>/venv-mrml  mrml + jinja2
mjml-python runs from the project venv. Nothing is installed into the project venv.

Steps (one run, ~1 minute once the venvs exist):
1. In the project venv: dump the 10 emails x 4 locales exactly as Trouw compiles them
   (TemplateStore.localized_mjml: mj-include and [[ strings ]] done, Jinja tags kept) to
   <workdir>/src/, plus the same MJML Jinja-rendered with sample_context (for the reference).
2. Each candidate compiles the 40 sources in its own venv (this file with --worker) and writes
   the HTML to <workdir>/out/<renderer>/, then times order_confirmation (nl-BE) in-process:
   compiles per second, median of 5 x 1 s.
3. In the project venv: check the Jinja tags survived (every tag of the input present at least
   as often in the output, and in the same order), render each compiled HTML with Trouw's own
   Jinja environment (trouw.domain.render.environment.html_environment: sandboxed, StrictUndefined,
   money/date filters) and the sample context, and compare it with the reference:
   npm mjml (bench/node_modules) compiling the Jinja-rendered MJML, as in bench/mjml_fidelity.py.
   npm mjml precompiling with the tags kept is reported too, as a control row.
No post-processing: Trouw's store puts alt="" back on MRML's <img>; here the raw output counts.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SPEED_KEY = "order_confirmation@nl-BE"
SPEED_REPS, SPEED_SECONDS = 5, 1.0
# Versions measured for docs/mjml-comparison.md; pinned so a rerun measures the same code.
VENVS: dict[str, tuple[str, list[str], str]] = {
    # renderer: (venv dir, pip requirements, import to check)
    # `mjml[css_inlining]` as spelled in the package's own hint is silently ignored by the pip
    # a fresh venv gets (23.2): the extra is published as `css-inlining`.
    "mjml-pure": ("venv-pure", ["mjml[css-inlining]==0.12.0", "jinja2"], "mjml, css_inline"),
    "mrml": ("venv-mrml", ["mrml==0.2.4", "jinja2"], "mrml"),
}
LABELS = {
    "mjml-python": "PyPI mjml-python (MRML, shipped)",
    "mrml": "PyPI mrml (MRML)",
    "mjml-pure": "PyPI mjml (pure Python)",
    "npm-precompiled": "npm mjml, precompiled (control)",
}
DISTS = {"mjml-python": "mjml-python", "mrml": "mrml", "mjml-pure": "mjml"}
JINJA_TAG_RE = re.compile(r"\{[{%].*?[}%]\}", re.DOTALL)

# npm mjml compiles in one node process: reads {"source": ...} per line, or {"speed": ...}.
NPM_SPEED_JS = r"""
const mjml2html = require('mjml');
const fs = require('fs');
const [src, reps, secs] = [fs.readFileSync(process.argv[1], 'utf8'), +process.argv[2], +process.argv[3]];
(async () => {
  const once = async () => { const r = mjml2html(src, { validationLevel: 'soft', keepComments: true });
                             if (r && typeof r.then === 'function') await r; };
  await once();
  const rates = [];
  for (let i = 0; i < reps; i++) {
    let n = 0; const t0 = process.hrtime.bigint(); let el = 0;
    do { await once(); n++; el = Number(process.hrtime.bigint() - t0) / 1e9; } while (el < secs);
    rates.push(n / el);
  }
  process.stdout.write(JSON.stringify(rates) + '\n');
})();
"""


# -- worker: runs inside a renderer's venv, stdlib + that renderer only -------------------------


def _compiler(renderer: str) -> Any:
    if renderer == "mjml-python":
        import mjml  # the project venv's mjml-python

        def run(source: str) -> tuple[str, list[str]]:
            return str(mjml.mjml2html(source)), []

        return run
    if renderer == "mrml":
        import mrml

        def run(source: str) -> tuple[str, list[str]]:
            out = mrml.to_html(source)
            warnings = [f"{w.kind} at {w.start}-{w.end}" for w in out.warnings]
            return str(out.content), warnings

        return run
    if renderer == "mjml-pure":
        from mjml import mjml_to_html  # type: ignore[attr-defined]  # the pure-Python package

        def run(source: str) -> tuple[str, list[str]]:
            result = mjml_to_html(source)  # keep_comments=True by default
            return str(result.html), [str(e) for e in result.errors]

        return run
    raise SystemExit(f"unknown renderer {renderer}")


def worker(renderer: str, workdir: Path) -> None:
    from importlib import metadata

    compile_ = _compiler(renderer)
    manifest = json.loads((workdir / "src" / "manifest.json").read_text())
    out_dir = workdir / "out" / renderer
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for key in manifest["keys"]:
        source = (workdir / "src" / f"{key}.mjml").read_text(encoding="utf-8")
        t0 = time.perf_counter()
        try:
            html, warnings = compile_(source)
        except BaseException as exc:  # noqa: BLE001 - pure mjml raises AssertionError and worse
            if isinstance(exc, KeyboardInterrupt):
                raise
            results[key] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        ms = (time.perf_counter() - t0) * 1000
        (out_dir / f"{key}.html").write_text(html, encoding="utf-8")
        results[key] = {"ok": True, "warnings": warnings[:5], "ms": round(ms, 2)}
    speed: list[float] = []
    source = (workdir / "src" / f"{SPEED_KEY}.mjml").read_text(encoding="utf-8")
    if results.get(SPEED_KEY, {}).get("ok"):
        compile_(source)
        for _ in range(SPEED_REPS):
            n, t0 = 0, time.perf_counter()
            while True:
                compile_(source)
                n += 1
                elapsed = time.perf_counter() - t0
                if elapsed >= SPEED_SECONDS:
                    break
            speed.append(n / elapsed)
    versions = {}
    for dist in (DISTS[renderer], "css-inline", "beautifulsoup4"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    report = {
        "renderer": renderer,
        "versions": versions,
        "python": sys.version.split()[0],
        "results": results,
        "speed": speed,
    }
    (workdir / "out" / f"{renderer}.json").write_text(json.dumps(report, indent=1))


# -- driver: project venv --------------------------------------------------------------------


def ensure_venv(workdir: Path, renderer: str, deadline: float) -> Path:
    name, reqs, probe = VENVS[renderer]
    venv = workdir / name
    python = venv / "bin" / "python"
    check = [str(python), "-c", f"import {probe}"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"making {venv} ({' '.join(reqs)}) ...", file=sys.stderr)
    left = max(30.0, deadline - time.monotonic())
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=left)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *reqs]
    subprocess.run(pip, check=True, timeout=max(30.0, deadline - time.monotonic()))
    subprocess.run(check, check=True)
    return python


def dump_sources(workdir: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from trouw.domain.render import SHIPPED_LOCALES, TemplateStore, sample_context
    from trouw.domain.render.environment import html_environment

    store = TemplateStore(ROOT / "templates")
    env = html_environment()
    src = workdir / "src"
    src.mkdir(parents=True, exist_ok=True)
    keys, used = [], {}
    for name in store.names():
        if "email" not in store.channels(name):
            continue
        for locale in SHIPPED_LOCALES:
            key = f"{name}@{locale}"
            localized = store.localized_mjml(name, locale)
            # The locale Trouw renders with after fallback (fr-BE -> fr ...), as render_email does.
            used[key] = store.render_email(name, locale, sample_context(name, locale)).locale
            ctx = {**sample_context(name, locale), "locale": used[key]}
            (src / f"{key}.mjml").write_text(localized, encoding="utf-8")
            (src / f"{key}.personal.mjml").write_text(
                env.from_string(localized).render(ctx), encoding="utf-8"
            )
            keys.append(key)
    manifest = {"keys": keys, "used_locale": used}
    (src / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _count_tags(text: str) -> int:
    return text.count("{{") + text.count("{%")


def tag_check(source: str, compiled: str) -> dict[str, Any]:
    want, got = JINJA_TAG_RE.findall(source), JINJA_TAG_RE.findall(compiled)
    have = Counter(got)
    lost = [t for t, n in Counter(want).items() if have[t] < n]
    it = iter(got)
    in_order = all(any(t == g for g in it) for t in want)  # want is a subsequence of got
    return {
        "kept": not lost,
        "in_order": in_order,
        "lost": lost[:3],
        "count_in": _count_tags(source),
        "count_out": _count_tags(compiled),
    }


def npm_speed(workdir: Path) -> list[float]:
    args = [str(workdir / "src" / f"{SPEED_KEY}.mjml"), str(SPEED_REPS), str(SPEED_SECONDS)]
    out = subprocess.run(
        ["node", "-e", NPM_SPEED_JS, "--", *args],
        cwd=BENCH,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    rates: list[float] = json.loads(out.stdout.strip().splitlines()[-1])
    return rates


def evaluate(workdir: Path, manifest: dict[str, Any], renderers: list[str]) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(BENCH))
    from mjml_fidelity import NpmMjml, markup_tokens, parse, ratio  # same metrics and oracle

    from trouw.domain.render import sample_context
    from trouw.domain.render.environment import html_environment

    env = html_environment()
    src = workdir / "src"
    npm = NpmMjml()
    reports: dict[str, Any] = {}
    try:
        reference: dict[str, str] = {}
        pre_dir = workdir / "out" / "npm-precompiled"
        pre_dir.mkdir(parents=True, exist_ok=True)
        pre: dict[str, Any] = {}
        for key in manifest["keys"]:
            personal = (src / f"{key}.personal.mjml").read_text(encoding="utf-8")
            reference[key] = npm.compile(personal)
            try:
                html = npm.compile((src / f"{key}.mjml").read_text(encoding="utf-8"))
            except RuntimeError as exc:
                pre[key] = {"ok": False, "error": str(exc)[:300]}
                continue
            (pre_dir / f"{key}.html").write_text(html, encoding="utf-8")
            pre[key] = {"ok": True, "warnings": []}
        reports["npm-precompiled"] = {
            "versions": {"npm mjml": npm.version},
            "results": pre,
            "speed": npm_speed(workdir),
        }
    finally:
        npm.close()
    for renderer in renderers:
        reports[renderer] = json.loads((workdir / "out" / f"{renderer}.json").read_text())

    summary: dict[str, Any] = {}
    for renderer, report in reports.items():
        rows = []
        for key in manifest["keys"]:
            name, locale = key.split("@")
            row: dict[str, Any] = {"key": key, **report["results"][key]}
            rows.append(row)
            if not row["ok"]:
                continue
            compiled = (workdir / "out" / renderer / f"{key}.html").read_text(encoding="utf-8")
            source = (src / f"{key}.mjml").read_text(encoding="utf-8")
            row["tags"] = tag_check(source, compiled)
            ctx = {**sample_context(name, locale), "locale": manifest["used_locale"][key]}
            try:
                rendered = env.from_string(compiled).render(ctx)
            except Exception as exc:  # noqa: BLE001 - any Jinja failure is the finding
                row["jinja_error"] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            ref = reference[key]
            a, b = parse(rendered), parse(ref)
            row["text_ratio"] = round(ratio(a.words, b.words), 3)
            row["markup_ratio"] = round(ratio(markup_tokens(rendered), markup_tokens(ref)), 3)
            row["missing_links"] = sorted(set(b.links) - set(a.links))
            row["missing_images"] = sorted(set(b.images) - set(a.images))
            row["img_without_alt"] = sum(1 for x in a.alts if x is None)
            row["bytes"] = [len(rendered.encode()), len(ref.encode())]
        ok = [r for r in rows if r["ok"]]
        kept = [r for r in ok if r["tags"]["kept"] and r["tags"]["in_order"]]
        rendered_rows = [r for r in ok if "text_ratio" in r]
        texts = [r["text_ratio"] for r in rendered_rows]
        marks = [r["markup_ratio"] for r in rendered_rows]
        summary[renderer] = {
            "label": LABELS[renderer],
            "versions": report["versions"],
            "n": len(rows),
            "compile_ok": len(ok),
            "tags_kept": len(kept),
            "jinja_renders": len(rendered_rows),
            "text_ratio": [min(texts), statistics.median(texts)] if texts else None,
            "markup_ratio": [min(marks), statistics.median(marks)] if marks else None,
            "missing_links": sum(len(r["missing_links"]) for r in rendered_rows),
            "missing_images": sum(len(r["missing_images"]) for r in rendered_rows),
            "img_without_alt": sum(r["img_without_alt"] for r in rendered_rows),
            "speed": [round(x, 1) for x in report["speed"]],
            "per_s": round(statistics.median(report["speed"]), 1) if report["speed"] else None,
            "rows": rows,
        }
    return summary


def print_report(summary: dict[str, Any], npm_version: str, seconds: float) -> None:
    n = next(iter(summary.values()))["n"]
    print(
        f"\n{n} sources (10 emails x 4 locales); reference: npm mjml {npm_version} compiling "
        "the Jinja-rendered MJML; ratios min/median"
    )
    head = (
        f"{'renderer':<36}{'compile':>8}{'tags':>6}{'jinja':>7}{'text':>12}{'markup':>12}"
        f"{'miss l/i':>9}{'no alt':>7}{'comp/s':>9}"
    )
    print(head)
    print("-" * len(head))
    for s in summary.values():
        ver = ", ".join(f"{k} {v}" for k, v in s["versions"].items())
        text = "{:.3f}/{:.3f}".format(*s["text_ratio"]) if s["text_ratio"] else "-"
        mark = "{:.3f}/{:.3f}".format(*s["markup_ratio"]) if s["markup_ratio"] else "-"
        per_s = f"{s['per_s']:,.0f}" if s["per_s"] else "-"
        print(
            f"{s['label']:<36}{s['compile_ok']:>5}/{n}{s['tags_kept']:>3}/{n}"
            f"{s['jinja_renders']:>4}/{n}{text:>12}{mark:>12}"
            f"{s['missing_links']:>5}/{s['missing_images']:<3}{s['img_without_alt']:>7}"
            f"{per_s:>9}"
        )
        print(f"    {ver}; comp/s reps: {s['speed']}")
        for r in s["rows"]:
            problems = []
            if not r["ok"]:
                problems.append(f"compile: {r['error']}")
            else:
                t = r["tags"]
                if not (t["kept"] and t["in_order"]):
                    problems.append(
                        f"tags {t['count_in']}->{t['count_out']}, lost {t['lost']}, "
                        f"in order: {t['in_order']}"
                    )
                if "jinja_error" in r:
                    problems.append(f"jinja: {r['jinja_error']}")
                for what in ("missing_links", "missing_images"):
                    if r.get(what):
                        problems.append(f"{what}: {r[what]}")
            if problems:
                print(f"    {r['key']}: " + "; ".join(problems))
    print(f"\n({seconds:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mjmlcmp"))
    parser.add_argument("--json", action="store_true", help="print the full results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir: Path = args.workdir.resolve()
    if args.worker:
        worker(args.worker, workdir)
        return
    if ROOT in workdir.parents or workdir == ROOT:
        sys.exit("--workdir must be outside the repository")
    if not (BENCH / "node_modules" / "mjml").is_dir():
        sys.exit("npm mjml is missing: run (cd bench && npm ci) first")
    start = time.monotonic()
    deadline = start + 240  # venv creation + pip, when the venvs are missing
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = dump_sources(workdir)
    pythons = {"mjml-python": Path(sys.executable)}
    for renderer in VENVS:
        pythons[renderer] = ensure_venv(workdir, renderer, deadline)
    me = str(Path(__file__).resolve())
    for renderer, python in pythons.items():
        print(f"compiling with {renderer} ...", file=sys.stderr)
        subprocess.run(
            [str(python), me, "--worker", renderer, "--workdir", str(workdir)],
            check=True,
            timeout=180,
        )
    summary = evaluate(workdir, manifest, list(pythons))
    npm_version = summary["npm-precompiled"]["versions"]["npm mjml"]
    (workdir / "results.json").write_text(json.dumps(summary, indent=1))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print_report(summary, npm_version, time.monotonic() - start)


if __name__ == "__main__":
    main()
