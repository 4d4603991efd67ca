"""RFC 3261 §17 transactions: client/server INVITE and non-INVITE, as (state, input) transition tables.

Each transaction is a small state machine whose timers are deadlines stored on the object; the owning
``TransactionHost`` (the endpoint) transmits what it asks for, delivers what it passes up, and re-arms a
single timer from ``deadline``. Nothing here reads a clock or touches a socket: ``now`` is an argument.

The INVITE server and client transactions include RFC 6026's Accepted state (Timers L and M): after a 2xx
the transaction stays to absorb retransmitted INVITEs (server) and to pass retransmitted 2xx responses to
the TU (client), instead of being destroyed at once as RFC 3261 first said.

Every (state, input) pair a transaction can meet is in its table. A missing pair is our own misuse (for
example the TU answering twice) and raises ``LocalProtocolError``; remote inputs that must be ignored in a
state (a late response, a retransmission) are listed explicitly with no handler.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final, NamedTuple, Protocol

from engine.sip.errors import LocalProtocolError
from engine.sip.message import Field, Request, Response
from engine.sip.parser import parse_message

if TYPE_CHECKING:
    from engine.sip.events import Event

logger = logging.getLogger(__name__)

T1: Final = 0.5  # RFC 3261 §17.1.1.1: RTT estimate
T2: Final = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
T4: Final = 5.0  # maximum duration a message remains in the network


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """T1/T2/T4 (§17.1.1.1, Table 4); every other timer derives from them."""

    t1: float = T1
    t2: float = T2
    t4: float = T4

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J (unreliable), L and M."""
        return 64 * self.t1


class Peer(NamedTuple):
    """Where a message came from or goes to: transport (UDP/TCP/...), host and port."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"


class TransactionState(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class TransactionInput(enum.Enum):
    # from the TU (local)
    SEND_1XX = "send 1xx"
    SEND_2XX = "send 2xx"
    SEND_FINAL = "send 3xx-6xx"  # for non-INVITE: any final 2xx-6xx
    SEND_STATELESS = "send final statelessly"  # non-INVITE only: answer once, keep no state (§8.2.7)
    # from the network (remote)
    RECV_REQUEST = "request retransmission"
    RECV_ACK = "ACK"
    RECV_1XX = "1xx"
    RECV_2XX = "2xx"
    RECV_FINAL = "3xx-6xx"  # for non-INVITE: any final 2xx-6xx
    TRANSPORT_ERROR = "transport error"
    # timers
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"


class TransactionHost(Protocol):
    """What a transaction needs from its owner (the endpoint): the seam that keeps it sans-IO."""

    def transmit(self, data: bytes, peer: Peer) -> None: ...

    def deliver(self, event: Event) -> None: ...

    def reschedule(self, tx: Transaction) -> None: ...

    def forget(self, tx: Transaction) -> None: ...


S = TransactionState
I = TransactionInput  # noqa: E741 - the tables read better with a one-letter alias
Handler = Callable[["Transaction", float], None]
Table = dict[tuple[TransactionState, TransactionInput], tuple[str | None, TransactionState]]
_TIMER_INPUTS: Final = {
    "a": I.TIMER_A, "b": I.TIMER_B, "d": I.TIMER_D, "e": I.TIMER_E, "f": I.TIMER_F, "g": I.TIMER_G,
    "h": I.TIMER_H, "i": I.TIMER_I, "j": I.TIMER_J, "k": I.TIMER_K, "l": I.TIMER_L, "m": I.TIMER_M,
}


class Transaction:
    """Common machinery: the table walk, timers as deadlines, state logging."""

    TABLE: ClassVar[Table] = {}
    __slots__ = ("_timers", "config", "deadline", "host", "key", "peer", "state")

    def __init__(self, key: tuple[str, ...], peer: Peer, host: TransactionHost, config: TimerConfig,
                 state: TransactionState) -> None:
        self.key = key
        self.peer = peer
        self.host = host
        self.config = config
        self.state = state
        self._timers: dict[str, float] = {}
        self.deadline: float | None = None

    @property
    def reliable(self) -> bool:
        return self.peer.reliable

    def _input(self, inp: TransactionInput, now: float) -> None:
        try:
            handler, new_state = self.TABLE[(self.state, inp)]
        except KeyError:
            raise LocalProtocolError(
                f"{type(self).__name__}: input {inp.value!r} not allowed in state {self.state.value}"
            ) from None
        old = self.state
        self.state = new_state
        if handler is not None:
            getattr(self, handler)(now)
        if new_state is not old:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s %s: %s -> %s", type(self).__name__, self.key[0], old.value, new_state.value)
            if new_state is S.TERMINATED:
                self._timers.clear()
                self.deadline = None
                self.host.forget(self)

    def _arm(self, name: str, at: float) -> None:
        self._timers[name] = at
        self._update_deadline()

    def _disarm(self, *names: str) -> None:
        for name in names:
            self._timers.pop(name, None)
        self._update_deadline()

    def _update_deadline(self) -> None:
        new = min(self._timers.values()) if self._timers else None
        if new != self.deadline:
            self.deadline = new
            if new is not None:
                self.host.reschedule(self)

    def timer_deadlines(self) -> dict[str, float]:
        """The armed timers by letter (for tests and traces)."""
        return dict(self._timers)

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now`` (earliest first)."""
        while self._timers and self.state is not S.TERMINATED:
            name, at = min(self._timers.items(), key=lambda item: item[1])
            if at > now:
                break
            del self._timers[name]
            self._input(_TIMER_INPUTS[name], now)
        self._update_deadline()

    def transport_error(self, now: float) -> None:
        """§17.1.4 / §17.2.4: the transport reported a failure sending to ``peer``."""
        self._input(I.TRANSPORT_ERROR, now)

    def _terminated_by_error(self, now: float) -> None:
        from engine.sip.events import TransactionTimedOut

        self.host.deliver(TransactionTimedOut(self, transport_error=True))


