"""Queues through the admin API: a full queue is saved and read back, bad fields get 422 naming the field
(the compiler's path inside the object: unknown strategy, an agent that is no line, exit to nowhere); the
queue report over stored CDRs (SQLite and PostgreSQL); the live view of a queue service on a real loop in
another thread (the engine's hand-off), and 503 without one."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx

from engine.api.app import create_app
from engine.api.queues import LiveQueues
from engine.call.queue import QueueService
from engine.dialplan.plan import Queue
from engine.model.cdr import CallRecord, Direction, Disposition, QueueVisit
from engine.store import Store
from engine.store.admin import AdminStore
from tests.api.conftest import Api, ServerThread


def test_queue_fields_are_checked_and_named(api: Api, client: httpx.Client) -> None:
    for ext in ("201", "202"):
        r = client.post("/api/users", json={"first_name": "A", "last_name": ext, "extension": ext})
        assert r.status_code == 201, r.text
    spec = {
        "name": "support",
        "extension": "600",
        "agents": [{"line": "201"}, {"line": "202"}],
        "strategy": "least_recent",
        "wrap_up_seconds": 10,
        "max_wait_seconds": 120,
        "exit": {"kind": "voicemail", "target": "201"},
        "exit_key": "0",
    }
    bad = {
        "strategy": ({"strategy": "loudest"}, "strategy"),
        "agent": ({"agents": [{"line": "999"}]}, "agents[0].line"),
        "exit": ({"exit": {"kind": "voicemail", "target": "nowhere"}}, "exit.target"),
        "exit kind": ({"exit": {"kind": "the moon", "target": "x"}}, "exit.kind"),
    }
    for why, (change, field) in bad.items():
        r = client.post("/api/routing/queues", json={**spec, **change})
        assert r.status_code == 422, (why, r.text)
        assert field in r.json()["field"], (why, r.json())
    r = client.post("/api/routing/queues", json=spec)
    assert r.status_code == 201, r.text
    assert client.get("/api/routing/queues/support").json()["spec"] == spec


def _queue_call(call_id: str, started: float, *visits: QueueVisit, ended: float | None = None) -> CallRecord:
    last = max(v.left_at for v in visits)
    end = ended if ended is not None else last + 30.0
    return CallRecord(call_id, Direction.INBOUND, "+4930111", "Caller", "+4930600", "+4930600", "carrier",
                      started, started + 0.5, end, Disposition.ANSWERED, 200, "caller hung up",
                      path=("@queue/support",), queues=visits)


def test_the_queue_report_counts_what_the_cdrs_say(api: Api, client: httpx.Client) -> None:
    """Four callers in support (service level 10 s): answered after 4 s by 201 (talked 30 s) and after 25 s
    by 202 (talked 60 s), one abandoned after 12 s, one sent on by the maximum wait after 60 s; one more
    turned away by the full sales queue; a call outside the period is left out; the visits come back in the
    call report as they were stored."""
    for ext in ("201", "202"):
        assert client.post("/api/users", json={"first_name": "A", "last_name": ext,
                                                "extension": ext}).status_code == 201
    support = {"name": "support", "agents": [{"line": "201"}, {"line": "202"}], "service_level_seconds": 10}
    for spec in (support, {"name": "sales", "agents": [{"line": "201"}]}, {"name": "idle", "agents": []}):
        r = client.post("/api/routing/queues", json=spec)
        assert r.status_code == 201, r.text
    t = 1_800_000_000.0
    api.store.write_cdrs([
        _queue_call("a", t, QueueVisit("support", t + 1, t + 5, "answered", "201"), ended=t + 35),
        _queue_call("b", t + 10, QueueVisit("support", t + 11, t + 36, "answered", "202"), ended=t + 96),
        _queue_call("c", t + 20, QueueVisit("support", t + 21, t + 33, "abandoned")),
        _queue_call("d", t + 30, QueueVisit("support", t + 31, t + 91, "timeout"),
                    QueueVisit("sales", t + 91, t + 91, "full")),
        _queue_call("old", t - 3600, QueueVisit("support", t - 3599, t - 3598, "abandoned")),
        CallRecord("plain", Direction.INTERNAL, "201", "A", "202", None, None, t + 40, t + 41, t + 50,
                   Disposition.ANSWERED, 200, "caller hung up"),
    ])
    r = client.get("/api/reports/queues", params={"since": t, "until": t + 3600})
    assert r.status_code == 200, r.text
    report = {q["queue"]: q for q in r.json()}
    assert set(report) == {"support", "sales", "idle"}
    support = report["support"]
    assert (support["offered"], support["answered"], support["abandoned"]) == (4, 2, 1)
    assert support["exits"] == {"timeout": 1}
    assert support["average_wait_seconds"] == 14.5 and support["longest_wait_seconds"] == 25.0
    assert support["average_abandoned_after_seconds"] == 12.0
    assert support["service_level_seconds"] == 10.0
    assert support["service_level_percent"] == 25.0  # 1 of the 4 who waited was answered within 10 s
    assert support["agents"] == [{"line": "201", "calls": 1, "talk_seconds": 30.0},
                                 {"line": "202", "calls": 1, "talk_seconds": 60.0}]
    sales = report["sales"]
    assert (sales["offered"], sales["exits"], sales["service_level_percent"]) == (1, {"full": 1}, None)
    assert sales["service_level_seconds"] == 20.0  # the default
    assert report["idle"]["offered"] == 0 and report["idle"]["average_wait_seconds"] is None
    everything = {q["queue"]: q for q in client.get("/api/reports/queues").json()}
    assert everything["support"]["offered"] == 5 and everything["support"]["abandoned"] == 2
    calls = client.get("/api/reports/calls", params={"party": "+4930111", "since": t, "until": t + 25}).json()
    assert min(calls, key=lambda c: c["started_at"])["queues"] == [
        {"queue": "support", "joined_at": t + 1, "left_at": t + 5, "outcome": "answered", "agent": "201",
         "waited_seconds": 4.0}]


def test_the_report_needs_view_reports_and_checks_its_period(api: Api, client: httpx.Client) -> None:
    assert client.get("/api/reports/queues", params={"since": "yesterday"}).status_code == 400
    with api.client("") as anonymous:
        assert anonymous.get("/api/reports/queues").status_code == 401


class _Waiting:
    """A waiting caller's side of the queue (``Member``): its offers ring (nothing is dialled here)."""

    def __init__(self) -> None:
        self.offers: list[tuple[str, ...]] = []

    def offer(self, agents: tuple[str, ...], ring_s: float) -> bool:
        self.offers.append(agents)
        return True

    def stop_offer(self) -> None:
        pass

    def left(self, how: str) -> None:
        pass


