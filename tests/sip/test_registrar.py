"""Registrar and Location (RFC 3261 §10.3 steps 5-8, RFC 5626 §6 instance replacement).

Registration time is a wall-clock float passed by hand; every expiry is asserted exactly.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from engine.sip.errors import SipParseError
from engine.sip.headers import Address
from engine.sip.message import Request, Response
from engine.sip.parser import parse_message
from engine.sip.registrar import (
    DEFAULT_EXPIRES,
    MAX_EXPIRES,
    MIN_EXPIRES,
    Binding,
    BindingChange,
    Location,
    RegisterOutcome,
    Registrar,
    contact_key,
)
from engine.sip.transaction import Peer

AOR = "sip:201@pbx.example.com"
SRC = Peer("UDP", "192.0.2.50", 5062)
T0 = 1_700_000_000.0
INSTANCE = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"


def register(contacts: Iterable[str] = (), *, call_id: str = "reg-1@ua", cseq: int = 1,
             expires: int | str | None = None, extra: Iterable[str] = ()) -> Request:
    lines = [
        "REGISTER sip:pbx.example.com SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.50:5062;branch=z9hG4bKreg;rport",
        "Max-Forwards: 70",
        f"From: <{AOR}>;tag=ua-tag",
        f"To: <{AOR}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        *(f"Contact: {c}" for c in contacts),
        *extra,
    ]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def fresh(**kwargs: int) -> tuple[Registrar, Location]:
    location = Location()
    return Registrar(location, **kwargs), location


def do(registrar: Registrar, req: Request, now: float = T0, aor: str = AOR) -> RegisterOutcome:
    return registrar.register(req, aor, SRC, now, "reg-tag")


def listed(resp: Response) -> dict[str, Address]:
    """The Contacts of a response as sent on the wire, by URI."""
    wire = parse_message(resp.serialize())
    return {a.uri_text: a for a in wire.addresses("contact")}


def listed_expires(resp: Response) -> dict[str, int]:
    return {uri: int(a.params["expires"] or "-1") for uri, a in listed(resp).items()}


def snapshot(location: Location, now: float = T0) -> list[tuple[str, float, str, int]]:
    return [(b.contact, b.expires_at, b.call_id, b.cseq) for b in location.lookup(AOR, now)]


# -- add / refresh / remove -------------------------------------------------------------------------------


def test_first_registration_adds_a_binding_with_default_expires() -> None:
    registrar, location = fresh()
    out = do(registrar, register(["<sip:201@192.0.2.50:5062;transport=udp>"],
                                 extra=["User-Agent: Phone/1.0", "Path: <sip:edge.example.com;lr>"]))
    assert out.response.status == 200
    assert out.response.to.tag == "reg-tag"
    assert out.response.has("date")
    assert listed_expires(out.response) == {"sip:201@192.0.2.50:5062;transport=udp": DEFAULT_EXPIRES}
    (change,) = out.changes
    assert change.aor == AOR and change.contact == "sip:201@192.0.2.50:5062;transport=udp"
    b = change.binding
    assert b is not None
    assert b.expires_at == T0 + DEFAULT_EXPIRES
    assert (b.call_id, b.cseq, b.source, b.q) == ("reg-1@ua", 1, SRC, 1.0)
    assert b.user_agent == "Phone/1.0"
    assert b.path == ("<sip:edge.example.com;lr>",)
    assert location.lookup(AOR, T0) == [b]
    assert len(location) == 1 and location.aor_count() == 1


def test_refresh_with_higher_cseq_moves_the_expiry() -> None:
    registrar, location = fresh()
    do(registrar, register(["<sip:201@192.0.2.50:5062>"], cseq=1, expires=600))
    out = do(registrar, register(["<sip:201@192.0.2.50:5062>"], cseq=2, expires=900), now=T0 + 300)
    assert out.response.status == 200
    assert snapshot(location) == [("sip:201@192.0.2.50:5062", T0 + 1200, "reg-1@ua", 2)]
    assert [(c.contact, c.binding is not None) for c in out.changes] == [("sip:201@192.0.2.50:5062", True)]
    assert listed_expires(out.response) == {"sip:201@192.0.2.50:5062": 900}
    assert len(location) == 1


@pytest.mark.parametrize("how", ["contact-param", "expires-header"])
def test_expires_zero_removes_the_binding(how: str) -> None:
    registrar, location = fresh()
    do(registrar, register(["<sip:201@192.0.2.50:5062>", "<sip:201@198.51.100.7>"], cseq=1))
    if how == "contact-param":
        req = register(["<sip:201@192.0.2.50:5062>;expires=0"], cseq=2, expires=3600)
    else:
        req = register(["<sip:201@192.0.2.50:5062>"], cseq=2, expires=0)
    out = do(registrar, req, now=T0 + 10)
    assert out.response.status == 200
    assert out.changes == [BindingChange(AOR, "sip:201@192.0.2.50:5062", None)]
    assert [b.contact for b in location.lookup(AOR, T0 + 10)] == ["sip:201@198.51.100.7"]
    assert set(listed(out.response)) == {"sip:201@198.51.100.7"}


def test_removing_the_last_binding_drops_the_aor() -> None:
    registrar, location = fresh()
    do(registrar, register(["<sip:201@192.0.2.50:5062>"], cseq=1))
    out = do(registrar, register(["<sip:201@192.0.2.50:5062>"], cseq=2, expires=0))
    assert out.response.status == 200 and not out.response.has("contact")
    assert len(location) == 0 and location.aor_count() == 0


def test_removing_an_unknown_contact_changes_nothing() -> None:
    registrar, location = fresh()
    out = do(registrar, register(["<sip:201@192.0.2.50:5062>"], expires=0))
    assert out.response.status == 200
    assert out.changes == []
    assert location.aor_count() == 0


def test_several_contacts_are_looked_up_in_q_order() -> None:
    registrar, location = fresh()
    out = do(registrar, register(["<sip:201@192.0.2.1>;q=0.5", "<sip:201@192.0.2.2>",
                                  "<sip:201@192.0.2.3>;q=0.8"]))
    assert out.response.status == 200
    assert [b.contact for b in location.lookup(AOR, T0)] == [
        "sip:201@192.0.2.2", "sip:201@192.0.2.3", "sip:201@192.0.2.1"]
    assert [b.q for b in location.lookup(AOR, T0)] == [1.0, 0.8, 0.5]
    qs = {uri: a.params.get("q") for uri, a in listed(out.response).items()}
    assert qs == {"sip:201@192.0.2.2": None, "sip:201@192.0.2.3": "0.8", "sip:201@192.0.2.1": "0.5"}
    assert len(out.changes) == 3


def test_equal_q_prefers_the_binding_expiring_last() -> None:
    registrar, location = fresh()
    do(registrar, register(["<sip:201@192.0.2.1>"], expires=600))
    do(registrar, register(["<sip:201@192.0.2.2>"], call_id="other@ua", expires=1200))
    assert [b.contact for b in location.lookup(AOR, T0)] == ["sip:201@192.0.2.2", "sip:201@192.0.2.1"]


# -- wildcard -----------------------------------------------------------------------------------------------


def test_wildcard_with_expires_zero_removes_every_binding() -> None:
    registrar, location = fresh()
    do(registrar, register(["<sip:201@192.0.2.1>", "<sip:201@192.0.2.2>"], call_id="old@ua", cseq=5))
    out = do(registrar, register(["*"], call_id="new@ua", cseq=1, expires=0), now=T0 + 1)
    assert out.response.status == 200
    assert not out.response.has("contact")
    assert sorted(c.contact for c in out.changes) == ["sip:201@192.0.2.1", "sip:201@192.0.2.2"]
    assert all(c.binding is None for c in out.changes)
    assert len(location) == 0 and location.aor_count() == 0


def test_wildcard_with_same_call_id_and_higher_cseq_removes() -> None:
    registrar, location = fresh()
    do(registrar, register(["<sip:201@192.0.2.1>"], cseq=5))
    out = do(registrar, register(["*"], cseq=6, expires=0))
    assert out.response.status == 200
    assert len(location) == 0


def test_wildcard_with_same_call_id_and_stale_cseq_fails_and_changes_nothing() -> None:
    """§10.3 step 6: for "*", when the Call-ID agrees with a binding's, "it MUST remove the binding only if
    the CSeq in the request is higher than the value stored for that binding. Otherwise, the update MUST be
    aborted and the request fails." """
    registrar, location = fresh()
    do(registrar, register(["<sip:201@192.0.2.1>"], cseq=5))
    do(registrar, register(["<sip:201@192.0.2.2>"], call_id="other@ua", cseq=1))
    before = snapshot(location)
    out = do(registrar, register(["*"], cseq=5, expires=0))
    assert out.response.status >= 400
    assert out.changes == []
    assert snapshot(location) == before


