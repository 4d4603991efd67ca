"""Dialogs (RFC 3261 §12): the state two user agents share for one session, and the requests it builds.

A B2BUA holds two dialogs per answered call: one as UAS towards the caller, one as UAC towards the callee.
A dialog knows its identifiers (Call-ID, local and remote tags), both CSeq spaces, the remote target
(refreshed by re-INVITE/UPDATE), and the route set; from these it builds in-dialog requests (§12.2.1.1) and
the ACK for a 2xx (§13.2.2.4), and it checks the CSeq order of requests it receives (§12.2.2).

Where in-dialog requests are *sent* (``peer``) is decided by the transaction user, not derived from the
remote target: phones behind NAT advertise private Contact addresses, so the engine sends to the address
their messages really came from (symmetric signalling, as Asterisk's ``force_rport``/``rewrite_contact``).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.sip.errors import SipParseError
from engine.sip.headers import Address
from engine.sip.message import Field, Message, Request, Response
from engine.sip.transaction import Peer

#: Methods whose request (and 2xx) may change the remote target (§12.2, RFC 3311 §5.2).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE"})


@dataclass(slots=True)
class Dialog:
    """One dialog's state. Build with ``as_uas`` or ``as_uac``."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the From (UAC) or To (UAS) address of our side, without tag
    remote_uri: str
    remote_target: str
    route_set: tuple[str, ...]
    local_seq: int
    remote_seq: int | None
    local_contact: str
    peer: Peer

    @classmethod
    def as_uas(cls, request: Request, local_tag: str, local_contact: str, peer: Peer) -> Dialog:
        """§12.1.1: the dialog a UAS forms by answering ``request`` (an INVITE) with a tag.

        Raises:
            SipParseError: the request has no usable Contact, From or To.
        """
        contacts = request.addresses("contact")
        if not contacts:
            raise SipParseError(400, "Missing Contact", message=request)
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local_uri=_without_tag(request, "to"),
            remote_uri=_without_tag(request, "from"),
            remote_target=contacts[0].uri_text or str(contacts[0].uri),
            route_set=tuple(request.get_all("record-route")),
            local_seq=0,
            remote_seq=request.cseq.seq,
            local_contact=local_contact,
            peer=peer,
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response, peer: Peer) -> Dialog:
        """§12.1.2: the dialog a UAC forms from its ``request`` and a 1xx/2xx ``response`` with a To tag.

        Raises:
            SipParseError: the response has no To tag or no usable Contact.
        """
        remote_tag = response.to.tag
        if not remote_tag:
            raise SipParseError(400, "Missing To tag", message=response)
        contacts = response.addresses("contact")
        target = (contacts[0].uri_text or str(contacts[0].uri)) if contacts else request.uri
        return cls(
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=remote_tag,
            local_uri=_without_tag(request, "from"),
            remote_uri=_without_tag(request, "to"),
            remote_target=target,
            route_set=tuple(reversed(response.get_all("record-route"))),
            local_seq=request.cseq.seq,
            remote_seq=None,
            local_contact=request.get("contact") or "",
            peer=peer,
        )

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    # -- building requests -------------------------------------------------------------------------
    def request(self, method: str, body: bytes = b"", content_type: str | None = None) -> Request:
        """§12.2.1.1: a new in-dialog request (its CSeq is the next local one; no Via: the endpoint adds it).

        CANCEL and ACK are not built here: they belong to the INVITE they refer to (``ack``).
        """
        self.local_seq += 1
        return self._build(method, self.local_seq, body, content_type)

    def ack(self, invite_seq: int, body: bytes = b"", content_type: str | None = None) -> Request:
        """§13.2.2.4: the ACK for a 2xx to the INVITE with CSeq ``invite_seq`` (built by the dialog, sent
        outside any transaction, and resent for every retransmission of that 2xx)."""
        return self._build("ACK", invite_seq, body, content_type)

    def _build(self, method: str, seq: int, body: bytes, content_type: str | None) -> Request:
        uri, routes = self._request_target()
        req = Request(method, uri)
        fields = req.fields
        fields.append(Field("max-forwards", "70"))
        for route in routes:
            fields.append(Field("route", route))
        fields.append(Field("from", f"{self.local_uri};tag={self.local_tag}"))
        fields.append(Field("to", f"{self.remote_uri};tag={self.remote_tag}"))
        fields.append(Field("call-id", self.call_id))
        fields.append(Field("cseq", f"{seq} {method}"))
        if method in TARGET_REFRESH:
            fields.append(Field("contact", self.local_contact))
        if body:
            fields.append(Field("content-type", content_type or "application/sdp"))
            req.body = body
        return req

    def _request_target(self) -> tuple[str, list[str]]:
        """§12.2.1.1: loose routing puts the remote target in the Request-URI and the route set in Route;
        a strict first hop (no ``lr``) takes the Request-URI and the remote target goes last in Route."""
        routes = list(self.route_set)
        if not routes:
            return self.remote_target, []
        first = routes[0]
        if ";lr" in first.lower():
            return self.remote_target, routes
        uri = first.strip()
        if uri.startswith("<") or "<" in uri:
            uri = uri[uri.index("<") + 1: uri.index(">")]
        return uri, [*routes[1:], f"<{self.remote_target}>"]

    # -- receiving requests ------------------------------------------------------------------------
    def check_request(self, request: Request) -> int | None:
        """§12.2.2: accept ``request`` into the dialog; the status to answer with when it must be refused.

        A CSeq lower than (or, except for ACK and CANCEL, equal to) the last one is out of order: 500.
        A target refresh request updates the remote target.
        """
        method = request.method
        if method in ("ACK", "CANCEL"):
            return None
        seq = request.cseq.seq
        if self.remote_seq is not None and seq <= self.remote_seq:
            return 500
        self.remote_seq = seq
        if method in TARGET_REFRESH:
            self.refresh_target(request)
        return None

    def refresh_target(self, message: Message) -> None:
        """Take the Contact of a target refresh request or of its 2xx as the new remote target."""
        try:
            contacts = message.addresses("contact")
        except SipParseError:
            return
        if contacts:
            self.remote_target = contacts[0].uri_text or str(contacts[0].uri)


def _without_tag(message: Message, name: str) -> str:
    """The From/To address of ``message`` as text without its ``tag`` parameter (other params kept)."""
    addr = message.from_ if name == "from" else message.to
    if "tag" not in addr.params:
        return addr.serialize()
    params = {k: v for k, v in addr.params.items() if k != "tag"}
    return Address(addr.uri, addr.display, params, addr.uri_text).serialize()
