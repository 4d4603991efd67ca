"""Fuzzing the parser and the endpoint (h11's invariant: "SipParseError or nothing").

Random bytes, SIP-shaped noise and mutations of the torture messages go through ``parse_message``,
``check_request`` and every typed view. The only exception allowed is ``SipParseError``; whatever parses
must serialise and parse again to the same message. The endpoint, fed any sequence of such datagrams,
must never raise at all.
"""

from __future__ import annotations

import contextlib
import gc
import random
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.sip.endpoint import EndpointConfig, SipEndpoint
from engine.sip.errors import SipParseError
from engine.sip.message import Message, Request, make_response
from engine.sip.parser import StreamFramer, parse_message
from engine.sip.sanity import check_request
from engine.sip.transaction import Peer

TORTURE = Path(__file__).resolve().parents[3] / "shared" / "torture"
SUPPORTED = frozenset({"path"})
FUZZ = settings(max_examples=500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def load_corpus() -> list[bytes]:
    messages = TORTURE / "messages"
    return [p.read_bytes() for p in sorted(messages.glob("*.sip"))] if messages.is_dir() else []


CORPUS = load_corpus()


def test_fuzz_corpus_is_present() -> None:
    assert len(CORPUS) == 35, f"the torture corpus is missing or incomplete at {TORTURE}"


def _views(msg: Message) -> list[Callable[[], object]]:
    views: list[Callable[[], object]] = [
        lambda: msg.vias, lambda: msg.top_via, lambda: msg.cseq, lambda: msg.from_, lambda: msg.to,
        lambda: msg.call_id, lambda: msg.addresses("contact"), lambda: msg.addresses("route"),
        lambda: msg.addresses("record-route"), lambda: msg.max_forwards, lambda: msg.expires,
        lambda: msg.tokens("require"), lambda: msg.tokens("supported"), lambda: msg.get_all("via"),
    ]
    if isinstance(msg, Request):
        req = msg
        views += [lambda: req.request_uri, lambda: check_request(req, SUPPORTED)]
    return views


def exercise(data: bytes) -> None:
    """Parse, check, touch every typed view, answer, re-serialise: only SipParseError may escape a step."""
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        assert 400 <= exc.status <= 599
        assert exc.message is None or isinstance(exc.message, Request)
        if exc.message is not None:
            make_response(exc.message, exc.status, exc.reason, to_tag="fz").serialize()
        return
    wire = msg.serialize()
    again = parse_message(wire)
    assert type(again) is type(msg)
    assert again.start_line() == msg.start_line()
    assert [(f.name, f.value) for f in again.fields if f.name != "content-length"] == [
        (f.name, f.value) for f in msg.fields if f.name != "content-length"]
    assert again.body == msg.body
    for view in _views(msg):
        try:
            view()
        except SipParseError as exc:
            assert exc.status in (400, 415, 416, 420, 505)
    if isinstance(msg, Request):
        make_response(msg, 400, to_tag="fz").serialize()
    msg.serialize()


# -- strategies ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    kind: str
    pos: int
    arg: int
    insert: bytes


INSERTS = [b"\r", b"\n", b"\r\n", b"\r\n ", b":", b'"', b"<", b">", b",", b";", b"\\", b" ", b"\t", b"%",
           b"=", b"@", b"[", b"]", b"?", b"\x00", b"\xff"]
METHODS = [b"INVITE", b"ACK", b"CANCEL", b"BYE", b"OPTIONS", b"REGISTER"]

mutations = st.builds(
    Mutation,
    kind=st.sampled_from(["flip", "truncate", "duplicate", "insert", "delete", "method"]),
    pos=st.integers(min_value=0, max_value=1 << 16),
    arg=st.integers(min_value=0, max_value=255),
    insert=st.sampled_from(INSERTS),
)


def mutate(data: bytes, ops: list[Mutation]) -> bytes:
    buf = bytearray(data)
    for op in ops:
        if not buf:
            break
        p = op.pos % len(buf)
        if op.kind == "flip":
            buf[p] = op.arg
        elif op.kind == "truncate":
            del buf[p:]
        elif op.kind == "duplicate":
            buf[p:p] = buf[p : p + 1 + op.arg % 64]
        elif op.kind == "insert":
            buf[p:p] = op.insert
        elif op.kind == "delete":
            del buf[p : p + 1 + op.arg % 64]
        else:
            buf = bytearray(swap_method(bytes(buf), METHODS[op.arg % len(METHODS)]))
    return bytes(buf)


def swap_method(data: bytes, method: bytes | None) -> bytes:
    """The same message with another method everywhere (request line and CSeq): INVITE -> ACK, ..."""
    if method is None:
        return data
    for old in METHODS:
        data = data.replace(old, method)
    return data


corpus_messages = st.sampled_from(CORPUS) if CORPUS else st.just(b"")
mutated = st.builds(mutate, corpus_messages, st.lists(mutations, min_size=1, max_size=4))

_HEADER_NAMES = ["Via", "v", "From", "f", "To", "t", "Call-ID", "i", "CSeq", "Contact", "m", "Route",
                 "Max-Forwards", "Expires", "Require", "Content-Length", "l", "X-Junk"]
_VALUE_ALPHABET = ' \t;:,"<>@=/\\%?[]abcSIP/2.0UDP9z9hG4bKsip.-+*!_~`\'0123456789'
sip_shaped = st.builds(
    lambda start, headers, body: (start + "".join(f"\r\n{n}: {v}" for n, v in headers) + "\r\n\r\n").encode(
        "utf-8", "surrogateescape") + body,
    st.sampled_from(["INVITE sip:a@b SIP/2.0", "ACK sip:a@b SIP/2.0", "SIP/2.0 200 OK",
                     "OPTIONS tel:+1 SIP/2.0", "REGISTER sips:[::1]:5061 SIP/2.0", "X y z", "SIP/2.0 180"]),
    st.lists(st.tuples(st.sampled_from(_HEADER_NAMES), st.text(_VALUE_ALPHABET, max_size=60)), max_size=12),
    st.binary(max_size=40),
)


# -- properties --------------------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    exercise(data)


@FUZZ
@given(mutated)
def test_mutated_torture_messages(data: bytes) -> None:
    exercise(data)


@FUZZ
@given(sip_shaped)
def test_sip_shaped_noise(data: bytes) -> None:
    exercise(data)


def _conversation(base: bytes) -> st.SearchStrategy[list[bytes]]:
    """One message, its retransmissions and variants of it (same branch, other method, damaged...)."""
    # INVITE, ACK and CANCEL weigh more: they are what the transaction matching (§17.2.3) has to sort out.
    method = st.sampled_from([None, None, b"INVITE", b"INVITE", b"ACK", b"ACK", b"CANCEL", *METHODS])
    variant = st.builds(lambda m, ops: mutate(swap_method(base, m), ops), method,
                        st.lists(mutations, max_size=1))
    return st.lists(variant, min_size=1, max_size=6)


conversations = corpus_messages.flatmap(_conversation)


def _known_sequences() -> list[list[bytes]]:
    """Sequences worth trying on every run (random search finds them only now and then)."""
    invites = [m for m in CORPUS if m.startswith(b"INVITE sip:201@127.0.0.1:5060 SIP/2.0\r\nv: ")]
    if not invites:
        return [[b""]]
    invite = invites[0]  # the compact-form INVITE
    return [
        [invite, swap_method(invite, b"ACK")],  # an ACK with the branch of an INVITE still in Proceeding
        [invite, swap_method(invite, b"CANCEL"), swap_method(invite, b"ACK"), invite],
    ]


@settings(max_examples=400, deadline=None, database=None)
@example(datagrams=_known_sequences()[0], rnd=random.Random(0))
@example(datagrams=_known_sequences()[-1], rnd=random.Random(0))
@given(st.one_of(conversations, st.lists(st.one_of(mutated, corpus_messages), min_size=1, max_size=6)),
       st.randoms(use_true_random=False))
def test_endpoint_never_raises_on_any_datagram_sequence(datagrams: list[bytes], rnd: random.Random) -> None:
    """ARCHITECTURE rule 7: nothing a peer sends can crash the process or leak state."""
    ep = SipEndpoint(EndpointConfig(), random_bytes=random.Random(0).randbytes)
    peer = Peer("UDP", "127.0.0.1", 5099)
    now = 0.0
    for data in datagrams:
        now += rnd.choice([0.0, 0.125, 1.0, 40.0])
        ep.receive_datagram(data, peer, now)
        ep.handle_timer(now)
        for out, _ in ep.datagrams_to_send():
            assert out.startswith(b"SIP/2.0 ")  # an endpoint without a TU only ever answers
            parse_message(out)
        while ep.next_event() is not None:
            pass
    timer = ep.get_timer()
    assert timer is None or timer >= now


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.one_of(mutated, corpus_messages), min_size=1, max_size=4), st.data())
def test_stream_framer_only_raises_sip_parse_error(datagrams: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(datagrams)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    framer = StreamFramer()
    try:
        for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            messages, _ = framer.feed(stream[a:b])
            for msg in messages:
                exercise(msg)
    except SipParseError as exc:
        assert exc.status in (400, 513)


# -- adversarial inputs: parsing time must stay linear ------------------------------------------------------


def _cpu(fn: Callable[[], object]) -> float:
    start = time.process_time()
    with contextlib.suppress(SipParseError):
        fn()
    return time.process_time() - start


def _whitespace_bomb(where: str, n: int) -> bytes:
    pad = " " * n + "x"
    lines = {
        "via": f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbomb;rport{pad}",
        "from": f"From: <sip:a@example.com>;tag=1{pad}",
        "contact": f"Contact: <sip:a@192.0.2.1>;expires=60{pad}",
    }
    head = [
        "REGISTER sip:example.com SIP/2.0",
        lines["via"] if where == "via" else "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbomb;rport",
        "Max-Forwards: 70",
        lines["from"] if where == "from" else "From: <sip:a@example.com>;tag=1",
        "To: <sip:a@example.com>", "Call-ID: bomb@x", "CSeq: 1 REGISTER",
        lines["contact"] if where == "contact" else "Contact: <sip:a@192.0.2.1>",
        "Content-Length: 0",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


@pytest.mark.parametrize("where", ["via", "from", "contact"])
def test_whitespace_runs_in_parameters_parse_in_linear_time(where: str) -> None:
    """One UDP datagram must not stall the event loop: a 16 KB run of spaces inside a header's parameters
    (legal LWS, or junk after it) costs microseconds to reject with a linear parser. The budget is CPU time
    and generous (0.25 s); catastrophic regex backtracking takes seconds here (and ~20 s at 64 KB)."""
    data = _whitespace_bomb(where, 16_000)
    ep = SipEndpoint(EndpointConfig(), random_bytes=random.Random(0).randbytes)
    spent = _cpu(lambda: ep.receive_datagram(data, Peer("UDP", "192.0.2.1", 5060), 0.0))
    spent += _cpu(lambda: parse_message(data).addresses("contact"))
    assert spent < 0.25, f"{where}: {spent:.2f} s of CPU for one {len(data)}-byte datagram"


def _big_distinct_request(i: int, size: int) -> bytes:
    filler = f"{i:06d}" + "d" * size
    lines = [
        "OPTIONS sip:201@10.0.0.2 SIP/2.0",
        f"Via: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKbig{i}",
        "Max-Forwards: 70",
        f'From: "{filler}" <sip:a@example.com;x={filler}>;tag=1',
        f"To: <sip:201@10.0.0.2;y={filler}>",
        f"Call-ID: big-{i}@x",
        "CSeq: 1 OPTIONS",
        f"X-{filler}: 1",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_parse_caches_do_not_keep_large_peer_strings() -> None:
    """Memoising the parse of From/To/Contact/Request-URI and header names is fine for the few short strings
    a phone repeats; keeping whatever a peer sends is not. 40 requests of ~45 KB, all dropped after parsing,
    must not leave megabytes behind (at 8192 cache entries that would be gigabytes, from anyone who can send
    a UDP datagram: ARCHITECTURE rule 7)."""
    ep = SipEndpoint(EndpointConfig(), random_bytes=random.Random(0).randbytes)
    peer = Peer("UDP", "10.0.0.9", 5070)
    datagrams = [_big_distinct_request(i, 15_000) for i in range(40)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for data in datagrams:
            ep.receive_datagram(data, peer, 0.0)
            ep.datagrams_to_send()
            while ep.next_event() is not None:
                pass
        ep.handle_timer(1000.0)  # no TU: the OPTIONS transactions stay in Trying; drop them with the endpoint
        del ep
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert retained < 500_000, f"{retained / 1e6:.1f} MB retained after parsing {len(datagrams)} datagrams"
