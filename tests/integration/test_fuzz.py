"""Issue 18 part 5, kept in CI: 100,000 fuzzed messages (tests/integration/fuzzer.py: mutations of the
torture corpus and of the project's own messages, seeded) over UDP and TCP at a real ``pbx serve`` (limits
off, as the load tests run it). Meanwhile a phone on 127.0.0.2 keeps getting its OPTIONS and REGISTERs
(with digest) answered over UDP and TCP; afterwards it still does, the log has no traceback, and the
server's resident memory grew by less than ``RSS_GROWTH_LIMIT`` after a warm-up.
The longer run (1,000,000 messages, figures) is bench/fuzz.py."""

from __future__ import annotations

import threading
import time

import pytest

from . import fuzzer
from .harness import SMALL_USERS, PbxServer
from .sipclient import SipClient, SipClientError

pytestmark = pytest.mark.integration

SEED = 18
UDP_MESSAGES = 75_000
TCP_MESSAGES = 25_000
WARM_UP = 10_000
RSS_GROWTH_LIMIT = 48 << 20
PROBE_EVERY_S = 0.5


class Prober(threading.Thread):
    """A phone on 127.0.0.2: OPTIONS over UDP and REGISTER with digest over UDP or TCP, in turn."""

    def __init__(self, server: PbxServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.stop = threading.Event()
        self.answered = 0
        self.worst_s = 0.0
        self.failures: list[str] = []

    def once(self, n: int) -> None:
        user = SMALL_USERS[n % len(SMALL_USERS)]
        started = time.monotonic()
        transport = "TCP" if n % 4 == 3 else "UDP"
        with SipClient(self.server.addr, transport=transport, bind_host="127.0.0.2",
                       domain="pbx.test") as phone:
            if n % 2 == 0:
                status = phone.options(timeout=8.0).status
                want = 200
            else:
                status = phone.register(user.extension, user.password, expires=60, timeout=8.0).status
                want = 200
        took = time.monotonic() - started
        self.worst_s = max(self.worst_s, took)
        if status != want:
            self.failures.append(f"probe {n} ({transport}) answered {status}, not {want}")
        self.answered += 1

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                self.once(n)
            except (SipClientError, OSError) as exc:
                self.failures.append(f"probe {n}: {exc}")
            n += 1
            self.stop.wait(PROBE_EVERY_S)


def test_fuzzed_messages_leave_the_server_alive_and_its_memory_flat(pbx_factory) -> None:
    server = pbx_factory(log_level="info", extra_args=("--rate-limit", "0", "--overload-cpu", "0"))
    seeds = fuzzer.all_seeds()
    assert len(fuzzer.torture_seeds()) >= 30 and len(seeds) >= 50, "corpora missing"

    warm = fuzzer.run(server.addr, udp=WARM_UP, tcp=0, seed=SEED - 1)
    assert not warm.failures, warm.failures
    rss_before = fuzzer.rss_bytes(server.pid)

    prober = Prober(server)
    prober.start()
    started = time.monotonic()
    try:
        stats = fuzzer.run(server.addr, udp=UDP_MESSAGES, tcp=TCP_MESSAGES, seed=SEED)
    finally:
        prober.stop.set()
        prober.join(timeout=30)
    took = time.monotonic() - started
    rss_after = fuzzer.rss_bytes(server.pid)
    report = (f"seed {SEED}: {stats} in {took:.1f} s; probes {prober.answered}, worst {prober.worst_s:.2f} s;"
              f" RSS {rss_before >> 20} -> {rss_after >> 20} MiB\n{server.log_tail(30)}")
    assert not stats.failures, report
    assert stats.udp_sent == UDP_MESSAGES and stats.tcp_sent == TCP_MESSAGES, report
    assert stats.answers > 10_000, report  # most of the fuzz is answered (400 and friends), not dropped
    assert prober.answered >= 4 and not prober.failures, f"{prober.failures}\n{report}"
    for transport in ("UDP", "TCP"):
        with SipClient(server.addr, transport=transport, bind_host="127.0.0.2", domain="pbx.test") as phone:
            assert phone.options().status == 200
            assert phone.register(SMALL_USERS[0].extension, SMALL_USERS[0].password).status == 200
    log = server.log_text()
    assert "Traceback" not in log and "internal error" not in log, report
    assert rss_after - rss_before < RSS_GROWTH_LIMIT, report