# ---------------------------------------------------------------------------------------------------
# Server transactions (§17.2)


class ServerTransaction(Transaction):
    """A server transaction keeps the request until its final response, then only that response's bytes.

    Completed transactions live on for Timer J/H/L (32 s over UDP) only to replay their answer; at thousands
    of requests a second, keeping each parsed request (dozens of objects) that long costs the cyclic garbage
    collector full sweeps over millions of objects, which stall the loop. So ``request`` becomes None once
    the final response is sent.
    """

    __slots__ = ("_last", "method", "request")

    def __init__(self, request: Request, key: tuple[str, ...], peer: Peer, host: TransactionHost,
                 config: TimerConfig, state: TransactionState) -> None:
        super().__init__(key, peer, host, config, state)
        self.request: Request | None = request
        self.method = request.method
        self._last: bytes | None = None

    def respond(self, response: Response, now: float, *, stateless: bool = False) -> None:
        """Send a response from the TU through this transaction.

        Args:
            response: the response to send.
            now: the current time.
            stateless: send this final response and end the transaction at once, without Timer J: a
                retransmitted request then starts a new transaction and reaches the TU again, which answers
                it afresh. For answers that are cheap and safe to repeat (a REGISTER's 401 challenge with a
                stateless nonce), where keeping 32 s of state per request would cost more than a repeat.

        Raises:
            LocalProtocolError: the transaction can no longer send this response (e.g. a second final), or
                ``stateless`` was asked for a provisional response or outside a Trying non-INVITE
                transaction.
        """
        status = response.status
        if stateless:
            if status < 200:
                raise LocalProtocolError(f"{type(self).__name__}: cannot send {status} statelessly")
            inp = I.SEND_STATELESS
        else:
            inp = I.SEND_1XX if status < 200 else I.SEND_2XX if status < 300 else I.SEND_FINAL
        if (self.state, inp) not in self.TABLE:
            raise LocalProtocolError(
                f"{type(self).__name__}: cannot send {status} in state {self.state.value}"
            )
        self._last = response.serialize()
        self._input(inp, now)
        if status >= 200:
            self.request = None

    def receive_request(self, request: Request, now: float) -> None:
        """A retransmission (or, for INVITE server transactions, the ACK) matched this transaction."""
        self._input(I.RECV_ACK if request.method == "ACK" else I.RECV_REQUEST, now)

    def _send_last(self, now: float) -> None:
        if self._last is not None:
            self.host.transmit(self._last, self.peer)