def test_the_live_view_shows_who_waits_and_each_agents_state(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    store = Store.open(tmp_path, None)
    _, token = AdminStore(store).bootstrap_admin("owner@example.com")
    clock = _LoopClock(loop)
    service = QueueService(loop, clock)
    live = LiveQueues(loop, service)
    server = ServerThread(create_app(store, validator=None, queues=live))
    c = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    try:
        agents = [{"line": "201"}, {"line": "202"}, {"line": "203", "dynamic": True}]
        spec = {"name": "support", "agents": agents}
        assert c.post("/api/routing/queues", json=spec).status_code == 201
        queue = Queue("support", ("201", "202", "203"), strategy="linear", dynamic=frozenset({"203"}))
        assert c.get("/api/queues/nope/live").status_code == 404
        empty = c.get("/api/queues/support/live").json()
        assert empty["waiting"] == []
        assert [(a["line"], a["state"]) for a in empty["agents"]] == [
            ("201", "available"), ("202", "available"), ("203", "logged_out")]
        live.call(lambda s: s.set_presence(queue, "202", True, True))  # 202 pauses
        for n, caller in enumerate(("+4930111", "+4930222")):
            live.call(lambda s, caller=caller, n=n: s.join(queue, _Waiting(), caller, f"Caller {n + 1}"))
        now = c.get("/api/queues/support/live").json()
        assert [(w["position"], w["caller"], w["caller_name"], w["ringing"]) for w in now["waiting"]] == [
            (1, "+4930111", "Caller 1", ["201"]), (2, "+4930222", "Caller 2", [])]
        assert all(w["waiting_seconds"] >= 0 for w in now["waiting"])
        assert [(a["line"], a["state"], a["logged_in"], a["paused"]) for a in now["agents"]] == [
            ("201", "ringing", True, False), ("202", "paused", True, True),
            ("203", "logged_out", False, False)]
    finally:
        c.close()
        server.stop()
        store.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_the_live_view_without_a_call_engine_is_503(api: Api, client: httpx.Client) -> None:
    assert client.post("/api/routing/queues", json={"name": "support", "agents": []}).status_code == 201
    r = client.get("/api/queues/support/live")
    assert r.status_code == 503 and "call engine" in r.text


class _LoopClock:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def now(self) -> float:
        return self.loop.time()

    def wall(self) -> float:
        return time.time()
