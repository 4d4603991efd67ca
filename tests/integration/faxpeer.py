"""A test-only fax machine on the network: a SIP user agent over UDP (INVITE with a PCMU offer, ACK, BYE;
it answers the engine's BYE) with its own RTP socket, running a spandsp fax sender on the call's audio.

It plays a carrier's caller: bound on 127.0.0.2 (the test company's trunk source), it calls a DID and
sends a TIFF. Its RTP is paced by absolute 20 ms deadlines in a thread; ``loss`` drops that share of the
packets it sends (towards the engine) and ``loss_in`` of those it receives (default the same), at random
from a seeded generator; ``hangup_after_pages`` sends BYE a little after that many pages were confirmed.

Why the modem is the engine's thin spandsp binding (``engine.media.fax.FaxTerminal``) and not a second
one: the binding is declarations, not logic; what the tests compare is the bitmaps decoded from the files
on both sides and the SIP and RTP on the wire, which this peer produces on its own (SIP text, RTP
headers and G.711 here, independent of the engine's SIP stack and media code).
"""

from __future__ import annotations

import random
import re
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from engine.media.fax import FaxOutcome, FaxTerminal

from .sipclient import SipClient, SipResponse

FRAME = 160
PTIME_S = 0.02


def _ulaw_tables() -> tuple[np.ndarray, np.ndarray]:
    """G.711 µ-law (ITU-T G.711 segment encoding), built here rather than taken from the engine."""
    bias, clip = 0x84, 32635
    encode = np.zeros(65536, dtype=np.uint8)
    for i in range(65536):
        sample = i - 65536 if i >= 32768 else i
        sign = 0x80 if sample < 0 else 0
        magnitude = min(-sample - 1 if sample < 0 else sample, clip) + bias  # one's complement for negatives
        exponent = max(0, magnitude.bit_length() - 8)
        mantissa = (magnitude >> (exponent + 3)) & 0x0F
        encode[i] = ~(sign | (exponent << 4) | mantissa) & 0xFF
    decode = np.zeros(256, dtype=np.int16)
    for byte in range(256):
        u = ~byte & 0xFF
        magnitude = (((u & 0x0F) << 3) + bias) << ((u >> 4) & 0x07)
        decode[byte] = -(magnitude - bias) if u & 0x80 else magnitude - bias
    return encode, decode


ULAW_ENCODE, ULAW_DECODE = _ulaw_tables()


@dataclass
class FaxCall:
    """What one fax call did: the final INVITE response, who hung up, the sender's outcome."""

    status: int = 0
    outcome: FaxOutcome | None = None
    bye_from_engine: bool = False
    bye_sent: bool = False
    packets_sent: int = 0
    packets_received: int = 0
    dropped: int = 0
    errors: list[str] = field(default_factory=list)