class ServerNonInviteTransaction(ServerTransaction):
    """§17.2.2, Figure 8."""

    __slots__ = ()
    TABLE: ClassVar[Table] = {
        (S.TRYING, I.SEND_1XX): ("_send_last", S.PROCEEDING),
        (S.TRYING, I.SEND_2XX): ("_send_final", S.COMPLETED),
        (S.TRYING, I.SEND_FINAL): ("_send_final", S.COMPLETED),
        (S.TRYING, I.SEND_STATELESS): ("_send_last", S.TERMINATED),
        (S.TRYING, I.RECV_REQUEST): (None, S.TRYING),  # absorbed: the TU has said nothing yet
        (S.TRYING, I.TRANSPORT_ERROR): ("_terminated_by_error", S.TERMINATED),
        (S.PROCEEDING, I.SEND_1XX): ("_send_last", S.PROCEEDING),
        (S.PROCEEDING, I.SEND_2XX): ("_send_final", S.COMPLETED),
        (S.PROCEEDING, I.SEND_FINAL): ("_send_final", S.COMPLETED),
        (S.PROCEEDING, I.RECV_REQUEST): ("_send_last", S.PROCEEDING),
        (S.PROCEEDING, I.TRANSPORT_ERROR): ("_terminated_by_error", S.TERMINATED),
        (S.COMPLETED, I.RECV_REQUEST): ("_send_last", S.COMPLETED),
        (S.COMPLETED, I.TIMER_J): (None, S.TERMINATED),
        (S.COMPLETED, I.TRANSPORT_ERROR): ("_terminated_by_error", S.TERMINATED),
        (S.TERMINATED, I.RECV_REQUEST): (None, S.TERMINATED),
    }

    def __init__(self, request: Request, key: tuple[str, ...], peer: Peer, host: TransactionHost,
                 config: TimerConfig) -> None:
        super().__init__(request, key, peer, host, config, S.TRYING)

    def _send_final(self, now: float) -> None:
        self._send_last(now)
        # Timer J: 64*T1 for unreliable transports, zero for reliable (§17.2.2).
        if self.reliable:
            self._input(I.TIMER_J, now)
        else:
            self._arm("j", now + self.config.timeout)


