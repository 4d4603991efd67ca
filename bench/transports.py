#!/usr/bin/env python3
"""REGISTER/s over UDP, TCP, TLS, WS and WSS against one ``pbx serve``, and the CPU cost of SRTP per packet.

usage: python3 bench/transports.py [--rounds 5] [--registrations 2000] [--clients 20] [--users 200]
                                   [--srtp-packets 200000] [--only register|srtp]

REGISTER: one engine (``pbx serve --tls --ws --wss --rate-limit 0 --log-level warning``, the repo's venv)
with --users lines; --clients concurrent clients per transport, each on its own socket or connection kept
open (as a phone keeps its TLS or WebSocket connection: the handshakes are not in the figures), each
registering users one after another: REGISTER -> 401 -> REGISTER with an MD5 digest -> 200. Each round runs
every transport once for --registrations registrations, in a rotated order (no transport always first);
per transport the medians over rounds of registrations/s (wall clock) and of the server's CPU per
registration (utime+stime of the pbx process from /proc, µs). The clients are Python too (uvloop): on a
2-core machine they compete with the server, so the CPU per registration is the figure that compares
transports; registrations/s is what this client and server reach together.

SRTP: the work the relay adds per packet on an SRTP leg, engine.media.srtp.SrtpContext (libsrtp through
pylibsrtp): a 172-byte RTP packet (12-byte header + 20 ms of G.711) decrypted as it arrives from the phone
and the packet going back encrypted, timed in CPU seconds over --srtp-packets pairs (minimum of 5 runs).
Compare with bench/relay.py's CPU per relayed plain packet (printed at the end when run with it).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import secrets
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REALM = "bench.test"
TRANSPORTS = ("UDP", "TCP", "TLS", "WS", "WSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


class Engine:
    def __init__(self, users: int, tmp: Path) -> None:
        self.ports = {"UDP": free_port(), "TLS": free_port(), "WS": free_port(), "WSS": free_port()}
        self.ports["TCP"] = self.ports["UDP"]
        data = tmp / "data"
        company = tmp / "company.yaml"
        company.write_text(yaml.safe_dump({
            "version": 1,
            "company": {"name": "Bench", "sip_realm": REALM, "timezone": "Europe/Berlin", "country": "DE"},
            "users": [{"first_name": "U", "last_name": str(i), "extension": str(100000 + i),
                       "sip_password": f"pw{100000 + i}", "voicemail": False} for i in range(users)],
        }))
        pbx = str(REPO / ".venv" / "bin" / "pbx")
        subprocess.run([pbx, "import", str(company), "--data-dir", str(data)], check=True,
                       stdout=subprocess.DEVNULL)
        self.log = (tmp / "pbx.log").open("w")
        self.proc = subprocess.Popen(
            [pbx, "serve", "--data-dir", str(data), "--sip", f"127.0.0.1:{self.ports['UDP']}",
             "--tls", f"127.0.0.1:{self.ports['TLS']}", "--ws", f"127.0.0.1:{self.ports['WS']}",
             "--wss", f"127.0.0.1:{self.ports['WSS']}", "--rate-limit", "0", "--log-level", "warning",
             "--http", f"127.0.0.1:{free_port()}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.ports["WSS"]), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("pbx serve did not start; see its log")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


# -- one client: a socket or connection and the REGISTER exchange ---------------------------------------
def insecure() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the engine's self-signed certificate
    return context


class Client:
    """Sends one message and waits for the next response on its transport."""

    async def open(self, kind: str, port: int) -> None:
        self.kind = kind
        loop = asyncio.get_running_loop()
        if kind == "UDP":
            self.queue: asyncio.Queue[bytes] = asyncio.Queue()
            queue = self.queue

            class Proto(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: object) -> None:
                    queue.put_nowait(data)

            self.udp, _ = await loop.create_datagram_endpoint(Proto, remote_addr=("127.0.0.1", port))
            self.local = self.udp.get_extra_info("sockname")
        elif kind in ("TCP", "TLS"):
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=insecure() if kind == "TLS" else None,
                server_hostname="127.0.0.1" if kind == "TLS" else None)
            self.local = self.writer.get_extra_info("sockname")
        else:
            from websockets.asyncio.client import connect

            scheme = kind.lower()
            self.ws = await connect(f"{scheme}://127.0.0.1:{port}", subprotocols=["sip"],
                                    ssl=insecure() if kind == "WSS" else None, ping_interval=None)
            self.local = (f"{secrets.token_hex(4)}.invalid", 0)

    async def exchange(self, data: bytes) -> bytes:
        if self.kind == "UDP":
            self.udp.sendto(data)
            return await asyncio.wait_for(self.queue.get(), 5)
        if self.kind in ("TCP", "TLS"):
            self.writer.write(data)
            head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
            length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
            return head + (await self.reader.readexactly(length) if length else b"")
        await self.ws.send(data.decode())
        message = await asyncio.wait_for(self.ws.recv(), 5)
        return message.encode() if isinstance(message, str) else message

    async def close(self) -> None:
        if self.kind == "UDP":
            self.udp.close()
        elif self.kind in ("TCP", "TLS"):
            self.writer.close()
        else:
            await self.ws.close()


def register(kind: str, local: tuple[str, int], uri: str, user: str, call_id: str, cseq: int,
             auth: str = "") -> bytes:
    if kind in ("WS", "WSS"):
        sent_by, contact = local[0], f"sip:{user}@{local[0]};transport={kind.lower()}"
    else:
        sent_by = f"{local[0]}:{local[1]}"
        contact = f"sip:{user}@{sent_by}" + ("" if kind == "UDP" else f";transport={kind.lower()}")
    branch = f"z9hG4bK{secrets.token_hex(6)}"
    return (f"REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/{kind} {sent_by};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{user}@{REALM}>;tag={call_id[:8]}\r\n"
            f"To: <sip:{user}@{REALM}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: 3600\r\n"
            f"{auth}Content-Length: 0\r\n\r\n").encode()


def digest(challenge: bytes, user: str, uri: str) -> str:
    header = re.search(rb"WWW-Authenticate: Digest (.*)\r\n", challenge, re.I)
    assert header is not None, challenge[:300]
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', header.group(1).decode()))
    ha1 = hashlib.md5(f"{user}:{params['realm']}:pw{user}".encode()).hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
    cnonce = secrets.token_hex(4)
    response = hashlib.md5(f"{ha1}:{params['nonce']}:00000001:{cnonce}:auth:{ha2}".encode()).hexdigest()
    opaque = f', opaque="{params["opaque"]}"' if "opaque" in params else ""
    return (f'Authorization: Digest username="{user}", realm="{params["realm"]}", '
            f'nonce="{params["nonce"]}", uri="{uri}", response="{response}", algorithm=MD5, qop=auth, '
            f'nc=00000001, '
            f'cnonce="{cnonce}"{opaque}\r\n')


async def run_transport(kind: str, port: int, count: int, clients: int, users: int) -> float:
    """``count`` registrations over ``clients`` connections; returns the wall seconds they took."""
    uri = f"sip:{REALM}"
    conns = [Client() for _ in range(clients)]
    await asyncio.gather(*(c.open(kind, port) for c in conns))
    per = count // clients

    async def work(n: int, client: Client) -> None:
        for i in range(per):
            user = str(100000 + (n * per + i) % users)
            call_id = secrets.token_hex(8)
            first = await client.exchange(register(kind, client.local, uri, user, call_id, 1))
            assert first.startswith(b"SIP/2.0 401"), first[:200]
            second = await client.exchange(register(kind, client.local, uri, user, call_id, 2,
                                                    digest(first, user, uri)))
            assert second.startswith(b"SIP/2.0 200"), second[:300]

    start = time.perf_counter()
    await asyncio.gather(*(work(n, c) for n, c in enumerate(conns)))
    took = time.perf_counter() - start
    await asyncio.gather(*(c.close() for c in conns))
    return took


def bench_register(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(args.users, Path(tmp))
        hz = os.sysconf("SC_CLK_TCK")
        rates: dict[str, list[float]] = {k: [] for k in TRANSPORTS}
        cpu: dict[str, list[float]] = {k: [] for k in TRANSPORTS}
        try:
            count = args.registrations - args.registrations % args.clients
            for kind in TRANSPORTS:  # warm-up: caches, first connections
                warm = args.clients * 5
                uvloop.run(run_transport(kind, engine.ports[kind], warm, args.clients, args.users))
            for r in range(args.rounds):
                order = TRANSPORTS[r % len(TRANSPORTS):] + TRANSPORTS[:r % len(TRANSPORTS)]
                for kind in order:
                    before = cpu_ticks(engine.proc.pid)
                    took = uvloop.run(run_transport(kind, engine.ports[kind], count, args.clients,
                                                    args.users))
                    used = (cpu_ticks(engine.proc.pid) - before) / hz
                    rates[kind].append(count / took)
                    cpu[kind].append(used / count * 1e6)
                print(f"round {r + 1}: " + "  ".join(f"{k} {rates[k][-1]:.0f}/s {cpu[k][-1]:.0f} µs"
                                                     for k in TRANSPORTS), flush=True)
        finally:
            engine.stop()
    print("\n| transport | registrations/s (median) | server CPU per registration (median) | rounds |")
    print("| --- | ---: | ---: | --- |")
    for k in TRANSPORTS:
        print(f"| {k} | {statistics.median(rates[k]):.0f} | {statistics.median(cpu[k]):.0f} µs | "
              + ", ".join(f"{x:.0f}" for x in rates[k]) + " |")


def bench_srtp(args: argparse.Namespace) -> None:
    from engine.media.srtp import SrtpContext

    phone_key, our_key = os.urandom(30), os.urandom(30)
    relay = SrtpContext(phone_key, our_key)
    phone = SrtpContext(our_key, phone_key)  # the phone's side: what it sends, relay.decrypt opens
    n = args.srtp_packets
    inbound = [phone.encrypt(bytes([0x80, 0]) + (i & 0xFFFF).to_bytes(2, "big") + (i * 160).to_bytes(4, "big")
                             + b"\x00\x00\x00\x01" + os.urandom(160), False) for i in range(n)]
    plain_out = [bytes([0x80, 0]) + (i & 0xFFFF).to_bytes(2, "big") + (i * 160).to_bytes(4, "big")
                 + b"\x00\x00\x00\x02" + os.urandom(160) for i in range(n)]
    runs = []
    for _ in range(5):
        relay = SrtpContext(phone_key, our_key)  # fresh replay windows
        decrypt, encrypt = relay.decrypt, relay.encrypt
        start = time.process_time()
        for packet, out in zip(inbound, plain_out, strict=True):
            decrypt(packet, False)  # type: ignore[arg-type]
            encrypt(out, False)
        runs.append((time.process_time() - start) / n * 1e6)
        assert relay.failed == 0
    best = min(runs)
    print(f"\nSRTP: decrypt (phone -> relay) + encrypt (relay -> phone) of a 172-byte RTP packet: "
          f"{best:.2f} µs CPU per pair, {best / 2:.2f} µs per packet "
          f"(min of 5 runs over {n} pairs; runs {', '.join(f'{x:.2f}' for x in runs)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--registrations", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--srtp-packets", type=int, default=200_000)
    ap.add_argument("--only", choices=("register", "srtp"))
    args = ap.parse_args()
    steps: list[Callable[[argparse.Namespace], Awaitable[None] | None]] = []
    if args.only in (None, "register"):
        steps.append(bench_register)
    if args.only in (None, "srtp"):
        steps.append(bench_srtp)
    for step in steps:
        step(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
