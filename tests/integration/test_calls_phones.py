"""Calls between real softphones registered to ``pbx serve`` (issue 3's acceptance): pjsua2 calls pjsua2 and
baresip through the B2BUA with audio checked by its frequency, busy / no answer / cancel / unknown number,
hold and resume end to end, parallel ringing of two phones on one line, and media release inside an allowed
network. Every call's CDR is read back with ``pbx cdr list --json``.

Media is anchored by default: each phone must see the PBX's relay (127.0.0.1, a port in the ``--rtp-ports``
range given to the server) as its remote RTP address, never the other phone.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..peers.softphone import Event, Softphone
from .audio import dominant_frequency, signal_seconds, wav_duration, write_tone
from .harness import PbxServer, PeerProcess, bindings_of, require_module, require_tool

pytestmark = pytest.mark.integration

Peers = Callable[..., PeerProcess]
REALM = "pbx.test"
TONE_HZ = 1000.0
TONE_TOLERANCE_HZ = 20.0
#: extension -> (first name, last name); each line's password is ``secret-<extension>``.
LINES = {
    "201": ("Anna", "Caller"),
    "202": ("Ben", "Callee"),
    "203": ("Cem", "Busy"),
    "204": ("Dora", "Ringing"),
    "205": ("Emil", "Twice"),
}


def password(ext: str) -> str:
    return f"secret-{ext}"


def line_name(ext: str) -> str:
    return " ".join(LINES[ext])


def company_yaml(*, media_release: bool, hold_clip: Path | None = None) -> str:
    release = '\n  media_release_networks: ["127.0.0.0/8"]' if media_release else ""
    if hold_clip is not None:
        release += "\n  hold_clip: hold"
    clips = "" if hold_clip is None else f"sound_clips:\n  - {{name: hold, file: {hold_clip}}}\n"
    users = "\n".join(
        f'  - {{first_name: {first}, last_name: {last}, extension: "{ext}", sip_password: {password(ext)}, '
        "voicemail: false}"  # busy and no answer must reach the caller here (voicemail: test_voicemail.py)
        for ext, (first, last) in LINES.items()
    )
    return f"""version: 1
company:
  name: Phones Test GmbH
  sip_realm: {REALM}
  country: DE
  area_code: "30"{release}
users:
{users}
{clips}"""


def rtp_range() -> tuple[int, int]:
    """60 ports for the relay, at random in 30000-30999 or 32000-32767: outside the engine's default
    20000-29999 (which a ``pbx serve`` or relay bench running alongside may hold), baresip's 31000-31100 and
    Linux's ephemeral ports from 32768 on, where pjsua2's RTP sockets land. The relay skips ports someone
    else holds, so only a whole range taken would fail a call (with 503 "no free media ports")."""
    starts = [*range(30000, 30940, 2), *range(32000, 32708, 2)]
    first = random.choice(starts)
    return first, first + 59


def host_port(addr: str) -> tuple[str, int]:
    host, _, port = str(addr).rpartition(":")
    return host, int(port)


@dataclass
class Rig:
    """A running ``pbx serve`` with the five lines, and how to start phones against it."""

    server: PbxServer
    rtp: tuple[int, int]
    tmp: Path
    spawn: Peers
    phones: list[Softphone] = field(default_factory=list)

    @property
    def registrar(self) -> str:
        return f"{self.server.host}:{self.server.port}"

    def uri(self, ext: str) -> str:
        return f"sip:{ext}@{self.registrar}"

    def phone(self, name: str, ext: str, kind: str = "pjsua2", **kw: Any) -> Softphone:
        """A phone registered as ``ext`` (fails the test unless the registration gets 200)."""
        factory = Softphone.baresip if kind == "baresip" else Softphone.pjsua2
        phone = factory(
            name, self.tmp, user=ext, password=password(ext), registrar=self.registrar, spawn=self.spawn, **kw
        )
        self.phones.append(phone)
        phone.start()
        phone.wait_registered()
        return phone

    def is_relay(self, addr: str) -> bool:
        host, port = host_port(addr)
        return host == self.server.host and self.rtp[0] <= port <= self.rtp[1]

    def cdrs(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The CDRs once there are exactly ``count`` (``PbxServer.cdrs``)."""
        return self.server.cdrs(count, timeout, exact=True)

    def close_phones(self) -> list[int]:
        return [phone.close() for phone in self.phones]


