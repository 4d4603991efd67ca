"""Post-parse request checks, each mapped to a precise (status, reason), like kamailio's sanity module.

``check_request`` runs after ``parse_message`` on every request before any transaction or application
logic sees it. It touches exactly the headers every request needs (§8.1.1: To, From, CSeq, Call-ID,
Max-Forwards, Via), the Request-URI scheme (§8.2.2.1: 416), CSeq/method agreement, Require
(§8.2.2.3: 420 with Unsupported) and the body of an SDP method (§8.2.3: 415 with Accept).
Everything else stays lazy.
"""

from __future__ import annotations

from collections.abc import Collection

from engine.sip.errors import SipParseError
from engine.sip.message import Request
from engine.sip.uri import KNOWN_SCHEMES

#: Methods whose body is a session description (RFC 3264 offer/answer): the engine reads SDP only, bare or
#: inside a multipart body (§8.2.3: anything else is 415 with Accept).
_SDP_METHODS = frozenset({"INVITE", "UPDATE", "PRACK"})

#: Methods whose Require header is not checked (§8.2.2.3: not for CANCEL, and ACK has no response).
_NO_REQUIRE_CHECK = frozenset({"ACK", "CANCEL"})


def check_request(req: Request, supported: Collection[str]) -> None:
    """Check one request; return quietly when it is acceptable.

    Args:
        req: the parsed request.
        supported: the option tags this server supports (lower-case).

    Raises:
        SipParseError: with the status and reason to answer with (400, 415, 416, 420, 505).
    """
    top = req.top_via
    if top.branch is not None and not top.branch:
        raise SipParseError(400, "Empty Via branch", header="via", message=req)
    _ = (req.call_id, req.from_, req.to, req.max_forwards)  # each parses and validates, or raises
    cseq = req.cseq
    if cseq.method != req.method:
        raise SipParseError(400, "CSeq method does not match request method", header="cseq", message=req)
    scheme = req.uri[: req.uri.find(":")].lower()
    if scheme not in KNOWN_SCHEMES:
        raise SipParseError(416, "Unsupported URI Scheme", message=req)
    _ = req.request_uri
    if req.method not in _NO_REQUIRE_CHECK:
        unsupported = [tag for tag in req.tokens("require") if tag not in supported]
        if unsupported:
            raise SipParseError(420, "Bad Extension", header="require", message=req,
                                extra_headers=(("Unsupported", ", ".join(unsupported)),))
    if req.body and req.method in _SDP_METHODS:
        media = (req.get("content-type") or "").partition(";")[0].strip().lower()
        if media != "application/sdp" and not media.startswith("multipart/"):
            raise SipParseError(415, "Unsupported Media Type", header="content-type", message=req,
                                extra_headers=(("Accept", "application/sdp"),))
        encoding = (req.get("content-encoding") or "identity").strip().lower()
        if encoding != "identity":
            raise SipParseError(415, "Unsupported Media Type", header="content-encoding", message=req,
                                extra_headers=(("Accept-Encoding", "identity"),))
    if req.method in ("REGISTER", "INVITE") and req.get("contact") != "*":
        _ = req.addresses("contact")
