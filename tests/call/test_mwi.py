"""MWI: message-summary bodies, the SUBSCRIBE/NOTIFY notifier and unsolicited NOTIFY, sans-IO: SIP bytes go
into a real SipEndpoint, what it sends is parsed back; time moves by hand."""

from __future__ import annotations

import random

import pytest

from engine.call.mwi import (
    CONTENT_TYPE,
    MessageSummary,
    MwiBodyError,
    MwiService,
    message_summary_body,
    parse_message_summary,
)
from engine.sip.endpoint import EndpointConfig, SipEndpoint
from engine.sip.events import RequestReceived, ResponseReceived, TransactionTimedOut
from engine.sip.message import Message, Request, Response, make_response
from engine.sip.parser import parse_message
from engine.sip.registrar import Binding, Location
from engine.sip.transaction import Peer

PHONE = Peer("UDP", "192.0.2.10", 5062)
OTHER = Peer("UDP", "192.0.2.11", 5064)
REALM = "pbx.example.com"
WALL = 1_800_000_000.0


def test_body_golden() -> None:
    assert message_summary_body("sip:201@pbx.example.com", 2, 8) == (
        b"Messages-Waiting: yes\r\nMessage-Account: sip:201@pbx.example.com\r\nVoice-Message: 2/8 (0/0)\r\n"
    )
    assert message_summary_body("sip:201@x", 0, 3).startswith(b"Messages-Waiting: no\r\n")


@pytest.mark.parametrize(
    ("body", "summary"),
    [
        (message_summary_body("sip:201@x", 2, 8, 1, 0), MessageSummary(True, "sip:201@x", 2, 8, 1, 0)),
        (b"Messages-Waiting: no\r\n", MessageSummary(False, None, 0, 0)),
        (b"messages-waiting:YES\nvoice-message: 3/0\nfax-message: 1/1\n", MessageSummary(True, None, 3, 0)),
    ],
)
def test_body_parse(body: bytes, summary: MessageSummary) -> None:
    assert parse_message_summary(body) == summary


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"Voice-Message: 1/0\r\n",
        b"Messages-Waiting: maybe\r\n",
        b"Messages-Waiting: yes\r\nVoice-Message: x/1\r\n",
        b"Messages-Waiting: yes\r\nVoice-Message: 1/1 (2)\r\n",
    ],
)
def test_body_parse_errors(body: bytes) -> None:
    with pytest.raises(MwiBodyError):
        parse_message_summary(body)


def test_body_refuses_bad_input() -> None:
    with pytest.raises(MwiBodyError):
        message_summary_body("sip:201@x", -1, 0)
    with pytest.raises(MwiBodyError):
        message_summary_body("sip:201@x\r\nEvil: 1", 1, 0)


# -- the notifier ------------------------------------------------------------------------------------------


class Harness:
    def __init__(self) -> None:
        self.endpoint = SipEndpoint(EndpointConfig(via_host="203.0.113.5", via_port=5060),
                                    random_bytes=random.Random(7).randbytes)
        self.location = Location()
        self.mwi = MwiService(self.endpoint, self.location, REALM, "sip:mwi@203.0.113.5:5060")
        self.now = 100.0
        self.cseq = 0

    def subscribe(
        self,
        *,
        expires: int | None = 3600,
        to_tag: str | None = None,
        user: str = "201",
        event: str = "message-summary",
        peer: Peer = PHONE,
        call_id: str = "sub-1",
        accept: str | None = None,
        ruri_user: str = "201",
    ) -> list[Message]:
        self.cseq += 1
        lines = [
            f"SUBSCRIBE sip:{ruri_user}@{REALM} SIP/2.0",
            f"Via: SIP/2.0/UDP {peer.host}:{peer.port};branch=z9hG4bK-{call_id}-{self.cseq};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{REALM}>;tag=phone-tag",
            f"To: <sip:{ruri_user}@{REALM}>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: {call_id}",
            f"CSeq: {self.cseq} SUBSCRIBE",
            f"Contact: <sip:{user}@{peer.host}:{peer.port}>",
            f"Event: {event}",
        ]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if accept is not None:
            lines.append(f"Accept: {accept}")
        data = ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()
        self.endpoint.receive_datagram(data, peer, self.now)
        event_ = self.endpoint.next_event()
        assert isinstance(event_, RequestReceived) and event_.transaction is not None
        self.mwi.handle_subscribe(event_.request, event_.transaction, user, self.now)
        return self.sent()

    def sent(self) -> list[Message]:
        return [parse_message(data) for data, _ in self.endpoint.datagrams_to_send()]

    def answer(self, notify: Message, status: int = 200) -> bool:
        assert isinstance(notify, Request)
        resp = make_response(notify, status, to_tag=None if notify.to.tag else "phone-x")
        self.endpoint.receive_datagram(resp.serialize(), PHONE, self.now)
        event = self.endpoint.next_event()
        assert isinstance(event, ResponseReceived)
        return self.mwi.handle_event(event)


