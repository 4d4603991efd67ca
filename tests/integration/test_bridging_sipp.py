"""Hold and resume of a leg by the engine (``engine.call.bridging``) against a real SIP stack: SIPp.

No phone can ask for these operations yet (transfers, park and queues will), so the engine runs in this
process on real UDP sockets on 127.0.0.1 (``SipTransport``, ``SipEndpoint``, ``CallManager`` with an
``RtpRelay``) and the test calls the operations itself. SIPp places the call (tests/integration/scenarios/
uac_call.xml) and plays the called phone (uas_held.xml), which fails unless the engine's first re-INVITE
carries a=sendonly and its second a=sendrecv, each ACKed after SIPp's 200; SIPp must exit 0.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from engine.call.b2bua import Branch, CallInfo, CallManager, CallState, Destination
from engine.clock import LoopClock
from engine.media.io import RtpRelay
from engine.model.cdr import CallRecord, Direction, Disposition
from engine.net.transport import SipTransport
from engine.sip.endpoint import EndpointConfig, SipEndpoint
from engine.sip.events import Event, RequestReceived
from engine.sip.transaction import Peer
from tests.media.test_io import free_range

from .harness import free_port, require_tool

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).parent / "scenarios"
HOST = "127.0.0.1"


def sipp(binary: str, tmp: Path, name: str, scenario: str, port: int, *args: str) -> subprocess.Popen[bytes]:
    cmd = [binary, "-sf", str(SCENARIOS / scenario), "-i", HOST, "-p", str(port), "-m", "1", "-nostdin",
           "-timeout", "20s", "-timeout_error", "-trace_msg", "-message_file", str(tmp / f"{name}.msg"),
           *args]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_the_engine_holds_and_resumes_a_sipp_phone_and_the_call_goes_on(tmp_path: Path) -> None:
    binary = require_tool("sipp", "apt-get install sip-tester (scripts/test.sh does)")

    async def scenario() -> tuple[list[int], list[CallRecord], list[bool]]:
        loop = asyncio.get_running_loop()
        clock = LoopClock(loop)
        endpoint = SipEndpoint(EndpointConfig(via_host=HOST, via_port=5060))
        cdrs: list[CallRecord] = []
        relay = RtpRelay(HOST, *free_range(2), loop=loop)
        uas_port = free_port()
        calls: CallManager | None = None

        def handle(event: Event, now: float) -> None:
            assert calls is not None
            if calls.handle(event, now):
                return
            if isinstance(event, RequestReceived) and event.transaction is not None \
                    and event.request.method == "INVITE":
                branch = Branch(f"sip:phone@{HOST}:{uas_port}", Peer("UDP", HOST, uas_port))
                destination = Destination(branches=(branch,), from_address="<sip:caller@pbx.test>",
                                          to_address="<sip:202@pbx.test>")
                info = CallInfo(Direction.INTERNAL, caller="201", caller_name="", callee="202")
                calls.start_call(event.request, event.transaction, event.peer, destination, info, now)

        transport = SipTransport(endpoint, handle, clock)
        calls = CallManager(endpoint, loop, transport.pump, relay, HOST, cdrs.append, clock)
        port = 0
        for _ in range(20):  # a port free for UDP and TCP now may be taken by a parallel test next moment
            try:
                _, port = await transport.start(HOST, free_port())
                break
            except OSError:
                await transport.stop()
        else:
            relay.close_all()
            pytest.fail("no free SIP port")
        endpoint.config = EndpointConfig(via_host=HOST, via_port=port)
        results: list[int] = []
        states: list[bool] = []
        uas = sipp(binary, tmp_path, "uas", "uas_held.xml", uas_port)
        await asyncio.sleep(0.3)
        uac = sipp(binary, tmp_path, "uac", "uac_call.xml", free_port(), "-s", "202", "-d", "4000",
                   f"{HOST}:{port}")
        try:
            for _ in range(300):  # the call is answered and ACKed
                call = next(iter(calls.calls.values()), None)
                if call is not None and call.state is CallState.ANSWERED and call.callee_side is not None:
                    break
                await asyncio.sleep(0.01)
            else:
                logs = "".join((tmp_path / f"{n}.msg").read_text(errors="replace")
                               for n in ("uac", "uas") if (tmp_path / f"{n}.msg").exists())
                pytest.fail(f"the call was not answered\n{logs[-4000:]}")
            await asyncio.sleep(0.3)
            callee = call.callee_side
            assert callee is not None
            assert calls.bridging.hold(callee, clock.now(), results.append)
            transport.pump()
            for _ in range(200):
                if results:
                    break
                await asyncio.sleep(0.01)
            states.append(callee.held)
            await asyncio.sleep(0.2)
            assert calls.bridging.resume(callee, clock.now(), results.append)
            transport.pump()
            for _ in range(200):
                if len(results) == 2:
                    break
                await asyncio.sleep(0.01)
            states.append(callee.held)
            for proc, name in ((uac, "uac"), (uas, "uas")):
                while proc.poll() is None:
                    await asyncio.sleep(0.05)
                if proc.returncode != 0:
                    log = (tmp_path / f"{name}.msg")
                    text = log.read_text(errors="replace") if log.exists() else ""
                    pytest.fail(f"sipp {name} exited {proc.returncode}\n{text[-4000:]}")
            await asyncio.sleep(0.2)
            assert calls.calls == {} and relay.session_count == 0
        finally:
            for proc in (uac, uas):
                if proc.poll() is None:
                    proc.kill()
                proc.communicate()
            await transport.stop()
            relay.close_all()
        return results, cdrs, states

    results, cdrs, states = asyncio.run(scenario())
    assert results == [200, 200]  # both re-INVITEs answered 200 by SIPp
    assert states == [True, False]
    assert len(cdrs) == 1 and cdrs[0].disposition is Disposition.ANSWERED
    assert cdrs[0].hangup_cause == "caller hung up"
