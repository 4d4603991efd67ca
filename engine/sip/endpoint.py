"""SipEndpoint: the sans-IO facade over parsing, sanity checks, transactions and stateless answers.

The aioquic shape (STYLE 3.1): the shell calls ``receive_datagram(data, peer, now)``, then drains
``next_event()`` and ``datagrams_to_send()``, and keeps one timer armed at ``get_timer()`` that calls
``handle_timer(now)``. The endpoint matches requests and responses to transactions (§17.1.3, §17.2.3, with
the RFC 2543 fallback), absorbs retransmissions, answers CANCEL, applies RFC 3581 ``received``/``rport``,
and answers malformed requests statelessly with the status their ``SipParseError`` carries (never an ACK,
never a response).

Identifiers (tags, branches, and the Call-IDs the TUs build from tags) are "cryptographically random"
(RFC 3261 §19.3, §8.1.1.7): they come from ``secrets.token_bytes`` (the OS CSPRNG) unless a test injects
another byte source, never from the ``random`` module, whose output an observer can predict.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from engine.sip.errors import SipParseError
from engine.sip.events import CancelReceived, Event, RequestReceived, ResponseReceived
from engine.sip.guard import SourceGuard, is_scanner
from engine.sip.headers import Via
from engine.sip.message import Field, Message, Request, Response, make_response
from engine.sip.parser import parse_message
from engine.sip.sanity import check_request
from engine.sip.transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ClientTransaction,
    Peer,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ServerTransaction,
    TimerConfig,
    Transaction,
    TransactionState,
)

logger = logging.getLogger(__name__)

MAGIC_COOKIE: Final = "z9hG4bK"  # RFC 3261 §8.1.1.7
_LOGGED_ERRORS_MAX: Final = 50
_ADDRESS_HEADERS: Final = frozenset({"from", "to", "call-id", "cseq"})


_LENGTH_FRAMED: Final = frozenset({"TCP", "TLS"})  # streams cut into messages by Content-Length (§18.3)


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """Settings of one endpoint. ``via_host``/``via_port`` are what we write in our own Via headers (UDP and
    TCP); ``tls_port``, ``ws_port`` and ``wss_port`` are those of the other listeners, written in Via and
    Contact for their peers."""

    timers: TimerConfig = field(default_factory=TimerConfig)
    supported: frozenset[str] = frozenset({"path", "timer"})  # RFC 3327 (registrar), RFC 4028 (calls)
    via_host: str = "127.0.0.1"
    via_port: int = 5060
    server_header: str = "pbx-engine"
    tls_port: int = 5061
    ws_port: int = 80  # RFC 7118 §7: WS and WSS use HTTP's default ports unless listening elsewhere
    wss_port: int = 443

    def port_for(self, transport: str) -> int:
        """Our listening port for ``transport`` (UDP/TCP share one; TLS, WS and WSS have their own)."""
        if transport == "TLS":
            return self.tls_port
        if transport == "WS":
            return self.ws_port
        if transport == "WSS":
            return self.wss_port
        return self.via_port


@dataclass(frozen=True, slots=True)
class LoadLimits:
    """What peers may grow in the endpoint, and when new work is shed (issue 18 part 3).

    Attributes:
        max_transactions: server transactions alive at once. A completed one lives for Timer J/I (32 s over
            UDP) to absorb retransmissions, so the table holds about that many seconds of requests; when it
            is full, every new request but ACK and CANCEL is answered 503 statelessly (nothing is stored)
            until Timer J frees entries: the eviction is their expiry.
        max_calls: calls in progress (the ``call_count`` probe); beyond it a new INVITE (no To tag) gets 503.
            0: no cap.
        retry_after_s: the Retry-After of every 503 sent for load (RFC 3261 §21.5.4).
    """

    max_transactions: int = 200_000
    max_calls: int = 0
    retry_after_s: int = 5


#: the requests that start new work and are shed under load (out of a dialog: no To tag)
_SHED_METHODS: Final = frozenset({"INVITE", "REGISTER"})


class SipEndpoint:
    """One SIP endpoint (all transports) as a pure state machine. See the module docstring.

    Args:
        config: the endpoint's settings.
        random_bytes: n -> n random bytes, the source of tags, branches and SDP session ids: the OS CSPRNG
            by default; a test that wants repeatable identifiers passes ``random.Random(seed).randbytes``.
    """

    def __init__(self, config: EndpointConfig, *,
                 random_bytes: Callable[[int], bytes] = secrets.token_bytes,
                 guard: SourceGuard | None = None, limits: LoadLimits | None = None,
                 call_count: Callable[[], int] | None = None) -> None:
        self.config = config
        #: caps and load shedding (``LoadLimits``); ``call_count`` says how many calls are in progress
        self.limits = limits or LoadLimits()
        self.call_count = call_count
        #: set by the shell while the engine is saturated (engine.net.overload): new INVITEs and
        #: REGISTERs get 503 with Retry-After; in-dialog requests, ACK, CANCEL and responses are served
        self.overloaded = False
        #: the flood and scanner guard (``engine.sip.guard``); None serves every source
        self.guard = guard
        self._random_bytes = random_bytes
        self._server: dict[tuple[str, ...], ServerTransaction] = {}
        self._client: dict[tuple[str, ...], ClientTransaction] = {}
        self._events: deque[Event] = deque()
        self._out: list[tuple[bytes, Peer]] = []
        self._heap: list[tuple[float, int, Transaction]] = []
        self._seq = itertools.count()
        self.stats: dict[str, int] = {
            "requests": 0, "responses": 0, "parse_errors": 0, "stateless_answers": 0, "dropped": 0,
            "retransmissions_absorbed": 0, "transport_errors": 0,
            "shed_overload": 0, "shed_calls": 0, "refused_table_full": 0,
        }

    # -- identifiers -------------------------------------------------------------------------------
    def new_tag(self) -> str:
        """A From/To tag (§19.3: cryptographically random, at least 32 bits): 64 bits as 16 hex digits."""
        return self._random_bytes(8).hex()

    def new_session_id(self) -> int:
        """A random SDP session id (RFC 4566 §5.2: a numeric string; 62 bits keep it a positive int64)."""
        return int.from_bytes(self._random_bytes(8), "big") >> 2

    def new_branch(self) -> str:
        """A Via branch (§8.1.1.7: unique across space and time): the magic cookie and 80 random bits."""
        return MAGIC_COOKIE + self._random_bytes(10).hex()

    # -- TransactionHost ---------------------------------------------------------------------------
    def transmit(self, data: bytes, peer: Peer) -> None:
        self._out.append((data, peer))

    def deliver(self, event: Event) -> None:
        self._events.append(event)

    def reschedule(self, tx: Transaction) -> None:
        if tx.deadline is not None:
            heapq.heappush(self._heap, (tx.deadline, next(self._seq), tx))

    def forget(self, tx: Transaction) -> None:
        if isinstance(tx, ServerTransaction):
            if self._server.get(tx.key) is tx:
                del self._server[tx.key]
        elif self._client.get(tx.key) is tx:
            del self._client[tx.key]

    # -- inputs ------------------------------------------------------------------------------------
    def receive_datagram(self, data: bytes, peer: Peer, now: float) -> None:
        """Feed one datagram (or one framed stream message) received from ``peer``."""
        guard = self.guard
        if guard is not None and not guard.admit(peer.host, now):
            return  # over its rate or banned: dropped unparsed (counted by the guard)
        if not data.strip(b"\r\n \t"):
            return  # RFC 5626 keep-alive: no answer over UDP
        try:
            # RFC 7118 §5.1: a WebSocket message is one SIP message, so there Content-Length may be left out
            msg = parse_message(data, stream=peer.transport in _LENGTH_FRAMED)
            if isinstance(msg, Request):
                if guard is not None and is_scanner(msg.get("user-agent")):
                    self._on_scanner(msg, peer, now)
                    return
                check_request(msg, self.config.supported)
        except SipParseError as exc:
            self._on_parse_error(exc, data, peer)
            return
        if isinstance(msg, Request):
            self.stats["requests"] += 1
            self._on_request(msg, peer, now)
        else:
            self.stats["responses"] += 1
            self._on_response(msg, now)

    def handle_timer(self, now: float) -> None:
        """Fire every transaction timer due at ``now``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, tx = heapq.heappop(heap)
            if tx.deadline == at and tx.state is not TransactionState.TERMINATED:
                tx.handle_timer(now)

    def transport_error(self, data: bytes, peer: Peer, now: float) -> None:
        """The transport could not send ``data`` (one item of ``datagrams_to_send``) to ``peer``: a TCP
        connect was refused or timed out, or the connection closed before the bytes could be written.

        RFC 3261 §17.1.4: the client transaction that sent the request ends at once, and its TU gets
        ``TransactionTimedOut(transport_error=True)``, which it treats as a 503 (§8.1.3.1; the event's
        ``status``) instead of waiting 32 s for Timer B or F. Anything else is only counted: an ACK or a
        request whose transaction already has its final response, and responses (for which the
        transport has already tried the §18.2.2 fallback to the top Via's sent-by).
        """
        self.stats["transport_errors"] += 1
        if data.startswith(b"SIP/2.0 "):
            return
        try:
            msg = parse_message(data, stream=True)
            branch = msg.top_via.branch
        except SipParseError:
            return
        if not isinstance(msg, Request) or msg.method == "ACK" or branch is None:
            return
        tx = self._client.get((branch, msg.method))
        if tx is not None and tx.state in (TransactionState.CALLING, TransactionState.TRYING,
                                           TransactionState.PROCEEDING):
            tx.transport_error(now)

    # -- outputs -----------------------------------------------------------------------------------
    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap:
            at, _, tx = heap[0]
            if tx.deadline == at and tx.state is not TransactionState.TERMINATED:
                return at
            heapq.heappop(heap)
        return None

    # -- TU actions --------------------------------------------------------------------------------
    def respond(self, tx: ServerTransaction, response: Response, now: float) -> None:
        """Send ``response`` through ``tx``.

        Raises:
            LocalProtocolError: the transaction cannot send it (e.g. a second final response).
        """
        response.fields.append(Field("server", self.config.server_header))
        tx.respond(response, now)

    def respond_stateless(self, tx: ServerTransaction, response: Response, now: float) -> None:
        """Send the final ``response`` to a new non-INVITE request and forget ``tx`` at once (RFC 3261
        §8.2.7: a UAS may answer statelessly). A retransmission of the request is then a new request: the TU
        sees it again and answers it again. Half the transactions of a registration are its 401 challenge.

        Raises:
            LocalProtocolError: ``tx`` is not a non-INVITE transaction still in Trying, or ``response`` is
                provisional.
        """
        response.fields.append(Field("server", self.config.server_header))
        tx.respond(response, now, stateless=True)

    def send_request(self, request: Request, peer: Peer, now: float) -> ClientTransaction:
        """Start a client transaction: add our Via (new branch, rport) and send to ``peer``."""
        branch = self.new_branch()
        sent_by = f"{self.config.via_host}:{self.config.port_for(peer.transport)}"
        request.add("via", f"SIP/2.0/{peer.transport} {sent_by};branch={branch};rport", first=True)
        key = (branch, request.method)
        tx: ClientTransaction
        if request.method == "INVITE":
            tx = ClientInviteTransaction(request, key, peer, self, self.config.timers)
        else:
            tx = ClientNonInviteTransaction(request, key, peer, self, self.config.timers)
        self._client[key] = tx
        tx.start(now)
        return tx

    def send_ack(self, ack: Request, peer: Peer) -> bytes:
        """Send the ACK for a 2xx (§13.2.2.4): its own Via branch, no transaction. Returns the bytes sent,
        which the dialog user resends for each retransmission of that 2xx."""
        sent_by = f"{self.config.via_host}:{self.config.port_for(peer.transport)}"
        ack.add("via", f"SIP/2.0/{peer.transport} {sent_by};branch={self.new_branch()};rport", first=True)
        data = ack.serialize()
        self._out.append((data, peer))
        return data

    def cancel(self, tx: ClientTransaction, now: float,
               reason: str | None = None) -> ClientTransaction | None:
        """§9.1: CANCEL the pending INVITE of ``tx``; None when there is nothing to cancel (no provisional
        response yet is fine: the CANCEL still goes out; a final response already received is not).

        The CANCEL has the INVITE's Request-URI, Call-ID, To, From, CSeq number, Route set and top Via
        (same branch), and is a client transaction of its own.
        """
        if not isinstance(tx, ClientInviteTransaction) or tx.state not in (
                TransactionState.CALLING, TransactionState.PROCEEDING):
            return None
        invite = tx.request
        cancel = Request("CANCEL", invite.uri)
        fields = cancel.fields
        for f in invite.fields:
            if f.name == "via":
                fields.append(Field("via", f.value, f.raw))
                break
        fields.append(Field("max-forwards", "70"))
        for f in invite.fields:
            if f.name in ("route", "from", "to", "call-id"):
                fields.append(Field(f.name, f.value, f.raw))
        fields.append(Field("cseq", f"{invite.cseq.seq} CANCEL"))
        if reason is not None:
            fields.append(Field("reason", reason))  # RFC 3326, e.g. "call completed elsewhere"
        key = (tx.key[0], "CANCEL")
        ctx = ClientNonInviteTransaction(cancel, key, tx.peer, self, self.config.timers)
        self._client[key] = ctx
        ctx.start(now)
        return ctx

    def abandon(self, tx: ClientTransaction) -> None:
        """Forget a client INVITE transaction whose CANCEL got no final response within 64*T1 (§9.1)."""
        tx.state = TransactionState.TERMINATED
        tx.deadline = None
        self.forget(tx)

    def send_raw(self, data: bytes, peer: Peer) -> None:
        """Send bytes built earlier (a 2xx or an ACK being retransmitted by its dialog user)."""
        self._out.append((data, peer))

    def send_stateless(self, message: Message, peer: Peer) -> None:
        """Send without a transaction (ACK for 2xx, stateless replies)."""
        self._out.append((message.serialize(), peer))

    @property
    def transaction_count(self) -> int:
        return len(self._server) + len(self._client)

    # -- internals ---------------------------------------------------------------------------------
    def _on_scanner(self, msg: Request, peer: Peer, now: float) -> None:
        """A scanner's request: no answer (a scanner learns from every answer, 404 or 401 alike), and its
        source is banned."""
        guard = self.guard
        assert guard is not None
        if guard.scanner(peer.host, now):
            logger.warning("%s banned for %.0f s: scanner User-Agent %r (%s)", peer.host, guard.config.ban_s,
                           msg.get("user-agent"), msg.method)

    def _on_parse_error(self, exc: SipParseError, data: bytes, peer: Peer) -> None:
        self.stats["parse_errors"] += 1
        if self.stats["parse_errors"] <= _LOGGED_ERRORS_MAX:
            logger.info("x %s:%d %d %s: %r", peer.host, peer.port, exc.status, exc.reason, data[:100])
        msg = exc.message
        if not isinstance(msg, Request) or msg.method == "ACK":
            self.stats["dropped"] += 1
            return
        # §8.2: answer statelessly. A request whose Via cannot be parsed goes back to where it came from.
        try:
            stamp_via(msg, peer)
            dest = response_peer(msg, peer)
        except SipParseError:
            dest = peer
        # A duplicated To/From/Call-ID/CSeq: the answer copies the first only, or it would be as malformed
        # as the request.
        seen: set[str] = set()
        kept = []
        for f in msg.fields:
            if f.name in _ADDRESS_HEADERS:
                if f.name in seen:
                    continue
                seen.add(f.name)
            kept.append(f)
        msg.fields = kept
        resp = make_response(msg, exc.status, exc.reason, to_tag=self.new_tag())
        for name, value in exc.extra_headers:
            resp.fields.append(Field(name.lower(), value))
        resp.fields.append(Field("server", self.config.server_header))
        self.stats["stateless_answers"] += 1
        self._out.append((resp.serialize(), dest))

    def _on_request(self, req: Request, peer: Peer, now: float) -> None:
        via = stamp_via(req, peer)
        key = server_key(req, via.branch, via.sent_by)
        tx = self._server.get(key)
        if tx is not None:
            self.stats["retransmissions_absorbed"] += 1
            tx.receive_request(req, now)
            return
        dest = response_peer(req, peer)
        method = req.method
        if method == "ACK":
            self._events.append(RequestReceived(req, None, dest))
            return
        if method == "CANCEL":
            self._on_cancel(req, key, dest, now)
            return
        if len(self._server) >= self.limits.max_transactions:
            self.stats["refused_table_full"] += 1
            self._refuse(req, dest, "transaction table full")
            return
        if method in _SHED_METHODS and (self.overloaded or method == "INVITE") and req.to.tag is None:
            shed = self._shed_reason(method)
            if shed is not None:
                self._refuse(req, dest, shed, key=key, now=now)
                return
        if method == "INVITE":
            stx: ServerTransaction = ServerInviteTransaction(req, key, dest, self, self.config.timers)
            self._server[key] = stx
            self.respond(stx, make_response(req, 100), now)  # §17.2.1: Trying at once, absorbs retransmits
        else:
            stx = ServerNonInviteTransaction(req, key, dest, self, self.config.timers)
            self._server[key] = stx
        self._events.append(RequestReceived(req, stx, dest))

    def _shed_reason(self, method: str) -> str | None:
        """Why a new INVITE or REGISTER out of a dialog is refused now, or None to serve it."""
        if self.overloaded:
            self.stats["shed_overload"] += 1
            return "overloaded"
        limit = self.limits.max_calls
        if method == "INVITE" and limit > 0 and self.call_count is not None and self.call_count() >= limit:
            self.stats["shed_calls"] += 1
            return "too many calls"
        return None

    def _refuse(self, req: Request, dest: Peer, why: str, *, key: tuple[str, ...] | None = None,
                now: float = 0.0) -> None:
        """503 with Retry-After for load. With ``key`` an INVITE gets a transaction of its own (it absorbs
        the retransmissions and the ACK); without one (the table is full) the answer is stateless."""
        resp = make_response(req, 503, f"Service Unavailable ({why})", to_tag=self.new_tag())
        resp.fields.append(Field("retry-after", str(self.limits.retry_after_s)))
        if key is None:
            resp.fields.append(Field("server", self.config.server_header))
            self._out.append((resp.serialize(), dest))
            return
        stx: ServerTransaction
        if req.method == "INVITE":
            stx = ServerInviteTransaction(req, key, dest, self, self.config.timers)
            self._server[key] = stx
            self.respond(stx, resp, now)
        else:
            stx = ServerNonInviteTransaction(req, key, dest, self, self.config.timers)
            self._server[key] = stx
            self.respond_stateless(stx, resp, now)

    def _on_cancel(self, req: Request, key: tuple[str, ...], dest: Peer, now: float) -> None:
        tx = ServerNonInviteTransaction(req, key, dest, self, self.config.timers)
        self._server[key] = tx
        invite_key = (*key[:-1], "INVITE")
        invite_tx = self._server.get(invite_key)
        # §9.2: a CANCEL that matches an INVITE transaction is answered 200 by the UAS itself; it only has an
        # effect while no final response was sent (Proceeding). One that matches nothing gets 481.
        if not isinstance(invite_tx, ServerInviteTransaction):
            self.respond(tx, make_response(req, 481, to_tag=self.new_tag()), now)
            return
        self.respond(tx, make_response(req, 200, to_tag=self.new_tag()), now)
        if invite_tx.state is TransactionState.PROCEEDING and not invite_tx.cancelled:
            invite_tx.cancelled = True
            self._events.append(CancelReceived(req, invite_tx))

    def _on_response(self, resp: Response, now: float) -> None:
        try:
            via = resp.top_via
            method = resp.cseq.method
        except SipParseError:
            self.stats["dropped"] += 1
            return
        tx = self._client.get((via.branch or "", method))
        if tx is not None:
            tx.receive_response(resp, now)
        elif method == "INVITE" and 200 <= resp.status < 300:
            self._events.append(ResponseReceived(resp, None))  # a late 2xx: the dialog layer ACKs it
        else:
            self.stats["dropped"] += 1


