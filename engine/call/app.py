"""The signalling application: the transaction user of ``pbx serve``, one dispatcher for every endpoint event.

Events go where their transaction or dialog says, requests outside a dialog where their method says:

- a response or a time-out of a client transaction: the call layer's (a branch INVITE, a request passed
  on in a dialog, a 2xx that was ACKed), else MWI's (a NOTIFY); a server transaction's time-out only
  concerns the call layer when it is an INVITE's (Timer H of a final answer to a caller);
- an ACK for a 2xx and a CANCEL: the call layer (by dialog; by the INVITE's transaction);
- a request with a To tag: the call layer, which answers it in the call's dialog (or 481). The methods of
  ``NOT_CALL_METHODS`` go there only when their dialog is a call's (an OPTIONS inside a call is passed on;
  a SUBSCRIBE refresh of MWI is not a call's); a REGISTER never does (RFC 3261 §10.2: a registration is
  not part of any dialog);
- any other request by method (``SipApplication.methods``): REGISTER to digest auth and the registrar
  (its changes persisted through the ``BindingWriter``), INVITE to authentication, ``engine.call.routing``
  and the ``CallManager`` (which takes every event of the call from then on), OPTIONS answered 200 with
  Allow/Accept/Supported, SUBSCRIBE for message-summary to MWI (RFC 3842), BYE and CANCEL outside any
  dialog 481, and 405 (known, not served: §21.4.6) or 501 (§21.5.2) for the rest.

So a registration never passes through the call layer. A handler that raises answers 500 (its transaction
would otherwise wait forever) and counts ``internal_errors``; a ``SipParseError`` answers its status.

The configuration comes from one ``CurrentConfig`` (``engine.call.config``): digest credentials, routing
and the compiled plans of one snapshot. A new INVITE is routed by the snapshot current when it arrives,
and its flow keeps that snapshot to the call's end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from engine.call.b2bua import CallManager
from engine.call.config import CurrentConfig
from engine.call.flows import FlowFactory
from engine.call.legs import ALLOW, NOT_CALL_METHODS, to_tag
from engine.call.mwi import EVENT as MWI_EVENT
from engine.call.mwi import MwiService
from engine.call.routing import FeatureCall, MailboxMenu, Planned, Rejection, Routed, Router
from engine.call.transfer import TransferService
from engine.clock import Clock
from engine.model.cdr import Disposition
from engine.sip.auth import AuthOutcome, DigestAuthenticator
from engine.sip.endpoint import SipEndpoint
from engine.sip.errors import SipParseError
from engine.sip.events import CancelReceived, Event, RequestReceived, ResponseReceived, TransactionTimedOut
from engine.sip.message import Field, Request, Response, make_response
from engine.sip.registrar import BindingChange, Registrar
from engine.sip.transaction import ClientTransaction, Peer, ServerTransaction
from engine.store.bindings import BindingWriter, binding_record, storable

logger = logging.getLogger(__name__)

#: Methods we know but do not serve outside a dialog: 405 with Allow (§21.4.6). Anything else is 501
#: (§21.5.2). In a dialog, the call layer takes UPDATE and INFO.
KNOWN_UNSERVED: Final = frozenset({"PRACK", "UPDATE", "INFO", "MESSAGE", "NOTIFY", "PUBLISH"})

Handler = Callable[[Request, ServerTransaction, float], Response | None]
"""A request outside any call's dialog: the response to send, or None when the handler answered itself."""