RigFactory = Callable[..., Rig]


@pytest.fixture
def rig_factory(pbx_factory: Callable[..., PbxServer], peers: Peers, tmp_path: Path) -> Iterator[RigFactory]:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    rigs: list[Rig] = []

    def make(*, media_release: bool = False, ring_timeout: float | None = None, name: str = "pbx",
             hold_clip: Path | None = None) -> Rig:
        company = tmp_path / f"{name}-company.yaml"
        company.write_text(company_yaml(media_release=media_release, hold_clip=hold_clip))
        rtp = rtp_range()
        args = ["--rtp-ports", f"{rtp[0]}-{rtp[1]}"]
        if ring_timeout is not None:
            args += ["--ring-timeout", str(ring_timeout)]
        server = pbx_factory(company_file=company, name=name, extra_args=args)
        rig = Rig(server, rtp, tmp_path, peers)
        rigs.append(rig)
        return rig

    try:
        yield make
    finally:
        for rig in rigs:  # the peers fixture stops them too; this is the orderly way (hang up, unregister)
            rig.close_phones()


@pytest.fixture
def rig(rig_factory: RigFactory) -> Rig:
    return rig_factory()


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    return write_tone(tmp_path / "tone-1000.wav", TONE_HZ, 2.0)


def assert_tone(wav: str, min_signal_s: float) -> None:
    heard = dominant_frequency(wav)
    assert abs(heard - TONE_HZ) <= TONE_TOLERANCE_HZ, f"{wav}: dominant {heard:.1f} Hz, expected {TONE_HZ}"
    loud = signal_seconds(wav)
    assert loud >= min_signal_s, f"{wav}: only {loud:.2f} s of {wav_duration(wav):.2f} s carry signal"


def is_ended(e: Event) -> bool:
    return e.get("ev") == "call_state" and e.get("state") == "DISCONNECTED"


def answered_call(rig: Rig, a: Softphone, b: Softphone, callee_ext: str, caller_ext: str = "201") -> Event:
    """A calls ``callee_ext``; A hears ringing, B (auto-answering) gets the INVITE from A's line, and both
    reach CONFIRMED; B's incoming_call event."""
    a.call(rig.uri(callee_ext))
    a.wait_state("EARLY")  # a refusal fails here at once, with A's events
    incoming = b.wait_for("incoming_call")
    assert f"sip:{caller_ext}@{REALM}" in str(incoming["from"]), incoming
    a.wait_state("CONFIRMED")
    b.wait_state("CONFIRMED")
    return incoming


def media(phone: Softphone, state: str = "active") -> Event:
    return phone.wait_for("media_state", lambda e: e.get("state") == state, fail_on=is_ended)


def record_tone(rig: Rig, a: Softphone, b: Softphone, tone: Path, name: str, seconds: float = 2.5) -> str:
    """A plays the tone, B records ``seconds`` of the call; the recorded WAV's path."""
    b.record(rig.tmp / f"{name}.wav")
    a.play(tone)
    time.sleep(seconds)
    finished = b.stop_record()
    a.stop_play()
    return str(finished["path"])


