"""Drive the softphone peers (pjsua2_phone.py, baresip_phone.py) from a test, one object per phone process.

    from tests.peers.softphone import Softphone

    a = Softphone.pjsua2("a", tmp_path, user="201", password=pw, registrar=f"127.0.0.1:{port}").start()
    b = Softphone.baresip("b", tmp_path, user="202", password=pw2, registrar=..., auto_answer=200).start()
    a.wait_registered(); b.wait_registered()
    a.call(f"sip:202@127.0.0.1:{port}")
    b.wait_for("incoming_call")
    a.wait_state("CONFIRMED"); b.wait_state("CONFIRMED")
    b.record(tmp_path / "heard.wav"); a.play(tone)
    ...
    heard = b.stop_record()["path"]
    b.hangup(); a.wait_state("DISCONNECTED"); b.wait_state("DISCONNECTED")
    a.close(); b.close()

Both peers speak the same commands and events (see their module docstrings), so a test written for one
runs against the other, except where baresip 1.0 cannot (answer codes other than 200/486, recording across
a hold). ``wait_for`` returns the earliest matching event not returned before, whether it arrived before
or during the wait, so the order of waits across phones does not matter.
"""

from __future__ import annotations

import json
import queue
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import pytest

from ..integration.harness import PEERS_DIR, PeerProcess, free_port

Event = dict[str, Any]
Predicate = Callable[[Event], bool]

START_TIMEOUT_S: Final = 20.0
WAIT_TIMEOUT_S: Final = 15.0


class Spawn(Protocol):
    """How a PeerProcess gets made: the ``peers`` fixture (which stops it at teardown), or PeerProcess."""

    def __call__(self, name: str, argv: list[str], *, logs: Sequence[Path] = ...) -> PeerProcess: ...


def _spawn_here(workdir: Path) -> Spawn:
    def spawn(name: str, argv: list[str], *, logs: Sequence[Path] = ()) -> PeerProcess:
        return PeerProcess(name, argv, workdir / f"{name}.stderr", logs=logs)

    return spawn


