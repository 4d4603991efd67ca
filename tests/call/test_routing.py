"""Routing decisions (engine.call.routing): who is calling and where the call goes, without sockets."""

from __future__ import annotations

from engine.call.b2bua import Destination
from engine.call.routing import Rejection, Routed, Router, RoutingConfig, branch_peer
from engine.model import Company, Line, PhoneNumber, Trunk
from engine.model.cdr import Direction, Disposition
from engine.sip.message import Request
from engine.sip.parser import parse_message
from engine.sip.registrar import Binding, Location
from engine.sip.transaction import Peer

NOW = 1_800_000_000.0
PHONE = Peer("UDP", "192.0.2.10", 5060)
CARRIER = Peer("UDP", "198.51.100.7", 5060)


def line(ext: str, *, cid: str | None = None, perms: frozenset[str] | None = None) -> Line:
    base = Line(int(ext), int(ext), ext, f"Line {ext}", cid, "0" * 32, "0" * 64)
    if perms is None:
        return base
    return Line(base.id, base.user_id, ext, base.name, cid, base.ha1_md5, base.ha1_sha256, perms)


def router(*, release: tuple[str, ...] = (), trunks: tuple[Trunk, ...] | None = None) -> Router:
    company = Company("Test", "pbx.test", country="DE", area_code="30", media_release_networks=release)
    lines = [line("201", cid="+493023125100"), line("202"),
             line("203", perms=frozenset({"internal", "local", "national", "mobile", "international"}))]
    numbers = [PhoneNumber("+493023125100", "extension", "202"),
               PhoneNumber("+493023125200", "dial_plan", "main")]
    if trunks is None:
        trunks = (Trunk(1, "carrier", ("198.51.100.0/24",), "198.51.100.7", 5080, "UDP", "acct", "pw",
                        "sip.carrier.example"),)
    location = Location()
    for ext, contact, src in (("202", "sip:202@192.0.2.20:5062", Peer("UDP", "192.0.2.20", 5062)),
                              ("202", "sip:202@10.1.1.5:5060", Peer("UDP", "203.0.113.9", 40000))):
        location.restore(Binding(ext, contact, NOW + 3600, source=src))
    return Router(RoutingConfig.build(company, lines, [], numbers, trunks, ring_timeout=25.0), location)


