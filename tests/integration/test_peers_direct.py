"""The softphone peers themselves, calling each other directly on 127.0.0.1 with no PBX in between.

These pin down that pjsua2_phone.py and baresip_phone.py place, answer, reject and cancel calls, carry
audio both ways, DTMF and hold, so that a failing call through ``pbx serve`` points at the PBX, not at the
peers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ..peers.softphone import Softphone
from .audio import dominant_frequency, signal_seconds, wav_duration, write_tone
from .harness import PeerProcess, require_module, require_tool

pytestmark = pytest.mark.integration

Peers = Callable[..., PeerProcess]
TONE_TOLERANCE_HZ = 20.0


def need_pjsua2() -> None:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")


def need_baresip() -> None:
    require_tool("baresip", "apt-get install baresip (scripts/test.sh does)")


def make_phone(kind: str, name: str, tmp_path: Path, peers: Peers, **kw: object) -> Softphone:
    factory = Softphone.pjsua2 if kind == "pjsua2" else Softphone.baresip
    return factory(name, tmp_path, user=name, spawn=peers, **kw).start()  # type: ignore[arg-type]


def assert_tone(wav: str, hz: float, min_signal_s: float) -> None:
    heard = dominant_frequency(wav)
    assert abs(heard - hz) <= TONE_TOLERANCE_HZ, f"{wav}: dominant {heard:.1f} Hz, expected {hz} Hz"
    loud = signal_seconds(wav)
    assert loud >= min_signal_s, f"{wav}: only {loud:.2f} s of {wav_duration(wav):.2f} s carry signal"


def connect(a: Softphone, b: Softphone) -> dict[str, object]:
    """A calls B directly; B (auto-answering) rings first, then both sides are CONFIRMED; B's media."""
    a.call(b.uri)
    incoming = b.wait_for("incoming_call")
    assert "sip:a@" in str(incoming["from"]), incoming
    ringing = a.wait_state("EARLY")
    assert ringing["last_code"] == 180, ringing
    a.wait_state("CONFIRMED")
    b.wait_state("CONFIRMED")
    a.wait_for("media_state", lambda e: e["state"] == "active")
    return b.wait_for("media_state", lambda e: e["state"] == "active")


def test_pjsua2_calls_pjsua2_with_audio_dtmf_and_hold(peers: Peers, tmp_path: Path) -> None:
    need_pjsua2()
    tone = write_tone(tmp_path / "tone-1000.wav", 1000.0, 2.0)
    b = make_phone("pjsua2", "b", tmp_path, peers, auto_answer=200, ring_seconds=0.5)
    a = make_phone("pjsua2", "a", tmp_path, peers)
    media = connect(a, b)
    assert media["codec"] == "PCMU" and str(media["remote_rtp"]).startswith("127.0.0.1:"), media

    b.record(tmp_path / "b-heard.wav")
    a.play(tone)  # 2 s of tone, looping
    time.sleep(2.5)
    finished = b.stop_record()
    assert_tone(str(finished["path"]), 1000.0, min_signal_s=1.5)

    a.dtmf("12#")
    digits = "".join(str(b.wait_for("dtmf")["digit"]) for _ in range(3))
    assert digits == "12#"

    a.hold()
    a.wait_for("media_state", lambda e: e["state"] == "hold")
    b.wait_for("media_state", lambda e: e["state"] == "remote_hold")
    a.unhold()
    a.wait_for("media_state", lambda e: e["state"] == "active")
    b.wait_for("media_state", lambda e: e["state"] == "active")

    b.hangup()
    assert b.wait_state("DISCONNECTED")["last_code"] == 200
    a.wait_state("DISCONNECTED")
    a.wait_for("play_stopped")
    assert a.close() == 0 and b.close() == 0


def test_pjsua2_calls_baresip_with_audio_both_ways(peers: Peers, tmp_path: Path) -> None:
    need_pjsua2()
    need_baresip()
    tone_a = write_tone(tmp_path / "tone-1000.wav", 1000.0, 2.0)
    tone_b = write_tone(tmp_path / "tone-600.wav", 600.0, 1.0)
    b = make_phone("baresip", "b", tmp_path, peers, auto_answer=200, ring_seconds=0.5)
    a = make_phone("pjsua2", "a", tmp_path, peers)
    b.record(tmp_path / "b-heard.wav")  # before the call: records the next call from its start
    connect(a, b)

    a.record(tmp_path / "a-heard.wav")
    a.play(tone_a)
    b.play(tone_b)
    b.dtmf("7")
    time.sleep(3.0)
    assert a.wait_for("dtmf")["digit"] == "7"
    heard_by_a = a.stop_record()
    assert_tone(str(heard_by_a["path"]), 600.0, min_signal_s=1.5)

    a.hangup()
    a.wait_state("DISCONNECTED")
    assert b.wait_state("DISCONNECTED")["reason"] == "Connection reset by peer"
    heard_by_b = b.wait_record_finished()
    assert_tone(str(heard_by_b["path"]), 1000.0, min_signal_s=2.0)
    assert a.close() == 0 and b.close() == 0


@pytest.mark.parametrize(
    ("caller", "callee"), [("pjsua2", "pjsua2"), ("baresip", "pjsua2"), ("pjsua2", "baresip")]
)
def test_busy_callee_gives_486(peers: Peers, tmp_path: Path, caller: str, callee: str) -> None:
    need_pjsua2()
    if "baresip" in (caller, callee):
        need_baresip()
    b = make_phone(callee, "b", tmp_path, peers)
    b.auto_answer(486, 0.3)  # the runtime command; --auto-answer 486 does the same from the start
    a = make_phone(caller, "a", tmp_path, peers)
    a.call(b.uri)
    b.wait_for("incoming_call")
    ended = a.wait_state("DISCONNECTED")
    assert ended["last_code"] == 486, ended
    assert b.wait_state("DISCONNECTED")["last_code"] == 486
    assert not any(e.get("state") == "CONFIRMED" for e in a.events + b.events)
    assert a.close() == 0 and b.close() == 0


@pytest.mark.parametrize("callee", ["pjsua2", "baresip"])
def test_caller_cancels_while_ringing(peers: Peers, tmp_path: Path, callee: str) -> None:
    need_pjsua2()
    if callee == "baresip":
        need_baresip()
    b = make_phone(callee, "b", tmp_path, peers)  # manual answer: it only rings
    a = make_phone("pjsua2", "a", tmp_path, peers)
    a.call(b.uri)
    b.wait_for("incoming_call")
    a.wait_state("EARLY")
    a.hangup()  # CANCEL
    assert a.wait_state("DISCONNECTED")["last_code"] == 487
    assert b.wait_state("DISCONNECTED")["last_code"] == 487
    if callee == "pjsua2":
        b.answer(200)
        assert "no unanswered" in str(b.wait_for("error")["message"])
    assert a.close() == 0 and b.close() == 0
