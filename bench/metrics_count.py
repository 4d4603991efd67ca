#!/usr/bin/env python3
"""What counting SIP traffic for /metrics costs per message (issue 17).

usage: python3 bench/metrics_count.py [--runs 5] [--messages 200000]

Times engine.net.traffic.count_message (what SipTransport runs for each message received and sent) over a
registration's four messages (REGISTER, 401, REGISTER, 200), against the library way of doing the same:
prometheus_client ``Counter.labels(method).inc()``, with the start line parsed the same way. Prints the
median ns per message of --runs runs (CPU time of this process) for both.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry, Counter

from engine.net.traffic import RESPONSE_PREFIX, count_message

MESSAGES = (
    b"REGISTER sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\r\n",
    b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\r\n",
    b"REGISTER sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK2\r\n\r\n",
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK2\r\n\r\n",
)


def plain(n: int) -> float:
    counts: dict[bytes, int] = {}
    batch = MESSAGES * (n // len(MESSAGES))
    t = time.process_time()
    for data in batch:
        count_message(counts, data)
    return (time.process_time() - t) / len(batch) * 1e9


def library(n: int) -> float:
    registry = CollectorRegistry()
    requests = Counter("req", "requests", ["method"], registry=registry)
    responses = Counter("resp", "responses", ["cls"], registry=registry)
    batch = MESSAGES * (n // len(MESSAGES))
    t = time.process_time()
    for data in batch:
        if data.startswith(RESPONSE_PREFIX):
            responses.labels(data[8:9].decode()).inc()
        else:
            requests.labels(data[: data.find(b" ")].decode()).inc()
    return (time.process_time() - t) / len(batch) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args()
    for name, fn in (("count_message", plain), ("prometheus_client labels().inc()", library)):
        runs = [fn(args.messages) for _ in range(args.runs)]
        print(f"{name}: median {statistics.median(runs):.0f} ns/message (runs: "
              f"{', '.join(f'{r:.0f}' for r in runs)})")


if __name__ == "__main__":
    main()