def notify_summary(msg: Message) -> MessageSummary:
    assert isinstance(msg, Request) and msg.method == "NOTIFY"
    assert msg.get("event") == "message-summary"
    assert msg.get("content-type") == CONTENT_TYPE
    return parse_message_summary(msg.body)


def test_subscribe_gets_200_then_notify_with_counts() -> None:
    h = Harness()
    h.mwi.set_counts("201", 2, 8)
    ok, notify = h.subscribe()
    assert isinstance(ok, Response) and ok.status == 200
    assert ok.get("expires") == "3600" and ok.get("contact") == "<sip:mwi@203.0.113.5:5060>"
    to_tag = ok.to.tag
    assert to_tag
    assert isinstance(notify, Request)
    assert notify.uri == "sip:201@192.0.2.10:5062"  # the subscriber's Contact
    assert notify.from_.tag == to_tag and notify.to.tag == "phone-tag" and notify.call_id == "sub-1"
    assert notify.get("subscription-state") == "active;expires=3600"
    assert notify_summary(notify) == MessageSummary(True, f"sip:201@{REALM}", 2, 8)
    assert h.answer(notify)
    assert [s.mailbox for s in h.mwi.subscriptions()] == ["201"]


def test_count_changes_notify_subscribers_once() -> None:
    h = Harness()
    _, first = h.subscribe()
    assert notify_summary(first).waiting is False
    assert h.answer(first)
    assert h.mwi.notify_counts("201", 1, 0, h.now, WALL) == 1
    (notify,) = h.sent()
    assert notify_summary(notify) == MessageSummary(True, f"sip:201@{REALM}", 1, 0)
    assert isinstance(notify, Request) and notify.cseq.seq == 2
    assert h.mwi.notify_counts("201", 1, 0, h.now, WALL) == 0  # unchanged: nothing sent
    assert h.sent() == []
    assert h.mwi.notify_counts("202", 5, 0, h.now, WALL) == 0  # another mailbox, nobody listening


def test_refresh_and_unsubscribe() -> None:
    h = Harness()
    ok, _ = h.subscribe(expires=600)
    tag = ok.to.tag
    h.now += 500
    ok2, notify = h.subscribe(expires=600, to_tag=tag)
    assert isinstance(ok2, Response) and ok2.status == 200 and ok2.get("expires") == "600"
    assert notify.get("subscription-state") == "active;expires=600"
    assert h.mwi.get_timer() == h.now + 600
    ok3, last = h.subscribe(expires=0, to_tag=tag)
    assert isinstance(ok3, Response) and ok3.status == 200
    assert last.get("subscription-state") == "terminated;reason=timeout"
    assert h.mwi.subscriptions() == [] and h.mwi.get_timer() is None


def test_refresh_of_an_unknown_subscription_is_481() -> None:
    h = Harness()
    (resp,) = h.subscribe(to_tag="nope")
    assert isinstance(resp, Response) and resp.status == 481


