"""SDP parse/serialise (RFC 4566), codec filtering and the B2BUA's rewriting (RFC 3264), on real bodies.

The bodies are as pjsua 2.x, baresip 1.x, SIPp's stock scenarios and a Yealink desk phone send them.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.sip.sdp import (
    MediaDescription,
    Origin,
    SdpError,
    SdpRewriter,
    SessionDescription,
    answer_audio,
    filter_codecs,
    has_usable_audio,
    parse_sdp,
)


def crlf(text: str) -> bytes:
    """A body from an indented literal: one line per line, CRLF line ends."""
    lines = [line.strip() for line in text.strip().splitlines()]
    return ("\r\n".join(lines) + "\r\n").encode()


# pjsua 2.x with ICE on (its default): session b=, an X-nat attribute, media-level c=, a=rtcp, opus first,
# two telephone-event clock rates.
PJSIP_ICE = crlf("""
    v=0
    o=- 3908937422 3908937422 IN IP4 192.168.1.20
    s=pjmedia
    b=AS:84
    t=0 0
    a=X-nat:0
    m=audio 4000 RTP/AVP 96 9 8 0 101 102
    c=IN IP4 192.168.1.20
    b=TIAS:64000
    a=rtcp:4001 IN IP4 192.168.1.20
    a=sendrecv
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 useinbandfec=1
    a=rtpmap:9 G722/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:101 telephone-event/48000
    a=fmtp:101 0-16
    a=rtpmap:102 telephone-event/8000
    a=fmtp:102 0-16
    a=ice-ufrag:2b2c6196
    a=ice-pwd:06eb2d0b3b5f48a65cb45e1e
    a=candidate:Sc0a80114 1 UDP 1862270975 203.0.113.5 4000 typ srflx raddr 192.168.1.20 rport 4000
    a=candidate:Hc0a80114 1 UDP 2130706431 192.168.1.20 4000 typ host
    a=candidate:Sc0a80114 2 UDP 1862270974 203.0.113.5 4001 typ srflx raddr 192.168.1.20 rport 4001
    a=ssrc:1832271413 cname:3a5a6b7a1d2c4e1f
""")

# baresip 1.x: session-level c=, a=tool, b= under m=, ptime and rtcp-rsize.
BARESIP = crlf("""
    v=0
    o=- 1390563911 2046839151 IN IP4 10.0.0.5
    s=-
    c=IN IP4 10.0.0.5
    t=0 0
    a=tool:baresip 1.1.0
    m=audio 10780 RTP/AVP 0 8 101
    b=AS:64
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=sendrecv
    a=label:1
    a=rtcp-rsize
    a=ssrc:2930441162 cname:d5ad4c3f-0e3c-4b9c-8b34-6a1d7e0c4c8f
    a=ptime:20
""")

# SIPp's uac_pcap scenario over IPv6 (as [media_ip_type] expands): no rtpmap for the static type.
SIPP_V6 = crlf("""
    v=0
    o=user1 53655765 2353687637 IN IP6 2001:db8::10
    s=-
    c=IN IP6 2001:db8::10
    t=0 0
    m=audio 6000 RTP/AVP 0 101
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
""")

# A Yealink with video enabled: G.722 first, a video stream we do not carry.
YEALINK_VIDEO = crlf("""
    v=0
    o=- 20518 0 IN IP4 192.0.2.10
    s=SDP data
    c=IN IP4 192.0.2.10
    t=0 0
    m=audio 11796 RTP/AVP 9 0 8 18 101
    a=rtpmap:9 G722/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:18 G729/8000
    a=fmtp:18 annexb=no
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=ptime:20
    a=sendrecv
    m=video 11798 RTP/AVPF 99
    a=rtpmap:99 H264/90000
    a=fmtp:99 profile-level-id=42801F; packetization-mode=1
    a=rtcp-fb:* nack
    a=rtcp-fb:99 ccm fir
    a=sendrecv