class ServerInviteTransaction(ServerTransaction):
    """§17.2.1, Figure 7, with RFC 6026's Accepted state."""

    __slots__ = ("_g_interval", "cancelled")
    TABLE: ClassVar[Table] = {
        (S.PROCEEDING, I.SEND_1XX): ("_send_last", S.PROCEEDING),
        (S.PROCEEDING, I.SEND_2XX): ("_send_2xx", S.ACCEPTED),
        (S.PROCEEDING, I.SEND_FINAL): ("_send_final", S.COMPLETED),
        (S.PROCEEDING, I.RECV_REQUEST): ("_send_last", S.PROCEEDING),
        (S.PROCEEDING, I.RECV_ACK): (None, S.PROCEEDING),  # no final sent yet: nothing to acknowledge
        (S.PROCEEDING, I.TRANSPORT_ERROR): ("_terminated_by_error", S.TERMINATED),
        (S.COMPLETED, I.RECV_REQUEST): ("_send_last", S.COMPLETED),
        (S.COMPLETED, I.RECV_ACK): ("_confirm", S.CONFIRMED),
        (S.COMPLETED, I.TIMER_G): ("_retransmit_final", S.COMPLETED),
        (S.COMPLETED, I.TIMER_H): ("_no_ack", S.TERMINATED),
        (S.COMPLETED, I.TRANSPORT_ERROR): ("_terminated_by_error", S.TERMINATED),
        (S.CONFIRMED, I.RECV_REQUEST): (None, S.CONFIRMED),
        (S.CONFIRMED, I.RECV_ACK): (None, S.CONFIRMED),
        (S.CONFIRMED, I.TIMER_I): (None, S.TERMINATED),
        # RFC 6026 §7.1: in Accepted, INVITE retransmissions are absorbed (the TU resends its 2xx),
        # further 2xx from the TU pass through, and Timer L ends the state.
        (S.ACCEPTED, I.RECV_REQUEST): (None, S.ACCEPTED),
        (S.ACCEPTED, I.RECV_ACK): (None, S.ACCEPTED),  # passed to the TU by receive_request
        (S.ACCEPTED, I.SEND_2XX): ("_send_last", S.ACCEPTED),
        (S.ACCEPTED, I.TIMER_L): (None, S.TERMINATED),
        (S.ACCEPTED, I.TRANSPORT_ERROR): (None, S.ACCEPTED),
        (S.TERMINATED, I.RECV_REQUEST): (None, S.TERMINATED),
        (S.TERMINATED, I.RECV_ACK): (None, S.TERMINATED),
    }

    def __init__(self, request: Request, key: tuple[str, ...], peer: Peer, host: TransactionHost,
                 config: TimerConfig) -> None:
        super().__init__(request, key, peer, host, config, S.PROCEEDING)
        self._g_interval = config.t1
        self.cancelled = False

    def receive_request(self, request: Request, now: float) -> None:
        """An INVITE retransmission or an ACK matched this transaction.

        RFC 6026 §7.1: an ACK that matches in Accepted (RFC 2543 peers reuse the INVITE's branch) is the ACK
        for the 2xx, which belongs to the TU: it is passed up, and the transaction stays as it is.
        """
        if request.method == "ACK" and self.state is S.ACCEPTED:
            from engine.sip.events import RequestReceived

            self.host.deliver(RequestReceived(request, None, self.peer))
        super().receive_request(request, now)

    def _send_2xx(self, now: float) -> None:
        self._send_last(now)
        self._arm("l", now + self.config.timeout)

    def _send_final(self, now: float) -> None:
        self._send_last(now)
        if not self.reliable:
            self._g_interval = self.config.t1
            self._arm("g", now + self._g_interval)
        self._arm("h", now + self.config.timeout)

    def _retransmit_final(self, now: float) -> None:
        self._send_last(now)
        # §17.2.1: Timer G doubles up to T2.
        self._g_interval = min(2 * self._g_interval, self.config.t2)
        self._arm("g", now + self._g_interval)

    def _confirm(self, now: float) -> None:
        self._disarm("g", "h")
        if self.reliable:
            self._input(I.TIMER_I, now)
        else:
            self._arm("i", now + self.config.t4)

    def _no_ack(self, now: float) -> None:
        from engine.sip.events import TransactionTimedOut

        self.host.deliver(TransactionTimedOut(self))


# ---------------------------------------------------------------------------------------------------
# Client transactions (§17.1)


class ClientTransaction(Transaction):
    """A client transaction sends ``request`` to ``peer`` and passes matching responses to the TU.

    Like a server transaction, a finished one keeps only bytes: once its final response is in, it lives on
    (Timer D, K or M) only to absorb or pass up retransmissions, so the parsed request and response are
    dropped and ``request`` is parsed again from the bytes sent in the rare case it is still asked for (a
    2xx from a second fork, RFC 6026). Thousands of finished calls a second otherwise keep millions of
    objects for the cyclic collector to sweep.
    """

    __slots__ = ("_data", "_interval", "_method", "_request", "_response")

    def __init__(self, request: Request, key: tuple[str, ...], peer: Peer, host: TransactionHost,
                 config: TimerConfig, state: TransactionState) -> None:
        super().__init__(key, peer, host, config, state)
        self._request: Request | None = request
        self._method = request.method
        self._data = request.serialize()
        self._interval = config.t1
        self._response: Response | None = None

    @property
    def method(self) -> str:
        return self._method

    @property
    def request(self) -> Request:
        """The request this transaction sent (parsed again from its bytes once the transaction is done)."""
        request = self._request
        if request is not None:
            return request
        parsed = parse_message(self._data)
        assert isinstance(parsed, Request)
        return parsed

    def start(self, now: float) -> None:
        """Send the request and arm the first timers."""
        raise NotImplementedError

    def receive_response(self, response: Response, now: float) -> None:
        """A response whose branch and CSeq method matched this transaction."""
        status = response.status
        inp = I.RECV_1XX if status < 200 else I.RECV_2XX if status < 300 else I.RECV_FINAL
        self._response = response
        self._input(inp, now)
        if status >= 200:
            # Done (Completed, Accepted or Terminated): the TU has the response in its event; keep bytes only.
            self._response = None
            self._request = None

    def _pass_up(self, now: float) -> None:
        from engine.sip.events import ResponseReceived

        if self._response is not None:
            self.host.deliver(ResponseReceived(self._response, self))

    def _timed_out(self, now: float) -> None:
        from engine.sip.events import TransactionTimedOut

        self.host.deliver(TransactionTimedOut(self))