def stamp_via(req: Request, peer: Peer) -> Via:
    """RFC 3261 §18.2.1 / RFC 3581 §4: note in the top Via where the request really came from
    (``received`` when the address differs, ``rport`` filled in when asked for). Returns the top Via.

    Raises:
        SipParseError: the top Via is missing or malformed.
    """
    via = req.top_via
    if via.host != peer.host or ("rport" in via.params and via.params["rport"] is None):
        via.params["received"] = peer.host
        if "rport" in via.params:
            via.params["rport"] = str(peer.port)
        req.set_top_via(via)
    return via


def server_key(req: Request, branch: str | None, sent_by: str) -> tuple[str, ...]:
    """§17.2.3 transaction key; an ACK maps to its INVITE's transaction.

    With the RFC 3261 magic cookie: (branch, sent-by, method). Without it (RFC 2543 peers): Request-URI,
    From tag, Call-ID, CSeq number, top Via sent-by and method (the To tag is left out so that the ACK for
    a non-2xx final, which carries our To tag, finds the INVITE's transaction).
    """
    method = "INVITE" if req.method == "ACK" else req.method
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return (branch, sent_by, method)
    return ("2543", req.uri, req.from_.tag or "", req.call_id, str(req.cseq.seq), sent_by, method)


def response_peer(req: Request, source: Peer) -> Peer:
    """Where responses to ``req`` go (§18.2.2 with RFC 3581).

    Over a reliable transport: back over the connection the request came on. Over UDP: to the source
    address (``received``), and to the source port when the client asked for ``rport``, else to the Via
    port (default 5060).

    Raises:
        SipParseError: the top Via is missing or malformed.
    """
    if source.reliable:
        return source
    via = req.top_via
    if "rport" in via.params:
        return source
    return Peer(source.transport, source.host, via.port or 5060)
