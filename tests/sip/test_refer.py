"""Refer-To (RFC 3515 §2.1), Replaces (RFC 3891 §6.1) and the sipfrag of a REFER's NOTIFYs
(engine.sip.refer)."""

from __future__ import annotations

import pytest

from engine.sip.errors import SipParseError
from engine.sip.refer import Replaces, parse_refer_to, parse_replaces, sipfrag


def test_a_blind_target_in_either_address_form() -> None:
    for value in ("<sip:203@pbx.test>", "sip:203@pbx.test", '"Cem" <sip:203@pbx.test;user=phone>'):
        target = parse_refer_to(value)
        assert target.uri.user == "203" and target.uri.host == "pbx.test" and target.replaces is None
    assert parse_refer_to("<tel:+493012345>").uri.user == "+493012345"


def test_an_attended_target_carries_the_dialog_it_replaces_unescaped() -> None:
    # RFC 3891 §7.2's example, as pjsua writes it (the header part escaped per RFC 3261 §19.1.1).
    value = ("<sip:203@127.0.0.1:5060?Replaces=425928%40bobster.example.org%3Bto-tag%3D7743%3Bfrom-tag"
             "%3D6472&Require=replaces>")
    target = parse_refer_to(value)
    assert target.replaces == Replaces("425928@bobster.example.org", "7743", "6472")
    assert str(target.uri) == "sip:203@127.0.0.1:5060"  # the URI to route, without the header part


@pytest.mark.parametrize(("value", "reason"), [
    (None, "Missing Refer-To header"),
    ("", "Bad Refer-To header"),
    ("<sip:203@pbx.test>, <sip:204@pbx.test>", "Several Refer-To values"),
    ("not a uri", "Bad Refer-To header"),
    ("<sip:203@pbx.test", "Bad Refer-To header"),
    ("<http://pbx.test/203>", "Bad Refer-To header"),
    ("<sip:203@pbx.test?Replaces=abc>", "Bad Replaces header"),
    ("<sip:203@pbx.test?Replaces=a%3Bto-tag%3D1&Replaces=b%3Bto-tag%3D1%3Bfrom-tag%3D2>",
     "Bad Replaces header"),
])
def test_a_bad_refer_to_is_400_naming_what_is_wrong(value: str | None, reason: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_refer_to(value)
    assert (caught.value.status, caught.value.reason) == (400, reason)
    assert caught.value.header in ("refer-to", "replaces")


def test_replaces_with_early_only_and_its_errors() -> None:
    assert parse_replaces("abc@h;to-tag=1;from-tag=2;early-only") == Replaces("abc@h", "1", "2", True)
    assert parse_replaces(" abc ; from-tag=2 ; to-tag=1 ") == Replaces("abc", "1", "2")
    for bad in ("", ";to-tag=1;from-tag=2", "abc;to-tag=1", "abc;from-tag=2", "a b;to-tag=1;from-tag=2",
                "abc;to-tag=1;to-tag=3;from-tag=2"):
        with pytest.raises(SipParseError) as caught:
            parse_replaces(bad)
        assert caught.value.reason == "Bad Replaces header"


def test_sipfrag_is_the_status_line() -> None:
    assert sipfrag(100, "Trying") == b"SIP/2.0 100 Trying\r\n"
    assert sipfrag(486, "Busy Here") == b"SIP/2.0 486 Busy Here\r\n"
