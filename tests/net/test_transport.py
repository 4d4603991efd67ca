"""SipTransport on a real event loop and real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from engine.clock import LoopClock
from engine.net import transport as transport_module
from engine.net.transport import SipTransport
from engine.sip.endpoint import EndpointConfig, SipEndpoint
from engine.sip.events import Event, TransactionTimedOut
from engine.sip.message import Request, make_response
from engine.sip.parser import parse_message
from engine.sip.transaction import ClientTransaction, Peer, TransactionState
from tests.sip.harness import build_request


def test_response_for_a_closed_tcp_connection_goes_to_the_via_sent_by() -> None:
    """RFC 3261 §18.2.2: with the request's connection gone, the response is sent on a new connection to
    the top Via's ``received`` address (else host) and sent-by port."""

    async def scenario() -> bytes:
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await got.put(await reader.readuntil(b"\r\n\r\n"))
            writer.close()

        listener = await asyncio.start_server(client, "127.0.0.1", 0)
        via_port = listener.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        endpoint = SipEndpoint(EndpointConfig(), random_bytes=random.Random(1).randbytes)
        transport = SipTransport(endpoint, lambda event, now: None, LoopClock(loop))
        await transport.start("127.0.0.1", 0)
        try:
            request = parse_message(
                (
                    "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
                    f"Via: SIP/2.0/TCP 192.0.2.1:{via_port};received=127.0.0.1;branch=z9hG4bK-x\r\n"
                    "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: c1\r\n"
                    "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                ).encode()
            )
            assert isinstance(request, Request)
            response = make_response(request, 200, to_tag="t")
            # The connection the request came on (an ephemeral port) is gone: nothing is registered for it.
            endpoint.send_stateless(response, Peer("TCP", "127.0.0.1", 1))
            transport.pump()
            return await asyncio.wait_for(got.get(), 5.0)
        finally:
            await transport.stop()
            listener.close()
            await listener.wait_closed()

    data = asyncio.run(scenario())
    assert data.startswith(b"SIP/2.0 200 OK\r\n")
    assert b"branch=z9hG4bK-x" in data


def test_a_tcp_peer_that_never_reads_cannot_grow_our_memory() -> None:
    """Requests keep coming, answers are never read: the transport stops reading that peer when its output
    backs up, and drops it past MAX_TCP_WRITE_BUFFER, so what we queue for it stays bounded."""
    from engine.net.transport import MAX_TCP_WRITE_BUFFER
    from engine.sip.events import RequestReceived

    async def scenario() -> tuple[int, bool]:
        loop = asyncio.get_running_loop()
        endpoint = SipEndpoint(EndpointConfig(), random_bytes=random.Random(1).randbytes)
        big_body = b"x" * 4000  # large answers fill the buffers quickly

        def answer(event: Event, now: float) -> None:
            if isinstance(event, RequestReceived) and event.transaction is not None:
                resp = make_response(event.request, 200, to_tag="t")
                resp.body = big_body
                endpoint.respond(event.transaction, resp, now)

        transport = SipTransport(endpoint, answer, LoopClock(loop))
        _, port = await transport.start("127.0.0.1", 0)
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", port))
        client.setblocking(False)
        peak = 0
        pushed_back = False
        blocked_in_a_row = 0
        pad = "p" * 2000  # 20,000 requests of ~2 KB: far more than loopback socket buffers hold
        try:
            for i in range(20_000):
                request = (
                    f"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK-{i}\r\n"
                    f"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: c{i}\r\n"
                    f"CSeq: 1 OPTIONS\r\nX-Pad: {pad}\r\nContent-Length: 0\r\n\r\n"
                ).encode()
                try:
                    client.send(request)
                    blocked_in_a_row = 0
                except (BlockingIOError, ConnectionError):
                    pushed_back = True  # we stopped reading it (or dropped it): it cannot push more
                    blocked_in_a_row += 1
                    if blocked_in_a_row >= 50:
                        break
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0)
                for conn in transport.connections.values():
                    if conn.transport is not None:
                        peak = max(peak, conn.transport.get_write_buffer_size())
            assert endpoint.stats["requests"] < 20_000  # it stopped reading (or dropped) the peer
            return peak, pushed_back
        finally:
            client.close()
            await transport.stop()

    peak, pushed_back = asyncio.run(scenario())
    assert pushed_back  # 80 MB of answers cannot all fit in kernel buffers: the peer was held off
    assert peak <= MAX_TCP_WRITE_BUFFER + 8192