class ClientNonInviteTransaction(ClientTransaction):
    """§17.1.2, Figure 6."""

    __slots__ = ()
    TABLE: ClassVar[Table] = {
        (S.TRYING, I.TIMER_E): ("_retransmit", S.TRYING),
        (S.TRYING, I.TIMER_F): ("_timed_out", S.TERMINATED),
        (S.TRYING, I.RECV_1XX): ("_pass_up", S.PROCEEDING),
        (S.TRYING, I.RECV_2XX): ("_complete", S.COMPLETED),
        (S.TRYING, I.RECV_FINAL): ("_complete", S.COMPLETED),
        (S.TRYING, I.TRANSPORT_ERROR): ("_terminated_by_error", S.TERMINATED),
        (S.PROCEEDING, I.TIMER_E): ("_retransmit", S.PROCEEDING),
        (S.PROCEEDING, I.TIMER_F): ("_timed_out", S.TERMINATED),
        (S.PROCEEDING, I.RECV_1XX): ("_pass_up", S.PROCEEDING),
        (S.PROCEEDING, I.RECV_2XX): ("_complete", S.COMPLETED),
        (S.PROCEEDING, I.RECV_FINAL): ("_complete", S.COMPLETED),
        (S.PROCEEDING, I.TRANSPORT_ERROR): ("_terminated_by_error", S.TERMINATED),
        (S.COMPLETED, I.RECV_1XX): (None, S.COMPLETED),
        (S.COMPLETED, I.RECV_2XX): (None, S.COMPLETED),
        (S.COMPLETED, I.RECV_FINAL): (None, S.COMPLETED),
        (S.COMPLETED, I.TIMER_K): (None, S.TERMINATED),
        (S.TERMINATED, I.RECV_1XX): (None, S.TERMINATED),
        (S.TERMINATED, I.RECV_2XX): (None, S.TERMINATED),
        (S.TERMINATED, I.RECV_FINAL): (None, S.TERMINATED),
    }

    def __init__(self, request: Request, key: tuple[str, ...], peer: Peer, host: TransactionHost,
                 config: TimerConfig) -> None:
        super().__init__(request, key, peer, host, config, S.TRYING)

    def start(self, now: float) -> None:
        """Send the request and arm Timers E (unreliable only) and F."""
        self.host.transmit(self._data, self.peer)
        if not self.reliable:
            self._timers["e"] = now + self._interval
        self._arm("f", now + self.config.timeout)

    def _retransmit(self, now: float) -> None:
        self.host.transmit(self._data, self.peer)
        # §17.1.2.2: E doubles up to T2 in Trying; in Proceeding it fires every T2.
        if self.state is S.PROCEEDING:
            self._interval = self.config.t2
        else:
            self._interval = min(2 * self._interval, self.config.t2)
        self._arm("e", now + self._interval)

    def _complete(self, now: float) -> None:
        self._disarm("e", "f")
        self._pass_up(now)
        if self.reliable:
            self._input(I.TIMER_K, now)
        else:
            self._arm("k", now + self.config.t4)