@pytest.mark.parametrize("expires", [None, 60])
def test_wildcard_needs_expires_zero(expires: int | None) -> None:
    registrar, location = fresh()
    do(registrar, register(["<sip:201@192.0.2.1>"], cseq=1))
    out = do(registrar, register(["*"], cseq=2, expires=expires))
    assert out.response.status == 400
    assert out.changes == []
    assert len(location) == 1


@pytest.mark.parametrize("contacts", [["*", "<sip:201@192.0.2.9>"], ["<sip:201@192.0.2.9>, *"]])
def test_wildcard_with_another_contact_is_400(contacts: list[str]) -> None:
    registrar, location = fresh()
    do(registrar, register(["<sip:201@192.0.2.1>"], cseq=1))
    out = do(registrar, register(contacts, cseq=2, expires=0))
    assert out.response.status == 400
    assert out.changes == []
    assert [b.contact for b in location.lookup(AOR, T0)] == ["sip:201@192.0.2.1"]


# -- expiry values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("contact", "header", "expected"), [
    ("<sip:201@192.0.2.1>;expires=120", 600, 120),  # the Contact parameter wins
    ("<sip:201@192.0.2.1>", 600, 600),  # then the Expires header
    ("<sip:201@192.0.2.1>", None, DEFAULT_EXPIRES),  # then the registrar's default
])
def test_expires_from_contact_param_then_header_then_default(contact: str, header: int | None,
                                                             expected: int) -> None:
    registrar, location = fresh()
    out = do(registrar, register([contact], expires=header))
    assert out.response.status == 200
    assert location.lookup(AOR, T0)[0].expires_at == T0 + expected
    assert listed_expires(out.response) == {"sip:201@192.0.2.1": expected}


