"""engine.server's config loop: a reload swaps one snapshot, so a reader never sees half of a change."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import engine.server
from engine.call.config import CurrentConfig
from engine.clock import LoopClock
from engine.server import Server
from engine.store import Store
from tests.store.conftest import db_url

__all__ = ["db_url"]

USERS = 20


def test_the_config_loop_swaps_whole_snapshots_while_the_store_changes(tmp_path: Path) -> None:
    """Users are added from a thread while the loop reloads (woken by each commit); sampled on the event
    loop as often as it can, every snapshot's credentials are exactly its lines, and its version counts
    them (each add is one version). The old loop assigned the credentials and the routing separately,
    with an await between them."""
    store = Store.open(tmp_path)
    try:
        store.add_user("A", "One", None, "200", "pw-12345678")
        server = Server(tmp_path, "127.0.0.1", 0)

        def add_users() -> None:
            for i in range(USERS):
                store.add_user("U", str(i), None, str(300 + i), "pw-12345678")

        async def scenario() -> set[int]:
            loop = asyncio.get_running_loop()
            config = CurrentConfig(server.read_config(store))
            reloads = loop.create_task(server._config_loop(config, store, LoopClock(loop)))
            adding = loop.run_in_executor(None, add_users)
            seen: set[int] = set()
            deadline = loop.time() + 30.0
            while config.snapshot.version < USERS + 1 and loop.time() < deadline:
                snap = config.snapshot
                assert set(snap.credentials) == set(snap.routing.lines)
                assert len(snap.credentials) == snap.version
                seen.add(snap.version)
                await asyncio.sleep(0.001)
            await adding
            reloads.cancel()
            await asyncio.gather(reloads, return_exceptions=True)
            assert config.snapshot.version == USERS + 1
            return seen

        seen = asyncio.run(scenario())
        assert len(seen) > 1  # reloads happened while it was read
    finally:
        store.close()


def test_the_config_loop_ends_when_cancelled_just_as_a_change_wakes_it(tmp_path: Path) -> None:
    """A change that wakes the loop in the same moment as the server's shutdown cancels it must not eat
    the cancellation (Python 3.11's ``asyncio.wait_for`` returns the inner result and drops the cancel
    when both land in one loop pass: the loop polled on and the shutdown waited forever). Every
    interleaving of the wake and the cancel, a few loop passes apart, ends the task."""
    store = Store.open(tmp_path)
    try:
        server = Server(tmp_path, "127.0.0.1", 0)

        async def scenario() -> list[int]:
            loop = asyncio.get_running_loop()
            config = CurrentConfig(server.read_config(store))
            hung: list[int] = []
            for passes in range(6):
                reloads = loop.create_task(server._config_loop(config, store, LoopClock(loop)))
                await asyncio.sleep(0.01)  # the loop now waits for a change
                assert store.on_config_change is not None
                store.on_config_change()
                for _ in range(passes):
                    await asyncio.sleep(0)
                reloads.cancel()
                done, _ = await asyncio.wait({reloads}, timeout=2.0)
                if not done:
                    hung.append(passes)
                    reloads.cancel()
                    await asyncio.wait({reloads}, timeout=2.0)
            return hung

        assert asyncio.run(scenario()) == []
    finally:
        store.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_on_postgresql_another_process_change_reloads_at_once(
    tmp_path: Path, db_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: a second store (another process, another node) adds a user; the serving engine's config
    loop is woken by NOTIFY and swaps in the new snapshot, although both polls are set to an hour here (no
    poll can be what reloaded it)."""
    monkeypatch.setattr(engine.server, "CONFIG_POLL_S", 3600.0)
    monkeypatch.setattr(engine.server, "CONFIG_SAFETY_POLL_S", 3600.0)
    store = Store.open(tmp_path, db_url)
    other = Store.open(tmp_path, db_url)
    try:
        store.add_user("A", "One", None, "200", "pw-12345678")
        server = Server(tmp_path, "127.0.0.1", 0)

        async def scenario() -> int:
            loop = asyncio.get_running_loop()
            config = CurrentConfig(server.read_config(store))
            reloads = loop.create_task(server._config_loop(config, store, LoopClock(loop)))
            while server.config_listener is None:  # the loop has started ...
                await asyncio.sleep(0.01)
            listening = server.config_listener.listening  # ... and the listener has LISTENed
            assert await loop.run_in_executor(None, listening.wait, 10.0)
            await asyncio.sleep(0.1)  # the reload of the listener's first wake-up is done (or harmless)
            await loop.run_in_executor(None, other.add_user, "B", "Two", None, "201", "pw-12345678")
            try:
                async with asyncio.timeout(10.0):
                    while "201" not in config.snapshot.credentials:
                        await asyncio.sleep(0.01)
            finally:
                reloads.cancel()
                await asyncio.gather(reloads, return_exceptions=True)
            return config.snapshot.version

        assert asyncio.run(scenario()) == other.config_version()
    finally:
        store.close()
        other.close()
