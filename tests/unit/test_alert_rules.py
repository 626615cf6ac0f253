"""The alerting rules in deploy/prometheus/: well formed, about metrics Trouw really exports (names
and labels), scrape jobs that exist; and, where promtool is installed, Prometheus's own checks
and the rule unit tests in alerts.test.yml (each alert fires on its failure, not on health)."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.conftest import ROOT
from trouw.stack import metrics

PROMETHEUS = ROOT / "deploy" / "prometheus"
# Every failure issue 13 names must have an alert.
REQUIRED = {
    "TrouwEventsParked",
    "TrouwRelayLagging",
    "TrouwJourneyRunsFailing",
    "TrouwProviderErrors",
    "TrouwWorkerDown",
}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def exported() -> dict[str, set[str]]:
    """Sample name -> label names, for every metric trouw.stack.metrics defines."""
    names: dict[str, set[str]] = {}
    for collector in [getattr(metrics, name) for name in metrics.__all__]:
        describe = getattr(collector, "describe", None)
        if describe is None or collector not in REGISTRY._collector_to_names:  # noqa: SLF001
            continue
        labels = set(getattr(collector, "_labelnames", ()))
        for family in describe():
            for suffix in _SUFFIXES[family.type]:
                extra = {"le"} if suffix == "_bucket" else set()
                names[family.name + suffix] = labels | extra
    return names


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_failure_has_a_well_formed_alert() -> None:
    found = rules()
    assert REQUIRED <= {rule["alert"] for rule in found}
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("page", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]


def test_alerts_name_only_exported_metrics_and_their_labels() -> None:
    known = exported()
    assert "trouw_parked_events" in known and "trouw_sends_total" in known  # the helper works
    jobs = {
        job["job_name"]
        for job in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]
    }
    for rule in rules():
        expr = rule["expr"]
        used = set(re.findall(r"\btrouw_[a-z_]+\b", _STRINGS.sub('""', expr)))
        if "up{" not in expr:
            assert used, f"{rule['alert']} uses no Trouw metric"
        unknown = used - set(known)
        assert not unknown, f"{rule['alert']}: no such metric {sorted(unknown)}"
        labels = set().union(*(known[name] for name in used)) if used else {"job", "instance"}
        for name, matchers in _SELECTOR.findall(expr):
            for label in _MATCHER.findall(_STRINGS.sub('""', matchers)):
                allowed = known.get(name, set()) | {"job", "instance"}
                assert label in allowed, f"{rule['alert']}: {name} has no label {label}"
            if name == "up":
                job = re.search(r'job="([^"]+)"', matchers)
                assert job is not None and job.group(1) in jobs, rule["alert"]
        for grouping in _GROUPING.findall(expr):
            for label in (part.strip() for part in grouping.split(",") if part.strip()):
                assert label in labels | {"le", "job", "instance"}, (
                    f"{rule['alert']}: groups by {label}, which its metrics do not carry"
                )
        for label in re.findall(r"\$labels\.([a-z_]+)", str(rule["annotations"])):
            assert label in labels | {"job", "instance"}, f"{rule['alert']}: $labels.{label}"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian package prometheus; .ci/run installs it)")
    return found


def test_promtool_checks_the_rules_and_the_scrape_config() -> None:
    promtool = _promtool()
    for args in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"]):
        result = subprocess.run(
            [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_on_its_failure_and_not_on_health() -> None:
    promtool = _promtool()
    result = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "alerts.test.yml").read_text()))
    assert {rule["alert"] for rule in rules()} - {"TrouwRelayFailing", "TrouwProviderSlow"} <= (
        tested
    )


def test_documented_in_operations() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    for rule in rules():
        assert rule["alert"] in text, f"{rule['alert']} is not explained in docs/operations.md"
    for name in exported():
        base = re.sub(r"_(total|bucket|count|sum)$", "", name)
        assert base in text, f"{base} is not listed in docs/operations.md"
