"""Suite-wide fixtures: where the repository and the shared reference material (``../shared``) are, and a
local mail server (aiosmtpd) for voicemail to e-mail."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared`` directory beside the repository (torture corpus, anchors, reference peers)."""
    shared = REPO_ROOT.parent / "shared"
    if not shared.is_dir():
        pytest.fail(
            f"{shared} is missing: the suite expects the shared material checked out beside the repo",
            pytrace=False,
        )
    return shared


class Inbox:
    """What the local mail server received (``delay_s``: a slow server)."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

        self.delay_s = 0.0

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay_s)  # a slow mail server (it runs in the controller's own loop)
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
