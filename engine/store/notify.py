"""Configuration changes announced across processes: PostgreSQL LISTEN/NOTIFY (issue 17, part 1).

Every write that bumps ``config_version`` on PostgreSQL also runs ``pg_notify(CHANNEL, current_schema())``
in the same transaction (``Store._bump``), so the notification leaves exactly when the change commits and
never for a rolled-back one. ``ConfigListener`` holds one connection of its own in autocommit mode, LISTENs
on the channel in a daemon thread and calls ``on_change`` for each notification of its own schema (several
stores may share a database, one schema each, as the tests' do). The callback only wakes the engine's config
loop, which then reads the version as before: a notification is a hint, never the data, so a lost or
duplicated one costs at most a read. Each time LISTEN is in place (at start and after a reconnection, with
back-off) the listener wakes the loop once, since changes committed before were not announced to it: no
change can fall between the engine's first read and the first notification.

A shell module: the thread blocks on the socket, never the event loop. psycopg is imported when a listener
starts, so SQLite-only installs do not need it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Final

import sqlalchemy as sa

logger = logging.getLogger("engine.store.notify")

#: the NOTIFY channel of configuration changes; the payload is the schema whose config changed
CHANNEL: Final = "pbx_config"
#: how often the listening thread looks at its stop flag between notifications
STOP_POLL_S: Final = 0.5
RECONNECT_MIN_S: Final = 0.5
RECONNECT_MAX_S: Final = 10.0


def notify_config_change(conn: sa.Connection) -> None:
    """Announce, on commit of ``conn``'s transaction, that the config of its schema changed (PostgreSQL)."""
    conn.execute(sa.text("SELECT pg_notify(:channel, current_schema())"), {"channel": CHANNEL})


class ConfigListener:
    """A thread LISTENing for configuration changes of one PostgreSQL schema."""

    def __init__(self, engine: sa.Engine, on_change: Callable[[], None]) -> None:
        self._connect_args: tuple[Any, ...]
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        self._connect_args = (tuple(args), dict(kwargs))
        self._on_change = on_change
        self._stop = threading.Event()
        #: set once the first LISTEN is in place and its wake-up was given (a change committed after it is
        #: announced to us)
        self.listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pbx-config-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (within ``STOP_POLL_S``; it closes its connection): never blocks."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg

        args, kwargs = self._connect_args
        backoff = RECONNECT_MIN_S
        while not self._stop.is_set():
            try:
                with psycopg.connect(*args, autocommit=True, **kwargs) as conn:
                    row = conn.execute("SELECT current_schema()").fetchone()
                    schema = str(row[0]) if row else ""
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._on_change()  # changes before the LISTEN were not announced to us
                    self.listening.set()
                    backoff = RECONNECT_MIN_S
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=STOP_POLL_S):
                            if note.payload == schema:
                                self._on_change()
            except Exception as exc:
                if self._stop.is_set():
                    return
                logger.warning("config change listener lost its connection (%s); reconnecting in %.1f s",
                               exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)
