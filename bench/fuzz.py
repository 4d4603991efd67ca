#!/usr/bin/env python3
"""The long fuzz run (issue 18 part 5): N fuzzed messages (default 1,000,000) at a fresh ``pbx serve``.

usage: .venv/bin/python bench/fuzz.py [--messages 1000000] [--tcp-share 0.25] [--seed 18]

Imports the ten test lines into a temporary data directory, starts
``pbx serve --rate-limit 0 --overload-cpu 0`` (no limits, as the load tests) on a free 127.0.0.1 port,
warms it up with 10,000 messages, then sends the rest as tests/integration/fuzzer.py does (UDP in batches
each closed by an OPTIONS that must be answered; TCP over connections of 40 messages), sampling the
server's RSS every 100,000 messages. Then an OPTIONS and a digest REGISTER over UDP and TCP must be
answered and the log must hold no traceback. Prints msgs/s, RSS before/after and the samples as a
markdown table for bench/RESULTS.md; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration import fuzzer
from tests.integration.harness import SMALL_USERS, PbxServer, run_pbx, write_company_file
from tests.integration.sipclient import SipClient

SAMPLE_EVERY = 100_000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--tcp-share", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pbx-fuzz-") as tmp:
        root = Path(tmp)
        company = write_company_file(root / "company.yaml", SMALL_USERS)
        data_dir = root / "data"
        run_pbx("import", str(company), "--data-dir", str(data_dir))
        server = PbxServer(data_dir, root / "pbx.log", log_level="info",
                           extra_args=("--rate-limit", "0", "--overload-cpu", "0"))
        server.start()
        try:
            return fuzz(server, args.messages, args.tcp_share, args.seed)
        finally:
            server.stop()


def fuzz(server: PbxServer, total: int, tcp_share: float, seed: int) -> int:
    warm = fuzzer.run(server.addr, udp=10_000, tcp=0, seed=seed - 1)
    if warm.failures:
        print("warm-up failed:", warm.failures)
        return 1
    rss_before = fuzzer.rss_bytes(server.pid)
    samples: list[tuple[int, int]] = [(0, rss_before)]
    tcp = int(total * tcp_share)

    def sample(sent: int) -> None:
        if sent - samples[-1][0] >= SAMPLE_EVERY:
            samples.append((sent, fuzzer.rss_bytes(server.pid)))

    started = time.monotonic()
    cpu0 = server_cpu(server.pid)
    stats = fuzzer.run(server.addr, udp=total - tcp, tcp=tcp, seed=seed, on_batch=sample)
    took = time.monotonic() - started
    cpu = server_cpu(server.pid) - cpu0
    rss_after = fuzzer.rss_bytes(server.pid)
    ok = not stats.failures
    for transport in ("UDP", "TCP"):
        with SipClient(server.addr, transport=transport, bind_host="127.0.0.2", domain="pbx.test") as phone:
            ok &= phone.options().status == 200
            ok &= phone.register(SMALL_USERS[0].extension, SMALL_USERS[0].password).status == 200
    log = server.log_text()
    tracebacks = log.count("Traceback")
    ok &= tracebacks == 0
    print(f"seed {seed}: {stats.sent} messages ({stats.udp_sent} UDP, {stats.tcp_sent} TCP over "
          f"{stats.tcp_connections} connections) in {took:.1f} s = {stats.sent / took:,.0f} msgs/s; "
          f"server CPU {cpu:.1f} s = {stats.sent / cpu:,.0f} msgs per CPU-s; answers {stats.answers}; "
          f"markers {stats.markers}, slowest {stats.max_marker_s * 1000:.0f} ms")
    print(f"RSS before {rss_before / 2**20:.1f} MiB, after {rss_after / 2**20:.1f} MiB; "
          f"tracebacks {tracebacks}; failures {stats.failures}; alive after: {'yes' if ok else 'NO'}")
    print("| messages sent | RSS MiB |\n|---|---|")
    for sent, rss in [*samples, (stats.sent, rss_after)]:
        print(f"| {sent:,} | {rss / 2**20:.1f} |")
    return 0 if ok else 1


def server_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
