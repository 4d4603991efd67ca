"""SipApplication (engine.call.app, the transaction user of `pbx serve`) driven in-process: endpoint + app, no
sockets.

Digest responses are computed here from the RFC 7616 formulas with hashlib, independently of engine.sip.auth.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from engine.call.app import SipApplication
from engine.call.b2bua import ALLOW, CallManager
from engine.call.config import CurrentConfig, EngineConfig
from engine.call.routing import RoutingConfig
from engine.clock import FakeClock
from engine.model import Company, Line
from engine.model.cdr import CallRecord, Disposition
from engine.sip.auth import Credentials, DigestAuthenticator, compute_ha1
from engine.sip.endpoint import EndpointConfig, SipEndpoint
from engine.sip.message import Response
from engine.sip.parser import parse_message
from engine.sip.registrar import Location, Registrar
from engine.sip.transaction import Peer
from engine.store.bindings import binding_from_record, binding_record

REALM = "test.pbx"
USERS = {"201": "secret-201", "202": "secret-202"}
PHONE = Peer("UDP", "127.0.0.1", 5099)


class _Timers:
    """Call timers that never fire (these tests end before any ring timeout)."""

    def call_at(self, when: float, callback: Callable[[], object]) -> _Timers:
        return self

    def cancel(self) -> None:
        pass


@dataclass
class Rig:
    clock: FakeClock = field(default_factory=FakeClock)
    endpoint: SipEndpoint = field(
        default_factory=lambda: SipEndpoint(EndpointConfig(), random_bytes=random.Random(7).randbytes))
    location: Location = field(default_factory=Location)
    app: SipApplication | None = None
    seq: int = 0
    cdrs: list[CallRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        creds = {
            u: Credentials(u, REALM, compute_ha1(u, REALM, pw), compute_ha1(u, REALM, pw, "SHA-256"))
            for u, pw in USERS.items()
        }
        auth = DigestAuthenticator(REALM, b"k" * 32, algorithms=("MD5", "SHA-256"), failure_limit=3,
                                   rng=random.Random(3))
        lines = [Line(i, i, u, f"Line {u}", None, c.ha1_md5, c.ha1_sha256) for i, (u, c) in
                 enumerate(creds.items(), 1)]
        config = EngineConfig(1, creds, RoutingConfig.build(Company("Test", REALM), lines, [], [], []))
        calls = CallManager(self.endpoint, _Timers(), lambda: None, None, "127.0.0.1", self.cdrs.append,
                            self.clock)
        self.app = SipApplication(self.endpoint, auth, Registrar(self.location), CurrentConfig(config),
                                  self.clock, None, calls)

    def send(self, text: str, peer: Peer = PHONE) -> Response | None:
        """Feed one request; return the final response sent for it (None when nothing was sent)."""
        assert self.app is not None
        self.endpoint.receive_datagram(text.encode(), peer, self.clock.now())
        while (event := self.endpoint.next_event()) is not None:
            self.app.handle(event, self.clock.now())
        sent = [parse_message(d) for d, _ in self.endpoint.datagrams_to_send()]
        finals = [r for r in sent if isinstance(r, Response) and r.status >= 200]
        return finals[-1] if finals else None

    def request(self, method: str, ruri: str = "sip:test.pbx", *, user: str = "201", extra: str = "",
                cseq: int | None = None, call_id: str = "cid-1") -> str:
        self.seq += 1
        return (
            f"{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-{self.seq};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{user}@test.pbx>;tag=f{self.seq}\r\n"
            f"To: <sip:{user}@test.pbx>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq or self.seq} {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        )


def digest(challenge: str, method: str, uri: str, user: str, password: str, *, nc: int = 1,
           header: str = "Authorization") -> str:
    params = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge))
    algorithm = params.get("algorithm", "MD5")
    h = hashlib.md5 if algorithm == "MD5" else hashlib.sha256
    ha1 = h(f"{user}:{params['realm']}:{password}".encode()).hexdigest()
    ha2 = h(f"{method}:{uri}".encode()).hexdigest()
    ncs, cnonce = f"{nc:08x}", "c0ffee"
    resp = h(f"{ha1}:{params['nonce']}:{ncs}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return (f'{header}: Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
            f'uri="{uri}", response="{resp}", algorithm={algorithm}, cnonce="{cnonce}", qop=auth, nc={ncs}, '
            f'opaque="{params["opaque"]}"\r\n')


def register(rig: Rig, user: str, password: str, contact: str, *, expires: int = 3600,
             call_id: str = "reg-1", cseq: int = 1, algorithm: str = "MD5") -> Response:
    extra = f"Contact: {contact}\r\nExpires: {expires}\r\n" if contact else ""
    first = rig.send(rig.request("REGISTER", user=user, extra=extra, cseq=cseq, call_id=call_id))
    assert first is not None and first.status == 401
    challenges = [f.value for f in first.fields if f.name == "www-authenticate"]
    challenge = next(c for c in challenges if f"algorithm={algorithm}" in c)
    auth = digest(challenge, "REGISTER", "sip:test.pbx", user, password)
    resp = rig.send(rig.request("REGISTER", user=user, extra=extra + auth, cseq=cseq + 1, call_id=call_id))
    assert resp is not None
    return resp


def test_options_answered_with_capabilities() -> None:
    rig = Rig()
    resp = rig.send(rig.request("OPTIONS"))
    assert resp is not None and resp.status == 200
    assert resp.get("allow") == ALLOW
    assert resp.get("accept") == "application/sdp"
    assert "path" in (resp.get("supported") or "")
    assert resp.to.tag  # §8.2.6.2: a To tag on every final response to a request without one


def test_register_challenges_md5_first_then_sha256() -> None:
    rig = Rig()
    resp = rig.send(rig.request("REGISTER", extra="Contact: <sip:201@127.0.0.1:5099>\r\n"))
    assert resp is not None and resp.status == 401
    challenges = [f.value for f in resp.fields if f.name == "www-authenticate"]
    assert [re.search(r"algorithm=([\w-]+)", c).group(1) for c in challenges] == ["MD5", "SHA-256"]  # type: ignore[union-attr]
    assert all(f'realm="{REALM}"' in c and 'qop="auth"' in c for c in challenges)


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_register_binds_contact_and_echoes_it(algorithm: str) -> None:
    rig = Rig()
    resp = register(rig, "201", USERS["201"], "<sip:201@127.0.0.1:5099>", expires=600, algorithm=algorithm)
    assert resp.status == 200
    assert resp.get_all("contact") == ["<sip:201@127.0.0.1:5099>;expires=600"]
    assert resp.get("date")
    bindings = rig.location.lookup("201", rig.clock.wall())
    assert [b.contact for b in bindings] == ["sip:201@127.0.0.1:5099"]
    assert bindings[0].source == PHONE


def test_register_query_and_unregister() -> None:
    rig = Rig()
    assert register(rig, "201", USERS["201"], "<sip:201@127.0.0.1:5099>").status == 200
    query = register(rig, "201", USERS["201"], "", cseq=5)
    assert query.status == 200 and len(query.get_all("contact")) == 1
    gone = register(rig, "201", USERS["201"], "*", expires=0, cseq=9)
    assert gone.status == 200 and gone.get_all("contact") == []
    assert rig.location.lookup("201", rig.clock.wall()) == []


def test_wrong_password_is_challenged_again_then_throttled() -> None:
    rig = Rig()
    statuses = [register(rig, "201", "wrong", "<sip:201@127.0.0.1:5099>", cseq=10 * i + 1).status
                for i in range(3)]
    assert statuses == [401, 401, 401]
    # failure_limit=3 reached: the source is now refused outright, even with the right password.
    blocked = rig.send(rig.request("REGISTER", extra="Contact: <sip:201@127.0.0.1:5099>\r\n"))
    assert blocked is not None and blocked.status == 403
    other = Peer("UDP", "127.0.0.2", 5099)
    fine = rig.send(rig.request("OPTIONS"), other)
    assert fine is not None and fine.status == 200


def _nonce(resp: Response) -> str:
    challenge = next(f.value for f in resp.fields if f.name == "www-authenticate")
    found = re.search(r'nonce="([^"]+)"', challenge)
    assert found is not None
    return found.group(1)


def test_register_without_credentials_is_challenged_statelessly() -> None:
    """§8.2.7: the 401 keeps no transaction; a retransmission is challenged afresh, and either challenge's
    nonce authenticates (nonces are stateless)."""
    rig = Rig()
    contact = "Contact: <sip:201@127.0.0.1:5099>\r\n"
    first_text = rig.request("REGISTER", extra=contact, cseq=1, call_id="reg-s")
    first = rig.send(first_text)
    assert first is not None and first.status == 401
    assert rig.endpoint.transaction_count == 0
    again = rig.send(first_text)  # a retransmission: same branch, same bytes
    assert again is not None and again.status == 401
    assert _nonce(again) != _nonce(first)
    assert rig.endpoint.transaction_count == 0
    auth = digest(next(f.value for f in first.fields if f.name == "www-authenticate"), "REGISTER",
                  "sip:test.pbx", "201", USERS["201"])
    ok = rig.send(rig.request("REGISTER", extra=contact + auth, cseq=2, call_id="reg-s"))
    assert ok is not None and ok.status == 200
    assert rig.endpoint.transaction_count == 1  # the 200 stays in its transaction for retransmissions


def test_retransmitted_wrong_credentials_count_once_for_the_throttle() -> None:
    """A challenge after failed credentials stays in its transaction: the retransmissions get the same
    401 from the transaction and never reach the authenticator (failure_limit=3 here)."""
    rig = Rig()
    contact = "Contact: <sip:201@127.0.0.1:5099>\r\n"
    for i in range(2):
        first = rig.send(rig.request("REGISTER", extra=contact, cseq=10 * i + 1, call_id="reg-w"))
        assert first is not None and first.status == 401
        auth = digest(next(f.value for f in first.fields if f.name == "www-authenticate"), "REGISTER",
                      "sip:test.pbx", "201", "wrong")
        text = rig.request("REGISTER", extra=contact + auth, cseq=10 * i + 2, call_id="reg-w")
        answers = [rig.send(text) for _ in range(4)]
        assert [a.status if a is not None else None for a in answers] == [401] * 4
        assert len({_nonce(a) for a in answers if a is not None}) == 1  # one answer, replayed
    assert register(rig, "201", USERS["201"], "<sip:201@127.0.0.1:5099>", cseq=31).status == 200


def test_user_cannot_register_someone_elses_line() -> None:
    rig = Rig()
    extra = "Contact: <sip:202@127.0.0.1:5099>\r\n"
    first = rig.send(rig.request("REGISTER", user="202", extra=extra))
    assert first is not None
    auth = digest(first.get("www-authenticate") or "", "REGISTER", "sip:test.pbx", "201", USERS["201"])
    resp = rig.send(rig.request("REGISTER", user="202", extra=extra + auth))
    assert resp is not None and resp.status == 403
    assert rig.location.lookup("202", rig.clock.wall()) == []


def test_interval_too_brief() -> None:
    rig = Rig()
    resp = register(rig, "201", USERS["201"], "<sip:201@127.0.0.1:5099>", expires=10)
    assert resp.status == 423 and resp.get("min-expires") == "60"


@pytest.mark.parametrize(("method", "status"), [("MESSAGE", 405), ("PUBLISH", 405), ("FOO", 501),
                                                 ("SUBSCRIBE", 489), ("BYE", 481)])
def test_methods_we_do_not_serve(method: str, status: int) -> None:
    rig = Rig()
    resp = rig.send(rig.request(method))
    assert resp is not None and resp.status == status
    if status in (405, 501):
        assert resp.get("allow") == ALLOW


def test_invite_needs_proxy_auth_and_max_forwards() -> None:
    rig = Rig()
    resp = rig.send(rig.request("INVITE", "sip:202@test.pbx"))
    assert resp is not None and resp.status == 407 and resp.get("proxy-authenticate")
    zero = rig.send(rig.request("INVITE", "sip:202@test.pbx").replace("Max-Forwards: 70", "Max-Forwards: 0"))
    assert zero is not None and zero.status == 483
    challenge = resp.get("proxy-authenticate") or ""
    auth = digest(challenge, "INVITE", "sip:999@test.pbx", "201", USERS["201"], header="Proxy-Authorization")
    unknown = rig.send(rig.request("INVITE", "sip:999@test.pbx", extra=auth))
    assert unknown is not None and unknown.status == 404
    assert [c.disposition for c in rig.cdrs] == [Disposition.NOT_FOUND]


def test_binding_record_round_trip() -> None:
    rig = Rig()
    register(rig, "201", USERS["201"], '<sip:201@127.0.0.1:5099>;+sip.instance="<urn:uuid:1>";reg-id=1')
    (b,) = rig.location.lookup("201", rig.clock.wall())
    back = binding_from_record(binding_record(b))
    assert (back.aor, back.contact, back.expires_at, back.source, back.instance_id, back.reg_id) == (
        b.aor, b.contact, b.expires_at, b.source, "<urn:uuid:1>", 1)


def test_non_ascii_digit_expires_is_a_400_not_a_crash() -> None:
    rig = Rig()
    resp = register(rig, "201", USERS["201"], "<sip:201@127.0.0.1:5099>;expires=\u00b2")
    assert resp.status == 400
    assert rig.endpoint.transaction_count <= 2  # answered: the transactions end with their timers


def test_a_bug_in_the_application_is_answered_500_and_the_transaction_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig()
    assert rig.app is not None

    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setitem(rig.app.methods, "OPTIONS", broken)
    resp = rig.send(rig.request("OPTIONS"))
    assert resp is not None and resp.status == 500
    assert rig.app.internal_errors == 1
    rig.endpoint.handle_timer(rig.clock.now() + 64 * 0.5)
    assert rig.endpoint.transaction_count == 0


class _Untouchable(dict[tuple[str, str], object]):
    """``CallManager.dialogs`` for a test that no lookup may reach."""

    def __contains__(self, key: object) -> bool:
        raise AssertionError(f"the call layer's dialogs were consulted for {key!r}")

    def get(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("the call layer's dialogs were consulted")


def _calls_off_limits(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the rig's call manager raise on any event (and on a dialog lookup); returns the methods of the
    requests it was asked about anyway (none, if the dispatcher is right)."""
    assert rig.app is not None and rig.app.calls is not None
    asked: list[str] = []

    def handle(event: object, now: float) -> bool:
        asked.append(getattr(getattr(event, "request", None), "method", type(event).__name__))
        raise AssertionError("the call manager was consulted")

    monkeypatch.setattr(rig.app.calls, "handle", handle)
    monkeypatch.setattr(rig.app.calls, "dialogs", _Untouchable())
    return asked


