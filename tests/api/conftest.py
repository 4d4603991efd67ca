"""API fixtures: a real admin API server over HTTP (uvicorn in a thread with its own loop) on SQLite and on
PostgreSQL (``db_url`` from tests/store: an unreachable PostgreSQL fails the case, it does not skip).

``api`` gives the base URL, the store and a super admin's token (made through the CLI's bootstrap path).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.api.app import ApiHandle, create_app, serve_api
from engine.store import Store
from engine.store.admin import AdminStore
from tests.store.conftest import data_dir, db_url

__all__ = ["data_dir", "db_url"]


class ServerThread:
    """An asyncio loop in a thread running one ASGI app under uvicorn on 127.0.0.1:<free port>."""

    def __init__(self, app: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="api-test-loop", daemon=True)
        self.thread.start()
        self.handle: ApiHandle = asyncio.run_coroutine_threadsafe(
            serve_api(app, "127.0.0.1", 0), self.loop
        ).result(15)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.handle.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.handle.close(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(15)
        self.loop.close()


@dataclass
class Api:
    base_url: str
    store: Store
    admin: AdminStore
    token: str
    server: ServerThread

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client with ``token`` (default: the super admin's) as bearer."""
        tok = self.token if token is None else token
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


@pytest.fixture
def api(data_dir: Path, db_url: str | None) -> Iterator[Api]:
    store = Store.open(data_dir, db_url)
    admin = AdminStore(store)
    _, token = admin.bootstrap_admin("root@example.com")
    server = ServerThread(create_app(store))
    try:
        yield Api(server.base_url, store, admin, token, server)
    finally:
        server.stop()
        store.close()


@pytest.fixture
def client(api: Api) -> Iterator[httpx.Client]:
    with api.client() as c:
        yield c