def test_idle_tcp_connections_close_and_our_own_sends_count_as_activity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection nobody uses is closed after the idle timeout; one we keep sending on (a long call whose
    phone is quiet, but to which we send in-dialog requests) stays open."""
    monkeypatch.setattr(transport_module, "TCP_IDLE_TIMEOUT_S", 0.4)

    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        endpoint = SipEndpoint(EndpointConfig(), random_bytes=random.Random(1).randbytes)
        transport = SipTransport(endpoint, lambda event, now: None, LoopClock(loop))
        _, port = await transport.start("127.0.0.1", 0)
        try:
            _, quiet_writer = await asyncio.open_connection("127.0.0.1", port)
            busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.sleep(0.05)
            busy_local = busy_writer.get_extra_info("sockname")
            conn = transport.connections[("127.0.0.1", busy_local[1])]
            for _ in range(8):  # our side sends every 0.1 s for 0.8 s: twice the idle timeout
                conn.send(b"\r\n\r\n")
                await asyncio.sleep(0.1)
            busy_open = ("127.0.0.1", busy_local[1]) in transport.connections
            quiet_open = len(transport.connections) == 2
            quiet_writer.close()
            busy_writer.close()
            del busy_reader
            return busy_open, quiet_open
        finally:
            await transport.stop()

    busy_open, quiet_open = asyncio.run(scenario())
    assert busy_open and not quiet_open


def _unused_tcp_port() -> tuple[socket.socket, int]:
    """A loopback port where nothing listens: bound (so no one else takes it) but never listening, so a
    connect to it is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


async def _send_over_tcp_and_wait(endpoint: SipEndpoint, transport: SipTransport,
                                  events: asyncio.Queue[Event], method: str,
                                  port: int) -> tuple[ClientTransaction, Event]:
    uri = f"sip:201@127.0.0.1:{port};transport=tcp"
    tx = endpoint.send_request(build_request(method, uri, call_id=f"{method}-refused@test"),
                               Peer("TCP", "127.0.0.1", port), transport.clock.now())
    transport.pump()
    # Timer B/F would take 64*T1 = 32 s; the refused connect ends the transaction long before this bound.
    return tx, await asyncio.wait_for(events.get(), 5.0)


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS", "BYE"])
def test_a_refused_tcp_connect_ends_the_client_transaction_at_once_as_a_503(method: str) -> None:
    """RFC 3261 §17.1.4: a transport failure ends the client transaction and informs the TU, which treats
    it as a 503 (§8.1.3.1), instead of waiting for Timer B or F."""

    async def scenario() -> tuple[ClientTransaction, Event, SipEndpoint]:
        events: asyncio.Queue[Event] = asyncio.Queue()
        endpoint = SipEndpoint(EndpointConfig(), random_bytes=random.Random(1).randbytes)
        transport = SipTransport(endpoint, lambda event, now: events.put_nowait(event),
                                 LoopClock(asyncio.get_running_loop()))
        await transport.start("127.0.0.1", 0)
        closed, port = _unused_tcp_port()
        try:
            tx, event = await _send_over_tcp_and_wait(endpoint, transport, events, method, port)
            return tx, event, endpoint
        finally:
            closed.close()
            await transport.stop()

    tx, event, endpoint = asyncio.run(scenario())
    assert isinstance(event, TransactionTimedOut)
    assert event.transaction is tx and event.transport_error and event.status == 503
    assert tx.state is TransactionState.TERMINATED and endpoint.transaction_count == 0
    assert endpoint.stats["transport_errors"] == 1