def assert_answered_cdr(cdr: dict[str, Any], callee: str, talk_s: tuple[float, float]) -> None:
    """An internal call from 201 that ``callee`` answered and hung up after ``talk_s`` (min, max) seconds."""
    assert cdr["direction"] == "internal" and cdr["disposition"] == "answered", cdr
    assert cdr["caller"] == "201" and cdr["callee"] == callee and cdr["status"] == 200, cdr
    assert cdr["caller_name"] == line_name("201"), cdr
    assert cdr["hangup_cause"] == "callee hung up", cdr
    assert talk_s[0] <= cdr["duration"] <= talk_s[1], (talk_s, cdr)
    assert cdr["started_at"] <= cdr["answered_at"] <= cdr["ended_at"], cdr
    assert [leg["status"] for leg in cdr["legs"]] == [200], cdr


# -- 1. pjsua2 -> pjsua2 ---------------------------------------------------------------------------------
def test_pjsua2_calls_pjsua2_through_the_pbx_with_audio(rig: Rig, tone: Path) -> None:
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.5)
    a = rig.phone("a", "201")
    started = time.monotonic()
    a.call(rig.uri("202"))
    assert a.wait_state("EARLY")["last_code"] == 180  # B's ringing reached A
    incoming = b.wait_for("incoming_call")
    assert re.search(rf'"?{line_name("201")}"? <sip:201@{REALM}>', str(incoming["from"])), incoming
    assert incoming["src"] == f"{rig.server.host}:{rig.server.port}", incoming
    a.wait_state("CONFIRMED")
    b.wait_state("CONFIRMED")
    a_media, b_media = media(a), media(b)
    for seen in (a_media, b_media):
        assert seen["codec"] == "PCMU" and rig.is_relay(seen["remote_rtp"]), (rig.rtp, seen)
    assert a_media["remote_rtp"] != b_media["remote_rtp"]  # the relay's two sides
    assert incoming["sdp_connection"] == rig.server.host

    heard = record_tone(rig, a, b, tone, "b-heard")
    assert_tone(heard, min_signal_s=1.5)

    b.hangup()
    assert b.wait_state("DISCONNECTED")["last_code"] == 200
    assert a.wait_state("DISCONNECTED")["last_code"] == 200  # the PBX's BYE, answered
    elapsed = time.monotonic() - started
    assert rig.close_phones() == [0, 0]
    (cdr,) = rig.cdrs(1)
    assert_answered_cdr(cdr, "202", (2.5, elapsed))


# -- 2. pjsua2 -> baresip ---------------------------------------------------------------------------------
def test_pjsua2_calls_baresip_through_the_pbx_with_audio(rig: Rig, tone: Path) -> None:
    require_tool("baresip", "apt-get install baresip (scripts/test.sh does)")
    b = rig.phone("b", "202", "baresip", auto_answer=200, ring_seconds=0.5)
    a = rig.phone("a", "201")
    started = time.monotonic()
    answered_call(rig, a, b, "202")
    raw = b.wait_for("baresip", lambda e: e.get("type") == "CALL_INCOMING")
    assert raw["peerdisplayname"] == line_name("201"), raw
    a_media = media(a)
    assert a_media["codec"] == "PCMU" and rig.is_relay(a_media["remote_rtp"]), (rig.rtp, a_media)
    media(b)
    b_source = baresip_rtp_source(b)
    assert rig.is_relay(b_source), (rig.rtp, b_source)  # the relay's other side, not A's RTP port
    assert b_source != a_media["remote_rtp"] and b_source != a_media["local_rtp"]

    heard = record_tone(rig, a, b, tone, "b-heard")
    assert_tone(heard, min_signal_s=1.5)

    b.hangup()
    assert b.wait_state("DISCONNECTED")["last_code"] == 200
    assert a.wait_state("DISCONNECTED")["last_code"] == 200
    elapsed = time.monotonic() - started
    assert rig.close_phones() == [0, 0]
    (cdr,) = rig.cdrs(1)
    assert_answered_cdr(cdr, "202", (2.5, elapsed))


