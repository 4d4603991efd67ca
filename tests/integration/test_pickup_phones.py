"""Call pickup between real phones registered to ``pbx serve`` (issue 19, part 3; ``engine.call.pickup``):
pjsua2 A calls B, B rings; C dials ``**202`` (directed pickup) and A and C hear each other's tones
(checked by frequency) while B stops ringing (CANCEL); a raw client's INVITE with Replaces naming the
engine's ringing leg to B picks the call up the same way. Refusals: nothing ringing (``404``), the
picker's own call (``403``). After every test the engine's tables are empty (``/metrics``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ..peers.softphone import Softphone
from .sipclient import SipClient
from .test_calls_phones import REALM, is_ended, media
from .test_transfer_phones import (
    A_HZ,
    C_HZ,
    TransferRig,
    assert_hears,
    in_dialog,
    invite_replaces,
    rig,
    talk,
    tones,
)

pytestmark = pytest.mark.integration

__all__ = ["rig", "tones"]  # the fixtures, imported for these tests


def ringing(rig: TransferRig, a: Softphone, b: Softphone) -> dict[str, object]:
    """A calls B, which rings (no answer); B's incoming_call event."""
    a.call(rig.uri("202"))
    a.wait_state("EARLY")
    incoming = b.wait_for("incoming_call")
    return dict(incoming)


def test_directed_pickup_by_star_code(rig: TransferRig, tones: tuple[Path, Path]) -> None:
    b = rig.phone("b", "202", auto_answer=0)
    c = rig.phone("c", "203")
    a = rig.phone("a", "201")
    ringing(rig, a, b)
    c.call(rig.uri("**202"))
    c.wait_state("CONFIRMED")
    a.wait_state("CONFIRMED")
    b.wait_state("DISCONNECTED")  # CANCELled: it no longer rings
    media(a)
    media(c)
    a_heard, c_heard = talk(rig, a, c, tones[0], tones[1], "picked")
    assert_hears(c_heard, A_HZ)
    assert_hears(a_heard, C_HZ)
    c.hangup()
    a.wait_state("DISCONNECTED")
    rig.assert_idle()


def test_pickup_refusals(rig: TransferRig) -> None:
    b = rig.phone("b", "202", auto_answer=0)
    c = rig.phone("c", "203")
    a = rig.phone("a", "201")
    c.call(rig.uri("**202"))  # nothing rings there
    assert c.wait_state("DISCONNECTED")["last_code"] == 404
    c.call(rig.uri("**"))  # no extension
    assert c.wait_state("DISCONNECTED")["last_code"] == 404
    ringing(rig, a, b)
    c.call(rig.uri("**204"))  # 204 does not ring
    assert c.wait_state("DISCONNECTED")["last_code"] == 404
    a.call(rig.uri("**202"))  # A's own call
    assert a.wait_state("DISCONNECTED")["last_code"] == 403
    time.sleep(0.5)
    assert not any(is_ended(e) for e in b.events)  # B still rings
    a.send("hangup #0")
    b.wait_state("DISCONNECTED")
    rig.assert_idle()


def test_invite_with_replaces_picks_up_a_ringing_leg(rig: TransferRig) -> None:
    """A BLF-style pickup: 203's INVITE with Replaces names the engine's early dialog with B (our INVITE's
    Call-ID and From tag): 200 with the relay, A is answered, B is CANCELled; BYE ends it all."""
    b = rig.phone("b", "202", auto_answer=0)
    a = rig.phone("a", "201")
    incoming = ringing(rig, a, b)
    call_id, our_tag = incoming["call_id"], incoming["from_tag"]
    assert call_id and our_tag, incoming
    with SipClient(rig.server.addr, domain=REALM) as picker:
        _, taken = invite_replaces(picker, "203", f"{call_id};to-tag={our_tag};from-tag=unknown;early-only")
        assert taken.status == 200, taken
        assert b"c=IN IP4 127.0.0.1" in taken.body and rig.is_relay(
            f"127.0.0.1:{taken.body.split(b'm=audio ')[1].split()[0].decode()}"), taken.body
        picker.send_raw(in_dialog(picker, taken, "ACK", picker.cseq, [], user="203"))
        a.wait_state("CONFIRMED")
        b.wait_state("DISCONNECTED")
        assert rig.is_relay(str(media(a)["remote_rtp"]))
        assert picker.transact(in_dialog(picker, taken, "BYE", 50, [], user="203")).status == 200
    a.wait_state("DISCONNECTED")
    rig.assert_idle()
