#!/usr/bin/env python3
"""CPU cost of one digest registration inside the engine, without sockets: what the Python SIP work costs.

usage: python3 bench/register_inproc.py [--users 3000] [--runs 5]

Feeds SipEndpoint + SipApplication (the code `pbx serve` runs per datagram) the two REGISTERs of a
registration, as SIPp's register_auth scenario sends them: the first gets 401, the second (with a valid
MD5 digest computed here) gets 200. Requests and digests are built before timing; only the engine's work is
timed, in CPU seconds of this process. Prints the minimum over --runs (the least disturbed by other
processes) and all runs. Compare with bench/register.sh, which measures the same flow over real UDP.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.call.app import SipApplication
from engine.call.config import CurrentConfig, EngineConfig
from engine.call.routing import RoutingConfig
from engine.clock import FakeClock
from engine.model import Company
from engine.server import tune_gc
from engine.sip.auth import Credentials, DigestAuthenticator, compute_ha1
from engine.sip.endpoint import EndpointConfig, SipEndpoint
from engine.sip.parser import parse_message
from engine.sip.registrar import Location, Registrar
from engine.sip.transaction import Peer

REALM = "bench.test"
PEER = Peer("UDP", "127.0.0.1", 5080)
URI = "sip:127.0.0.1:5070"


def register(user: str, i: int, authorization: str = "") -> bytes:
    cseq = 2 if authorization else 1
    auth = f"{authorization}\r\n" if authorization else ""
    return (
        f"REGISTER {URI} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-{i}-{cseq}\r\n"
        f"From: <sip:{user}@127.0.0.1>;tag=123R{i}\r\nTo: <sip:{user}@127.0.0.1>\r\n"
        f"Call-ID: {i}-123@127.0.0.1\r\n"
        f"CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@127.0.0.1:5080>\r\n{auth}Max-Forwards: 70\r\n"
        f"Expires: 3600\r\nUser-Agent: sipp-perf-anchor\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    users = [str(100000 + i) for i in range(args.users)]
    creds = {
        u: Credentials(u, REALM, compute_ha1(u, REALM, f"pw{u}"), compute_ha1(u, REALM, f"pw{u}", "SHA-256"))
        for u in users
    }
    clock = FakeClock()

    def new_app() -> tuple[SipEndpoint, SipApplication]:
        ep = SipEndpoint(EndpointConfig(), random_bytes=random.Random(1).randbytes)
        auth = DigestAuthenticator(REALM, b"k" * 32, algorithms=("MD5",), rng=random.Random(2))
        config = CurrentConfig(EngineConfig(1, creds, RoutingConfig(Company("bench", REALM))))
        return ep, SipApplication(ep, auth, Registrar(Location()), config, clock, None)

    # Build both requests of every registration up front (the client's work is not timed). Nonces are
    # stateless, so one authenticator instance's challenges verify in any instance with the same secret.
    ep, app = new_app()
    firsts, seconds = [], []
    for i, user in enumerate(users):
        firsts.append(register(user, i))
        ep.receive_datagram(register(user, i + 10**7), PEER, 0.0)
        event = ep.next_event()
        assert event is not None
        app.handle(event, 0.0)
        challenge = parse_message(ep.datagrams_to_send()[0][0]).get("www-authenticate") or ""
        params = dict(p.strip().split("=", 1) for p in challenge[len("Digest "):].split(","))
        nonce, opaque = params["nonce"].strip('"'), params["opaque"].strip('"')
        ha2 = hashlib.md5(f"REGISTER:{URI}".encode()).hexdigest()
        response = hashlib.md5(f"{creds[user].ha1_md5}:{nonce}:00000001:abc:auth:{ha2}".encode()).hexdigest()
        seconds.append(register(user, i, (
            f'Authorization: Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{URI}", '
            f'response="{response}", algorithm=MD5, cnonce="abc", qop=auth, nc=00000001, opaque="{opaque}"')))
    tune_gc()

    def timed(ep: SipEndpoint, app: SipApplication, msgs: list[bytes], expect: bytes) -> float:
        start = time.process_time()
        for data in msgs:
            ep.receive_datagram(data, PEER, 1.0)
            event = ep.next_event()
            assert event is not None
            app.handle(event, 1.0)
            out = ep.datagrams_to_send()
            assert out[0][0][8:11] == expect, out[0][0][:40]
        return (time.process_time() - start) / len(msgs) * 1e6

    results = []
    for _ in range(args.runs):
        ep, app = new_app()
        first = timed(ep, app, firsts, b"401")
        second = timed(ep, app, seconds, b"200")
        results.append((first + second, first, second))
    results.sort()
    total, first, second = results[0]
    print(f"python {sys.version.split()[0]}: per registration {total:.1f} us of CPU "
          f"(REGISTER -> 401: {first:.1f} us, REGISTER+digest -> 200: {second:.1f} us); "
          f"all runs: {[round(r[0]) for r in results]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
