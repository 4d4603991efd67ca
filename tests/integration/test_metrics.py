"""Prometheus ``/metrics`` of a real ``pbx serve`` (issue 17): after SIPp registers eight lines and a line
makes two calls that fail (an unregistered extension, an unknown number), the scrape's counts moved by
exactly what was sent: REGISTERs and their 401/200 answers, INVITEs, ACKs and 407/480/404, registrations,
call attempts and the calls' outcomes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .harness import SCENARIO_DIR, SMALL_USERS, PbxServer, free_port, require_tool, wait_http
from .sipclient import SipClient
from .test_calls_sipp import invite
from .test_sipp import write_injection_file

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

CALLER = SMALL_USERS[0].extension  # 1000: calls, never registers
AWAY = SMALL_USERS[1].extension  # 1001: never registers (480)
REGISTERING = SMALL_USERS[2:]  # 1002..1009, by SIPp


def scrape(url: str) -> Samples:
    resp = httpx.get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_real_sip_traffic(pbx_factory: Callable[..., PbxServer], tmp_path: Path) -> None:
    sipp = require_tool("sipp", "apt-get install sip-tester (scripts/test.sh does)")
    http_port = free_port()
    server = pbx_factory(log_level="info", extra_args=["--http", f"127.0.0.1:{http_port}"])
    url = f"http://127.0.0.1:{http_port}/metrics"
    wait_http(url)
    before = scrape(url)
    assert value(before, "pbx_registrations") == 0

    inf = write_injection_file(tmp_path / "users.csv", [(u.extension, u.password) for u in REGISTERING])
    once = ["-i", "127.0.0.1", "-timeout", "30s", "-recv_timeout", "5000", "-nostdin", "-r", "20"]
    cmd = [sipp, "-sf", str(SCENARIO_DIR / "register_auth.xml"), "-inf", str(inf), *once]
    cmd += ["-m", str(len(REGISTERING)), "-p", str(free_port()), f"{server.host}:{server.port}"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with SipClient(server.addr, domain="pbx.test") as c:
        assert invite(c, AWAY, CALLER).status == 480
        assert invite(c, "99", CALLER).status == 404

    regs = len(REGISTERING)
    deadline = time.monotonic() + 10.0
    while True:  # the CDRs (outcomes) are handed over as the calls end, maybe after the final response
        after = scrape(url)
        finished = sum(v for (n, _), v in after.items() if n == "pbx_calls_finished_total")
        if finished >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(after, "pbx_registrations") == regs
    assert value(after, "pbx_registered_aors") == regs
    assert moved("pbx_sip_requests_received_total", method="REGISTER") == 2 * regs  # challenged, then 200
    assert moved("pbx_sip_requests_received_total", method="INVITE") == 4  # each answered 407 first
    assert moved("pbx_sip_requests_received_total", method="ACK") == 4  # for 407, 407, 480, 404
    assert moved("pbx_sip_responses_sent_total", **{"class": "2xx"}) == regs
    assert moved("pbx_sip_responses_sent_total", **{"class": "4xx"}) == regs + 4  # 401s, 407s, 480, 404
    assert moved("pbx_call_attempts_total") == 2
    assert moved("pbx_calls_finished_total", disposition="unavailable") == 1
    assert moved("pbx_calls_finished_total", disposition="not_found") == 1
    assert value(after, "pbx_active_calls") == 0
    assert ("pbx_sip_transactions", ()) in after and ("pbx_relay_sessions", ()) in after
