"""Settings for a Temporal cluster or Temporal Cloud: mTLS files, an API key, the namespace."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from trouw.settings import Settings, SettingsError, load_settings
from trouw.stack.temporal import TemporalError, tls_config


def test_a_dev_server_gets_no_tls() -> None:
    assert tls_config(Settings()) is False


def test_mtls_reads_the_client_certificate_key_and_ca(tmp_path: Path) -> None:
    for name in ("client.pem", "client.key", "ca.pem"):
        (tmp_path / name).write_bytes(f"-----{name}-----".encode())
    settings = Settings(
        temporal_address="trouw.a1b2c.tmprl.cloud:7233",
        temporal_namespace="trouw.a1b2c",
        temporal_tls_cert=tmp_path / "client.pem",
        temporal_tls_key=tmp_path / "client.key",
        temporal_tls_ca=tmp_path / "ca.pem",
    )
    tls = tls_config(settings)
    assert isinstance(tls, TLSConfig)
    assert tls.client_cert == b"-----client.pem-----"
    assert tls.client_private_key == b"-----client.key-----"
    assert tls.server_root_ca_cert == b"-----ca.pem-----"


def test_an_api_key_alone_uses_tls_with_the_system_roots() -> None:
    tls = tls_config(Settings(temporal_api_key="secret"))
    assert isinstance(tls, TLSConfig)
    assert tls.client_cert is None and tls.server_root_ca_cert is None


def test_a_certificate_needs_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TROUW_TEMPORAL_TLS_CERT", "/etc/trouw/client.pem")
    with pytest.raises(SettingsError, match="TROUW_TEMPORAL_TLS_KEY"):
        load_settings()


def test_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    settings = Settings(temporal_tls_cert=tmp_path / "no.pem", temporal_tls_key=tmp_path / "no.key")
    with pytest.raises(TemporalError, match="cannot read a Temporal TLS file"):
        tls_config(settings)