""")

GOLDENS = {"pjsip_ice": PJSIP_ICE, "baresip": BARESIP, "sipp_v6": SIPP_V6, "yealink_video": YEALINK_VIDEO}


# --- parsing --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_unchanged_sdp_round_trips_byte_exact(name: str) -> None:
    body = GOLDENS[name]
    assert parse_sdp(body).serialize() == body
    assert parse_sdp(body, strict=True).serialize() == body


def test_pjsip_offer_fields() -> None:
    sdp = parse_sdp(PJSIP_ICE)
    assert sdp.origin == Origin("-", "3908937422", 3908937422, "IN", "IP4", "192.168.1.20")
    assert sdp.session_name == "pjmedia"
    assert sdp.connection is None
    assert sdp.attributes == [("X-nat", "0")]
    assert sdp.lines == [("b", "AS:84"), ("t", "0 0")]
    [audio] = sdp.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 4000, "RTP/AVP")
    assert audio.formats == ["96", "9", "8", "0", "101", "102"]
    assert audio.connection == "192.168.1.20"
    assert audio.connection_address(sdp) == "192.168.1.20"
    assert audio.lines == [("b", "TIAS:64000")]
    assert audio.direction == "sendrecv"
    assert audio.rtpmap() == {
        "96": "opus/48000/2",
        "9": "G722/8000",
        "8": "PCMA/8000",
        "0": "PCMU/8000",
        "101": "telephone-event/48000",
        "102": "telephone-event/8000",
    }
    assert ("rtcp", "4001 IN IP4 192.168.1.20") in audio.attributes


def test_session_level_connection_and_static_payload_types() -> None:
    sdp = parse_sdp(SIPP_V6)
    [audio] = sdp.media
    assert audio.connection is None
    assert audio.connection_address(sdp) == "2001:db8::10"
    assert sdp.origin.addrtype == "IP6"
    assert audio.rtpmap() == {"101": "telephone-event/8000"}
    assert audio.encoding_names() == {"0": "PCMU", "101": "telephone-event"}


def test_direction_default_media_level_and_session_level() -> None:
    held = parse_sdp(BARESIP.replace(b"a=sendrecv", b"a=sendonly"))
    assert held.media[0].direction == "sendonly"
    session_level = parse_sdp(SIPP_V6.replace(b"t=0 0\r\n", b"t=0 0\r\na=inactive\r\n"))
    assert session_level.direction == "inactive"
    assert session_level.media[0].direction == "sendrecv"  # the section itself says nothing
    assert session_level.media[0].effective_direction(session_level) == "inactive"
    assert parse_sdp(SIPP_V6).media[0].effective_direction(parse_sdp(SIPP_V6)) == "sendrecv"


def test_lf_only_line_ends_are_tolerated_and_serialised_as_crlf() -> None:
    lf = PJSIP_ICE.replace(b"\r\n", b"\n")
    sdp = parse_sdp(lf)
    assert sdp.serialize() == PJSIP_ICE
    with pytest.raises(SdpError, match="CRLF") as info:
        parse_sdp(lf, strict=True)
    assert info.value.line == 1


def test_blank_lines_are_tolerated_unless_strict() -> None:
    body = BARESIP.replace(b"t=0 0\r\n", b"t=0 0\r\n\r\n") + b"\r\n"
    assert parse_sdp(body).serialize() == BARESIP
    with pytest.raises(SdpError, match="blank line"):
        parse_sdp(body, strict=True)


def test_unknown_lines_and_multicast_connection_are_kept() -> None:
    body = crlf("""
        v=0
        o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5
        s=SDP Seminar
        i=A Seminar on the session description protocol
        u=http://www.example.com/seminars/sdp.pdf
        e=j.doe@example.com (Jane Doe)
        c=IN IP4 224.2.17.12/127
        t=2873397496 2873404696
        y=0123456789
        a=recvonly
        m=audio 49170 RTP/AVP 0
        m=video 51372/2 RTP/AVP 99
        x=vendor thing
        a=rtpmap:99 h263-1998/90000
    """)
    sdp = parse_sdp(body)
    assert sdp.serialize() == body
    assert sdp.connection == "224.2.17.12"
    assert ("y", "0123456789") in sdp.lines
    assert sdp.media[1].port_count == 2
    assert sdp.media[1].lines == [("x", "vendor thing")]
    # A changed address is written plainly; an unchanged one keeps its /ttl.
    assert b"c=IN IP4 192.0.2.1\r\n" in replace(sdp, connection="192.0.2.1").serialize()


def test_invalid_bytes_survive_a_round_trip() -> None:
    body = BARESIP.replace(b"s=-", b"s=caf\xe9 \xff")
    assert parse_sdp(body).serialize() == body


def test_rejected_stream_without_formats_is_tolerated_unless_strict() -> None:
    body = YEALINK_VIDEO.split(b"m=video")[0] + b"m=video 0 RTP/AVP\r\n"
    sdp = parse_sdp(body)
    assert sdp.media[1].port == 0 and sdp.media[1].formats == []
    with pytest.raises(SdpError, match="no formats"):
        parse_sdp(body, strict=True)


MINIMAL = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"


@pytest.mark.parametrize(
    ("body", "reason", "line"),
    [
        (b"", "empty SDP body", None),
        (b"\r\n\r\n", "empty SDP body", None),
        (b"o=- 1 1 IN IP4 192.0.2.1\r\nv=0\r\n", "SDP must start with v=0", 1),
        (b"v=1\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n", "SDP must start with v=0", 1),
        (b"v=0\r\ns=-\r\nt=0 0\r\n", "no o= line", None),
        (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nt=0 0\r\n", "no s= line", None),
        (b"v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n", "o= line needs six fields", 2),
        (b"v=0\r\no=- 1 two IN IP4 192.0.2.1\r\ns=-\r\n", "o= session version is not a number", 2),
        (MINIMAL.encode() + b"v=0\r\n", "more than one v= line", 6),
        (MINIMAL.encode() + b"o=- 2 2 IN IP4 192.0.2.1\r\n", "more than one o= line", 6),
        (MINIMAL.encode() + b"s=again\r\n", "more than one s= line", 6),
        (MINIMAL.encode() + b"c=IN IP4 192.0.2.2\r\n", "more than one session-level c= line", 6),
        (MINIMAL.encode() + b"garbage\r\n", "not a <type>=<value> line", 6),
        (MINIMAL.encode() + b"ab=cd\r\n", "not a <type>=<value> line", 6),
        (MINIMAL.encode() + b"a =sendrecv\r\n", "not a <type>=<value> line", 6),
        (MINIMAL.encode() + b"m=audio abc RTP/AVP 0\r\n", "m= port is not a number from 0 to 65535", 6),
        (MINIMAL.encode() + b"m=audio 70000 RTP/AVP 0\r\n", "m= port is not a number from 0 to 65535", 6),
        (MINIMAL.encode() + b"m=audio -1 RTP/AVP 0\r\n", "m= port is not a number from 0 to 65535", 6),
        (MINIMAL.encode() + b"m=audio \xd9\xa1\xd9\xa2 RTP/AVP 0\r\n", "m= port is not a number", 6),
        (MINIMAL.encode() + b"m=audio 4000/0 RTP/AVP 0\r\n", "m= port count is not a positive number", 6),
        (MINIMAL.encode() + b"m=audio 4000\r\n", "m= line needs media, port and proto", 6),
        (MINIMAL.encode() + b"m=audio 4000 RTP/AVP\r\n", "m= line has no formats", 6),
        (MINIMAL.encode() + b"m=audio 4000 RTP/AVP 0\r\nc=IN IP4\r\n", "c= line needs nettype", 7),
        (MINIMAL.encode() + b"m=audio 4000 RTP/AVP 0\r\nc=XX IP4 192.0.2.1\r\n", "c= line is not IN IP4", 7),
        (
            MINIMAL.encode() + b"m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.2\r\n",
            "more than one c= line in a media section",
            8,
        ),
    ],
)
def test_malformed_sdp_gives_a_precise_reason(body: bytes, reason: str, line: int | None) -> None:
    with pytest.raises(SdpError) as info:
        parse_sdp(body)
    assert info.value.reason.startswith(reason)
    assert info.value.line == line
    assert isinstance(info.value, ValueError)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                [b"v=0", b"o=- 1 1 IN IP4 192.0.2.1", b"s=-", b"c=IN IP4 192.0.2.1", b"t=0 0",
                 b"m=audio 4000 RTP/AVP 0 101", b"m=video 0 RTP/AVP", b"a=rtpmap:101 telephone-event/8000",
                 b"a=sendonly", b"c=IN IP6 ::1/3", b"", b"\r"]
            ),
            st.binary(max_size=40),
        ),
        max_size=14,
    ),
    st.sampled_from([b"\r\n", b"\n"]),
)
def test_any_bytes_give_a_description_or_sdp_error(lines: list[bytes], eol: bytes) -> None:
    """STYLE 3.5: a parser raises its one error type or nothing; what parses serialises to a fixed point."""
    try:
        sdp = parse_sdp(eol.join(lines))
    except SdpError:
        return
    once = sdp.serialize()
    assert parse_sdp(once).serialize() == once
    filtered = filter_codecs(sdp)
    assert len(filtered.media) == len(sdp.media)
    SdpRewriter(1).rewrite(filtered, "192.0.2.99", [10000 + 2 * i for i in range(len(sdp.media))])


# --- codec policy ---------------------------------------------------------------------------------------


def test_filter_keeps_g711_and_telephone_event_with_their_lines() -> None:
    sdp = parse_sdp(PJSIP_ICE)
    filtered = filter_codecs(sdp)
    [audio] = filtered.media
    assert audio.port == 4000
    assert audio.formats == ["8", "0", "101", "102"]
    names = [name for name, _ in audio.attributes]
    assert ("rtpmap", "96 opus/48000/2") not in audio.attributes
    assert ("fmtp", "96 useinbandfec=1") not in audio.attributes
    assert ("rtpmap", "9 G722/8000") not in audio.attributes
    assert ("fmtp", "101 0-16") in audio.attributes and ("fmtp", "102 0-16") in audio.attributes
    assert names.count("rtpmap") == 4
    assert "rtcp" in names and "ssrc" in names and "sendrecv" in names
    assert sdp.media[0].formats == ["96", "9", "8", "0", "101", "102"]  # the input is untouched
    assert has_usable_audio(filtered)


def test_filter_names_static_types_without_rtpmap_and_compares_case_insensitively() -> None:
    body = SIPP_V6.replace(b"RTP/AVP 0 101", b"RTP/AVP 3 0 97 101") + b"a=rtpmap:97 pcma/8000\r\n"
    [audio] = filter_codecs(parse_sdp(body)).media
    assert audio.formats == ["0", "97", "101"]  # GSM (3) goes; lower-case "pcma" via rtpmap stays


def test_an_unnamed_dynamic_payload_type_is_dropped() -> None:
    body = SIPP_V6.replace(b"RTP/AVP 0 101", b"RTP/AVP 0 96 101")
    assert filter_codecs(parse_sdp(body)).media[0].formats == ["0", "101"]


def test_non_audio_streams_and_codecless_audio_are_rejected_with_port_zero() -> None:
    sdp = parse_sdp(YEALINK_VIDEO)
    filtered = filter_codecs(sdp)
    audio, video = filtered.media
    assert audio.formats == ["0", "8", "101"]
    assert ("fmtp", "18 annexb=no") not in audio.attributes
    assert (video.port, video.formats) == (0, ["99"])  # rejected, formats kept (RFC 3264 §6)
    assert video.attributes == sdp.media[1].attributes
    assert has_usable_audio(filtered)

    g729_only = filter_codecs(sdp, allowed=("G729",))
    assert g729_only.media[0].formats == ["18"]
    assert not has_usable_audio(filter_codecs(sdp, allowed=("AMR",)))
    rejected = filter_codecs(sdp, allowed=("AMR", "telephone-event")).media[0]
    assert (rejected.port, rejected.formats) == (0, sdp.media[0].formats)


def test_telephone_event_alone_is_no_usable_audio() -> None:
    body = SIPP_V6.replace(b"RTP/AVP 0 101", b"RTP/AVP 101")
    sdp = parse_sdp(body)
    assert not has_usable_audio(sdp)
    assert filter_codecs(sdp).media[0].port == 0


def test_has_usable_audio_ignores_rejected_streams() -> None:
    sdp = parse_sdp(BARESIP.replace(b"m=audio 10780", b"m=audio 0"))
    assert not has_usable_audio(sdp)
    assert has_usable_audio(parse_sdp(BARESIP))
    assert has_usable_audio(parse_sdp(YEALINK_VIDEO), allowed=("G722",))


def test_rtcp_feedback_for_every_payload_type_is_kept() -> None:
    sdp = parse_sdp(YEALINK_VIDEO.replace(b"m=video 11798 RTP/AVPF 99", b"m=audio 11798 RTP/AVPF 0 99"))
    kept = filter_codecs(sdp).media[1]
    assert kept.formats == ["0"]
    assert ("rtcp-fb", "* nack") in kept.attributes
    assert ("rtcp-fb", "99 ccm fir") not in kept.attributes


# --- rewriting ------------------------------------------------------------------------------------------


def test_rewrite_anchors_media_on_the_relay_and_removes_ice() -> None:
    rewriter = SdpRewriter(session_id=42)
    body = rewriter.rewrite(filter_codecs(parse_sdp(PJSIP_ICE)), "203.0.113.10", [30000])
    assert body == crlf("""
        v=0
        o=pbx-engine 42 1 IN IP4 203.0.113.10
        s=pjmedia
        c=IN IP4 203.0.113.10
        b=AS:84
        t=0 0
        a=X-nat:0
        m=audio 30000 RTP/AVP 8 0 101 102
        c=IN IP4 203.0.113.10
        b=TIAS:64000
        a=rtcp:30001 IN IP4 203.0.113.10
        a=sendrecv
        a=rtpmap:8 PCMA/8000
        a=rtpmap:0 PCMU/8000
        a=rtpmap:101 telephone-event/48000
        a=fmtp:101 0-16
        a=rtpmap:102 telephone-event/8000
        a=fmtp:102 0-16
        a=ssrc:1832271413 cname:3a5a6b7a1d2c4e1f
    """)
    assert rewriter.version == 1


def test_rewrite_ipv6_host_and_session_level_ice() -> None:
    body = BARESIP.replace(b"a=tool:baresip 1.1.0", b"a=ice-lite\r\na=ice-options:trickle")
    body += b"a=end-of-candidates\r\na=remote-candidates:1 192.0.2.1 4000\r\n"
    out = SdpRewriter(7).rewrite(parse_sdp(body), "2001:db8::1", [40000])
    sdp = parse_sdp(out)
    assert sdp.origin == Origin("pbx-engine", "7", 1, "IN", "IP6", "2001:db8::1")
    assert b"c=IN IP6 2001:db8::1\r\n" in out
    assert sdp.media[0].port == 40000 and sdp.media[0].connection is None
    assert b"ice" not in out and b"candidates" not in out
    assert sdp.attributes == []


def test_rewrite_leaves_rejected_streams_at_port_zero() -> None:
    filtered = filter_codecs(parse_sdp(YEALINK_VIDEO))
    sdp = parse_sdp(SdpRewriter(1).rewrite(filtered, "198.51.100.7", [20000]))
    assert [m.port for m in sdp.media] == [20000, 0]
    assert sdp.connection == "198.51.100.7"


def test_a_zero_relay_port_rejects_that_stream() -> None:
    """Two accepted audio streams, one relay pair: the caller rejects the second with port 0."""
    body = BARESIP + b"m=audio 10782 RTP/AVP 0\r\na=rtcp:10783\r\na=ice-ufrag:x\r\n"
    sdp = parse_sdp(SdpRewriter(1).rewrite(parse_sdp(body), "198.51.100.7", [20000, 0]))
    assert [(m.port, m.formats) for m in sdp.media] == [(20000, ["0", "8", "101"]), (0, ["0"])]
    assert sdp.media[1].attributes == [("rtcp", "10783")]
    with pytest.raises(ValueError, match="relay port -2 out of range"):
        SdpRewriter(1).rewrite(parse_sdp(body), "198.51.100.7", [20000, -2])


def test_origin_version_moves_only_when_the_sdp_changes() -> None:
    """RFC 3264 §8: unchanged re-sends keep the version; each change adds exactly one."""
    rewriter = SdpRewriter(1234)
    offer = filter_codecs(parse_sdp(BARESIP))
    first = rewriter.rewrite(offer, "203.0.113.10", [30000])
    assert parse_sdp(first).origin.sess_version == 1
    assert rewriter.rewrite(offer, "203.0.113.10", [30000]) == first
    hold = replace(offer, media=[replace(offer.media[0], attributes=[("sendonly", None)])])
    second = rewriter.rewrite(hold, "203.0.113.10", [30000])
    assert parse_sdp(second).origin.sess_version == 2
    assert rewriter.rewrite(hold, "203.0.113.10", [30000]) == second
    assert parse_sdp(rewriter.rewrite(offer, "203.0.113.10", [30002])).origin.sess_version == 3
    # The peer's own version going up changes nothing we send.
    bumped = replace(offer, origin=replace(offer.origin, sess_version=offer.origin.sess_version + 1))
    assert parse_sdp(rewriter.rewrite(bumped, "203.0.113.10", [30002])).origin.sess_version == 3
    assert rewriter.version == 3


def test_passthrough_keeps_the_peers_media_under_our_origin() -> None:
    rewriter = SdpRewriter(99)
    rewriter.rewrite(parse_sdp(PJSIP_ICE), "203.0.113.10", [30000])
    direct = parse_sdp(rewriter.passthrough(parse_sdp(PJSIP_ICE)))
    assert direct.origin == Origin("pbx-engine", "99", 2, "IN", "IP4", "203.0.113.10")
    assert direct.media == parse_sdp(PJSIP_ICE).media  # c=, m= port and ICE as the phone sent them
    fresh = parse_sdp(SdpRewriter(5).passthrough(parse_sdp(BARESIP)))
    assert fresh.origin == Origin("pbx-engine", "5", 1, "IN", "IP4", "10.0.0.5")


def test_rewrite_refuses_our_own_misuse() -> None:
    sdp = parse_sdp(YEALINK_VIDEO)  # two accepted streams
    rewriter = SdpRewriter(1)
    with pytest.raises(ValueError, match="no relay port given for media section 1"):
        rewriter.rewrite(sdp, "203.0.113.10", [30000])
    with pytest.raises(ValueError, match="out of range"):
        rewriter.rewrite(sdp, "203.0.113.10", [30000, 65535])
    with pytest.raises(ValueError, match="one non-blank word"):
        rewriter.rewrite(sdp, "203.0.113.10\r\na=evil", [30000, 30002])
    with pytest.raises(ValueError, match="one non-blank word"):
        rewriter.passthrough(sdp, "")
    with pytest.raises(ValueError, match="negative"):
        SdpRewriter(-1)
    with pytest.raises(ValueError, match="username"):
        SdpRewriter(1, username="pbx engine")
    assert rewriter.version == 1


def test_a_description_built_by_hand_serialises() -> None:
    sdp = SessionDescription(
        origin=Origin("pbx-engine", "1", 1, "IN", "IP4", "192.0.2.1"),
        connection="192.0.2.1",
        media=[MediaDescription("audio", 20000, "RTP/AVP", ["0", "101"],
                                attributes=[("rtpmap", "101 telephone-event/8000"), ("ptime", "20")])],
    )
    assert sdp.serialize() == crlf("""
        v=0
        o=pbx-engine 1 1 IN IP4 192.0.2.1
        s=-
        c=IN IP4 192.0.2.1
        t=0 0
        m=audio 20000 RTP/AVP 0 101
        a=rtpmap:101 telephone-event/8000
        a=ptime:20
    """)


def test_answer_audio_picks_one_codec_and_telephone_event_and_rejects_other_streams() -> None:
    offer = parse_sdp(
        b"v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\na=sendonly\r\nm=video 5000 RTP/AVP 96\r\nm=audio 6000 RTP/AVP 0\r\n"
    )
    answer = answer_audio(offer)
    assert answer is not None
    assert (answer.payload_type, answer.event_payload_type) == (8, 101)
    assert (answer.host, answer.port) == ("10.0.0.1", 4000)
    audio, video, second = answer.sdp.media
    assert audio.formats == ["8", "101"] and ("fmtp", "101 0-16") in audio.attributes
    assert ("recvonly", None) in audio.attributes and ("sendonly", None) not in audio.attributes
    assert video.port == 0 and second.port == 0
    g722_only = parse_sdp(b"v=0\r\no=a 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
                          b"m=audio 4000 RTP/AVP 9 101\r\na=rtpmap:101 telephone-event/8000\r\n")
    assert answer_audio(g722_only) is None
