"""SIP over WebSocket (engine.net.ws) in SipTransport on a real event loop (asyncio and uvloop) and real
sockets on 127.0.0.1, with the ``websockets`` client as the browser and raw sockets for what no client
library sends: the upgrade's subprotocol rule, one SIP message per text, binary or fragmented message,
answers and our own requests down the phone's connection, pings both ways, and garbage, silent, oversized
and unmasked input closed in bounded time without leaking descriptors."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import socket
import struct
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from engine.clock import LoopClock
from engine.net import ws as ws_module
from engine.net.certificate import default_certificate, server_context
from engine.net.transport import SipTransport
from engine.net.ws import SipWsProtocol, start_ws
from engine.sip.endpoint import EndpointConfig, SipEndpoint
from engine.sip.events import Event, RequestReceived, TransactionTimedOut
from engine.sip.message import Request, make_response
from engine.sip.parser import MAX_MESSAGE_BYTES
from engine.sip.transaction import Peer

from .test_tls import LOOPS, NOW, insecure_client, run


def options(i: int, body: bytes = b"", transport: str = "WS") -> bytes:
    """A browser's OPTIONS: its Via names an invented host (RFC 7118 §5.2, a browser has no address)."""
    return (
        f"OPTIONS sip:127.0.0.1;transport=ws SIP/2.0\r\nVia: SIP/2.0/{transport} df7jal23ls0d.invalid;"
        f"branch=z9hG4bK-{i}\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: c{i}\r\n"
        f"CSeq: 1 OPTIONS\r\n{'Content-Type: text/plain' + chr(13) + chr(10) if body else ''}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Engine:
    """A transport with WS and WSS listeners whose application answers every request 200 and notes its
    peer, and notes the transactions that ended without an answer."""

    def __init__(self, tmp: Path) -> None:
        self.files, _ = default_certificate(tmp, ("127.0.0.1",), NOW)
        self.endpoint = SipEndpoint(EndpointConfig(via_port=5999, ws_port=5997, wss_port=5996),
                                    random_bytes=random.Random(1).randbytes)
        self.peers: list[Peer] = []
        self.failed: list[TransactionTimedOut] = []
        self.transport = SipTransport(self.endpoint, self.answer, LoopClock(asyncio.get_running_loop()))
        self.ws_port = self.wss_port = 0

    def answer(self, event: Event, now: float) -> None:
        if isinstance(event, RequestReceived) and event.transaction is not None:
            self.peers.append(event.transaction.peer)
            self.endpoint.respond(event.transaction, make_response(event.request, 200, to_tag="t"), now)
        elif isinstance(event, TransactionTimedOut):
            self.failed.append(event)

    async def start(self) -> None:
        _, self.ws_port = await start_ws(self.transport, "127.0.0.1", 0)
        _, self.wss_port = await start_ws(self.transport, "127.0.0.1", 0, server_context(self.files))

    def url(self, secure: bool = False) -> str:
        return f"wss://127.0.0.1:{self.wss_port}" if secure else f"ws://127.0.0.1:{self.ws_port}"

    def client(self, secure: bool = False, **kwargs: object) -> connect:
        ssl = insecure_client() if secure else None
        return connect(self.url(secure), subprotocols=["sip"], ssl=ssl, open_timeout=5, **kwargs)  # type: ignore[arg-type]


async def recv(conn: ClientConnection) -> bytes:
    message = await asyncio.wait_for(conn.recv(), 5.0)
    return message.encode() if isinstance(message, str) else message


def call_id(message: bytes) -> bytes:
    return message.split(b"Call-ID: ")[1].split(b"\r\n")[0]


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_text_binary_and_fragmented_messages_are_answered_down_the_connection(loop_kind: str, secure: bool,
                                                                              tmp_path: Path) -> None:
    transport = "WSS" if secure else "WS"

    async def main() -> tuple[list[bytes | str], list[Peer], str | None, tuple[str, int]]:
        engine = Engine(tmp_path)
        await engine.start()
        try:
            async with engine.client(secure) as conn:
                answers: list[bytes | str] = []
                await conn.send(options(1, transport=transport).decode())  # text
                answers.append(await asyncio.wait_for(conn.recv(), 5.0))
                await conn.send(options(2, b"hello", transport))  # binary
                answers.append(await asyncio.wait_for(conn.recv(), 5.0))
                data = options(3, b"in three parts", transport).decode()
                await conn.send([data[:10], data[10:50], data[50:]])  # one message in three frames
                answers.append(await asyncio.wait_for(conn.recv(), 5.0))
                local = conn.local_address
                return answers, engine.peers, conn.subprotocol, (str(local[0]), int(local[1]))
        finally:
            await engine.transport.stop()

    answers, peers, subprotocol, local = run(loop_kind, main)
    assert subprotocol == "sip"
    assert all(isinstance(a, str) for a in answers)  # SIP in UTF-8 goes out as text frames (RFC 7118 §5.1)
    got = [a.encode() if isinstance(a, str) else a for a in answers]
    assert [a.split(b"\r\n")[0] for a in got] == [b"SIP/2.0 200 OK"] * 3
    assert [call_id(a) for a in got] == [b"c1", b"c2", b"c3"]
    assert all(f"Via: SIP/2.0/{transport} df7jal23ls0d.invalid;".encode() in a for a in got)
    assert peers == [Peer(transport, *local)] * 3


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_our_request_to_a_websocket_phone_goes_down_its_connection_and_fails_at_once_when_it_is_gone(
        loop_kind: str, tmp_path: Path) -> None:
    """A browser accepts no connections: a request for it goes down the connection it opened (RFC 5626
    flow reuse) with our WS Via, and once that connection is closed the transaction ends at once (no
    connection attempt, no 32 s of Timer F)."""

    def request_to(peer: Peer, tag: str) -> Request:
        request = Request("OPTIONS", "sip:phone@df7jal23ls0d.invalid;transport=ws")
        for name, value in (("from", f"<sip:pbx@127.0.0.1>;tag={tag}"), ("to", "<sip:phone@127.0.0.1>"),
                            ("call-id", f"ours-{tag}"), ("cseq", "1 OPTIONS"), ("max-forwards", "70")):
            request.add(name, value)
        return request

    async def main() -> tuple[bytes, int, int, float]:
        engine = Engine(tmp_path)
        await engine.start()
        try:
            async with engine.client() as conn:
                await conn.send(options(1))
                await recv(conn)
                phone = engine.peers[0]
                engine.endpoint.send_request(request_to(phone, "1"), phone, engine.transport.clock.now())
                engine.transport.pump()
                got = await recv(conn)
                open_connections = len(engine.transport.streams["WS"])
            for _ in range(50):
                if not engine.transport.streams["WS"]:
                    break
                await asyncio.sleep(0.02)
            start = time.monotonic()
            engine.endpoint.send_request(request_to(phone, "2"), phone, engine.transport.clock.now())
            engine.transport.pump()
            while not engine.failed and time.monotonic() - start < 5.0:
                await asyncio.sleep(0.01)
            return got, open_connections, len(engine.failed), time.monotonic() - start
        finally:
            await engine.transport.stop()

    got, open_connections, failed, took = run(loop_kind, main)
    assert got.startswith(b"OPTIONS sip:phone@df7jal23ls0d.invalid;transport=ws SIP/2.0\r\n")
    assert b"Via: SIP/2.0/WS 127.0.0.1:5997;branch=" in got
    assert open_connections == 1
    assert failed == 1 and took < 1.0


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_an_upgrade_without_the_sip_subprotocol_is_refused(loop_kind: str, tmp_path: Path) -> None:
    async def main() -> list[int]:
        engine = Engine(tmp_path)
        await engine.start()
        statuses = []
        try:
            for subprotocols in (None, ["chat"]):
                try:
                    async with connect(engine.url(), subprotocols=subprotocols, open_timeout=5):  # type: ignore[arg-type]
                        statuses.append(101)
                except InvalidStatus as exc:
                    statuses.append(exc.response.status_code)
            statuses.append(len(engine.transport.streams["WS"]))
            return statuses
        finally:
            await engine.transport.stop()

    assert run(loop_kind, main) == [400, 400, 0]


async def raw_upgrade(port: int, protocol: str = "sip") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-made upgrade (a raw socket can then send what no client library would)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                 f"Sec-WebSocket-Protocol: {protocol}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert b"Sec-WebSocket-Protocol: sip\r\n" in head
    return reader, writer


def frame(opcode: int, payload: bytes, *, masked: bool = True) -> bytes:
    """One final frame, client to server (RFC 6455 §5.2)."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, (0x80 if masked else 0) | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, (0x80 if masked else 0) | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, (0x80 if masked else 0) | 127, length)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def close_frame(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The server's close frame's code, and whether the server then closed the TCP connection."""
    head = await asyncio.wait_for(reader.readexactly(2), 5.0)
    assert head[0] == 0x88, head  # FIN + close
    payload = await reader.readexactly(head[1] & 0x7F)
    rest = await asyncio.wait_for(reader.read(), 5.0)
    return struct.unpack("!H", payload[:2])[0], rest == b""


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_oversized_unmasked_and_unknown_frames_are_closed_with_their_codes(loop_kind: str,
                                                                           tmp_path: Path) -> None:
    """A message past the SIP size limit closes with 1009 before its payload is read; an unmasked client
    frame and a reserved opcode with 1002 (protocol error); nothing reaches the SIP layer."""

    async def main() -> tuple[list[tuple[int, bool]], int, int]:
        engine = Engine(tmp_path)
        await engine.start()
        results = []
        try:
            for data in (struct.pack("!BBQ", 0x82, 0xFF, MAX_MESSAGE_BYTES + 1) + os.urandom(4),
                         frame(0x1, options(1), masked=False),
                         frame(0x3, b"reserved opcode")):
                reader, writer = await raw_upgrade(engine.ws_port)
                writer.write(data)
                results.append(await close_frame(reader))
                writer.close()
            await asyncio.sleep(0.05)
            return results, len(engine.peers), len(engine.transport.streams["WS"])
        finally:
            await engine.transport.stop()

    results, requests, left = run(loop_kind, main)
    assert results == [(1009, True), (1002, True), (1002, True)]
    assert requests == 0 and left == 0


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_pings_are_answered_and_a_silent_peer_is_pinged_then_closed(loop_kind: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's ping gets its pong; a quiet client that answers our pings stays connected over several
    intervals, one that does not is closed after two."""
    monkeypatch.setattr(SipWsProtocol, "ping_interval_s", 0.2)

    async def main() -> tuple[float, bool, bytes, float]:
        engine = Engine(tmp_path)
        await engine.start()
        try:
            async with engine.client(ping_interval=None) as conn:
                latency = await asyncio.wait_for(await conn.ping(b"are you there"), 5.0)
                await asyncio.sleep(1.0)  # five of our intervals, answered by the library's pongs
                await conn.send(options(1))
                alive = (await recv(conn)).startswith(b"SIP/2.0 200 OK")
            reader, writer = await raw_upgrade(engine.ws_port)
            start = time.monotonic()
            ping = await asyncio.wait_for(reader.readexactly(2), 5.0)  # a ping, unmasked from the server
            rest = await asyncio.wait_for(reader.read(), 5.0)  # then closed: the pong never came
            writer.close()
            return latency, alive, ping + rest, time.monotonic() - start
        finally:
            await engine.transport.stop()

    latency, alive, ping, closed_after = run(loop_kind, main)
    assert latency < 5.0 and alive
    assert ping == b"\x89\x00"  # FIN + ping, no payload; nothing after it before the close
    assert 0.1 < closed_after < 2.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_garbage_and_silent_upgrades_are_closed_in_bounded_time_and_leak_nothing(
        loop_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """300 connections that send garbage instead of an upgrade, 300 that send nothing, and 300 that send
    half an upgrade: each is closed by the engine (the garbage ones at once, the others at the upgrade's
    timeout), none reaches the SIP layer, and the process has the descriptors it had before."""
    attempts = 300
    timeout_s = 0.5
    monkeypatch.setattr(SipWsProtocol, "handshake_timeout_s", timeout_s)

    async def main() -> tuple[int, int, list[float], list[float], list[float], int, int]:
        engine = Engine(tmp_path)
        await engine.start()
        loop = asyncio.get_running_loop()
        before = open_fds()

        async def attempt(payload: bytes) -> float:
            sock = socket.socket()
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, ("127.0.0.1", engine.ws_port))
                if payload:
                    await loop.sock_sendall(sock, payload)
                start = time.monotonic()
                with contextlib.suppress(ConnectionResetError):
                    while await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout_s + 5.0):
                        pass
                return time.monotonic() - start
            finally:
                sock.close()

        try:
            garbage = await asyncio.gather(*(attempt(os.urandom(200) + b"\r\n\r\n") for _ in range(attempts)))
            silent = await asyncio.gather(*(attempt(b"") for _ in range(attempts)))
            half = await asyncio.gather(*(attempt(b"GET / HTTP/1.1\r\nHost: x\r\n") for _ in range(attempts)))
            await asyncio.sleep(0.2)
            after = open_fds()
            async with engine.client() as conn:  # the listener still works after all that
                await conn.send(options(1))
                answered = len(await recv(conn)) > 0
            return before, after, garbage, silent, half, len(engine.peers), int(answered)
        finally:
            await engine.transport.stop()

    before, after, garbage, silent, half, requests, answered = run(loop_kind, main)
    assert max(garbage) < 1.0
    assert min(silent) >= timeout_s * 0.8 and max(silent) < timeout_s + 2.0
    assert min(half) >= timeout_s * 0.8 and max(half) < timeout_s + 2.0
    assert after <= before
    assert requests == 1 and answered == 1


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_stop_closes_open_websockets_with_going_away(loop_kind: str, tmp_path: Path) -> None:
    async def main() -> int | None:
        engine = Engine(tmp_path)
        await engine.start()
        async with engine.client() as conn:
            await conn.send(options(1))
            await recv(conn)
            await engine.transport.stop()
            with contextlib.suppress(ConnectionClosed):
                await asyncio.wait_for(conn.recv(), 5.0)
            return conn.close_code

    assert run(loop_kind, main) == 1001


def test_the_module_limits_are_bounded() -> None:
    assert ws_module.WS_HANDSHAKE_TIMEOUT_S <= 10.0 and ws_module.WS_CLOSE_TIMEOUT_S <= 10.0


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_message_without_content_length_is_taken_whole(loop_kind: str, tmp_path: Path) -> None:
    """RFC 7118 §5.1: the WebSocket message is the SIP message, so Content-Length may be left out (over TCP
    the same message with a body is a 400: it cannot be framed)."""

    async def main() -> tuple[bytes, list[Peer]]:
        engine = Engine(tmp_path)
        await engine.start()
        try:
            async with engine.client() as conn:
                message = options(1, b"a body without a length").replace(b"Content-Length: 23\r\n", b"")
                assert b"Content-Length" not in message
                await conn.send(message)
                return await recv(conn), engine.peers
        finally:
            await engine.transport.stop()

    answer, peers = run(loop_kind, main)
    assert answer.startswith(b"SIP/2.0 200 OK\r\n")
    assert [p.transport for p in peers] == ["WS"]


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_fault_while_handling_a_connection_ends_that_connection_only(
        loop_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception out of the frame handling (a bug of ours or the library's) is counted and logged, the
    connection is aborted, nothing reaches the loop's exception handler, and the listener serves on."""
    original = SipWsProtocol._frame

    def broken(self: SipWsProtocol, frame: object) -> None:
        raise RuntimeError("injected")

    async def main() -> tuple[bool, int, bytes]:
        engine = Engine(tmp_path)
        await engine.start()
        try:
            monkeypatch.setattr(SipWsProtocol, "_frame", broken)
            async with engine.client() as conn:
                await conn.send(options(1))
                closed = False
                try:
                    await asyncio.wait_for(conn.recv(), 5.0)
                except ConnectionClosed:
                    closed = True
            monkeypatch.setattr(SipWsProtocol, "_frame", original)
            async with engine.client() as conn:
                await conn.send(options(2))
                answer = await recv(conn)
            return closed, engine.transport.internal_errors, answer
        finally:
            await engine.transport.stop()

    closed, errors, answer = run(loop_kind, main)
    assert closed and errors == 1
    assert answer.startswith(b"SIP/2.0 200 OK")