def baresip_rtp_source(phone: Softphone, timeout: float = 5.0) -> str:
    """Where baresip's call receives its RTP from (its log: "incoming rtp for 'audio' established,
    receiving from HOST:PORT"; its ``callstat`` answer names no addresses)."""
    pattern = re.compile(r"incoming rtp for 'audio' established, receiving from (\S+)")
    deadline = time.monotonic() + timeout
    while True:
        text = "".join(p.read_text(errors="replace") for p in phone.logs if p.exists())
        found = pattern.search(text)
        if found:
            return found.group(1)
        if time.monotonic() >= deadline:
            pytest.fail(f"baresip's log never named its RTP source within {timeout} s\n{phone.describe()}")
        time.sleep(0.1)


# -- 3. busy, no answer, cancel, unknown number ----------------------------------------------------------
def test_busy_callee_gives_the_caller_486(rig: Rig) -> None:
    b = rig.phone("b", "203", auto_answer=486, ring_seconds=0.3)
    a = rig.phone("a", "201")
    a.call(rig.uri("203"))
    b.wait_for("incoming_call")
    assert a.wait_state("DISCONNECTED")["last_code"] == 486
    assert b.wait_state("DISCONNECTED")["last_code"] == 486
    assert not any(e.get("state") == "CONFIRMED" for e in a.events + b.events)
    (cdr,) = rig.cdrs(1)
    assert cdr["disposition"] == "busy" and cdr["status"] == 486 and cdr["callee"] == "203", cdr
    assert cdr["duration"] == 0 and cdr["answered_at"] is None, cdr
    assert [leg["status"] for leg in cdr["legs"]] == [486], cdr


def test_unanswered_call_gets_480_after_the_ring_timeout(rig_factory: RigFactory) -> None:
    rig = rig_factory(ring_timeout=3)
    b = rig.phone("b", "204")  # rings, never answers
    a = rig.phone("a", "201")
    started = time.monotonic()
    a.call(rig.uri("204"))
    b.wait_for("incoming_call")
    a.wait_state("EARLY")
    ended = a.wait_state("DISCONNECTED", timeout=10)
    waited = time.monotonic() - started
    assert ended["last_code"] == 480, ended
    assert 2.5 <= waited <= 6.0, waited
    assert b.wait_state("DISCONNECTED")["last_code"] == 487  # the PBX CANCELed the ringing phone
    (cdr,) = rig.cdrs(1)
    assert cdr["disposition"] == "no_answer" and cdr["status"] == 480, cdr
    assert cdr["hangup_cause"] == "ring timeout" and cdr["answered_at"] is None, cdr
    assert [leg["status"] for leg in cdr["legs"]] == [487], cdr


def test_caller_hanging_up_while_ringing_cancels_the_callee(rig: Rig) -> None:
    b = rig.phone("b", "204")
    a = rig.phone("a", "201")
    a.call(rig.uri("204"))
    b.wait_for("incoming_call")
    a.wait_state("EARLY")
    a.hangup()  # CANCEL
    assert a.wait_state("DISCONNECTED")["last_code"] == 487
    assert b.wait_state("DISCONNECTED")["last_code"] == 487
    (cdr,) = rig.cdrs(1)
    assert cdr["disposition"] == "cancelled" and cdr["status"] == 487 and cdr["answered_at"] is None, cdr
    assert [leg["status"] for leg in cdr["legs"]] == [487], cdr


def test_unknown_extension_gives_404(rig: Rig) -> None:
    a = rig.phone("a", "201")
    a.call(rig.uri("299"))
    ended = a.wait_state("DISCONNECTED")
    assert ended["last_code"] == 404, ended
    (cdr,) = rig.cdrs(1)
    assert cdr["disposition"] == "not_found" and cdr["callee"] == "299" and cdr["status"] == 404, cdr
    assert cdr["legs"] == [], cdr


