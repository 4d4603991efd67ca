"""Transfers in SIP: the Refer-To header (RFC 3515 §2.1), the Replaces header (RFC 3891 §6.1) and the
``message/sipfrag`` bodies of the NOTIFYs that report a REFER's progress (RFC 3515 §2.4.5, RFC 3420).

Pure: values in, values out. ``parse_refer_to`` takes the REFER's Refer-To value and gives the target
URI and, for an attended transfer, the dialog it replaces (the ``?Replaces=`` header of the URI, escaped as
RFC 3261 §19.1.1 says); any error is a ``SipParseError`` with status 400 that names the header.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final
from urllib.parse import unquote

from engine.sip.errors import SipParseError
from engine.sip.grammar import is_token, parse_params, split_list
from engine.sip.headers import Address
from engine.sip.uri import SIP_SCHEMES, Uri

#: The Content-Type of a NOTIFY that reports a REFER's progress (RFC 3515 §2.4.5).
SIPFRAG: Final = "message/sipfrag;version=2.0"


@dataclass(frozen=True, slots=True)
class Replaces:
    """The dialog an INVITE (or a transfer) replaces: RFC 3891 §6.1 ``callid;to-tag=..;from-tag=..``.

    The tags are as the receiver of the INVITE with Replaces sees the dialog: ``to_tag`` is its local tag,
    ``from_tag`` the remote one (§3). ``early_only``: replace only an early dialog (§6.1).
    """

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False


@dataclass(frozen=True, slots=True)
class ReferTo:
    """What a REFER asks for: the target (its URI without the header part) and the dialog it replaces."""

    uri: Uri
    replaces: Replaces | None = None


def parse_replaces(text: str) -> Replaces:
    """Parse a Replaces value: ``callid *(";" replaces-param)`` with to-tag and from-tag required.

    Raises:
        SipParseError: 400 "Bad Replaces header" (no Call-ID, a tag missing or given twice, bad params).
    """
    call_id, sep, rest = text.strip().partition(";")
    call_id = call_id.strip()
    try:
        if not call_id or any(c.isspace() for c in call_id) or "," in call_id:
            raise ValueError("bad Call-ID")
        params = parse_params(sep + rest) if sep else {}
    except ValueError:
        raise SipParseError(400, "Bad Replaces header", header="replaces") from None
    to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
    if not to_tag or not from_tag or not is_token(to_tag) or not is_token(from_tag):
        raise SipParseError(400, "Bad Replaces header", header="replaces")
    return Replaces(call_id, to_tag, from_tag, "early-only" in params)


def parse_refer_to(value: str | None) -> ReferTo:
    """Parse the one Refer-To value of a REFER (RFC 3515 §2.1: exactly one, a name-addr or addr-spec).

    A ``Replaces`` URI header makes it an attended transfer (RFC 3891 §5); other URI headers are ignored
    (they would be headers of the INVITE the REFER asks for, which the engine builds itself).

    Raises:
        SipParseError: 400 "Missing Refer-To header", "Several Refer-To values", "Bad Refer-To header"
            (not an address, or not a SIP/SIPS/TEL URI) or "Bad Replaces header".
    """
    if value is None:
        raise SipParseError(400, "Missing Refer-To header", header="refer-to")
    try:
        parts = split_list(value)
    except ValueError:
        raise SipParseError(400, "Bad Refer-To header", header="refer-to") from None
    if len(parts) != 1:
        reason = "Several Refer-To values" if len(parts) > 1 else "Bad Refer-To header"
        raise SipParseError(400, reason, header="refer-to")
    try:
        address = Address.parse(parts[0])
    except ValueError:
        raise SipParseError(400, "Bad Refer-To header", header="refer-to") from None
    uri = address.uri
    if uri.scheme not in (*SIP_SCHEMES, "tel") or (uri.scheme in SIP_SCHEMES and not uri.host):
        raise SipParseError(400, "Bad Refer-To header", header="refer-to")
    found: Replaces | None = None
    for item in uri.headers.split("&") if uri.headers else ():
        name, _, raw = item.partition("=")
        if name.strip().lower() != "replaces":
            continue
        if found is not None:
            raise SipParseError(400, "Bad Replaces header", header="replaces")
        found = parse_replaces(unquote(raw))
    return ReferTo(replace(uri, headers=""), found)


def sipfrag(status: int, reason: str) -> bytes:
    """The body of a NOTIFY reporting a final or provisional answer (RFC 3515 §2.4.5): its status line."""
    return f"SIP/2.0 {status} {reason}\r\n".encode()