def test_fetch_with_expires_0() -> None:
    h = Harness()
    h.mwi.set_counts("201", 1, 1)
    ok, notify = h.subscribe(expires=0)
    assert isinstance(ok, Response) and ok.status == 200
    assert notify.get("subscription-state") == "terminated;reason=timeout"
    assert notify_summary(notify).new == 1
    assert h.mwi.subscriptions() == []


def test_expiry_sends_terminated() -> None:
    h = Harness()
    h.subscribe(expires=120)
    assert h.mwi.get_timer() == 220.0
    h.mwi.handle_timer(219.0)
    assert h.sent() == []
    h.mwi.handle_timer(220.0)
    (notify,) = h.sent()
    assert notify.get("subscription-state") == "terminated;reason=timeout"
    assert h.mwi.subscriptions() == []


@pytest.mark.parametrize(
    ("kwargs", "status", "header"),
    [
        ({"event": "presence"}, 489, ("allow-events", "message-summary")),
        ({"expires": 10}, 423, ("min-expires", "60")),
        ({"ruri_user": "202"}, 403, None),
        ({"accept": "application/pidf+xml"}, 406, ("accept", CONTENT_TYPE)),
    ],
)
def test_refusals(kwargs: dict[str, object], status: int, header: tuple[str, str] | None) -> None:
    h = Harness()
    (resp,) = h.subscribe(**kwargs)  # type: ignore[arg-type]
    assert isinstance(resp, Response) and resp.status == status
    if header is not None:
        assert resp.get(header[0]) == header[1]
    assert h.mwi.subscriptions() == []


def test_event_params_and_long_expires_are_accepted_clamped() -> None:
    h = Harness()
    ok, _ = h.subscribe(event="message-summary;id=1", expires=86400, accept=CONTENT_TYPE)
    assert isinstance(ok, Response) and ok.status == 200 and ok.get("expires") == "7200"


def test_notify_481_ends_the_subscription() -> None:
    h = Harness()
    _, notify = h.subscribe()
    assert h.answer(notify, 481)
    assert h.mwi.subscriptions() == []


def test_notify_timeout_ends_the_subscription() -> None:
    h = Harness()
    h.subscribe()
    h.endpoint.handle_timer(h.now + 64 * 0.5)  # Timer F
    event = h.endpoint.next_event()
    assert isinstance(event, TransactionTimedOut)
    assert h.mwi.handle_event(event)
    assert h.mwi.subscriptions() == []


def test_other_transactions_are_not_ours() -> None:
    h = Harness()
    other = Request("OPTIONS", "sip:x@192.0.2.1")
    for name, value in (
        ("from", "<sip:a@b>;tag=1"),
        ("to", "<sip:x@192.0.2.1>"),
        ("call-id", "c"),
        ("cseq", "1 OPTIONS"),
        ("max-forwards", "70"),
    ):
        other.add(name, value)
    tx = h.endpoint.send_request(other, PHONE, h.now)
    assert not h.mwi.handle_event(TransactionTimedOut(tx))


# -- unsolicited -------------------------------------------------------------------------------------------


def bind(h: Harness, contact: str, source: Peer, path: tuple[str, ...] = ()) -> None:
    h.location.restore(Binding("201", contact, WALL + 600, source=source, path=path))


def test_unsolicited_notify_to_every_registered_contact() -> None:
    h = Harness()
    bind(h, "sip:201@10.0.0.5:5062;transport=udp", PHONE)
    bind(h, "sip:201@10.0.0.6:5064", OTHER, path=("<sip:edge.example.com;lr>",))
    h.location.restore(Binding("201", "sip:201@10.0.0.7", WALL - 1, source=PHONE))  # expired: skipped
    assert h.mwi.notify_counts("201", 1, 3, h.now, WALL) == 2
    sent = h.endpoint.datagrams_to_send()
    assert sorted(peer for _, peer in sent) == sorted([PHONE, OTHER])
    by_uri = {m.uri: m for m in (parse_message(d) for d, _ in sent) if isinstance(m, Request)}
    first = by_uri["sip:201@10.0.0.5:5062;transport=udp"]
    assert first.get("subscription-state") == "terminated"
    assert first.get("allow-events") == "message-summary"
    assert first.to.tag is None and first.from_.tag
    assert first.to.uri.user == "201"
    assert first.get("contact") == "<sip:mwi@203.0.113.5:5060>"  # once in brackets: pjsip drops "<<...>>"
    assert notify_summary(first) == MessageSummary(True, f"sip:201@{REALM}", 1, 3)
    assert by_uri["sip:201@10.0.0.6:5064"].get("route") == "<sip:edge.example.com;lr>"
    resp = make_response(first, 200, to_tag="x")
    h.endpoint.receive_datagram(resp.serialize(), PHONE, h.now)
    event = h.endpoint.next_event()
    assert isinstance(event, ResponseReceived) and h.mwi.handle_event(event)