class FaxPeer:
    """See the module docstring. ``send(did, tiff)`` runs one fax call to the end (blocking)."""

    def __init__(self, server: tuple[str, int], *, host: str = "127.0.0.2",
                 station_id: str = "+49 89 555 0100", loss: float = 0.0, loss_in: float | None = None,
                 seed: int = 14, hangup_after_pages: int | None = None) -> None:
        self.server = server
        self.host = host
        self.station_id = station_id
        self.loss = loss
        self.loss_in = loss if loss_in is None else loss_in
        self.rng = random.Random(seed)
        self.hangup_after_pages = hangup_after_pages
        # the modem belongs to the media thread; the SIP side reads these (pages confirmed, phase E)
        self._pages = 0
        self._finished = False

    def send(self, did: str, tiff: str, *, timeout: float = 240.0) -> FaxCall:
        result = FaxCall()
        self._pages, self._finished = 0, False
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind((self.host, 0))
        rtp.setblocking(False)
        with SipClient(self.server, bind_host=self.host, domain=f"{self.server[0]}:{self.server[1]}") as sip:
            try:
                self._call(sip, rtp, did, tiff, result, timeout)
            finally:
                rtp.close()
        return result

    # -- SIP -------------------------------------------------------------------------------------------

    def _call(self, sip: SipClient, rtp: socket.socket, did: str, tiff: str, result: FaxCall,
              timeout: float) -> None:
        rtp_port = rtp.getsockname()[1]
        sdp = (f"v=0\r\no=fax 1 1 IN IP4 {self.host}\r\ns=fax\r\nc=IN IP4 {self.host}\r\nt=0 0\r\n"
               f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
               "a=sendrecv\r\n").encode()
        uri = f"sip:{did}@{self.server[0]}:{self.server[1]}"
        contact = sip.contact_uri("fax")
        invite = sip.build("INVITE", uri, [("Contact", f"<{contact}>"), ("Content-Type", "application/sdp")],
                           body=sdp, from_user="+498955501000", to_user=did)
        response = sip.transact(invite, timeout=15.0)
        result.status = response.status
        if response.status != 200:
            return
        to = response.get("to") or ""
        cseq = int(re.match(r"\d+", response.get("cseq") or "1").group())  # type: ignore[union-attr]
        target = re.search(r"<([^>]+)>", response.get("contact") or "")
        remote = target.group(1) if target else uri
        ack = self._in_dialog(sip, "ACK", remote, to, cseq)
        sip.send_raw(ack)
        host, port = self._media_address(response)
        terminal = FaxTerminal(calling=True, station_id=self.station_id, tx_path=tiff)
        stop = threading.Event()
        media = threading.Thread(target=self._media, args=(rtp, (host, port), terminal, stop, result),
                                 daemon=True)
        media.start()
        deadline = time.monotonic() + timeout
        hangup_at: float | None = None
        try:
            while time.monotonic() < deadline and not result.bye_from_engine:
                if self.hangup_after_pages is not None and hangup_at is None \
                        and self._pages >= self.hangup_after_pages:
                    hangup_at = time.monotonic() + 2.0  # into the next page
                if hangup_at is not None and time.monotonic() >= hangup_at:
                    break
                if self._finished and hangup_at is None:
                    hangup_at = time.monotonic() + 3.0  # the engine's BYE should come first
                data = sip.transport.recv(0.05)
                if data is not None and not data.startswith(b"SIP/2.0"):
                    self._answer_request(sip, data, result)
            stop.set()
            media.join(5.0)
            if not result.bye_from_engine:
                bye = self._in_dialog(sip, "BYE", remote, to, cseq + 1)
                result.bye_sent = True
                final = sip.transact(bye, timeout=10.0)
                if final.status != 200:
                    result.errors.append(f"BYE got {final.status}")
        finally:
            stop.set()
            media.join(5.0)
            terminal.hangup()
            result.outcome = terminal.result
            terminal.close()

    def _in_dialog(self, sip: SipClient, method: str, remote: str, to: str, cseq: int) -> bytes:
        host, port = sip.local
        lines = [
            f"{method} {remote} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:+498955501000@{sip.domain}>;tag={sip.tag}",
            f"To: {to}",
            f"Call-ID: {sip.call_id}",
            f"CSeq: {cseq} {method}",
            "Content-Length: 0",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    @staticmethod
    def _answer_request(sip: SipClient, data: bytes, result: FaxCall) -> None:
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        lines = head.split("\r\n")
        method = lines[0].split(" ", 1)[0]
        copied = ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")
        keep = [line for line in lines[1:] if line.split(":", 1)[0].strip().lower() in copied]
        reply = "\r\n".join(["SIP/2.0 200 OK", *keep, "Content-Length: 0"]) + "\r\n\r\n"
        sip.transport.send(reply.encode())
        if method == "BYE":
            result.bye_from_engine = True

    @staticmethod
    def _media_address(response: SipResponse) -> tuple[str, int]:
        body = response.body.decode()
        host = re.search(r"c=IN IP4 (\S+)", body)
        port = re.search(r"m=audio (\d+)", body)
        assert host and port, body
        return host.group(1), int(port.group(1))

    # -- RTP -------------------------------------------------------------------------------------------

    def _media(self, rtp: socket.socket, remote: tuple[str, int], terminal: FaxTerminal,
               stop: threading.Event, result: FaxCall) -> None:
        ssrc = secrets.randbits(32)
        seq = secrets.randbits(16)
        timestamp = secrets.randbits(32)
        start = time.monotonic()
        tick = 0
        try:
            while not stop.is_set():
                while True:  # localhost neither loses nor reorders; the packets we drop are filled in
                    try:
                        data, _ = rtp.recvfrom(2048)
                    except BlockingIOError:
                        break
                    if len(data) < 12 or data[1] & 0x7F != 0:
                        continue
                    result.packets_received += 1
                    if self.rng.random() < self.loss_in:
                        result.dropped += 1
                        terminal.receive(None, FRAME)
                    else:
                        terminal.receive(ULAW_DECODE[np.frombuffer(data[12:], dtype=np.uint8)], FRAME)

                samples = terminal.transmit(FRAME)
                payload = ULAW_ENCODE[samples.view(np.uint16)].tobytes()
                header = struct.pack("!BBHII", 0x80, 0, seq, timestamp & 0xFFFFFFFF, ssrc)
                seq = (seq + 1) & 0xFFFF
                timestamp += FRAME
                if self.rng.random() < self.loss:
                    result.dropped += 1
                else:
                    try:
                        rtp.sendto(header + payload, remote)
                        result.packets_sent += 1
                    except OSError as exc:
                        result.errors.append(f"RTP send: {exc}")
                self._pages = terminal.pages
                self._finished = terminal.finished
                tick += 1
                delay = start + tick * PTIME_S - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        except Exception as exc:  # surfaced through result.errors: a thread must not die silently
            result.errors.append(f"media thread: {exc!r}")
