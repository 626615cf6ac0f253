"""`trouw worker` as its own process, for the tests that kill workers: started from settings, stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.conftest import ROOT
from trouw.settings import Settings

TROUW = Path(sys.executable).parent / "trouw"


def process_environment(
    settings: Settings, config_dir: Path, extra: Mapping[str, str]
) -> dict[str, str]:
    """The environment of a `trouw` process configured by environment only: this one's less
    every TROUW_ variable, then the settings' database, Temporal, queue, journeys and keys, then
    `extra` (no config file: config_dir/no-config.toml does not exist)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TROUW_") and key != "TEMPORAL_ADDRESS"
    }
    env.update(
        {
            "TROUW_CONFIG": str(config_dir / "no-config.toml"),
            "TEMPORAL_ADDRESS": settings.temporal_target,
            "TROUW_HOME": str(settings.home),
            "TROUW_DATABASE_URL": settings.effective_database_url,
            "TROUW_TASK_QUEUE": settings.task_queue,
            "TROUW_JOURNEYS_DIR": str(settings.journeys_dir),
            "TROUW_TEMPLATES_DIR": str(settings.templates_dir),
            "TROUW_SIGNING_KEYS": json.dumps(settings.signing_keys),
            **extra,
        }
    )
    return env


def start_worker(
    settings: Settings, tmp_path: Path, name: str, extra: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """`trouw worker` in its own process (process_environment); its output in tmp_path/name.log."""
    env = process_environment(settings, tmp_path, extra)
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [str(TROUW), "worker"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes], *, within: float = 15) -> None:
    """SIGTERM (a graceful stop), SIGKILL if it has not ended within `within` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
