"""The caller's INVITE: what is checked before anything rings, and the responses the caller gets.

The checks refuse what a call cannot be set up from (``Reject``: 483, 400 without Contact, 422 for a
Session-Expires under Min-SE, 400 for bad SDP, 488 without a common codec) and take the caller's RFC 4028
session timer when it refreshes itself.
"""

from __future__ import annotations

from engine.call.legs import ALLOW, MIN_SE, SUPPORTED, Call, Reject, warning_value
from engine.model.cdr import Disposition
from engine.sip.errors import SipParseError
from engine.sip.message import Field, Request, Response, make_response
from engine.sip.sdp import SdpError, filter_codecs, has_usable_audio, parse_sdp


def read_offer(call: Call) -> None:
    """Check the caller's INVITE and read its offer into ``call.offer`` (none: a late offer).

    Raises:
        Reject: the call cannot be set up (the status and headers to refuse it with).
        SipParseError: a malformed Session-Expires (400).
    """
    invite = call.request
    if invite.max_forwards is not None and invite.max_forwards <= 1:
        raise Reject(483, "Too Many Hops", Disposition.FAILED)
    if not invite.addresses("contact"):
        raise Reject(400, "Missing Contact", Disposition.FAILED)  # §8.1.1.8: the dialog needs it
    se = session_expires(invite)
    if se is not None and se < MIN_SE:
        raise Reject(422, "Session Interval Too Small", Disposition.FAILED, (("Min-SE", str(MIN_SE)),))
    # RFC 4028 §9: we take part when the caller supports timers and refreshes itself (refresher=uac
    # or unset); otherwise the call runs without a session timer (its maximum duration still bounds it).
    value = (invite.get("session-expires") or "").replace(" ", "").lower()
    if se is not None and "timer" in invite.tokens("supported") and "refresher=uas" not in value:
        call.caller_session_expires = se
    if not invite.body:
        # Late offer (RFC 3261 §13.2.1, RFC 6337 §3.1): the branches get an INVITE without SDP, the
        # callee's 2xx carries the offer, and the caller's ACK the answer, which our ACK passes on.
        return
    try:
        offer = filter_codecs(parse_sdp(invite.body))
    except SdpError as exc:
        raise Reject(400, "Bad SDP", Disposition.FAILED,
                     (("Warning", warning_value(f"SDP: {exc}")),)) from None
    if not has_usable_audio(offer):
        raise Reject(488, "Not Acceptable Here", Disposition.FAILED,
                     (("Warning", '305 pbx "no common codec: PCMU, PCMA"'),))
    call.offer = offer


def session_expires(req: Request) -> int | None:
    """The Session-Expires interval a request asks for (RFC 4028), None without one.

    Raises:
        SipParseError: not a number (400).
    """
    value = req.get("session-expires")
    if value is None:
        return None
    try:
        return int(value.split(";", 1)[0].strip())
    except ValueError:
        raise SipParseError(400, "Bad Session-Expires header", message=req) from None


def caller_response(call: Call, status: int, reason: str, sdp: bytes = b"") -> Response:
    """A response of ours to the caller's INVITE: our tag and Contact, its Record-Route, and on a final
    answer what we allow and support."""
    out = make_response(call.request, status, reason, to_tag=call.local_tag)
    fields = out.fields
    for f in call.request.fields:
        if f.name == "record-route":
            fields.append(f)
    fields.append(Field("contact", call.contact))
    if status >= 200:
        fields.append(Field("allow", ALLOW))
        fields.append(Field("supported", SUPPORTED))
    if sdp:
        fields.append(Field("content-type", "application/sdp"))
        out.body = sdp
    return out
