#!/usr/bin/env python3
"""Parse + serialise throughput of a typical INVITE and REGISTER (messages/s, median of runs).

usage: python3 bench/parse.py [--runs 7] [--seconds 1.0]

For each message it measures three things, each as the median of --runs runs of about --seconds each:
  parse        parse_message(bytes) (lazy: start line and header split only)
  parse+route  parse plus the typed views a registrar or proxy reads (top Via, Call-ID, CSeq, From/To tags,
               Contact, Max-Forwards) and the sanity checks
  round trip   parse, typed views, then serialise (unchanged headers reuse their original text)
Rates are per second of this process's CPU time, so a busy shared machine does not skew them.
Prints one line per (message, measure) and a markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.sip.message import Request
from engine.sip.parser import parse_message
from engine.sip.sanity import check_request

INVITE = (
    b"INVITE sip:201@pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice Example" <sip:202@pbx.example.com>;tag=1928301774\r\n'
    b"To: <sip:201@pbx.example.com>\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:202@192.0.2.10:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: Yealink SIP-T46U 108.86.0.20\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 227\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=- 20518 0 IN IP4 192.0.2.10\r\n"
    b"s=SDP data\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 11796 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

REGISTER = (
    b"REGISTER sip:pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds7;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:201@pbx.example.com>;tag=a73kszlfl\r\n"
    b"To: <sip:201@pbx.example.com>\r\n"
    b"Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.10\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Contact: <sip:201@192.0.2.10:5060;transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000"
    b'-000A95A0E128>";reg-id=1\r\n'
    b'Authorization: Digest username="201", realm="pbx.example.com", nonce="AAABk8xZ0AAAbC0Nqz1-_Mx4Q", '
    b'uri="sip:pbx.example.com", response="6629fae49393a05397450978507c4ef1", algorithm=MD5, '
    b'cnonce="0a4f113b", qop=auth, nc=00000001\r\n'
    b"Expires: 3600\r\n"
    b"User-Agent: Yealink SIP-T46U 108.86.0.20\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

SUPPORTED = frozenset({"path"})


def parse_only(data: bytes) -> object:
    return parse_message(data)


def parse_route(data: bytes) -> object:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    check_request(msg, SUPPORTED)
    return (msg.top_via.branch, msg.call_id, msg.cseq, msg.from_.tag, msg.to.tag, msg.addresses("contact"))


def round_trip(data: bytes) -> bytes:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    check_request(msg, SUPPORTED)
    _ = (msg.top_via.branch, msg.call_id, msg.cseq, msg.from_.tag, msg.to.tag, msg.addresses("contact"))
    return msg.serialize()


def rate(fn: Callable[[bytes], object], data: bytes, seconds: float) -> float:
    """Messages per second of this process's CPU time (process_time): other processes on a shared,
    noisy machine slow the wall clock, not the CPU seconds one message costs."""
    n = 0
    batch = 500
    start = time.process_time()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn(data)
        n += batch
        now = time.process_time()
        if now >= deadline:
            return n / (now - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()
    assert parse_message(round_trip(INVITE)).body == parse_message(INVITE).body  # sanity of the setup
    rows = []
    for name, data in (("INVITE", INVITE), ("REGISTER", REGISTER)):
        for label, fn in (("parse", parse_only), ("parse+route", parse_route), ("round trip", round_trip)):
            rates = [rate(fn, data, args.seconds) for _ in range(args.runs)]
            med = statistics.median(rates)
            rows.append((name, len(data), label, med, min(rates), max(rates)))
            print(f"{name:8s} {len(data):4d} B  {label:12s} median {med:10,.0f} msg/s  "
                  f"({1e6 / med:6.2f} µs/msg; min {min(rates):,.0f} max {max(rates):,.0f})", flush=True)
    print()
    print("| message | bytes | measure | median msg/s | µs/msg | runs (min-max msg/s) |")
    print("|---|---|---|---|---|---|")
    for name, size, label, med, lo, hi in rows:
        print(f"| {name} | {size} | {label} | {med:,.0f} | {1e6 / med:.2f} "
              f"| {args.runs} ({lo:,.0f}-{hi:,.0f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