@pytest.mark.parametrize("contact", ["<sip:mwi@203.0.113.5:5060>", "mwi@203.0.113.5", "sip:mwi@a b", ""])
def test_contact_must_be_a_bare_sip_uri(contact: str) -> None:
    h = Harness()
    with pytest.raises(ValueError, match="bare SIP URI"):
        MwiService(h.endpoint, h.location, REALM, contact)
    with pytest.raises(ValueError, match="bare SIP URI"):
        h.mwi.contact = contact
    assert h.mwi.contact == "sip:mwi@203.0.113.5:5060"


def test_subscribed_device_gets_no_unsolicited_copy() -> None:
    h = Harness()
    bind(h, "sip:201@192.0.2.10:5062", PHONE)
    bind(h, "sip:201@10.0.0.6:5064", OTHER)
    h.subscribe()
    assert h.mwi.notify_counts("201", 1, 0, h.now, WALL) == 2  # in-dialog to PHONE, unsolicited to OTHER
    sent = [(parse_message(d), p) for d, p in h.endpoint.datagrams_to_send()]
    states = sorted((p.host, m.get("subscription-state")) for m, p in sent)
    assert states == [("192.0.2.10", "active;expires=3600"), ("192.0.2.11", "terminated")]


def test_on_registered_only_when_messages_wait() -> None:
    h = Harness()
    bind(h, "sip:201@10.0.0.5", PHONE)
    assert h.mwi.on_registered("201", h.now, WALL) == 0
    h.mwi.set_counts("201", 1, 0)
    assert h.mwi.on_registered("201", h.now, WALL) == 1
    (notify,) = h.sent()
    assert notify_summary(notify).new == 1


# -- the expiry timer: one deadline, moved as subscriptions come, refresh and go ----------------------------


def test_the_timer_follows_every_subscription_change() -> None:
    """get_timer() is always the earliest live expiry: a shorter new subscription moves it earlier, a
    refresh or an unsubscribe of the earliest one moves it later (a stale deadline is never returned)."""
    h = Harness()
    ok_a, _ = h.subscribe(expires=600, call_id="sub-a")  # expires at 700
    assert h.mwi.get_timer() == 700.0
    ok_b, _ = h.subscribe(expires=120, call_id="sub-b")  # 220: earlier
    assert h.mwi.get_timer() == 220.0
    h.now = 200.0
    h.subscribe(expires=900, call_id="sub-b", to_tag=ok_b.to.tag)  # b refreshed to 1100: a (700) is next
    assert h.mwi.get_timer() == 700.0
    h.subscribe(expires=0, call_id="sub-a", to_tag=ok_a.to.tag)  # a unsubscribes: b (1100) is next
    assert h.mwi.get_timer() == 1100.0
    h.sent()
    h.mwi.handle_timer(700.0)  # the old deadline of a (a shell's timer armed earlier fires): nothing ends
    assert h.sent() == [] and len(h.mwi.subscriptions()) == 1


