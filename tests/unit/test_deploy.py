"""deploy/: the compose file's services, each Trouw process's environment read by the real settings
model, commands the CLI has, Prometheus targets on the ports the processes serve, and a
Dockerfile that copies what exists. (No container runtime runs here: docs/operations.md.)"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from trouw.settings import Settings, load_settings

DEPLOY = ROOT / "deploy"
TROUW_SERVICES = ("api", "worker-1", "worker-2")
_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return document


def resolved(value: str) -> str:
    """A compose value with ${VAR:-default} as its default and ${VAR:?message} given a value."""

    def one(found: re.Match[str]) -> str:
        name, kind, default = found.groups()
        if kind == "?":
            return f"test-{name.lower()}"
        return default or ""

    return _VARIABLE.sub(one, value)


def environment(service: str) -> dict[str, str]:
    env = compose()["services"][service]["environment"]
    return {name: resolved(str(value)) for name, value in env.items()}


def test_the_production_shape_is_there() -> None:
    services = compose()["services"]
    assert {"temporal-db", "temporal", "temporal-ui", "trouw-db", *TROUW_SERVICES} <= set(services)
    temporal = services["temporal"]["environment"]
    assert temporal["DB"] == "postgres12" and temporal["POSTGRES_SEEDS"] == "temporal-db"
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    # trouw status finds stuck runs by TemporalReportedProblems, which this setting turns on.
    mount = services["temporal"]["volumes"][0].split(":")
    assert temporal["DYNAMIC_CONFIG_FILE_PATH"] == "config/dynamicconfig/trouw.yaml"
    assert mount[1] == "/etc/temporal/config/dynamicconfig/trouw.yaml"
    dynamic = yaml.safe_load((DEPLOY / mount[0]).read_text())
    assert (
        dynamic["system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute"][0]["value"] > 0
    )
    assert [services[name]["command"] for name in TROUW_SERVICES] == [
        ["trouw", "api"],
        ["trouw", "worker"],
        ["trouw", "worker"],
    ]
    assert services["publish"]["command"][:2] == ["trouw", "publish"]


@pytest.mark.parametrize("service", TROUW_SERVICES)
def test_each_process_environment_is_valid_settings(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = environment(service)
    fields = set(Settings.model_fields)
    for name in env:
        if name.startswith("TROUW_") and name not in ("TROUW_CONFIG",):
            assert name.removeprefix("TROUW_").lower() in fields, f"{service}: {name} is no setting"
    for name in list(os.environ):
        if name.startswith("TROUW_") or name == "TEMPORAL_ADDRESS":
            monkeypatch.delenv(name)
    monkeypatch.setenv("TROUW_CONFIG", str(tmp_path / "none.toml"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.temporal_target == "temporal:7233"
    assert settings.effective_database_url.startswith("postgresql+psycopg://trouw:")
    assert "@trouw-db:5432/trouw" in settings.effective_database_url
    assert settings.signing_keys == ["test-trouw_signing_key"]
    assert settings.log_format == "json"
    # Every process runs the published journeys and templates, not the image's folders.
    assert settings.content_source == "database"
    if service == "api":
        assert settings.api_host == "0.0.0.0"
    else:
        assert (settings.worker_metrics_host, settings.worker_metrics_port) == ("0.0.0.0", 9464)


def test_prometheus_scrapes_the_ports_the_processes_serve() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: set(job["static_configs"][0]["targets"])
        for job in config["scrape_configs"]
    }
    api_port = environment("api")["TROUW_API_PORT"]
    assert targets["trouw-api"] == {f"api:{api_port}"}
    assert targets["trouw-worker"] == {
        f"{name}:{environment(name)['TROUW_WORKER_METRICS_PORT']}" for name in TROUW_SERVICES[1:]
    }
    assert config["rule_files"] == ["alerts.yml"]
    mount = compose()["services"]["prometheus"]["volumes"][0]
    assert mount.startswith("./prometheus:/etc/prometheus")


def test_the_image_copies_what_exists() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    sources = [
        part
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for part in line.split()[1:-1]
    ]
    assert {"trouw", "workflows", "activities", "journeys", "templates", "config"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
    build = compose()["services"]["api"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
