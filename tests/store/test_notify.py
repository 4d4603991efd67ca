"""Configuration changes announced across processes (issue 17): on PostgreSQL a change committed through one
store wakes another store's listener (LISTEN/NOTIFY), only for its own schema and only on commit; SQLite
has no such channel and says so (the engine polls there)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine.model import ModelError
from engine.store import Store

WAIT_S = 10.0  # a generous bound for a wake-up that normally takes milliseconds (the event is asserted)


def test_a_change_committed_by_another_store_wakes_the_listener(data_dir: Path, db_url: str | None) -> None:
    serving = Store.open(data_dir, db_url)
    other = Store.open(data_dir, db_url)
    woke = threading.Event()
    listener = serving.listen_config(woke.set)
    try:
        if db_url is None:
            assert listener is None  # SQLite: no channel, the engine's config loop polls
            return
        assert listener is not None
        assert listener.listening.wait(WAIT_S), "the listener never LISTENed"
        assert woke.is_set()  # once on LISTEN: what was committed before was not announced
        woke.clear()
        other.add_user("Ada", "Lovelace", None, "201", "pw-12345678")
        assert woke.wait(WAIT_S), "the commit of another store did not wake the listener"
        assert serving.config_version() == other.config_version()
    finally:
        if listener is not None:
            listener.stop()
            listener.join(WAIT_S)
        serving.close()
        other.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_refused_change_announces_nothing(data_dir: Path, db_url: str | None) -> None:
    """A write that rolls back (an extension already in use) sends no notification: NOTIFY is queued in the
    bumping transaction and PostgreSQL delivers it only on commit."""
    serving = Store.open(data_dir, db_url)
    serving.add_user("Ada", "Lovelace", None, "201", "pw-12345678")
    woke = threading.Event()
    listener = serving.listen_config(woke.set)
    assert listener is not None
    try:
        assert listener.listening.wait(WAIT_S)
        woke.clear()  # the wake-up given on LISTEN
        with pytest.raises(ModelError):
            serving.add_user("Bob", "Dup", None, "201", "pw-12345678")
        assert not woke.wait(1.0), "a rolled-back change was announced"
        serving.add_user("Cy", "Next", None, "202", "pw-12345678")  # the next committed change is
        assert woke.wait(WAIT_S)
    finally:
        listener.stop()
        listener.join(WAIT_S)
        serving.close()