@pytest.mark.parametrize(("contact", "header"), [
    ("<sip:201@192.0.2.1>;expires=30", None),
    ("<sip:201@192.0.2.1>", 59),
    ("<sip:201@192.0.2.1>;expires=1", 3600),
])
def test_interval_below_min_expires_is_423_with_min_expires(contact: str, header: int | None) -> None:
    registrar, location = fresh()
    out = do(registrar, register([contact], expires=header))
    assert out.response.status == 423
    assert out.response.get("min-expires") == str(MIN_EXPIRES)
    assert out.changes == []
    assert len(location) == 0


def test_423_refuses_the_whole_request() -> None:
    registrar, location = fresh()
    out = do(registrar, register(["<sip:201@192.0.2.1>;expires=3600", "<sip:201@192.0.2.2>;expires=5"]))
    assert out.response.status == 423
    assert out.changes == [] and len(location) == 0


def test_exactly_min_expires_is_accepted() -> None:
    registrar, location = fresh()
    out = do(registrar, register(["<sip:201@192.0.2.1>"], expires=MIN_EXPIRES))
    assert out.response.status == 200
    assert location.lookup(AOR, T0)[0].expires_at == T0 + MIN_EXPIRES


def test_interval_above_max_is_clamped() -> None:
    registrar, location = fresh()
    out = do(registrar, register(["<sip:201@192.0.2.1>;expires=100000"]))
    assert out.response.status == 200
    assert location.lookup(AOR, T0)[0].expires_at == T0 + MAX_EXPIRES
    assert listed_expires(out.response) == {"sip:201@192.0.2.1": MAX_EXPIRES}


def test_custom_limits() -> None:
    registrar, location = fresh(default_expires=300, min_expires=120, max_expires=900)
    assert do(registrar, register(["<sip:201@192.0.2.1>"])).response.status == 200
    assert location.lookup(AOR, T0)[0].expires_at == T0 + 300
    low = do(registrar, register(["<sip:201@192.0.2.2>;expires=100"], cseq=2))
    assert low.response.status == 423 and low.response.get("min-expires") == "120"
    do(registrar, register(["<sip:201@192.0.2.3>;expires=5000"], cseq=3))
    assert {b.contact: b.expires_at for b in location.lookup(AOR, T0)}["sip:201@192.0.2.3"] == T0 + 900


# -- Call-ID / CSeq ordering (§10.3 step 7) ----------------------------------------------------------------


@pytest.mark.parametrize("cseq", [3, 4])
def test_same_call_id_with_lower_or_equal_cseq_is_refused_and_changes_nothing(cseq: int) -> None:
    registrar, location = fresh()
    do(registrar, register(["<sip:201@192.0.2.1>"], cseq=4, expires=600))
    before = snapshot(location)
    out = do(registrar, register(["<sip:201@192.0.2.2>", "<sip:201@192.0.2.1>"], cseq=cseq, expires=1200),
             now=T0 + 5)
    assert out.response.status == 500
    assert out.response.get("retry-after") == "1"
    assert out.changes == []
    assert snapshot(location) == before


