"""The hand-off of the live-room routes to the engine's loop (engine.api.conferences), with a real loop in
another thread: a result and an exception come back to the calling thread; a loop that does not run the
function in time gives 503 and the function never runs afterwards; a closed loop gives 503. Over HTTP, an
app without a call engine answers 503 for a room that exists and 404 for one that does not; with one, an
empty room lists nobody, shows as not running and cannot be locked (409). The participants of rooms with
phones in them: tests/integration/test_conference_participants.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from litestar.exceptions import ServiceUnavailableException

from engine.api.app import create_app
from engine.api.conferences import LiveConferences
from engine.call.conference import ConferenceService
from engine.store import Store
from engine.store.admin import AdminStore
from tests.api.conftest import ServerThread


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def _service() -> ConferenceService:
    return ConferenceService(lambda: None, time.monotonic)


def test_the_function_runs_on_the_loop_and_its_result_or_error_comes_back(
    loop: asyncio.AbstractEventLoop,
) -> None:
    live = LiveConferences(loop, _service())
    ran_in: list[threading.Thread] = []

    def who(service: ConferenceService) -> list[object]:
        ran_in.append(threading.current_thread())
        return list(service.participants("team"))

    assert live.call(who) == []
    assert ran_in and ran_in[0] is not threading.current_thread()

    def fails(service: ConferenceService) -> None:
        raise KeyError("team")

    with pytest.raises(KeyError):
        live.call(fails)


def test_a_stalled_loop_is_503_and_the_function_never_runs_late(loop: asyncio.AbstractEventLoop) -> None:
    live = LiveConferences(loop, _service(), timeout_s=0.2)
    release = threading.Event()
    loop.call_soon_threadsafe(release.wait, 5.0)  # the loop is busy with something else
    ran: list[bool] = []
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableException):
        live.call(lambda service: ran.append(True))
    assert time.monotonic() - started < 1.0
    release.set()
    assert live.call(lambda service: "after") == "after"  # the loop is free again
    assert ran == []


def test_a_closed_loop_is_503(loop: asyncio.AbstractEventLoop) -> None:
    loop.call_soon_threadsafe(loop.stop)
    while loop.is_running():
        time.sleep(0.01)
    loop.close()
    with pytest.raises(ServiceUnavailableException):
        LiveConferences(loop, _service()).call(lambda service: None)


def _server(tmp_path: Path, live: LiveConferences | None) -> tuple[ServerThread, Store, httpx.Client]:
    store = Store.open(tmp_path, None)
    _, token = AdminStore(store).bootstrap_admin("owner@example.com")
    server = ServerThread(create_app(store, conferences=live))
    client = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    made = client.post("/api/routing/conference_rooms", json={"name": "team", "extension": "700"})
    assert made.status_code == 201, made.text
    return server, store, client


def test_over_http_without_and_with_a_call_engine(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    server, store, c = _server(tmp_path / "none", None)
    try:
        r = c.get("/api/conferences/team/participants")
        assert r.status_code == 503 and "no call engine" in r.json()["detail"], r.text
        assert c.delete("/api/conferences/team/participants/1").status_code == 503
        assert c.get("/api/conferences/nosuch/participants").status_code == 404
    finally:
        c.close()
        server.stop()
        store.close()
    server, store, c = _server(tmp_path / "live", LiveConferences(loop, _service()))
    try:
        assert c.get("/api/conferences/team/participants").json() == []
        gone = c.delete("/api/conferences/team/participants/1")
        assert gone.status_code == 404 and "participant" in gone.json()["detail"], gone.text
        assert c.get("/api/audit", params={"action": "conference."}).json() == []  # nothing was removed
        assert c.get("/api/conferences/team/participants/x").status_code in (404, 405)
        room = c.get("/api/conferences/team").json()
        assert room == {"name": "team", "running": False, "locked": False, "participants": []}
        idle = c.put("/api/conferences/team/lock", json={"locked": True})
        assert idle.status_code == 409 and "only a running room" in idle.json()["detail"], idle.text
        assert c.put("/api/conferences/nosuch/lock", json={"locked": True}).status_code == 404
    finally:
        c.close()
        server.stop()
        store.close()
