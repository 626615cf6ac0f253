"""Settings: documented defaults, TROUW_* overrides, one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT
from trouw.settings import Settings, SettingsError, load_settings

OPTIONAL = {
    "database_url",
    "temporal_address",
    "temporal_tls_cert",
    "temporal_tls_key",
    "temporal_tls_ca",
    "temporal_tls_server_name",
    "temporal_api_key",
    "worker_metrics_port",
    "email_reply_to",
    "sendgrid_api_key",
    "sendgrid_webhook_public_key",
    "smtp_host",
    "smtp_username",
    "smtp_password",
    "twilio_account_sid",
    "twilio_auth_token",
    "twilio_messaging_service_sid",
    "twilio_from_number",
    "shopify_webhook_secret",
    "woocommerce_webhook_secret",
}


def test_config_file_documents_every_setting_with_its_default() -> None:
    text = (ROOT / "config/trouw.toml").read_text()
    documented = tomllib.loads(text)
    for name, field in Settings.model_fields.items():
        if name in OPTIONAL:
            assert f"# {name} = " in text or name in documented, f"{name} is not documented"
            continue
        assert name in documented, f"{name} is missing from config/trouw.toml"
        default = field.get_default(call_default_factory=True)
        assert (
            Settings.model_validate({name: documented[name]}).__getattribute__(name) == default
        ), name


def test_environment_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TROUW_API_PORT", "9001")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.internal:7233")
    settings = load_settings()
    assert settings.api_port == 9001
    assert settings.temporal_address == "temporal.internal:7233" and not settings.embedded_temporal


def test_postgres_url_gets_the_psycopg_driver() -> None:
    settings = Settings(database_url="postgresql://u@db/trouw")
    assert settings.effective_database_url == "postgresql+psycopg://u@db/trouw"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TROUW_API_PORT", "eighty", "bad setting TROUW_API_PORT: Input should be a valid integer"),
        (
            "TROUW_DEFAULT_TIMEZONE",
            "Mars/Olympus",
            "bad setting TROUW_DEFAULT_TIMEZONE: Value error, unknown time zone 'Mars/Olympus'",
        ),
        (
            "TROUW_EMAIL_PROVIDER",
            "pigeon",
            "bad setting TROUW_EMAIL_PROVIDER: Input should be 'outbox', 'sendgrid' or 'smtp'",
        ),
        (
            "TROUW_DATABASE_URL",
            "mysql://x",
            "bad setting TROUW_DATABASE_URL: Value error, must start with sqlite:// or postgresql://",
        ),
    ],
)
def test_bad_setting_is_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_cli_exits_2_on_a_bad_setting(tmp_path: Path) -> None:
    env = {"TROUW_API_PORT": "eighty", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "trouw.commands.cli", "validate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: bad setting TROUW_API_PORT: Input should be a valid integer, unable to parse string as an integer"
    ]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "url", ["https://trouw.delinde.example", "http://127.0.0.1:8000", "http://localhost:8000"]
)
def test_public_url_https_or_this_machine_is_accepted(url: str) -> None:
    assert load_settings(public_url=url).public_url == url


@pytest.mark.parametrize(
    "url", ["http://trouw.delinde.example", "http://192.168.1.20:8000", "trouw.example", "ftp://x"]
)
def test_public_url_without_https_stops_trouw_outside_development(url: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(public_url=url)
    assert str(caught.value).startswith("bad setting TROUW_PUBLIC_URL:")
    assert "https" in str(caught.value)


def test_development_flag_allows_an_http_public_url() -> None:
    settings = load_settings(development=True, public_url="http://192.168.1.20:8000")
    assert settings.public_url == "http://192.168.1.20:8000"