def test_a_registration_never_reaches_the_call_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """REGISTER is dispatched by method to the registrar: the call manager is not asked, not even for a
    REGISTER that carries a To tag (RFC 3261 §10.2: a registration belongs to no dialog)."""
    rig = Rig()
    asked = _calls_off_limits(rig, monkeypatch)
    assert register(rig, "201", USERS["201"], "<sip:201@127.0.0.1:5099>").status == 200
    with_tag = rig.request("REGISTER").replace("To: <sip:201@test.pbx>", "To: <sip:201@test.pbx>;tag=x")
    tagged = rig.send(with_tag)
    assert tagged is not None and tagged.status == 401
    assert asked == []
    assert [b.contact for b in rig.location.lookup("201", rig.clock.wall())] == ["sip:201@127.0.0.1:5099"]


def test_out_of_dialog_requests_go_by_method_and_in_dialog_ones_to_the_call_layer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig()
    assert rig.app is not None and rig.app.calls is not None
    calls = rig.app.calls
    asked: list[str] = []
    real = calls.handle

    def spy(event: object, now: float) -> bool:
        asked.append(getattr(getattr(event, "request", None), "method", type(event).__name__))
        return real(event, now)  # type: ignore[arg-type]

    monkeypatch.setattr(calls, "handle", spy)
    for method in ("OPTIONS", "MESSAGE", "FOO", "BYE"):
        assert rig.send(rig.request(method)) is not None  # no To tag: the method table
    assert asked == []
    tagged = {m: rig.send(rig.request(m).replace("To: <sip:201@test.pbx>", "To: <sip:201@test.pbx>;tag=t"))
              for m in ("BYE", "INFO", "OPTIONS")}
    # A BYE or INFO with a To tag is a dialog's: the call layer answers 481 (no such call). An OPTIONS with
    # a To tag but no call's dialog is still ours to answer.
    statuses = {m: r.status for m, r in tagged.items() if r is not None}
    assert statuses == {"BYE": 481, "INFO": 481, "OPTIONS": 200}
    assert asked == ["BYE", "INFO"]