class Softphone:
    """One phone process: ``start()``, ``send(cmd)``, ``wait_for(ev, predicate, timeout)``, ``close()``."""

    def __init__(
        self,
        name: str,
        kind: str,
        argv: list[str],
        workdir: Path,
        *,
        logs: Sequence[Path] = (),
        spawn: Spawn | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.argv = argv
        self.workdir = workdir
        self.logs = list(logs)
        self.spawn = spawn or _spawn_here(workdir)
        self.peer: PeerProcess | None = None
        self.ready: Event = {}
        self._taken: set[int] = set()  # indexes into peer.events already returned by wait_for

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def pjsua2(
        cls,
        name: str,
        workdir: Path,
        *,
        user: str,
        password: str = "",
        registrar: str | None = None,
        realm: str = "*",
        auto_answer: int = 0,
        ring_seconds: float = 0.0,
        transport: str = "udp",
        max_seconds: float = 60.0,
        mwi_subscribe: bool = False,
        extra: Sequence[str] = (),
        spawn: Spawn | None = None,
    ) -> Softphone:
        """A pjsua2 phone: registered to ``registrar`` (host:port), or callable directly if it is None.
        Unsolicited MWI NOTIFYs become ``mwi`` events; ``mwi_subscribe`` also SUBSCRIBEs to the mailbox."""
        workdir.mkdir(parents=True, exist_ok=True)
        log = workdir / f"{name}.pjsip.log"
        argv = [sys.executable, str(PEERS_DIR / "pjsua2_phone.py"), "--user", user, "--realm", realm]
        argv += ["--registrar", registrar] if registrar else ["--no-register"]
        if password:
            argv += ["--password", password]
        argv += [
            "--transport", transport,
            "--auto-answer", str(auto_answer),
            "--ring-seconds", str(ring_seconds),
            "--max-seconds", str(max_seconds),
            "--log-file", str(log),
            *(["--mwi-subscribe"] if mwi_subscribe else []),
            *extra,
        ]  # fmt: skip
        return cls(name, "pjsua2", argv, workdir, logs=[log], spawn=spawn)

    @classmethod
    def baresip(
        cls,
        name: str,
        workdir: Path,
        *,
        user: str,
        password: str = "",
        registrar: str | None = None,
        auto_answer: int = 0,
        ring_seconds: float = 0.0,
        transport: str = "udp",
        max_seconds: int = 60,
        extra: Sequence[str] = (),
        spawn: Spawn | None = None,
    ) -> Softphone:
        """Debian's baresip (ports chosen free now; its config and dumps under ``workdir/name``)."""
        home = workdir / name
        argv = [sys.executable, str(PEERS_DIR / "baresip_phone.py"), "--user", user]
        argv += ["--registrar", registrar] if registrar else ["--no-register"]
        if password:
            argv += ["--password", password]
        argv += [
            "--transport", transport,
            "--sip-port", str(free_port(span=2)),  # baresip also binds TLS on sip_port + 1
            "--ctrl-port", str(free_port()),
            "--auto-answer", str(auto_answer),
            "--ring-seconds", str(ring_seconds),
            "--workdir", str(home),
            "--max-seconds", str(max_seconds),
            *extra,
        ]  # fmt: skip
        return cls(name, "baresip", argv, workdir, logs=[home / "baresip.log"], spawn=spawn)

    # -- process ----------------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT_S) -> Softphone:
        """Start the process and wait for its ``ready`` event (fails the test otherwise)."""
        assert self.peer is None, f"{self.name} already started"
        self.peer = self.spawn(self.name, self.argv, logs=self.logs)
        self.ready = self.wait_for("ready", timeout=timeout)
        return self

    @property
    def uri(self) -> str:
        """Where this phone can be called directly (``sip:user@127.0.0.1:port``)."""
        return str(self.ready["uri"])

    @property
    def events(self) -> list[Event]:
        """Every event the phone printed so far, in order (waited for or not)."""
        if self.peer is None:
            return []
        while True:  # PeerProcess files an event under .events only once a wait reads it
            try:
                e = self.peer._queue.get_nowait()
            except queue.Empty:
                break
            if e is None:  # the end-of-output mark stays for the next wait to see
                self.peer._queue.put(None)
                break
            self.peer.events.append(e)
        return self.peer.events

    def send(self, command: str) -> None:
        self._peer().send(command)

    def wait_for(
        self,
        ev: str,
        predicate: Predicate | None = None,
        timeout: float = WAIT_TIMEOUT_S,
        fail_on: Predicate | None = None,
    ) -> Event:
        """The earliest event named ``ev`` (and satisfying ``predicate``) not returned before.

        Raises:
            pytest.fail.Exception: none within ``timeout``, an event matching ``fail_on`` first, or the
                process ended; the message holds the phone's recent events and log tails.
        """

        def match(e: Event) -> bool:
            return e.get("ev") == ev and (predicate is None or predicate(e))

        peer = self._peer()
        last = max(self._taken, default=-1)
        for i, e in enumerate(peer.events):
            if i in self._taken:
                continue
            if match(e):
                self._taken.add(i)
                return e
            if fail_on is not None and i > last and fail_on(e):  # only since the last event waited for
                pytest.fail(f"{self.name}: {json.dumps(e)} while waiting for {ev}\n{peer.describe()}")
        found = peer.expect(match, f"{ev} event", timeout=timeout, fail_on=fail_on)
        self._taken.add(len(peer.events) - 1)  # expect() appends every event it reads, this one last
        return found

    def close(self, timeout: float = 15.0) -> int:
        """Quit the phone (hangs up, finishes recordings, unregisters); its exit status."""
        return self.peer.close(timeout) if self.peer is not None else 0

    def describe(self) -> str:
        return self.peer.describe() if self.peer is not None else f"{self.name} (not started)"

    def __enter__(self) -> Softphone:
        return self.start() if self.peer is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _peer(self) -> PeerProcess:
        if self.peer is None:
            pytest.fail(f"{self.name} was never started")
        return self.peer

    # -- calls ------------------------------------------------------------------------------------
    def wait_registered(self, timeout: float = WAIT_TIMEOUT_S) -> Event:
        if self.kind == "baresip":
            return self.wait_for("registered", timeout=timeout, fail_on=_named("register_failed"))
        return self.wait_for(
            "reg_state",
            lambda e: e.get("active") is True and e.get("code") == 200,
            timeout,
            fail_on=lambda e: e.get("ev") == "reg_state" and e.get("code") != 200,
        )

    def wait_state(self, state: str, timeout: float = WAIT_TIMEOUT_S, *, fail_early: bool = True) -> Event:
        """The next ``call_state`` event with ``state``; with ``fail_early`` a DISCONNECTED first fails."""
        ended = (
            (lambda e: e.get("ev") == "call_state" and e.get("state") == "DISCONNECTED")
            if fail_early and state != "DISCONNECTED"
            else None
        )
        return self.wait_for("call_state", lambda e: e.get("state") == state, timeout, fail_on=ended)

    def call(self, uri: str) -> None:
        self.send(f"call {uri}")

    def answer(self, code: int = 200) -> None:
        self.send(f"answer {code}")

    def auto_answer(self, code: int, ring_seconds: float | None = None) -> None:
        """From now on answer incoming calls with ``code`` (0 = ring until told) after ``ring_seconds``."""
        self.send(f"auto_answer {code}" + ("" if ring_seconds is None else f" {ring_seconds}"))

    def hangup(self) -> None:
        self.send("hangup")

    def play(self, wav: Path | str) -> Event:
        self.send(f"play {wav}")
        return self.wait_for("playing", fail_on=_named("error"))

    def stop_play(self) -> None:
        self.send("stop_play")

    def record(self, wav: Path | str) -> Event:
        self.send(f"record {wav}")
        return self.wait_for("recording", fail_on=_named("error"))

    def stop_record(self, timeout: float = WAIT_TIMEOUT_S) -> Event:
        """Stop recording; the ``record_finished`` event (``path``, ``seconds``) once the WAV is complete."""
        self.send("stop_record")
        return self.wait_record_finished(timeout)

    def wait_record_finished(self, timeout: float = WAIT_TIMEOUT_S) -> Event:
        return self.wait_for("record_finished", timeout=timeout)

    def dtmf(self, digits: str) -> None:
        self.send(f"dtmf {digits}")

    def wait_mwi(self, predicate: Predicate | None = None, timeout: float = WAIT_TIMEOUT_S) -> Event:
        """The next ``mwi`` event (pjsua2 only) satisfying ``predicate``: ``waiting``, ``voice`` ("1/0"),
        ``state`` and the NOTIFY's ``body``."""
        return self.wait_for("mwi", predicate, timeout)

    def hold(self) -> None:
        self.send("hold")

    def unhold(self) -> None:
        self.send("unhold")


def _named(name: str) -> Predicate:
    return lambda e: e.get("ev") == name
