"""Pair harness: SIP endpoints on an in-memory datagram link that can drop, delay, duplicate and reorder.

The shared tool for transaction, dialog, registrar and B2BUA tests (STYLE 3.7; h11 ``ConnectionPair``,
aiortc ``loss_pattern``, pjsip's loop transport). Nothing here touches a socket or a clock: ``Network.now``
is a float that only ``run`` advances, to the next datagram arrival or the next endpoint timer, so every
retransmission happens at an exact, predictable time.

Typical use::

    net = Network()
    alice = net.add_endpoint("alice", "10.0.0.1", 5060)
    pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, tu=answer(200))
    net.drop(is_response(200))                      # lose the first 200
    alice.endpoint.send_request(build_request("OPTIONS", "sip:pbx@10.0.0.2"), pbx.peer, net.now)
    net.run(until=40.0)
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from engine.sip.endpoint import EndpointConfig, SipEndpoint
from engine.sip.errors import SipParseError
from engine.sip.events import Event, RequestReceived
from engine.sip.message import Field, Request, Response, make_response
from engine.sip.parser import parse_message
from engine.sip.transaction import Peer, TimerConfig

#: One-way latency of the link. A power of two so that every arrival time is exact in binary floating point.
DEFAULT_LATENCY = 0.125


@dataclass(frozen=True, slots=True)
class Datagram:
    """One datagram on the wire: bytes, source and destination, and when it was sent."""

    data: bytes
    src: Peer
    dst: Peer
    sent_at: float

    def parsed(self) -> Request | Response:
        """The datagram parsed (for assertions and matchers).

        Raises:
            SipParseError: the datagram is not a SIP message.
        """
        return parse_message(self.data)


Match = Callable[[Datagram], bool]
WALL_OFFSET = 1_800_000_000.0


@dataclass(eq=False, slots=True)
class Timer:
    """A transaction-user timer on the network clock (what ``loop.call_at`` returns, minus the loop)."""

    when: float
    callback: Callable[[], object]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(slots=True)
class Rule:
    """Applies to the next ``times`` matching datagrams (None = all): each copy arrives after one of
    ``delays`` (an empty tuple drops the datagram, two delays duplicate it)."""

    match: Match
    delays: tuple[float, ...]
    times: int | None = 1


TU = Callable[["Node", Event], None]


@dataclass(eq=False)
class Node:
    """A SIP endpoint attached to the network at ``host:port``, with its optional transaction user."""

    net: Network
    name: str
    host: str
    port: int
    endpoint: SipEndpoint
    tu: TU | None = None
    events: list[Event] = field(default_factory=list)
    event_times: list[float] = field(default_factory=list)

    @property
    def peer(self) -> Peer:
        """How others address this node (UDP)."""
        return Peer("UDP", self.host, self.port)

    def events_of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]

    def requests(self, method: str | None = None) -> list[RequestReceived]:
        """The RequestReceived events seen so far (optionally of one method)."""
        return [e for e in self.events
                if isinstance(e, RequestReceived) and (method is None or e.request.method == method)]


@dataclass(eq=False)
class RawNode:
    """A bare socket on the network: records what it receives; sends whatever bytes it is given."""

    net: Network
    name: str
    host: str
    port: int
    received: list[Datagram] = field(default_factory=list)

    @property
    def peer(self) -> Peer:
        return Peer("UDP", self.host, self.port)

    def send(self, data: bytes, to: Node | RawNode | Peer) -> None:
        dst = to if isinstance(to, Peer) else to.peer
        self.net.send_raw(data, self.peer, dst)

    def responses(self) -> list[Response]:
        out: list[Response] = []
        for d in self.received:
            msg = d.parsed()
            if isinstance(msg, Response):
                out.append(msg)
        return out


class Network:
    """The in-memory link and the clock. See the module docstring."""

    def __init__(self, latency: float = DEFAULT_LATENCY) -> None:
        self.now = 0.0
        self.latency = latency
        self.nodes: dict[tuple[str, int], Node | RawNode] = {}
        self.rules: list[Rule] = []
        self.sent: list[Datagram] = []  # every datagram put on the wire, in order
        self.delivered: list[tuple[float, Datagram]] = []
        self.dropped: list[Datagram] = []
        self.undeliverable: list[Datagram] = []  # addressed to nobody on the network
        self._queue: list[tuple[float, int, Datagram]] = []
        self._seq = itertools.count()
        self._timers: list[tuple[float, int, Timer]] = []

    # -- a scheduler for transaction users with their own timers (the B2BUA) ---------------------------
    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """``loop.call_at`` on the network's clock: ``callback`` runs when ``run`` reaches ``when``."""
        timer = Timer(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    def time(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL_OFFSET + self.now

    # -- topology --------------------------------------------------------------------------------------
    def add_endpoint(self, name: str, host: str, port: int, *, tu: TU | None = None,
                     via_host: str | None = None, via_port: int | None = None,
                     timers: TimerConfig | None = None, seed: int = 0) -> Node:
        """Attach a SipEndpoint at ``host:port``. ``via_host``/``via_port`` default to the same address (set
        them apart to put the endpoint behind a NAT)."""
        config = EndpointConfig(timers=timers or TimerConfig(), via_host=via_host or host,
                                via_port=via_port or port)
        endpoint = SipEndpoint(config, random_bytes=random.Random(seed).randbytes)
        node = Node(self, name, host, port, endpoint, tu)
        self.nodes[(host, port)] = node
        return node

    def add_raw(self, name: str, host: str, port: int) -> RawNode:
        node = RawNode(self, name, host, port)
        self.nodes[(host, port)] = node
        return node

    def endpoints(self) -> list[Node]:
        return [n for n in self.nodes.values() if isinstance(n, Node)]

    # -- link behaviour --------------------------------------------------------------------------------
    def drop(self, match: Match, times: int | None = 1) -> None:
        """Lose the next ``times`` datagrams that ``match`` (None: all of them)."""
        self.rules.append(Rule(match, (), times))

    def duplicate(self, match: Match, times: int | None = 1, gap: float = 0.0) -> None:
        """Deliver the next matching datagrams twice, the copy ``gap`` seconds after the original."""
        self.rules.append(Rule(match, (self.latency, self.latency + gap), times))

    def delay(self, match: Match, by: float, times: int | None = 1) -> None:
        """Hold the next matching datagrams ``by`` extra seconds (later datagrams overtake them)."""
        self.rules.append(Rule(match, (self.latency + by,), times))

    def _delays(self, d: Datagram) -> tuple[float, ...]:
        for rule in self.rules:
            if rule.times != 0 and rule.match(d):
                if rule.times is not None:
                    rule.times -= 1
                return rule.delays
        return (self.latency,)

    # -- traffic ---------------------------------------------------------------------------------------
    def send_raw(self, data: bytes, src: Peer, dst: Peer) -> None:
        self._schedule(Datagram(data, src, dst, self.now))

    def _schedule(self, d: Datagram) -> None:
        self.sent.append(d)
        delays = self._delays(d)
        if not delays:
            self.dropped.append(d)
        for delay in delays:
            heapq.heappush(self._queue, (self.now + delay, next(self._seq), d))

    def _flush(self) -> None:
        for node in self.endpoints():
            for data, peer in node.endpoint.datagrams_to_send():
                self._schedule(Datagram(data, node.peer, peer, self.now))

    def _drain_events(self) -> bool:
        any_event = False
        for node in self.endpoints():
            while (event := node.endpoint.next_event()) is not None:
                any_event = True
                node.events.append(event)
                node.event_times.append(self.now)
                if node.tu is not None:
                    node.tu(node, event)
        return any_event

    def settle(self) -> None:
        """Hand pending events to the TUs and put pending datagrams on the wire (no time passes)."""
        while True:
            more = self._drain_events()
            self._flush()
            if not more:
                return

    def _deliver(self, d: Datagram) -> None:
        self.delivered.append((self.now, d))
        node = self.nodes.get((d.dst.host, d.dst.port))
        if node is None:
            self.undeliverable.append(d)
        elif isinstance(node, RawNode):
            node.received.append(d)
        else:
            node.endpoint.receive_datagram(d.data, d.src, self.now)

    def next_time(self) -> float | None:
        """When something next happens: a datagram arrives or an endpoint timer is due."""
        times = [self._queue[0][0]] if self._queue else []
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if self._timers:
            times.append(self._timers[0][0])
        for node in self.endpoints():
            t = node.endpoint.get_timer()
            if t is not None:
                times.append(t)
        return min(times) if times else None

    def run(self, until: float) -> None:
        """Advance time to ``until``, delivering datagrams and firing timers at their exact times."""
        self.settle()
        while (t := self.next_time()) is not None and t <= until:
            self.now = max(self.now, t)
            while self._queue and self._queue[0][0] <= self.now:
                _, _, d = heapq.heappop(self._queue)
                self._deliver(d)
                self.settle()
            for node in self.endpoints():
                timer = node.endpoint.get_timer()
                if timer is not None and timer <= self.now:
                    node.endpoint.handle_timer(self.now)
                    self.settle()
            while self._timers and self._timers[0][0] <= self.now:
                _, _, tu_timer = heapq.heappop(self._timers)
                if not tu_timer.cancelled:
                    tu_timer.cancelled = True
                    tu_timer.callback()
                    self.settle()
        self.now = max(self.now, until)

    def pending_timers(self) -> int:
        """Transaction-user timers still armed (a finished call must leave none behind)."""
        return sum(1 for _, _, t in self._timers if not t.cancelled)

    def in_flight(self) -> int:
        return len(self._queue)


# -- matchers -----------------------------------------------------------------------------------------
def _first_line(data: bytes) -> bytes:
    return data.split(b"\r\n", 1)[0]


def is_request(method: str | None = None) -> Match:
    """Matches requests (of ``method``, when given)."""
    def match(d: Datagram) -> bool:
        line = _first_line(d.data)
        if line.startswith(b"SIP/2.0 "):
            return False
        return method is None or line.startswith(method.encode() + b" ")
    return match


def is_response(status: int | None = None, method: str | None = None) -> Match:
    """Matches responses (with ``status`` and for a CSeq ``method``, when given)."""
    def match(d: Datagram) -> bool:
        line = _first_line(d.data)
        if not line.startswith(b"SIP/2.0 "):
            return False
        if status is not None and line[8:11] != str(status).encode():
            return False
        if method is not None:
            try:
                return d.parsed().cseq.method == method
            except SipParseError:
                return False
        return True
    return match


def sent_from(node: Node | RawNode, match: Match | None = None) -> Match:
    return lambda d: (d.src.host, d.src.port) == (node.host, node.port) and (match is None or match(d))


# -- building requests and TUs ------------------------------------------------------------------------
def build_request(method: str, uri: str, *, from_uri: str = "sip:alice@example.com", from_tag: str = "ftag1",
                  to: str | None = None, call_id: str = "call-1@test", cseq: int = 1,
                  extra: Iterable[tuple[str, str]] = (), body: bytes = b"") -> Request:
    """A request without Via (``SipEndpoint.send_request`` adds ours)."""
    req = Request(method, uri)
    req.fields.extend([
        Field("max-forwards", "70"),
        Field("from", f"<{from_uri}>;tag={from_tag}"),
        Field("to", to if to is not None else f"<{uri}>"),
        Field("call-id", call_id),
        Field("cseq", f"{cseq} {method}"),
    ])
    for name, value in extra:
        req.add(name, value)
    req.body = body
    return req


def raw_request(method: str, uri: str = "sip:201@10.0.0.2", *, via: str, from_tag: str = "rtag",
                to_tag: str | None = None, call_id: str = "raw-1@test", cseq: int = 1,
                cseq_method: str | None = None, extra: Iterable[str] = ()) -> bytes:
    """The bytes of a complete request with the given top Via value (for raw injection)."""
    to = "<sip:201@10.0.0.2>" + (f";tag={to_tag}" if to_tag else "")
    lines = [f"{method} {uri} SIP/2.0", f"Via: {via}", "Max-Forwards: 70",
             f"From: <sip:raw@10.0.0.9>;tag={from_tag}", f"To: {to}", f"Call-ID: {call_id}",
             f"CSeq: {cseq} {cseq_method or method}", *extra, "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(status: int, *, provisional: int | None = None) -> TU:
    """A TU that answers every request with a transaction (after an optional provisional response)."""
    def tu(node: Node, event: Event) -> None:
        if isinstance(event, RequestReceived) and event.transaction is not None:
            ep = node.endpoint
            tag, now = ep.new_tag(), node.net.now
            if provisional is not None:
                ep.respond(event.transaction, make_response(event.request, provisional, to_tag=tag), now)
            ep.respond(event.transaction, make_response(event.request, status, to_tag=tag), now)
    return tu