def test_a_request_dropped_for_too_many_pending_connects_ends_its_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No connect can even start (MAX_PENDING_CONNECTS in flight): the request is dropped, and that too is a
    transport error its TU hears of at once."""
    monkeypatch.setattr(transport_module, "MAX_PENDING_CONNECTS", 0)

    async def scenario() -> tuple[ClientTransaction, Event]:
        events: asyncio.Queue[Event] = asyncio.Queue()
        endpoint = SipEndpoint(EndpointConfig(), random_bytes=random.Random(1).randbytes)
        transport = SipTransport(endpoint, lambda event, now: events.put_nowait(event),
                                 LoopClock(asyncio.get_running_loop()))
        await transport.start("127.0.0.1", 0)
        closed, port = _unused_tcp_port()
        try:
            return await _send_over_tcp_and_wait(endpoint, transport, events, "OPTIONS", port)
        finally:
            closed.close()
            await transport.stop()

    tx, event = asyncio.run(scenario())
    assert isinstance(event, TransactionTimedOut) and event.transaction is tx and event.status == 503


def test_a_request_on_a_closing_connection_opens_a_new_one() -> None:
    """RFC 3261 §18.1.1: a connection that is closing is no connection; the request goes over a new one
    (here to a listener that reads it) instead of being dropped."""

    async def scenario() -> bytes:
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await got.put(await reader.readuntil(b"\r\n\r\n"))
            writer.close()

        listener = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        endpoint = SipEndpoint(EndpointConfig(), random_bytes=random.Random(1).randbytes)
        transport = SipTransport(endpoint, lambda event, now: None, LoopClock(asyncio.get_running_loop()))
        await transport.start("127.0.0.1", 0)
        try:
            closing = transport_module.SipTcpProtocol(transport)
            closing.transport = _ClosingTransport()
            transport.connections[("127.0.0.1", port)] = closing
            endpoint.send_request(build_request("OPTIONS", f"sip:201@127.0.0.1:{port}"),
                                  Peer("TCP", "127.0.0.1", port), transport.clock.now())
            transport.pump()
            return await asyncio.wait_for(got.get(), 5.0)
        finally:
            await transport.stop()
            listener.close()
            await listener.wait_closed()

    assert (asyncio.run(scenario())).startswith(b"OPTIONS sip:201@127.0.0.1:")


class _ClosingTransport(asyncio.Transport):
    def is_closing(self) -> bool:
        return True

    def close(self) -> None:
        pass


class _Deadline:
    """A TimerSource with one settable deadline; records every handle_timer call."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.calls: list[float] = []

    def get_timer(self) -> float | None:
        return self.at

    def handle_timer(self, now: float) -> None:
        self.calls.append(now)
        if self.at is not None and now >= self.at:
            self.at = None


def test_a_watched_deadline_that_moves_earlier_is_re_armed() -> None:
    """SipTransport.watch: the source's deadline is armed; when it moves earlier, the next pump re-arms it
    there (the later handle is cancelled, not left to fire), and handle_timer runs once, at the deadline."""

    async def scenario() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        endpoint = SipEndpoint(EndpointConfig(), random_bytes=random.Random(1).randbytes)
        transport = SipTransport(endpoint, lambda event, now: None, LoopClock(loop))
        await transport.start("127.0.0.1", 0)
        source = _Deadline()
        try:
            source.at = loop.time() + 30.0
            transport.watch(source)
            source.at = deadline = loop.time() + 0.05
            transport.pump()
            for _ in range(500):
                if source.calls:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # a second call, if any, would come now
            return source.calls, deadline
        finally:
            await transport.stop()

    calls, deadline = asyncio.run(scenario())
    assert len(calls) == 1 and calls[0] >= deadline


