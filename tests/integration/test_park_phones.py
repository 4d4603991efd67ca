"""Call park between real phones registered to ``pbx serve`` (issue 19, part 3; ``engine.call.park``):
pjsua2 A calls B, B blind-transfers A to the park extension 70 (REFER) and hears the orbit spoken before
the engine releases it; A hears the hold music (checked by frequency) while parked; C dials the orbit 71
and A and C hear each other's tones. A call nobody takes back rings B's line after the park timeout (and
is hung up when B does not answer); an empty orbit answers 404; a transfer to a star code is refused and
the call goes on. After every test ``pbx_parked_calls`` and the engine's call tables are 0 (``/metrics``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..peers.softphone import Softphone
from .audio import dominant_frequency, signal_seconds
from .harness import PbxServer, PeerProcess, free_port, require_module
from .test_calls_phones import REALM, answered_call, company_yaml, is_ended, media, rtp_range
from .test_transfer_phones import A_HZ, C_HZ, TransferRig, assert_hears, talk, tones, xfer_statuses

pytestmark = pytest.mark.integration

__all__ = ["tones"]  # the fixture, imported for these tests

HOLD_HZ = (440.0, 660.0)  # the system hold music's two notes (engine.media.hold.default_music)


class ParkRig(TransferRig):
    def parked(self) -> float:
        return self.gauge("pbx_parked_calls")

    def gauge(self, name: str) -> float:
        resp = httpx.get(self.metrics, timeout=10)
        resp.raise_for_status()
        for family in text_string_to_metric_families(resp.text):
            for s in family.samples:
                if s.name == name:
                    return float(s.value)
        pytest.fail(f"/metrics has no {name}")

    def assert_idle(self, timeout: float = 10.0) -> None:
        super().assert_idle(timeout)
        assert self.parked() == 0


RigMaker = Callable[[float], ParkRig]


@pytest.fixture
def make_rig(pbx_factory: Callable[..., PbxServer], peers: Callable[..., PeerProcess],
             tmp_path: Path) -> Iterator[RigMaker]:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    made: list[ParkRig] = []

    def make(park_timeout: float) -> ParkRig:
        company = tmp_path / "company.yaml"
        company.write_text(company_yaml(media_release=False))
        rtp = rtp_range()
        http = free_port()
        server = pbx_factory(company_file=company, extra_args=[
            "--rtp-ports", f"{rtp[0]}-{rtp[1]}", "--http", f"127.0.0.1:{http}", "--ring-timeout", "8",
            "--park-timeout", str(park_timeout)])
        rig = ParkRig(server, rtp, tmp_path, peers)
        rig.metrics = f"http://127.0.0.1:{http}/metrics"
        made.append(rig)
        return rig

    try:
        yield make
    finally:
        for rig in made:
            rig.close_phones()


def park(rig: ParkRig, a: Softphone, b: Softphone, then_answer: int | None = None) -> str:
    """A calls B, B parks A on 70: B's NOTIFYs are 100 then 200, the engine BYEs B; what B heard
    meanwhile (the orbit spoken). ``then_answer``: how B answers calls from then on."""
    answered_call(rig, a, b, "202")
    media(a)
    media(b)
    if then_answer is not None:
        b.auto_answer(then_answer, 0.2)
    b.send(f"record {rig.tmp / 'parker.wav'}")
    b.wait_for("recording")
    b.send(f"xfer {rig.uri('70')}")
    codes = [e["code"] for e in xfer_statuses(b)]
    assert codes[0] == 100 and codes[-1] == 200, codes
    assert b.wait_state("DISCONNECTED")["last_code"] == 200
    heard = str(b.wait_for("record_finished")["path"])
    assert not any(is_ended(e) for e in a.events)
    return heard


def assert_hears_hold_music(rig: ParkRig, a: Softphone, name: str) -> None:
    a.send(f"record {rig.tmp / name}")
    a.wait_for("recording")
    time.sleep(2.5)
    a.send("stop_record")
    heard = str(a.wait_record_finished()["path"])
    dominant = dominant_frequency(heard)
    assert any(abs(dominant - hz) <= 20 for hz in HOLD_HZ), f"{heard}: dominant {dominant:.1f} Hz"


def connected_then_idle(rig: ParkRig, a: Softphone, x: Softphone, tones: tuple[Path, Path], name: str,
                        ender: Softphone) -> None:
    """A and X hear each other's tones; ``ender`` hangs up, the other phone is released, the engine idles."""
    a_heard, x_heard = talk(rig, a, x, tones[0], tones[1], name)
    assert_hears(x_heard, A_HZ)
    assert_hears(a_heard, C_HZ)
    ender.hangup()
    (x if ender is a else a).wait_state("DISCONNECTED")
    rig.assert_idle()


def test_park_and_retrieve_from_another_phone(make_rig: RigMaker, tones: tuple[Path, Path]) -> None:
    rig = make_rig(60)
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    c = rig.phone("c", "203")
    a = rig.phone("a", "201")
    parker_heard = park(rig, a, b)
    assert signal_seconds(parker_heard) >= 1.0, "B did not hear the orbit spoken"
    assert rig.parked() == 1
    assert_hears_hold_music(rig, a, "parked.wav")

    c.call(rig.uri("71"))
    c.wait_state("CONFIRMED")
    media(c)
    assert rig.parked() == 0
    connected_then_idle(rig, a, c, tones, "retrieved", ender=c)


def test_an_empty_orbit_answers_404_and_a_parked_caller_may_hang_up(make_rig: RigMaker) -> None:
    rig = make_rig(60)
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    c = rig.phone("c", "203")
    a = rig.phone("a", "201")
    c.call(rig.uri("71"))
    assert c.wait_state("DISCONNECTED")["last_code"] == 404
    park(rig, a, b)
    c.call(rig.uri("72"))  # A is on 71
    assert c.wait_state("DISCONNECTED")["last_code"] == 404
    assert rig.parked() == 1
    a.hangup()
    a.wait_state("DISCONNECTED")
    rig.assert_idle()


def test_an_unretrieved_call_rings_the_parker_back(make_rig: RigMaker, tones: tuple[Path, Path]) -> None:
    rig = make_rig(3)
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    a = rig.phone("a", "201")
    park(rig, a, b)
    callback = b.wait_for("incoming_call", timeout=15)
    assert f"sip:202@{REALM}" in str(callback["from"]), callback
    b.wait_for("call_state", lambda e: e.get("state") == "CONFIRMED" and e.get("call") == callback["call"])
    assert rig.parked() == 0
    media(a)  # A was re-INVITEd onto the call-back's relay port
    connected_then_idle(rig, a, b, tones, "park-callback", ender=a)


def test_a_call_back_nobody_answers_hangs_the_parked_call_up(make_rig: RigMaker) -> None:
    rig = make_rig(2)
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    a = rig.phone("a", "201")
    park(rig, a, b, then_answer=486)
    b.wait_for("incoming_call", timeout=15)
    a.wait_state("DISCONNECTED", timeout=15)
    rig.assert_idle()


def test_a_blind_transfer_to_a_star_code_is_refused(make_rig: RigMaker, tones: tuple[Path, Path]) -> None:
    rig = make_rig(60)
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    a = rig.phone("a", "201")
    answered_call(rig, a, b, "202")
    media(a)
    media(b)
    b.send(f"xfer {rig.uri('*78')}")  # DND on: it would have been B's
    statuses = xfer_statuses(b)
    assert statuses[-1]["code"] == 403, statuses
    connected_then_idle(rig, a, b, tones, "star-refused", ender=b)  # still connected