class SipApplication:
    """The transaction user of the engine. See the module docstring."""

    def __init__(self, endpoint: SipEndpoint, auth: DigestAuthenticator, registrar: Registrar,
                 config: CurrentConfig, clock: Clock, writer: BindingWriter | None,
                 calls: CallManager | None = None, *, flows: FlowFactory | None = None,
                 mwi: MwiService | None = None, transfers: TransferService | None = None) -> None:
        """Args:
            endpoint: the SIP endpoint whose events ``handle`` takes.
            auth: the digest authenticator (nonces, the failure throttle).
            registrar: the registrar over the location service.
            config: the configuration in force (credentials, routing, plans).
            clock: the engine's clock.
            writer: persists binding changes (None: registrations live in memory only).
            calls: the call layer (None: INVITEs get 503).
            flows: builds the controller of calls that run a dial plan or the voicemail menu (None: 480).
            mwi: message waiting indication (RFC 3842; None: SUBSCRIBE gets 489).
            transfers: REFER and INVITE with Replaces (None: an INVITE with Replaces is a new call).
        """
        self.endpoint = endpoint
        self.calls = calls
        self.auth = auth
        self.registrar = registrar
        self.config = config
        self.clock = clock
        self.writer = writer
        self.internal_errors = 0
        self._debug = logger.isEnabledFor(logging.DEBUG)
        self.flows = flows
        self.mwi = mwi
        self.transfers = transfers
        self._registered: str | None = None
        #: a line's INVITE to a park orbit or the pickup code (``engine.call.park``/``pickup``: True when
        #: one of them took it)
        self.retrieve: Callable[[Request, ServerTransaction, Peer, str, float], bool] | None = None
        #: the handler of each method outside a dialog; a method not listed gets 405 or 501
        self.methods: dict[str, Handler] = {
            "REGISTER": self._register,
            "INVITE": self._invite,
            "OPTIONS": self._options,
            "SUBSCRIBE": self._subscribe,
            "BYE": self._no_dialog,
            "CANCEL": self._no_dialog,
            "REFER": self._refer,
        }

    # -- the dispatcher ------------------------------------------------------------------------------
    def handle(self, event: Event, now: float) -> None:
        """Act on one endpoint event (called by the transport's pump); see the module docstring."""
        calls = self.calls
        if isinstance(event, RequestReceived):
            tx = event.transaction
            if tx is None:  # an ACK for a 2xx: its dialog is a call's, if anyone's
                if calls is not None:
                    calls.handle(event, now)
                return
            req = event.request
            if calls is not None and self._in_call_dialog(req, calls) and calls.handle(event, now):
                return
            self._answer(req, tx, now)
        elif isinstance(event, ResponseReceived | TransactionTimedOut):
            done = event.transaction
            if isinstance(done, ClientTransaction):  # ours: a call's request, else an MWI NOTIFY
                if not (calls is not None and calls.handle(event, now)) and self.mwi is not None:
                    self.mwi.handle_event(event)
            elif isinstance(done, ServerTransaction) and done.method == "INVITE" and calls is not None:
                calls.handle(event, now)  # our final answer to a caller was never ACKed (Timer H)
        elif isinstance(event, CancelReceived) and calls is not None:
            calls.handle(event, now)

    @staticmethod
    def _in_call_dialog(req: Request, calls: CallManager) -> bool:
        """Whether ``req`` is for the call layer: a request in a dialog (a To tag), but for the methods that
        only a call's own dialog takes there (see the module docstring)."""
        method = req.method
        if method == "REGISTER":
            return False
        tag = to_tag(req)
        if tag is None:
            return False
        return method not in NOT_CALL_METHODS or (req.call_id, tag) in calls.dialogs

    def _answer(self, req: Request, tx: ServerTransaction, now: float) -> None:
        """Run the method's handler for a request outside any call's dialog and send its response."""
        try:
            resp = self.methods.get(req.method, self._unserved)(req, tx, now)
            if resp is None:
                return  # the handler answered (the call layer, MWI)
        except SipParseError as exc:
            resp = make_response(req, exc.status, exc.reason, to_tag=self.endpoint.new_tag())
            for name, value in exc.extra_headers:
                resp.fields.append(Field(name.lower(), value))
        except Exception:
            # A bug here must not strand the transaction (it would wait forever for an answer): log, 500.
            self.internal_errors += 1
            logger.exception("internal error handling %s %s from %s:%d", req.method, req.uri, tx.peer.host,
                             tx.peer.port)
            resp = make_response(req, 500, to_tag=self.endpoint.new_tag())
        if self._debug:
            logger.debug("< %s %s from %s:%s:%d -> %d %s", req.method, req.uri, tx.peer.transport,
                         tx.peer.host, tx.peer.port, resp.status, resp.reason)
        if resp.status == 401 and req.method == "REGISTER" and not req.has("authorization"):
            # A REGISTER without credentials is challenged statelessly (RFC 3261 §8.2.7): the nonce is a
            # stateless HMAC, a retransmission just gets a fresh challenge, and no transaction waits 32 s for
            # Timer J (half of a registration's transactions). A challenge after failed credentials stays in
            # its transaction, so that the failure throttle never counts a retransmission twice.
            self.endpoint.respond_stateless(tx, resp, now)
        else:
            self.endpoint.respond(tx, resp, now)
        if self._registered is not None and self.mwi is not None:
            aor, self._registered = self._registered, None
            self.mwi.on_registered(aor, now, self.clock.wall())

    # -- requests outside a dialog, by method ----------------------------------------------------------
    def _options(self, req: Request, tx: ServerTransaction, now: float) -> Response:
        resp = make_response(req, 200, to_tag=self.endpoint.new_tag())
        if self.mwi is not None:
            resp.fields.append(Field("allow-events", MWI_EVENT))
        resp.fields.extend([Field("allow", ALLOW), Field("accept", "application/sdp"),
                            Field("accept-language", "en, de"),
                            Field("supported", ", ".join(sorted(self.endpoint.config.supported)))])
        return resp

    def _no_dialog(self, req: Request, tx: ServerTransaction, now: float) -> Response:
        return make_response(req, 481, to_tag=self.endpoint.new_tag())

    def _refer(self, req: Request, tx: ServerTransaction, now: float) -> Response:
        # RFC 3515 §2.4.2 lets a REFER create a dialog; we take transfers only inside a call's dialog.
        return make_response(req, 403, "REFER outside a dialog is not served", to_tag=self.endpoint.new_tag())

    def _subscribe(self, req: Request, tx: ServerTransaction, now: float) -> Response | None:
        if self.mwi is None or (req.get("event") or "").split(";", 1)[0].strip().lower() != MWI_EVENT:
            resp = make_response(req, 489, "Bad Event", to_tag=self.endpoint.new_tag())
            resp.fields.append(Field("allow-events", MWI_EVENT if self.mwi is not None else ""))
            return resp
        auth = self._authenticate(req, tx.peer, now, 401)
        if isinstance(auth, Response):
            return auth
        self.mwi.handle_subscribe(req, tx, auth, now)
        return None

    def _unserved(self, req: Request, tx: ServerTransaction, now: float) -> Response:
        status = 405 if req.method in KNOWN_UNSERVED else 501
        resp = make_response(req, status, to_tag=self.endpoint.new_tag())
        resp.fields.append(Field("allow", ALLOW))
        return resp

    def _register(self, req: Request, tx: ServerTransaction, now: float) -> Response:
        peer = tx.peer
        auth = self._authenticate(req, peer, now, 401)
        if isinstance(auth, Response):
            return auth
        to_uri = req.to.uri
        aor = to_uri.user_decoded or ""
        if aor != auth:
            # A line registers only itself: the digest user must be the AOR's user part.
            return make_response(req, 403, "Authenticated user does not match the To URI",
                                 to_tag=self.endpoint.new_tag())
        outcome = self.registrar.register(req, aor, peer, self.clock.wall(), self.endpoint.new_tag())
        if outcome.changes and self.writer is not None:
            self._persist(outcome.changes)
        if self.mwi is not None and outcome.changes and outcome.response.status == 200:
            self._registered = aor  # the phone hears of waiting messages after our 200 (see ``_answer``)
        return outcome.response

    def _invite(self, req: Request, tx: ServerTransaction, now: float) -> Response | None:
        """A new call: from a trusted trunk (by source address) or an authenticated line; routed, then
        handed to the call layer, which answers from then on."""
        peer = tx.peer
        if req.max_forwards == 0:
            return make_response(req, 483, to_tag=self.endpoint.new_tag())  # §16.3 step 2
        calls = self.calls
        if calls is None:
            return make_response(req, 503, "Calls are not enabled", to_tag=self.endpoint.new_tag())
        config = self.config.snapshot  # the call is routed by this snapshot and its flow keeps it
        router = Router(config.routing, self.registrar.location)
        wall = self.clock.wall()
        trunk = router.trunk_for(peer.host)
        result: Routed | Rejection | Planned | MailboxMenu | FeatureCall
        if trunk is not None:
            result = router.from_trunk(req, trunk, peer, wall)
        else:
            if not req.has("proxy-authorization") and router.is_our_number(req) \
                    and not router.is_line_caller(req):
                # A carrier we do not know delivering one of our numbers: refuse, do not challenge. (A phone
                # of ours dialling one of our numbers names its line in From and is challenged as usual.)
                logger.info("INVITE to a DID from %s:%d, which is no trunk: 403", peer.host, peer.port)
                return make_response(req, 403, "Source is not a trusted trunk",
                                     to_tag=self.endpoint.new_tag())
            auth = self._authenticate(req, peer, now, 407)
            if isinstance(auth, Response):
                return auth
            if self.transfers is not None and req.has("replaces"):
                self.transfers.invite(req, tx, peer, auth, now)  # RFC 3891: it takes over one of our dialogs
                return None
            if self.retrieve is not None and self.retrieve(req, tx, peer, auth, now):
                return None  # a parked call's orbit, a pickup (``engine.call.park``, ``pickup``)
            result = router.from_line(req, auth, peer, wall)
        if isinstance(result, Rejection):
            calls.refuse(req, tx, result.status, result.reason, result.disposition, result.info, now,
                         result.warning)
        elif isinstance(result, Routed):
            calls.start_call(req, tx, peer, result.destination, result.info, now)
        else:
            controller = self.flows.controller(result, config) if self.flows is not None else None
            if controller is None:
                calls.refuse(req, tx, 480, "Temporarily Unavailable", Disposition.UNAVAILABLE, result.info,
                             now, "the dial plan or voicemail is not available")
                return None
            call = calls.start_controlled(req, tx, peer, result.info, controller, now)
            if call is not None:
                controller.begin(call)
        return None

    # -- digest authentication -------------------------------------------------------------------------
    def _challenge(self, req: Request, now: float, status: int, *, stale: bool = False) -> Response:
        resp = make_response(req, status, to_tag=self.endpoint.new_tag())
        name = "www-authenticate" if status == 401 else "proxy-authenticate"
        for value in self.auth.challenge_headers(now, stale=stale):
            resp.fields.append(Field(name, value))
        return resp

    def _authenticate(self, req: Request, peer: Peer, now: float, status: int) -> str | Response:
        """Digest-authenticate ``req``; the user name on success, else the response to send."""
        header = req.get("authorization" if status == 401 else "proxy-authorization")
        result = self.auth.verify(req.method, req.uri, header, self.config.snapshot.credentials.get, now,
                                  peer.host)
        outcome = result.outcome
        if outcome is AuthOutcome.OK and result.username is not None:
            return result.username
        if outcome is AuthOutcome.BLOCKED:
            return make_response(req, 403, "Too many failed authentication attempts",
                                 to_tag=self.endpoint.new_tag())
        if outcome is AuthOutcome.MALFORMED:
            return make_response(req, 400, result.reason or "Bad credentials", to_tag=self.endpoint.new_tag())
        if outcome is AuthOutcome.FAILED:
            logger.info("authentication failed for %r from %s:%d: %s", result.username, peer.host, peer.port,
                        result.reason)
        return self._challenge(req, now, status, stale=outcome is AuthOutcome.STALE)

    # -- registrations at rest -------------------------------------------------------------------------
    def _persist(self, changes: list[BindingChange]) -> None:
        writer = self.writer
        assert writer is not None
        for change in changes:
            if change.binding is None:
                writer.delete(storable(change.aor), storable(change.contact))
            else:
                writer.upsert(binding_record(change.binding))

    def purge_expired(self) -> int:
        """Drop expired bindings from memory and the store; returns how many."""
        gone = self.registrar.location.purge_expired(self.clock.wall())
        if self.writer is not None:
            for b in gone:
                self.writer.delete(storable(b.aor), storable(b.contact))
        return len(gone)
