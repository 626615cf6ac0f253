"""A real SMTP server process (`python -m aiosmtpd`) that spools every message's raw bytes.

Run as `python -m aiosmtpd -n -l 127.0.0.1:PORT -c tests.fakes.smtp_spool.RawSpool DIR`:
each accepted message becomes DIR/NNNN.eml, byte for byte as it came over DATA (dot-unstuffed,
nothing parsed or re-serialised), with DIR/NNNN.json holding the envelope. Tests read the
bytes, because a parser would decode what a mail client looking at the wire does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from argparse import ArgumentParser
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

ROOT = Path(__file__).resolve().parents[2]


class RawSpool:
    """aiosmtpd handler: write the received bytes and the envelope, answer 250."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.count = 0

    @classmethod
    def from_cli(cls, parser: ArgumentParser, *args: str) -> RawSpool:
        if len(args) != 1:
            parser.error("RawSpool takes one argument: the spool directory")
        return cls(args[0])

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos)}
        data = bytes(envelope.original_content or b"")
        await asyncio.to_thread(self._write, self.directory / f"{self.count:04d}", meta, data)
        return "250 OK: spooled"

    @staticmethod
    def _write(stem: Path, meta: dict[str, Any], data: bytes) -> None:
        Path(f"{stem}.json.tmp").write_text(json.dumps(meta))
        Path(f"{stem}.eml.tmp").write_bytes(data)
        # The .eml appears last and whole: a reader never sees half a message.
        os.replace(f"{stem}.json.tmp", f"{stem}.json")
        os.replace(f"{stem}.eml.tmp", f"{stem}.eml")


@dataclass(frozen=True)
class SpooledMail:
    """One message as the server process received it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class SmtpServerProcess:
    """The running server: where to connect and what it received."""

    host: str
    port: int
    spool: Path

    def received(self) -> list[SpooledMail]:
        mails = []
        for path in sorted(self.spool.glob("*.eml")):
            meta: dict[str, Any] = json.loads(path.with_suffix(".json").read_text())
            mails.append(SpooledMail(meta["mail_from"], meta["rcpt_tos"], path.read_bytes()))
        return mails


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _greets(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            return sock.recv(3) == b"220"
    except OSError:
        return False


@contextlib.contextmanager
def smtp_server_process(spool: Path) -> Iterator[SmtpServerProcess]:
    """Start the server in its own process, wait for its greeting, stop it on exit."""
    spool.mkdir(parents=True, exist_ok=True)
    host, port = "127.0.0.1", _free_port()
    command = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"{host}:{port}"]
    command += ["-c", "tests.fakes.smtp_spool.RawSpool", str(spool)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30  # a cold interpreter on a busy 2-core machine
        while not _greets(host, port):
            if process.poll() is not None:
                assert process.stderr is not None
                raise RuntimeError(f"aiosmtpd exited: {process.stderr.read().decode()}")
            if time.monotonic() > deadline:
                raise RuntimeError("aiosmtpd did not greet within 30 s")
            time.sleep(0.05)
        yield SmtpServerProcess(host, port, spool)
    finally:
        # Spooled files are complete or absent (atomic renames): no graceful stop is needed.
        process.kill()
        process.wait()
        if process.stderr is not None:
            process.stderr.close()
