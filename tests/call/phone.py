"""A scriptable SIP phone for the in-memory network (tests/sip/harness.py): places and answers calls,
ACKs 2xx, hangs up, cancels, sends re-INVITEs. The B2BUA tests drive the CallManager between such phones
with exact timing, loss and reordering; interop with real phones is the integration suite's job."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.sip.dialog import Dialog
from engine.sip.events import CancelReceived, Event, RequestReceived, ResponseReceived
from engine.sip.message import Field, Request, make_response
from engine.sip.transaction import ClientTransaction, ServerTransaction
from tests.sip.harness import Network, Node, build_request

SDP_TEMPLATE = (
    "v=0\r\no=phone {sid} {ver} IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
)


@dataclass(eq=False)
class Phone:
    """``mode`` for incoming calls: answer (180, then 200 after ``answer_after``), busy (486), ring (180
    until cancelled, then 487), silent (never answers)."""

    net: Network
    node: Node
    mode: str = "answer"
    answer_after: float = 1.0
    sdp_version: int = 1
    direction: str = "sendrecv"
    dialog: Dialog | None = None
    invite_tx: ClientTransaction | None = None
    incoming: ServerTransaction | None = None
    incoming_request: Request | None = None
    statuses: list[int] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # SDP bodies received (requests and responses)
    local_tag: str = ""
    late_offer: bool = False

    def __post_init__(self) -> None:
        self.node.tu = self._tu

    @property
    def ep(self):  # type: ignore[no-untyped-def]
        return self.node.endpoint

    def sdp(self) -> bytes:
        return SDP_TEMPLATE.format(sid=42, ver=self.sdp_version, host=self.node.host, port=40000,
                                   direction=self.direction).encode()

    # -- calling ---------------------------------------------------------------------------------------
    def call(self, target_uri: str, pbx: Node, *, extra: tuple[tuple[str, str], ...] = (),
             late_offer: bool = False) -> None:
        """INVITE with our SDP offer; with ``late_offer`` without SDP (the answer then goes in the ACK)."""
        self.late_offer = late_offer
        body = b"" if late_offer else self.sdp()
        headers = (("Content-Type", "application/sdp"),) if body else ()
        req = build_request("INVITE", target_uri, from_uri=f"sip:{self.node.name}@{self.node.host}",
                            from_tag=self.ep.new_tag(), call_id=f"{self.ep.new_tag()}@{self.node.host}",
                            extra=(("Contact", f"<sip:{self.node.name}@{self.node.host}:{self.node.port}>"),
                                   *headers, *(e for e in extra if e[0].lower() != "max-forwards")),
                            body=body)
        for name, value in extra:
            if name.lower() == "max-forwards":
                req.set(name, value)
        self.invite_tx = self.ep.send_request(req, pbx.peer, self.net.now)

    def cancel(self) -> None:
        assert self.invite_tx is not None
        self.ep.cancel(self.invite_tx, self.net.now)

    def bye(self) -> None:
        assert self.dialog is not None
        self.ep.send_request(self.dialog.request("BYE"), self.dialog.peer, self.net.now)

    def reinvite(self, direction: str, *, bump_version: bool = True) -> None:
        assert self.dialog is not None
        self.direction = direction
        self.sdp_version += 1 if bump_version else 0
        req = self.dialog.request("INVITE", self.sdp())
        self.ep.send_request(req, self.dialog.peer, self.net.now)

    # -- the TU ----------------------------------------------------------------------------------------
    def _tu(self, node: Node, event: Event) -> None:
        now = self.net.now
        if isinstance(event, ResponseReceived):
            resp = event.response
            self.statuses.append(resp.status)
            if resp.body:
                self.bodies.append(resp.body)
            if resp.cseq.method == "INVITE" and 200 <= resp.status < 300 and event.transaction is not None:
                if self.dialog is None:
                    self.dialog = Dialog.as_uac(event.transaction.request, resp, event.transaction.peer)
                answer = self.sdp() if self.late_offer else b""
                self.ep.send_ack(self.dialog.ack(resp.cseq.seq, answer), self.dialog.peer)
            return
        if isinstance(event, CancelReceived):
            cancelled = event.invite_transaction
            assert cancelled.request is not None
            self.ep.respond(cancelled, make_response(cancelled.request, 487, to_tag=self.local_tag), now)
            return
        if not isinstance(event, RequestReceived):
            return
        req = event.request
        self.requests.append(req)
        if req.body:
            self.bodies.append(req.body)
        tx = event.transaction
        if tx is None:
            return  # ACK
        if req.to.tag is not None:  # in dialog
            resp = make_response(req, 200)
            if req.method == "INVITE":
                resp.fields.append(Field("contact", f"<sip:{node.name}@{node.host}:{node.port}>"))
                resp.fields.append(Field("content-type", "application/sdp"))
                self.sdp_version += 1
                resp.body = self.sdp()
            self.ep.respond(tx, resp, now)
            return
        self.local_tag = self.ep.new_tag()
        self.incoming, self.incoming_request = tx, req
        if self.mode == "busy":
            self.ep.respond(tx, make_response(req, 486, to_tag=self.local_tag), now)
        elif self.mode in ("answer", "ring"):
            ringing = make_response(req, 180, to_tag=self.local_tag)
            ringing.fields.append(Field("contact", f"<sip:{node.name}@{node.host}:{node.port}>"))
            self.ep.respond(tx, ringing, now)
            if self.mode == "answer":
                self.net.call_at(now + self.answer_after, self.answer)

    def answer(self) -> None:
        tx, req = self.incoming, self.incoming_request
        if tx is None or req is None or tx.state.value != "Proceeding":
            return
        ok = make_response(req, 200, to_tag=self.local_tag)
        contact = f"<sip:{self.node.name}@{self.node.host}:{self.node.port}>"
        ok.fields.append(Field("contact", contact))
        ok.fields.append(Field("content-type", "application/sdp"))
        ok.body = self.sdp()
        self.dialog = Dialog.as_uas(req, self.local_tag, contact, tx.peer)
        self.ep.respond(tx, ok, self.net.now)