# -- 4. hold and resume ---------------------------------------------------------------------------------
#: the system hold music (engine.media.hold.default_music): a 440 Hz and a 660 Hz note
HOLD_MUSIC_HZ = (440.0, 660.0)
HOLD_CLIP_HZ = 600.0


@pytest.mark.parametrize("clip", [False, True], ids=["system-music", "company-clip"])
def test_hold_plays_music_to_the_other_phone_and_resume_reconnects_them(
        rig_factory: RigFactory, tone: Path, tmp_path: Path, clip: bool) -> None:
    """A holds (re-INVITE sendonly): the engine answers it (recvonly) and B, whose session is left alone,
    hears the hold music from the engine (the company's hold clip, else the system music); A resumes: the
    offer goes through to B and B hears A's tone again (issue 19, music on hold)."""
    hold_clip = write_tone(tmp_path / "hold-600.wav", HOLD_CLIP_HZ, 3.0) if clip else None
    rig = rig_factory(hold_clip=hold_clip)
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    a = rig.phone("a", "201")
    answered_call(rig, a, b, "202")
    media(a)
    media(b)

    a.hold()
    held = media(a, "hold")
    assert held["dir"] == "sendonly", held
    time.sleep(0.5)
    b.record(rig.tmp / "b-on-hold.wav")
    time.sleep(2.5)
    on_hold = str(b.stop_record()["path"])
    heard = dominant_frequency(on_hold)
    expected = (HOLD_CLIP_HZ,) if clip else HOLD_MUSIC_HZ
    assert min(abs(heard - hz) for hz in expected) <= TONE_TOLERANCE_HZ, f"B heard {heard:.0f} Hz"
    assert signal_seconds(on_hold) >= 1.0, on_hold
    assert not any(e.get("state") == "remote_hold" for e in b.events if e.get("ev") == "media_state")

    a.unhold()
    resumed_a, resumed_b = media(a), media(b)
    assert resumed_a["dir"] == resumed_b["dir"] == "sendrecv", (resumed_a, resumed_b)
    assert rig.is_relay(resumed_a["remote_rtp"]) and rig.is_relay(resumed_b["remote_rtp"])

    heard_after = record_tone(rig, a, b, tone, "b-after-resume")
    assert_tone(heard_after, min_signal_s=1.5)
    b.hangup()
    a.wait_state("DISCONNECTED")
    b.wait_state("DISCONNECTED")
    (cdr,) = rig.cdrs(1)
    assert cdr["disposition"] == "answered" and cdr["hangup_cause"] == "callee hung up", cdr


def test_baresip_holds_the_other_phone_hears_the_hold_clip_then_baresip_again(
        rig_factory: RigFactory, tone: Path, tmp_path: Path) -> None:
    """The same with baresip holding (its ``hold``/``resume``): pjsua2 A hears the company's hold clip
    from the engine while baresip B holds, then B's tone again after B resumes."""
    require_tool("baresip", "apt-get install baresip (scripts/test.sh does)")
    rig = rig_factory(hold_clip=write_tone(tmp_path / "hold-600.wav", HOLD_CLIP_HZ, 3.0))
    b = rig.phone("b", "202", "baresip", auto_answer=200, ring_seconds=0.5)
    b.play(tone)  # the source of its next call, looped
    a = rig.phone("a", "201")
    answered_call(rig, a, b, "202")
    media(a)
    heard = record_for(rig, a, "a-before-hold", 1.5)
    assert abs(dominant_frequency(heard) - TONE_HZ) <= TONE_TOLERANCE_HZ, heard

    b.hold()
    time.sleep(1.0)  # the engine answers baresip's re-INVITE; A's session is left alone
    on_hold = record_for(rig, a, "a-on-hold", 2.0)
    assert abs(dominant_frequency(on_hold) - HOLD_CLIP_HZ) <= TONE_TOLERANCE_HZ, on_hold
    assert signal_seconds(on_hold) >= 1.0, on_hold
    b.unhold()
    resumed = media(a)  # the resume reaches A as a new offer
    assert resumed["dir"] == "sendrecv", resumed
    time.sleep(0.5)
    after = record_for(rig, a, "a-after-resume", 2.0)
    assert abs(dominant_frequency(after) - TONE_HZ) <= TONE_TOLERANCE_HZ, after
    a.hangup()
    b.wait_state("DISCONNECTED")