def test_the_answers_to_one_round_of_datagrams_go_out_together_after_it() -> None:
    """The responses to the datagrams the loop hands over in one round are sent after the round, in the
    order they were made (one wake-up of the peer per burst, not per answer); the half-built output of a
    message whose handling fails is dropped, the others' still goes out."""
    sent: list[bytes] = []

    class _Udp:
        def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
            sent.append(data)

        def close(self) -> None:
            pass

    def options(call_id: str) -> bytes:
        return (
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-" + call_id
            + "\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: " + call_id
            + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    async def scenario() -> tuple[list[bytes], list[bytes], int]:
        loop = asyncio.get_running_loop()
        endpoint = SipEndpoint(EndpointConfig(), random_bytes=random.Random(1).randbytes)

        def answer(event: Event, now: float) -> None:
            from engine.sip.events import RequestReceived

            assert isinstance(event, RequestReceived) and event.transaction is not None
            endpoint.respond(event.transaction, make_response(event.request, 200, to_tag="t"), now)
            if event.request.call_id == "bad":
                raise RuntimeError("a bug in the TU")

        transport = SipTransport(endpoint, answer, LoopClock(loop))
        await transport.start("127.0.0.1", 0)
        assert transport.udp is not None
        real_udp, transport.udp = transport.udp, _Udp()  # type: ignore[assignment]
        try:
            peer = Peer("UDP", "127.0.0.1", 5999)
            for call_id in ("one", "bad", "two"):
                transport.receive(options(call_id), peer)
            during = list(sent)
            await asyncio.sleep(0)
            return during, list(sent), transport.internal_errors
        finally:
            transport.udp = real_udp
            await transport.stop()

    during, after, errors = asyncio.run(scenario())
    assert during == [] and errors == 1
    assert [parse_message(d).call_id for d in after] == ["one", "two"]


def test_a_port_whose_tcp_side_is_taken_is_refused_and_leaves_no_udp_socket() -> None:
    """``start`` binds UDP, then TCP on the same port: when TCP cannot be bound it raises, and the UDP
    socket it had bound is closed (the port is free for UDP again; before, it stayed bound until exit)."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            endpoint = SipEndpoint(EndpointConfig(), random_bytes=random.Random(1).randbytes)
            transport = SipTransport(endpoint, lambda event, now: None, LoopClock(loop))
            with pytest.raises(OSError):
                await transport.start("127.0.0.1", port)
            assert transport.udp is None
            await asyncio.sleep(0)  # the closed datagram transport lets go of its socket
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                probe.bind(("127.0.0.1", port))  # OSError (address in use) with the leak
            finally:
                probe.close()
        finally:
            taken.close()

    asyncio.run(scenario())


def test_stream_connections_are_capped_per_source_and_in_all() -> None:
    """Issue 18 part 3: one address cannot open more than ``max_per_source`` connections, and all together
    no more than ``max_connections``; a closed one frees its place."""

    async def scenario() -> tuple[int, int, int, int]:
        loop = asyncio.get_running_loop()
        endpoint = SipEndpoint(EndpointConfig())
        transport = SipTransport(endpoint, lambda event, now: None, LoopClock(loop), max_connections=5,
                                 max_per_source=3)
        _, port = await transport.start("127.0.0.1", 0)
        opened: list[asyncio.StreamWriter] = []
        try:
            for source in ("127.0.0.1",) * 4 + ("127.0.0.2",) * 4:
                _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
                opened.append(writer)
            await asyncio.sleep(0.2)
            per_source = dict(transport.per_source)
            held = len(transport.connections)
            refused = transport.refused_connections
            opened.pop(0).close()
            await asyncio.sleep(0.2)
            _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
            opened.append(writer)
            await asyncio.sleep(0.2)
            both = per_source["127.0.0.1"] + 10 * per_source["127.0.0.2"]
            return held, refused, both, len(transport.connections)
        finally:
            for writer in opened:
                writer.close()
            await transport.stop()

    held, refused, per_source, after = asyncio.run(scenario())
    assert held == 5 and refused == 3  # 3 from .1 (the 4th refused), 2 from .2 (then the table is full)
    assert per_source == 3 + 20
    assert after == 5  # the closed one's place went to the next
