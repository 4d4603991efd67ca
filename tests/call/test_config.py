"""The configuration snapshot (engine.call.config): a call keeps the snapshot it was routed by while a reload
swaps in the next one; the next call goes by the new one. Driven through SipApplication and the flows on the
in-memory network, with the flows' services recording which snapshot each of their calls came with."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from engine.call.app import SipApplication
from engine.call.b2bua import Branch, Call, CallManager, Destination
from engine.call.config import CurrentConfig, EngineConfig, read_engine_config
from engine.call.flows import FlowFactory, FlowServices
from engine.call.routing import RoutingConfig
from engine.dialplan.evaluate import RingState
from engine.dialplan.plan import RingTarget
from engine.model.cdr import CallRecord
from engine.model.entities import Company, Line, PhoneNumber, Trunk, User
from engine.sip.auth import DigestAuthenticator
from engine.sip.registrar import Location, Registrar
from engine.store import Store, load_company_file
from tests.call.phone import Phone
from tests.call.test_b2bua import NetClock
from tests.call.test_flows import DID, DIRECT, NOON, _config
from tests.sip.harness import Network

REPO_ROOT = Path(__file__).resolve().parents[2]
#: the snapshot after the reload: the DID's plan goes straight to mailbox 202
TO_VOICEMAIL = {"start": "vm", "nodes": {"vm": {"type": "voicemail", "mailbox": "202"}}}


def snapshot(version: int, graph: dict[str, object]) -> EngineConfig:
    company = Company("Test GmbH", "pbx.test")
    lines = [Line(i, i, ext, f"U{i}", None, "", "") for i, ext in ((1, "201"), (2, "202"), (3, "203"))]
    users = [User(i, f"U{i}", f"L{i}") for i in (1, 2, 3)]
    carrier = Trunk(1, "carrier", ("10.0.0.0/24",), "10.0.0.1", 5060, "UDP", None, None, None)
    routing = RoutingConfig.build(company, lines, users, [PhoneNumber(DID, "dial_plan", "main")], [carrier],
                                  plan=_config(graph))
    return EngineConfig(version, {}, routing)


class Rig:
    """The pbx runs SipApplication with a FlowFactory whose services note the snapshot of each request."""

    def __init__(self) -> None:
        self.net = net = Network()
        self.pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, seed=2)
        self.alice = Phone(net, net.add_endpoint("alice", "10.0.0.1", 5060, seed=1))
        self.carol = Phone(net, net.add_endpoint("carol", "10.0.0.9", 5060, seed=9))
        self.bobs = {ext: Phone(net, net.add_endpoint(f"bob{ext}", f"10.0.0.{i + 3}", 5060, seed=i + 3),
                                mode="ring")
                     for i, ext in enumerate(("202", "203"))}
        self.cdrs: list[CallRecord] = []
        self.manager = CallManager(self.pbx.endpoint, net, lambda: None, None, "10.0.0.2", self.cdrs.append,
                                   NetClock(net))
        #: (caller, version of the snapshot the service was asked under)
        self.rang: list[tuple[str, int]] = []
        self.deposits: list[tuple[str, str, int]] = []
        services = FlowServices(
            manager=self.manager, open_media=lambda call, offer: None,
            run_media=lambda port, action, done: None, destination=self._destination, deposit=self._deposit,
            apply_effect=lambda effect, config, done: None, wall=lambda: NOON, flush=lambda: None)
        self.config = CurrentConfig(snapshot(1, DIRECT))
        auth = DigestAuthenticator("pbx.test", b"k" * 32, rng=random.Random(3))
        self.app = SipApplication(self.pbx.endpoint, auth, Registrar(Location()), self.config, NetClock(net),
                                  None, self.manager, flows=FlowFactory(services, RingState()))
        self.pbx.tu = lambda node, event: self.app.handle(event, net.now)

    def _destination(self, call: Call, config: EngineConfig, targets: tuple[RingTarget, ...], timeout: float,
                     prefix: str) -> Destination | None:
        self.rang.append((call.info.caller, config.version))
        branches = tuple(Branch(f"sip:{t.value}@{self.bobs[t.value].node.host}", self.bobs[t.value].node.peer)
                         for t in targets if t.value in self.bobs)
        return Destination(branches, '"Alice" <sip:alice@pbx.test>', "<sip:sales@pbx.test>",
                           ring_timeout=timeout) if branches else None

    def _deposit(self, mailbox: str, reason: str, call: Call, config: EngineConfig) -> None:
        self.deposits.append((call.info.caller, mailbox, config.version))
        return None  # no voicemail service here: the call ends as rung


def test_a_reload_while_a_call_rings_leaves_it_its_snapshot_and_the_next_call_takes_the_new_one() -> None:
    rig = Rig()
    rig.alice.call(f"sip:{DID}@10.0.0.2", rig.pbx)
    reloaded = snapshot(2, TO_VOICEMAIL)
    # While the ring group rings (it rings 60 s), a reload routes the DID straight to mailbox 202.
    rig.net.call_at(2.0, lambda: setattr(rig.config, "snapshot", reloaded))
    rig.net.call_at(100.0, lambda: rig.carol.call(f"sip:{DID}@10.0.0.2", rig.pbx))
    rig.net.run(until=200.0)
    assert rig.app.config.snapshot is reloaded
    first, second = sorted(rig.cdrs, key=lambda c: c.started_at)
    assert first.caller != second.caller
    # The ringing call goes on by its own plan, the snapshot it started with: the group rang out, then its
    # voicemail (201) was asked for under version 1. The next call runs the new plan: mailbox 202, version 2.
    assert [(m, v) for c, m, v in rig.deposits if c == first.caller] == [("201", 1)]
    assert [(m, v) for c, m, v in rig.deposits if c == second.caller] == [("202", 2)]
    assert rig.rang == [(first.caller, 1)]  # only the first call rang, by its snapshot
    m = rig.manager
    assert m.calls == {} and m.legs == {} and m.dialogs == {} and rig.net.pending_timers() == 0


def test_the_snapshot_is_one_immutable_value_behind_one_reference() -> None:
    config = CurrentConfig(snapshot(1, DIRECT))
    assert CurrentConfig.__slots__ == ("snapshot",)  # nothing else to assign, nothing to get out of step
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.snapshot.version = 2  # type: ignore[misc]
    assert config.has_mailbox("201") and not config.has_mailbox("299")


def test_the_engine_config_of_a_store(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    try:
        store.import_company(load_company_file(REPO_ROOT / "config" / "example-company.yaml"))
        looked_up: list[str] = []

        def resolve(hosts: object) -> dict[str, str]:
            looked_up.extend(hosts)  # type: ignore[call-overload]
            return {}

        config = read_engine_config(store, tmp_path, ring_timeout=12.0, resolve=resolve)
        assert config.version == store.config_version()
        assert set(config.credentials) == set(config.routing.lines) == {ln.extension for ln in store.lines()}
        assert config.plan is not None and config.routing.ring_timeout == 12.0
        assert looked_up == [t.host for t in store.trunks()]
    finally:
        store.close()


def test_a_re_read_at_the_same_version_logs_the_plans_warnings_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The server re-reads the configuration every DNS refresh (five minutes) even when nothing changed;
    the dial plans' warnings are logged once per configuration version, not per re-read (they were logged
    again at every refresh)."""
    doc = load_company_file(REPO_ROOT / "config" / "example-company.yaml")
    menu = doc["dial_plans"][0]["graph"]["nodes"]["menu"]
    menu["wait_for_extensions"] = False  # option 2 now hides the extensions 2xx: one warning
    store = Store.open(tmp_path)
    try:
        store.import_company(doc)

        def warnings() -> list[str]:
            return [r.getMessage() for r in caplog.records if "dial plans" in r.getMessage()]

        with caplog.at_level("WARNING", logger="engine.company"):
            first = read_engine_config(store, tmp_path, ring_timeout=12.0, resolve=lambda hosts: {})
            assert len(warnings()) == 1 and 'options["2"]' in warnings()[0]
            again = read_engine_config(store, tmp_path, ring_timeout=12.0, resolve=lambda hosts: {},
                                       previous=first)
            assert again.version == first.version and again.plan is first.plan
            assert len(warnings()) == 1
            store.add_user("New", "User", None, "260", "pw-12345678")
            changed = read_engine_config(store, tmp_path, ring_timeout=12.0, resolve=lambda hosts: {},
                                         previous=again)
            assert changed.version > first.version and changed.plan is not first.plan
            assert "260" in changed.credentials
            assert len(warnings()) == 2  # a change: the warning that still holds is logged again, once
    finally:
        store.close()