def record_for(rig: Rig, phone: Softphone, name: str, seconds: float) -> str:
    """What ``phone`` hears for ``seconds``: the recorded WAV's path."""
    phone.record(rig.tmp / f"{name}.wav")
    time.sleep(seconds)
    return str(phone.stop_record()["path"])


# -- 5. two phones on one line ---------------------------------------------------------------------------
def test_two_phones_on_one_line_ring_in_parallel_and_the_first_answer_wins(rig: Rig) -> None:
    b1 = rig.phone("b1", "205", auto_answer=200, ring_seconds=0.5)
    b2 = rig.phone("b2", "205")  # rings until it is cancelled
    assert b1.ready["local"] != b2.ready["local"]
    rig.server.wait_bindings(
        lambda rows: len(bindings_of(rows, "205")) == 2,
        "two bindings for line 205",
    )
    a = rig.phone("a", "201")
    a.call(rig.uri("205"))
    b1.wait_for("incoming_call")
    b2.wait_for("incoming_call")
    a.wait_state("CONFIRMED")
    b1.wait_state("CONFIRMED")
    cancelled = b2.wait_state("DISCONNECTED")
    assert cancelled["last_code"] == 487 or "elsewhere" in str(cancelled["reason"]).lower(), cancelled
    assert not any(e.get("state") == "CONFIRMED" for e in b2.events)
    b2_sip = b2.logs[0].read_text(errors="replace")  # pjsip logs every message at level 5
    cancel = b2_sip[b2_sip.index("CANCEL sip:205@") :]
    assert 'Reason: SIP;cause=200;text="Call completed elsewhere"' in cancel[:1500], cancel[:1500]
    media(a)
    media(b1)

    b1.hangup()
    a.wait_state("DISCONNECTED")
    b1.wait_state("DISCONNECTED")
    (cdr,) = rig.cdrs(1)
    assert cdr["disposition"] == "answered" and cdr["callee"] == "205", cdr
    assert sorted(leg["status"] for leg in cdr["legs"]) == [200, 487], cdr
    by_status = {leg["status"]: leg for leg in cdr["legs"]}
    assert b1.ready["local"] in by_status[200]["target"], cdr
    assert b2.ready["local"] in by_status[487]["target"], cdr
    assert by_status[487]["answered_at"] is None, cdr


# -- 6. media release -----------------------------------------------------------------------------------
def test_media_release_lets_phones_in_the_allowed_network_talk_directly(
    rig_factory: RigFactory, tone: Path
) -> None:
    rig = rig_factory(media_release=True, name="pbx-release")
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    a = rig.phone("a", "201")
    incoming = answered_call(rig, a, b, "202")
    a_media, b_media = media(a), media(b)
    assert a_media["remote_rtp"] == b_media["local_rtp"], (a_media, b_media)
    assert b_media["remote_rtp"] == a_media["local_rtp"], (a_media, b_media)
    assert not rig.is_relay(a_media["remote_rtp"]) and not rig.is_relay(b_media["remote_rtp"])
    assert incoming["sdp_connection"] == host_port(a_media["local_rtp"])[0]

    heard = record_tone(rig, a, b, tone, "b-heard-direct")
    assert_tone(heard, min_signal_s=1.5)
    b.hangup()
    a.wait_state("DISCONNECTED")
    b.wait_state("DISCONNECTED")
    (cdr,) = rig.cdrs(1)
    assert cdr["disposition"] == "answered" and cdr["hangup_cause"] == "callee hung up", cdr
