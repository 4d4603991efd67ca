"""SipTransport on a real event loop and real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random

from engine.clock import LoopClock
from engine.net.transport import SipTransport
from engine.sip.endpoint import EndpointConfig, SipEndpoint
from engine.sip.message import Request, make_response
from engine.sip.parser import parse_message
from engine.sip.transaction import Peer


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
        endpoint = SipEndpoint(EndpointConfig(), random.Random(1))
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
