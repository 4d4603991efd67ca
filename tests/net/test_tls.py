"""SIP over TLS in SipTransport on a real event loop (asyncio and uvloop) and real sockets on 127.0.0.1:
framing of the decrypted stream, CRLF keep-alives, answers and our own requests over the phone's connection,
and handshakes that fail or never finish closed in bounded time without leaking descriptors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import uvloop

from engine.clock import LoopClock
from engine.net.certificate import client_context, default_certificate, server_context
from engine.net.transport import SipTransport
from engine.sip.endpoint import EndpointConfig, SipEndpoint
from engine.sip.events import Event, RequestReceived
from engine.sip.message import Request, make_response
from engine.sip.transaction import Peer

T = TypeVar("T")
NOW = 1_796_601_600.0  # the certificate's "now" (2026-12-07)
LOOPS = ["asyncio", "uvloop"]


def run(loop_kind: str, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` on the loop; anything that reaches the loop's exception handler fails the test."""
    leaked: list[dict[str, object]] = []

    async def wrapped() -> T:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: leaked.append(context))
        return await main()

    result = uvloop.run(wrapped()) if loop_kind == "uvloop" else asyncio.run(wrapped())
    assert not leaked, leaked
    return result


def options(i: int, body: bytes = b"") -> bytes:
    return (
        f"OPTIONS sip:127.0.0.1;transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bK-{i}\r\n"
        f"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: c{i}\r\nCSeq: 1 OPTIONS\r\n"
        f"{'Content-Type: text/plain' + chr(13) + chr(10) if body else ''}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def insecure_client() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    return context


class Engine:
    """A transport with a TLS listener whose application answers every request 200 and notes its peer."""

    def __init__(self, tmp: Path) -> None:
        self.files, _ = default_certificate(tmp, ("127.0.0.1",), NOW)
        self.endpoint = SipEndpoint(EndpointConfig(via_port=5999, tls_port=5998),
                                    random_bytes=random.Random(1).randbytes)
        self.peers: list[Peer] = []
        self.transport = SipTransport(self.endpoint, self.answer, LoopClock(asyncio.get_running_loop()))
        self.port = 0

    def answer(self, event: Event, now: float) -> None:
        if isinstance(event, RequestReceived) and event.transaction is not None:
            self.peers.append(event.transaction.peer)
            self.endpoint.respond(event.transaction, make_response(event.request, 200, to_tag="t"), now)

    async def start(self, handshake_timeout_s: float = 10.0) -> None:
        _, self.port = await self.transport.start_tls("127.0.0.1", 0, server_context(self.files),
                                                      client_context(), handshake_timeout_s)


async def close(writer: asyncio.StreamWriter) -> None:
    """Close the client's TLS stream and wait until it is closed (no transport left for the GC to find)."""
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def read_messages(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        out.append(head + await reader.readexactly(length))
    return out


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_messages_whole_split_and_batched_are_answered_over_the_connection(loop_kind: str,
                                                                           tmp_path: Path) -> None:
    async def main() -> tuple[list[bytes], list[Peer], bytes, tuple[str, int]]:
        engine = Engine(tmp_path)
        await engine.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.port, ssl=insecure_client(),
                                                       server_hostname="127.0.0.1")
        try:
            writer.write(options(1))  # whole
            first = await read_messages(reader, 1)
            for byte in options(2, b"hello"):  # one byte per TLS record
                writer.write(bytes([byte]))
                await writer.drain()
            writer.write(options(3) + options(4))  # two in one record
            rest = await read_messages(reader, 3)
            writer.write(b"\r\n\r\n")  # a CRLF keep-alive ping
            pong = await asyncio.wait_for(reader.readexactly(2), 5.0)
            local = writer.get_extra_info("sockname")
            return first + rest, engine.peers, pong, (str(local[0]), int(local[1]))
        finally:
            await close(writer)
            await engine.transport.stop()

    answers, peers, pong, local = run(loop_kind, main)
    assert [a.split(b"\r\n")[0] for a in answers] == [b"SIP/2.0 200 OK"] * 4
    assert [a.split(b"Call-ID: ")[1].split(b"\r\n")[0] for a in answers] == [b"c1", b"c2", b"c3", b"c4"]
    assert all(b"Via: SIP/2.0/TLS 127.0.0.1:9;" in a for a in answers)
    assert peers == [Peer("TLS", *local)] * 4
    assert pong == b"\r\n"  # RFC 5626 §4.4.1


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_our_request_to_a_tls_phone_goes_over_its_connection_with_our_tls_via(loop_kind: str,
                                                                                tmp_path: Path) -> None:
    """A call to a phone registered over TLS: the INVITE (here an OPTIONS) reuses the phone's connection
    (RFC 5626 flow reuse), and our Via names TLS and the TLS listener's port."""

    async def main() -> tuple[bytes, int]:
        engine = Engine(tmp_path)
        await engine.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.port, ssl=insecure_client(),
                                                       server_hostname="127.0.0.1")
        try:
            writer.write(options(1))
            await read_messages(reader, 1)
            phone = engine.peers[0]
            request = Request("OPTIONS", f"sip:phone@127.0.0.1:{phone.port};transport=tls")
            for name, value in (("from", "<sip:pbx@127.0.0.1>;tag=9"), ("to", "<sip:phone@127.0.0.1>"),
                                ("call-id", "ours"), ("cseq", "1 OPTIONS"), ("max-forwards", "70")):
                request.add(name, value)
            engine.endpoint.send_request(request, phone, engine.transport.clock.now())
            engine.transport.pump()
            got = await read_messages(reader, 1)
            return got[0], len(engine.transport.streams["TLS"])
        finally:
            await close(writer)
            await engine.transport.stop()

    got, open_connections = run(loop_kind, main)
    assert got.startswith(b"OPTIONS sip:phone@")
    assert b"Via: SIP/2.0/TLS 127.0.0.1:5998;branch=" in got
    assert open_connections == 1


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_garbage_and_silent_handshakes_are_closed_in_bounded_time_and_leak_nothing(loop_kind: str,
                                                                                    tmp_path: Path) -> None:
    """200 connections that send garbage instead of a ClientHello, and 200 that send nothing: every one is
    closed by the engine (the garbage ones at once, the silent ones at the handshake timeout), none
    reaches the SIP layer, and the process has the descriptors it had before."""
    attempts = 200
    timeout_s = 1.0

    async def main() -> tuple[int, int, float, float, int, int]:
        engine = Engine(tmp_path)
        await engine.start(handshake_timeout_s=timeout_s)
        loop = asyncio.get_running_loop()
        before = open_fds()

        async def closed_by_peer(sock: socket.socket) -> float:
            start = time.monotonic()
            while True:
                try:
                    data = await loop.sock_recv(sock, 4096)
                except ConnectionResetError:
                    break
                if not data:
                    break
            return time.monotonic() - start

        async def attempt(payload: bytes) -> float:
            sock = socket.socket()
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, ("127.0.0.1", engine.port))
                if payload:
                    await loop.sock_sendall(sock, payload)
                return await asyncio.wait_for(closed_by_peer(sock), timeout_s + 5.0)
            finally:
                sock.close()

        try:
            # Not a record header: random bytes opening with 0x16 announce a handshake record whose rest is
            # then waited for (the silent case, closed at the timeout).
            junk = [b"NOT TLS " + os.urandom(300) + b"\r\n\r\n" for _ in range(attempts)]
            garbage = await asyncio.gather(*(attempt(payload) for payload in junk))
            silent = await asyncio.gather(*(attempt(b"") for _ in range(attempts)))
            await asyncio.sleep(0.2)
            after = open_fds()
            # The listener still works after all that.
            reader, writer = await asyncio.open_connection("127.0.0.1", engine.port, ssl=insecure_client(),
                                                           server_hostname="127.0.0.1")
            writer.write(options(1))
            answered = len(await read_messages(reader, 1))
            await close(writer)
            return before, after, max(garbage), max(silent), len(engine.peers), answered
        finally:
            await engine.transport.stop()

    before, after, slowest_garbage, slowest_silent, reached_sip, answered = run(loop_kind, main)
    assert after <= before, f"{after - before} descriptors leaked after {2 * attempts} failed handshakes"
    assert slowest_garbage < timeout_s  # refused at the first record, not left to time out
    assert timeout_s * 0.5 < slowest_silent < timeout_s + 3.0
    assert reached_sip == 1 and answered == 1  # only the real client's OPTIONS