def test_each_subscription_ends_exactly_at_its_deadline() -> None:
    """Time moves by hand to each deadline get_timer() names: every terminated NOTIFY goes out at its
    subscription's expiry, in order, and nothing happens in between."""
    h = Harness()
    for call_id, expires in (("sub-c", 300), ("sub-a", 100), ("sub-b", 200)):
        h.subscribe(expires=expires, call_id=call_id)
    h.sent()
    ended: list[tuple[float, str]] = []
    while (at := h.mwi.get_timer()) is not None:
        h.mwi.handle_timer(at - 0.001)
        assert h.sent() == []  # not a moment early
        h.mwi.handle_timer(at)
        (notify,) = h.sent()
        assert notify.get("subscription-state") == "terminated;reason=timeout"
        ended.append((at, notify.call_id))
    assert ended == [(200.0, "sub-a"), (300.0, "sub-b"), (400.0, "sub-c")]
    assert h.mwi.stats["expired"] == 3


def test_on_the_transport_the_expiry_notify_leaves_at_its_deadline_from_one_armed_timer() -> None:
    """The shell (SipTransport.watch) arms one timer at the subscription's expiry: a phone over real UDP
    subscribes for 1 s and gets the terminated NOTIFY once that second is up, and MWI's handle_timer ran
    exactly once, at the deadline (nothing polls it)."""
    import asyncio

    from engine.clock import LoopClock
    from engine.net.transport import SipTransport
    from engine.sip.events import Event

    async def scenario() -> tuple[list[tuple[float, Message]], list[float], float]:
        loop = asyncio.get_running_loop()
        endpoint = SipEndpoint(EndpointConfig(), random_bytes=random.Random(7).randbytes)
        mwi = MwiService(endpoint, Location(), REALM, "sip:mwi@127.0.0.1:5060", min_expires=1)
        ticks: list[float] = []
        armed: list[float | None] = []  # the deadline as the subscription is taken (read later, it races it)
        handle_timer = mwi.handle_timer

        def spy(now: float) -> None:
            ticks.append(now)
            handle_timer(now)

        mwi.handle_timer = spy  # type: ignore[method-assign]

        def tu(event: Event, now: float) -> None:
            if isinstance(event, RequestReceived) and event.transaction is not None:
                mwi.handle_subscribe(event.request, event.transaction, "201", now)
                armed.append(mwi.get_timer())
            elif isinstance(event, ResponseReceived | TransactionTimedOut):
                mwi.handle_event(event)

        transport = SipTransport(endpoint, tu, LoopClock(loop))
        _, port = await transport.start("127.0.0.1", 0)
        transport.watch(mwi)
        got: asyncio.Queue[tuple[float, Message]] = asyncio.Queue()

        class Phone(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                msg = parse_message(data)
                got.put_nowait((loop.time(), msg))
                if isinstance(msg, Request):  # answer each NOTIFY: no retransmissions in the way
                    phone.sendto(make_response(msg, 200).serialize(), addr)

        phone, _ = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
        here = phone.get_extra_info("sockname")
        try:
            subscribe = (
                f"SUBSCRIBE sip:201@{REALM} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{here[1]};branch=z9hG4bK-expiry;rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:201@{REALM}>;tag=phone-tag\r\nTo: <sip:201@{REALM}>\r\n"
                f"Call-ID: expiry-1\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:201@127.0.0.1:{here[1]}>\r\n"
                "Event: message-summary\r\nExpires: 1\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            phone.sendto(subscribe, ("127.0.0.1", port))
            received = [await asyncio.wait_for(got.get(), 5.0) for _ in range(2)]  # the 200, the NOTIFY
            (deadline,) = armed
            assert deadline is not None
            received.append(await asyncio.wait_for(got.get(), 5.0))  # the terminated NOTIFY
            return received, ticks, deadline
        finally:
            phone.close()
            await transport.stop()

    received, ticks, deadline = asyncio.run(scenario())
    (_, ok), (_, first), (at, last) = received
    assert isinstance(ok, Response) and ok.status == 200
    assert first.get("subscription-state") == "active;expires=1"
    assert last.get("subscription-state") == "terminated;reason=timeout"
    assert at >= deadline
    assert len(ticks) == 1 and ticks[0] >= deadline