def invite(ruri: str, *, frm: str = "<sip:201@pbx.test>;tag=1", extra: str = "") -> Request:
    msg = parse_message((
        f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\nFrom: {frm}\r\n"
        f"To: <{ruri}>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode())
    assert isinstance(msg, Request)
    return msg


def routed(result: Routed | Rejection) -> Destination:
    assert isinstance(result, Routed), result
    return result.destination


def test_extension_rings_every_contact_and_natted_ones_at_their_source() -> None:
    r = router()
    dest = routed(r.from_line(invite("sip:202@pbx.test"), "201", PHONE, NOW))
    assert {(b.uri, b.peer) for b in dest.branches} == {
        ("sip:202@192.0.2.20:5062", Peer("UDP", "192.0.2.20", 5062)),
        ("sip:202@10.1.1.5:5060", Peer("UDP", "203.0.113.9", 40000)),  # private Contact behind NAT
    }
    assert dest.from_address == '"Line 201" <sip:201@pbx.test>' and dest.ring_timeout == 25.0
    assert not dest.media_release


def test_trunk_is_recognised_by_source_network_only() -> None:
    r = router()
    assert r.trunk_for("198.51.100.99") is not None and r.trunk_for("192.0.2.10") is None
    assert r.trunk_for("not-an-ip") is None


def test_did_in_any_common_format_reaches_its_line_with_the_callers_identity() -> None:
    r = router()
    trunk = r.trunk_for(CARRIER.host)
    assert trunk is not None
    for ruri in ("sip:+493023125100@pbx", "sip:493023125100@pbx", "sip:03023125100@pbx",
                 "sip:00493023125100@pbx"):
        result = r.from_trunk(invite(ruri, frm='"Max" <sip:+4940123456@carrier>;tag=9'), trunk, CARRIER, NOW)
        dest = routed(result)
        assert isinstance(result, Routed) and result.info.did == "+493023125100"
        assert result.info.callee == "202"
        assert result.info.direction is Direction.INBOUND and result.info.caller == "+4940123456"
        assert dest.from_address == '"Max" <sip:+4940123456@pbx.test>'
    # the DID in To when the Request-URI names the trunk host only
    req = invite("sip:pbx.test")
    req.set("to", "<sip:+49-30-23125100@pbx.test>")
    assert isinstance(r.from_trunk(req, trunk, CARRIER, NOW), Routed)


def test_asserted_identity_and_privacy_from_a_trunk() -> None:
    r = router()
    trunk = r.trunk_for(CARRIER.host)
    assert trunk is not None
    req = invite("sip:+493023125100@pbx", frm='"Anonymous" <sip:anonymous@anonymous.invalid>;tag=9',
                 extra="P-Asserted-Identity: <sip:+4989111222@carrier>\r\nPrivacy: id\r\n")
    result = r.from_trunk(req, trunk, CARRIER, NOW)
    assert isinstance(result, Routed) and result.info.caller == "+4989111222"
    assert result.destination.from_address == '"Anonymous" <sip:anonymous@anonymous.invalid>'


def test_did_of_a_dial_plan_is_refused_clearly_until_plans_run() -> None:
    r = router()
    trunk = r.trunk_for(CARRIER.host)
    assert trunk is not None
    result = r.from_trunk(invite("sip:+493023125200@pbx"), trunk, CARRIER, NOW)
    assert isinstance(result, Rejection) and result.status == 480 and "dial_plan" in (result.warning or "")
    unknown = r.from_trunk(invite("sip:+493099999999@pbx"), trunk, CARRIER, NOW)
    assert isinstance(unknown, Rejection) and unknown.status == 404


def test_outbound_call_uses_the_trunk_the_line_caller_id_and_credentials() -> None:
    r = router()
    result = r.from_line(invite("sip:0891234567@pbx.test"), "201", PHONE, NOW)
    dest = routed(result)
    assert isinstance(result, Routed) and result.info.direction is Direction.OUTBOUND
    assert result.info.callee == "+49891234567" and result.info.trunk == "carrier"
    (branch,) = dest.branches
    assert branch.uri == "sip:+49891234567@198.51.100.7:5080"
    assert branch.peer == Peer("UDP", "198.51.100.7", 5080)
    assert dest.from_address == '"Line 201" <sip:+493023125100@sip.carrier.example>'
    assert dict(dest.headers)["P-Asserted-Identity"] == dest.from_address
    assert dest.credentials == ("acct", "pw")
    # a line without its own caller ID presents the company's first number
    other = routed(r.from_line(invite("sip:0891234567@pbx.test"), "202", PHONE, NOW))
    assert "<sip:+493023125100@" in other.from_address


def test_dialling_permissions_are_enforced_with_403_and_emergency_always_passes() -> None:
    r = router()
    intl = r.from_line(invite("sip:00442079460000@pbx.test"), "201", PHONE, NOW)
    assert isinstance(intl, Rejection) and intl.status == 403 and intl.disposition is Disposition.FORBIDDEN
    assert isinstance(r.from_line(invite("sip:00442079460000@pbx.test"), "203", PHONE, NOW), Routed)
    no_perms = Router(RoutingConfig.build(r.config.company, [line("209", perms=frozenset())], [], [],
                                          r.config.trunks), r.location)
    assert isinstance(no_perms.from_line(invite("sip:112@pbx.test"), "209", PHONE, NOW), Routed)
    assert isinstance(no_perms.from_line(invite("sip:0891234567@pbx.test"), "209", PHONE, NOW), Rejection)


def test_own_did_dialled_by_a_line_stays_inside_and_unknown_numbers_get_404() -> None:
    r = router()
    local = r.from_line(invite("sip:23125100@pbx.test"), "201", PHONE, NOW)  # local form of our DID
    assert isinstance(local, Routed) and local.info.did == "+493023125100"
    garbage = r.from_line(invite("sip:*123#@pbx.test"), "201", PHONE, NOW)
    assert isinstance(garbage, Rejection) and garbage.status == 404
    away = r.from_line(invite("sip:203@pbx.test"), "201", PHONE, NOW)
    assert isinstance(away, Rejection) and away.status == 480


def test_no_outbound_trunk_gives_503() -> None:
    r = router(trunks=())
    result = r.from_line(invite("sip:0891234567@pbx.test"), "201", PHONE, NOW)
    assert isinstance(result, Rejection) and result.status == 503


def test_media_release_needs_caller_and_every_branch_inside_one_allowed_network() -> None:
    inside = router(release=("192.0.2.0/24", "203.0.113.0/24"))
    dest = routed(inside.from_line(invite("sip:202@pbx.test"), "201", PHONE, NOW))
    assert not dest.media_release  # one contact is behind NAT in another network
    everywhere = router(release=("0.0.0.0/0",))
    assert routed(everywhere.from_line(invite("sip:202@pbx.test"), "201", PHONE, NOW)).media_release


def test_branch_peer_rules() -> None:
    b = Binding("1", "sip:1@192.0.2.5:5070", NOW, source=Peer("UDP", "192.0.2.5", 41000))
    assert branch_peer(b) == Peer("UDP", "192.0.2.5", 5070)
    tcp = Binding("1", "sip:1@10.0.0.5;transport=tcp", NOW, source=Peer("TCP", "198.51.100.1", 50000))
    assert branch_peer(tcp) == Peer("TCP", "198.51.100.1", 50000)
    bad = Binding("1", "not a uri", NOW, source=Peer("UDP", "192.0.2.5", 41000))
    assert branch_peer(bad) == Peer("UDP", "192.0.2.5", 41000)


def test_a_trunk_given_by_host_name_is_sent_to_its_resolved_address() -> None:
    named = (Trunk(1, "carrier", ("198.51.100.0/24",), "sip.carrier.test", 5060),)
    base = router(trunks=named)
    unresolved = base.from_line(invite("sip:0891234567@pbx.test"), "201", PHONE, NOW)
    assert isinstance(unresolved, Rejection) and unresolved.status == 503
    cfg = base.config
    resolved = Router(RoutingConfig.build(cfg.company, cfg.lines.values(), [], cfg.numbers.values(), named,
                                          addresses={"sip.carrier.test": "198.51.100.7"}), base.location)
    (branch,) = routed(resolved.from_line(invite("sip:0891234567@pbx.test"), "201", PHONE, NOW)).branches
    assert branch.uri == "sip:+49891234567@sip.carrier.test:5060"
    assert branch.peer == Peer("UDP", "198.51.100.7", 5060)