class ClientInviteTransaction(ClientTransaction):
    """§17.1.1, Figure 5, with RFC 6026's Accepted state; builds the ACK for non-2xx finals (§17.1.1.3)."""

    __slots__ = ("_ack",)
    TABLE: ClassVar[Table] = {
        (S.CALLING, I.TIMER_A): ("_retransmit", S.CALLING),
        (S.CALLING, I.TIMER_B): ("_timed_out", S.TERMINATED),
        (S.CALLING, I.RECV_1XX): ("_proceed", S.PROCEEDING),
        (S.CALLING, I.RECV_2XX): ("_accept", S.ACCEPTED),
        (S.CALLING, I.RECV_FINAL): ("_complete", S.COMPLETED),
        (S.CALLING, I.TRANSPORT_ERROR): ("_terminated_by_error", S.TERMINATED),
        (S.PROCEEDING, I.RECV_1XX): ("_pass_up", S.PROCEEDING),
        (S.PROCEEDING, I.RECV_2XX): ("_accept", S.ACCEPTED),
        (S.PROCEEDING, I.RECV_FINAL): ("_complete", S.COMPLETED),
        (S.PROCEEDING, I.TRANSPORT_ERROR): ("_terminated_by_error", S.TERMINATED),
        (S.COMPLETED, I.RECV_1XX): (None, S.COMPLETED),
        (S.COMPLETED, I.RECV_2XX): (None, S.COMPLETED),
        (S.COMPLETED, I.RECV_FINAL): ("_send_ack", S.COMPLETED),
        (S.COMPLETED, I.TIMER_D): (None, S.TERMINATED),
        (S.COMPLETED, I.TRANSPORT_ERROR): ("_terminated_by_error", S.TERMINATED),
        # RFC 6026 §8.4: every 2xx (retransmissions too) goes to the TU, which ACKs it; Timer M ends it.
        (S.ACCEPTED, I.RECV_1XX): (None, S.ACCEPTED),
        (S.ACCEPTED, I.RECV_2XX): ("_pass_up", S.ACCEPTED),
        (S.ACCEPTED, I.RECV_FINAL): (None, S.ACCEPTED),
        (S.ACCEPTED, I.TIMER_M): (None, S.TERMINATED),
        (S.ACCEPTED, I.TRANSPORT_ERROR): (None, S.ACCEPTED),
        (S.TERMINATED, I.RECV_1XX): (None, S.TERMINATED),
        (S.TERMINATED, I.RECV_2XX): (None, S.TERMINATED),
        (S.TERMINATED, I.RECV_FINAL): (None, S.TERMINATED),
    }

    def __init__(self, request: Request, key: tuple[str, ...], peer: Peer, host: TransactionHost,
                 config: TimerConfig) -> None:
        super().__init__(request, key, peer, host, config, S.CALLING)
        self._ack: bytes | None = None

    def start(self, now: float) -> None:
        """Send the INVITE and arm Timers A (unreliable only) and B."""
        self.host.transmit(self._data, self.peer)
        if not self.reliable:
            self._timers["a"] = now + self._interval
        self._arm("b", now + self.config.timeout)

    def _retransmit(self, now: float) -> None:
        self.host.transmit(self._data, self.peer)
        self._interval *= 2  # §17.1.1.2: Timer A doubles, with no T2 cap for INVITE
        self._arm("a", now + self._interval)

    def _proceed(self, now: float) -> None:
        # Figure 5: Timer B runs in Calling only; a ringing callee may take longer than 64*T1 (a proxy or
        # B2BUA bounds ringing with its own timer, §16.6 Timer C).
        self._disarm("a", "b")
        self._pass_up(now)

    def _accept(self, now: float) -> None:
        self._disarm("a", "b")
        self._pass_up(now)
        self._arm("m", now + self.config.timeout)

    def _complete(self, now: float) -> None:
        self._disarm("a", "b")
        if self._response is not None:
            self._ack = build_non2xx_ack(self.request, self._response).serialize()
        self._send_ack(now)
        self._pass_up(now)
        # Timer D: at least 32 s for unreliable transports, zero for reliable (§17.1.1.2).
        if self.reliable:
            self._input(I.TIMER_D, now)
        else:
            self._arm("d", now + max(32.0, self.config.timeout))

    def _send_ack(self, now: float) -> None:
        if self._ack is not None:
            self.host.transmit(self._ack, self.peer)


def build_non2xx_ack(invite: Request, response: Response) -> Request:
    """§17.1.1.3: the ACK for a non-2xx final is part of the INVITE transaction.

    Same Request-URI, Call-ID, From, top Via (hence branch) and Route as the INVITE; To from the response
    (it carries the tag); CSeq with the same number and method ACK.
    """
    ack = Request("ACK", invite.uri)
    fields = ack.fields
    top_via = invite.top_via
    fields.append(Field("via", top_via.serialize()))
    fields.append(Field("max-forwards", "70"))
    for f in invite.fields:
        if f.name in ("from", "call-id", "route"):
            fields.append(Field(f.name, f.value, f.raw))
    for f in response.fields:
        if f.name == "to":
            fields.append(Field("to", f.value, f.raw))
            break
    fields.append(Field("cseq", f"{invite.cseq.seq} ACK"))
    return ack