def test_different_call_id_replaces_the_binding_whatever_the_cseq() -> None:
    registrar, location = fresh()
    do(registrar, register(["<sip:201@192.0.2.1>"], call_id="before-reboot@ua", cseq=90, expires=600))
    out = do(registrar, register(["<sip:201@192.0.2.1>"], call_id="after-reboot@ua", cseq=1, expires=1200),
             now=T0 + 5)
    assert out.response.status == 200
    assert snapshot(location) == [("sip:201@192.0.2.1", T0 + 1205, "after-reboot@ua", 1)]


def test_contact_uri_comparison_ignores_scheme_and_host_case_not_user_case() -> None:
    registrar, location = fresh()
    do(registrar, register(["<sip:201@PBX.Example.com>"], cseq=1))
    do(registrar, register(["<SIP:201@pbx.example.COM>"], cseq=2))
    assert len(location) == 1
    do(registrar, register(["<sip:Bob@pbx.example.com>"], cseq=3))
    do(registrar, register(["<sip:bob@pbx.example.com>"], cseq=4))
    assert len(location) == 3
    assert contact_key("SIP:Bob@PBX.example.com") == contact_key("sip:Bob@pbx.EXAMPLE.com")
    assert contact_key("sip:Bob@pbx") != contact_key("sip:bob@pbx")


# -- the 200 and queries (§10.3 step 8) --------------------------------------------------------------------


def test_the_200_lists_every_current_contact_with_its_remaining_expires() -> None:
    registrar, _ = fresh()
    do(registrar, register(["<sip:201@192.0.2.1>"], call_id="desk@ua", expires=3600))
    out = do(registrar, register(["<sip:201@192.0.2.2>;expires=600"], call_id="soft@ua"), now=T0 + 1000)
    assert listed_expires(out.response) == {"sip:201@192.0.2.1": 2600, "sip:201@192.0.2.2": 600}


def test_query_without_contact_lists_bindings_and_changes_nothing() -> None:
    registrar, location = fresh()
    do(registrar, register(["<sip:201@192.0.2.1>;expires=600", "<sip:201@192.0.2.2>;q=0.4"]))
    before = snapshot(location)
    out = do(registrar, register([], cseq=2), now=T0 + 100)
    assert out.response.status == 200
    assert out.changes == []
    assert listed_expires(out.response) == {"sip:201@192.0.2.1": 500, "sip:201@192.0.2.2": 3500}
    assert snapshot(location) == before


def test_query_for_an_unknown_aor_leaves_no_trace() -> None:
    registrar, location = fresh()
    out = do(registrar, register([]))
    assert out.response.status == 200 and not out.response.has("contact")
    assert location.aor_count() == 0


def test_refused_register_for_an_unknown_aor_leaves_no_empty_aor() -> None:
    """A refused REGISTER (423 here) must not leave an empty entry behind in the location service:
    ``aor_count`` would grow with every refused request and never shrink (``purge_expired`` only drops an
    AOR when it removes a binding from it)."""
    registrar, location = fresh()
    out = do(registrar, register(["<sip:201@192.0.2.1>;expires=5"]))
    assert out.response.status == 423
    assert location.aor_count() == 0
    location.purge_expired(T0 + 10_000)
    assert location.aor_count() == 0


# -- RFC 5626 instance replacement ------------------------------------------------------------------------


def test_same_instance_and_reg_id_replaces_the_stale_binding() -> None:
    registrar, location = fresh()
    first = f'<sip:201@198.51.100.7:40001>;+sip.instance="{INSTANCE}";reg-id=1'
    do(registrar, register([first], call_id="boot-1@ua"))
    rebooted = f'<sip:201@198.51.100.7:40999>;+sip.instance="{INSTANCE}";reg-id=1'
    out = do(registrar, register([rebooted], call_id="boot-2@ua"), now=T0 + 60)
    assert out.response.status == 200
    assert [b.contact for b in location.lookup(AOR, T0 + 60)] == ["sip:201@198.51.100.7:40999"]
    assert [(c.contact, c.binding is None) for c in out.changes] == [
        ("sip:201@198.51.100.7:40001", True), ("sip:201@198.51.100.7:40999", False)]
    (b,) = location.lookup(AOR, T0 + 60)
    assert (b.instance_id, b.reg_id) == (INSTANCE, 1)
    (echo,) = listed(out.response).values()
    assert echo.params["+sip.instance"] == f'"{INSTANCE}"'
    assert echo.params["reg-id"] == "1"


def test_same_instance_with_another_reg_id_keeps_both_flows() -> None:
    registrar, location = fresh()
    do(registrar, register([f'<sip:201@198.51.100.7:40001>;+sip.instance="{INSTANCE}";reg-id=1']))
    do(registrar, register([f'<sip:201@198.51.100.7:40002>;+sip.instance="{INSTANCE}";reg-id=2'],
                           call_id="flow-2@ua"))
    assert len(location) == 2


# -- limits, expiry, persistence --------------------------------------------------------------------------


def test_max_contacts_evicts_the_binding_expiring_first() -> None:
    registrar, location = fresh(max_contacts=2)
    do(registrar, register(["<sip:201@192.0.2.1>;expires=600"], call_id="a@ua"))
    do(registrar, register(["<sip:201@192.0.2.2>;expires=1800"], call_id="b@ua"))
    out = do(registrar, register(["<sip:201@192.0.2.3>;expires=1200"], call_id="c@ua"))
    assert out.response.status == 200
    assert {b.contact for b in location.lookup(AOR, T0)} == {"sip:201@192.0.2.2", "sip:201@192.0.2.3"}
    assert out.changes[-1] == BindingChange(AOR, "sip:201@192.0.2.1", None)
    assert set(listed(out.response)) == {"sip:201@192.0.2.2", "sip:201@192.0.2.3"}


def test_lookup_hides_expired_bindings_and_purge_returns_them() -> None:
    registrar, location = fresh()
    do(registrar, register(["<sip:201@192.0.2.1>;expires=60", "<sip:201@192.0.2.2>;expires=600"]))
    assert len(location.lookup(AOR, T0 + 59.5)) == 2
    assert [b.contact for b in location.lookup(AOR, T0 + 60)] == ["sip:201@192.0.2.2"]
    assert location.purge_expired(T0 + 59) == []
    gone = location.purge_expired(T0 + 60)
    assert [b.contact for b in gone] == ["sip:201@192.0.2.1"]
    assert len(location) == 1
    assert [b.contact for b in location.purge_expired(T0 + 600)] == ["sip:201@192.0.2.2"]
    assert len(location) == 0 and location.aor_count() == 0


def test_restore_puts_persisted_bindings_back() -> None:
    location = Location()
    b = Binding(AOR, "sip:201@192.0.2.1", T0 + 100, 0.5, "x@ua", 3, SRC)
    location.restore(b)
    assert location.lookup(AOR, T0) == [b]
    registrar = Registrar(location)
    stale = do(registrar, register(["<sip:201@192.0.2.1>"], call_id="x@ua", cseq=3))
    assert stale.response.status == 500  # the restored CSeq still orders requests


def test_binding_changes_replay_into_an_identical_location() -> None:
    """What a store would do: apply every BindingChange in order, and get the same location back."""
    registrar, location = fresh()
    changes: list[BindingChange] = []
    changes += do(registrar, register(["<sip:201@192.0.2.1>", "<sip:201@192.0.2.2>;q=0.1"], cseq=1)).changes
    changes += do(registrar, register(["<sip:201@192.0.2.1>;expires=0"], cseq=2)).changes
    changes += do(registrar, register(["<sip:201@192.0.2.3>"], call_id="z@ua")).changes
    store: dict[tuple[str, str], Binding] = {}
    for c in changes:
        if c.binding is None:
            del store[(c.aor, c.contact)]
        else:
            store[(c.aor, c.contact)] = c.binding
    assert sorted(k[1] for k in store) == sorted(b.contact for b in location.lookup(AOR, T0))


# -- malformed input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("contact", ["<sip:201@192.0.2.9>;expires=soon", "<sip:201@192.0.2.9>;q=1.5",
                                     "<sip:201@192.0.2.9>;q=high", "<sip:201@192.0.2.9>;reg-id=x"])
def test_malformed_contact_parameters_raise_400(contact: str) -> None:
    registrar, location = fresh()
    with pytest.raises(SipParseError) as info:
        do(registrar, register([contact]))
    assert info.value.status == 400
    assert info.value.header == "contact"
    assert len(location) == 0


def test_malformed_second_contact_changes_nothing() -> None:
    """The caller answers the SipParseError with a 400 and never sees the changes list, so the location
    must be as it was (otherwise memory and the persistent store disagree)."""
    registrar, location = fresh()
    do(registrar, register(["<sip:201@192.0.2.1>;expires=600"], cseq=1))
    before = snapshot(location)
    with pytest.raises(SipParseError):
        do(registrar, register(["<sip:201@192.0.2.1>;expires=1200", "<sip:201@192.0.2.2>;q=7"], cseq=2))
    assert snapshot(location) == before


def test_malformed_expires_header_raises_400() -> None:
    registrar, _ = fresh()
    with pytest.raises(SipParseError) as info:
        do(registrar, register(["<sip:201@192.0.2.1>"], expires="tomorrow"))
    assert info.value.status == 400 and info.value.header == "expires"
