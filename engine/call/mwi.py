"""Message waiting indication: RFC 3842 ``message-summary`` over RFC 6665 SUBSCRIBE/NOTIFY, and unsolicited.

Two ways a phone learns that its mailbox holds messages:

* **Subscribed** (RFC 3842 §4, RFC 6665): the phone sends ``SUBSCRIBE`` with ``Event: message-summary`` for
  its mailbox (Request-URI user; the authenticated line when there is none). We answer 200 with ``Expires``
  and ``Contact`` and send a NOTIFY with the current counts at once (§4.2.1.2), then one whenever the counts
  change, one after each refresh, and a final ``Subscription-State: terminated`` on unsubscribe
  (``Expires: 0``) or expiry. A NOTIFY answered 481, or not answered at all, ends the subscription
  (RFC 6665 §4.2.2).
* **Unsolicited** (common practice, not an RFC: Asterisk's ``res_pjsip_mwi`` and pjsua's
  ``enable_unsolicited_mwi``, which accepts any NOTIFY with ``Event: message-summary``): an out-of-dialog
  NOTIFY to each registered contact of the line whenever the counts change, with ``Subscription-State:
  terminated`` (Asterisk's choice: no subscription exists) and ``Allow-Events``. Contacts that hold a
  subscription for the same mailbox are skipped, so a phone never hears it twice.

``MwiService`` is sans-IO in the manner of the SIP core: it builds requests and hands them to the
``SipEndpoint``; the shell drains the endpoint as usual. Time arrives as arguments (``now`` monotonic for
transactions and subscription expiry, ``wall`` for the location service's binding expiry). Counts are
remembered from ``set_counts``/``notify_counts``; it never reads the voicemail store.

Its only deadline of its own is subscription expiry (the subscriber refreshes; NOTIFY retransmission and
its Timer F are the endpoint's). ``get_timer()`` is the earliest expiry, kept in a heap so that asking
after every message costs nothing; the shell arms one timer there (``SipTransport.watch``) and calls
``handle_timer(now)`` when it fires, as it does for the endpoint: nothing polls.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from engine.sip.dialog import Dialog
from engine.sip.endpoint import SipEndpoint
from engine.sip.errors import SipParseError
from engine.sip.events import ResponseReceived, TransactionTimedOut
from engine.sip.message import Field, Request, Response, make_response
from engine.sip.registrar import Location
from engine.sip.transaction import ClientTransaction, Peer, ServerTransaction

logger = logging.getLogger(__name__)

EVENT: Final = "message-summary"
CONTENT_TYPE: Final = "application/simple-message-summary"
DEFAULT_EXPIRES: Final = 3600
MIN_EXPIRES: Final = 60
MAX_EXPIRES: Final = 7200

_SubKey = tuple[str, str, str]  # (Call-ID, our tag, their tag)


class MwiBodyError(ValueError):
    """A ``message-summary`` body that does not follow RFC 3842 §5.2."""


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """The parsed form of a body: ``new``/``old`` voice messages, urgent ones in brackets."""

    waiting: bool
    account: str | None
    new: int
    old: int
    urgent_new: int = 0
    urgent_old: int = 0


def message_summary_body(account: str, new: int, old: int, urgent_new: int = 0, urgent_old: int = 0) -> bytes:
    """An ``application/simple-message-summary`` body (RFC 3842 §5.2), CRLF-terminated lines::

        Messages-Waiting: yes
        Message-Account: sip:201@pbx.example.com
        Voice-Message: 2/8 (0/0)

    Raises:
        MwiBodyError: a negative count, or CR/LF in ``account``.
    """
    if min(new, old, urgent_new, urgent_old) < 0:
        raise MwiBodyError("message counts cannot be negative")
    if "\r" in account or "\n" in account:
        raise MwiBodyError("Message-Account must be one line")
    lines = [
        f"Messages-Waiting: {'yes' if new else 'no'}",
        f"Message-Account: {account}",
        f"Voice-Message: {new}/{old} ({urgent_new}/{urgent_old})",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def parse_message_summary(body: bytes) -> MessageSummary:
    """Parse a ``message-summary`` body (the voice class only; other classes are read past).

    Raises:
        MwiBodyError: no ``Messages-Waiting`` line or a malformed ``Voice-Message`` line.
    """
    waiting: bool | None = None
    account: str | None = None
    counts = (0, 0, 0, 0)
    for raw in body.decode("utf-8", "replace").splitlines():
        name, sep, value = raw.partition(":")
        if not sep:
            continue
        name, value = name.strip().lower(), value.strip()
        if name == "messages-waiting":
            if value.lower() not in ("yes", "no"):
                raise MwiBodyError(f"Messages-Waiting must be yes or no, got {value!r}")
            waiting = value.lower() == "yes"
        elif name == "message-account":
            account = value
        elif name == "voice-message":
            counts = _parse_counts(value)
    if waiting is None:
        raise MwiBodyError("missing Messages-Waiting")
    return MessageSummary(waiting, account, *counts)


def _parse_counts(value: str) -> tuple[int, int, int, int]:
    main, _, urgent = value.partition("(")
    new_text, slash, old_text = main.strip().partition("/")
    if not slash or not new_text.strip().isdigit() or not old_text.strip().isdigit():
        raise MwiBodyError(f"bad Voice-Message {value!r}")
    urgent_new = urgent_old = 0
    if urgent:
        inner = urgent.rstrip().removesuffix(")")
        un, slash, uo = inner.partition("/")
        if not slash or not un.strip().isdigit() or not uo.strip().isdigit():
            raise MwiBodyError(f"bad urgent counts in {value!r}")
        urgent_new, urgent_old = int(un), int(uo)
    return int(new_text), int(old_text), urgent_new, urgent_old


@dataclass(slots=True)
class Subscription:
    """One accepted SUBSCRIBE dialog for ``mailbox``."""

    mailbox: str
    subscriber: str  # the authenticated line
    dialog: Dialog
    expires_at: float  # monotonic
    peer: Peer


def own_mailbox_only(user: str, mailbox: str) -> bool:
    """The default policy: a line may watch its own mailbox."""
    return user == mailbox


class MwiService:
    """The notifier for ``message-summary`` (see the module docstring).

    Args:
        endpoint: the SIP endpoint requests go out through.
        location: registered contacts, for unsolicited NOTIFYs.
        realm: the SIP domain of ``Message-Account`` and our From/To (``sip:201@realm``).
        contact: our Contact URI (bare, not in angle brackets: the service adds them), e.g.
            ``sip:mwi@203.0.113.5:5060``.
        may_subscribe: (authenticated user, mailbox) -> allowed (default: own mailbox only).

    Raises:
        ValueError: ``contact`` is not a bare SIP URI (``<sip:...>`` would go out as ``<<sip:...>>``, which
            phones reject as a syntax error: pjsip drops the whole NOTIFY).
    """

    def __init__(
        self,
        endpoint: SipEndpoint,
        location: Location,
        realm: str,
        contact: str,
        *,
        may_subscribe: Callable[[str, str], bool] = own_mailbox_only,
        default_expires: int = DEFAULT_EXPIRES,
        min_expires: int = MIN_EXPIRES,
        max_expires: int = MAX_EXPIRES,
    ) -> None:
        self.endpoint = endpoint
        self.location = location
        self.realm = realm
        self.contact = contact
        self.may_subscribe = may_subscribe
        self.default_expires = default_expires
        self.min_expires = min_expires
        self.max_expires = max_expires
        self._counts: dict[str, tuple[int, int]] = {}
        self._subs: dict[_SubKey, Subscription] = {}
        # (expires_at, key) per subscription and refresh; an entry whose subscription is gone or was
        # refreshed since is stale and dropped when it reaches the top.
        self._expiry: list[tuple[float, _SubKey]] = []
        self._notifies: dict[ClientTransaction, _SubKey | None] = {}
        self.stats: dict[str, int] = {"subscribe": 0, "notify": 0, "unsolicited": 0, "expired": 0}

    @property
    def contact(self) -> str:
        """Our Contact URI (bare); setting it checks it as the constructor does."""
        return self._contact

    @contact.setter
    def contact(self, uri: str) -> None:
        if not uri.lower().startswith(("sip:", "sips:")) or any(c in uri for c in "<>\r\n \t"):
            raise ValueError(f"MWI contact must be a bare SIP URI, got {uri!r}")
        self._contact = uri

    # -- counts -------------------------------------------------------------------------------------------
    def set_counts(self, mailbox: str, new: int, old: int) -> None:
        """Remember a mailbox's counts without notifying (priming at start-up from the store)."""
        self._counts[mailbox] = (new, old)

    def counts(self, mailbox: str) -> tuple[int, int]:
        return self._counts.get(mailbox, (0, 0))

    def notify_counts(
        self, mailbox: str, new: int, old: int, now: float, wall: float, *, force: bool = False
    ) -> int:
        """The counts of ``mailbox`` are now ``new``/``old``: NOTIFY its subscribers and, unsolicited, the
        registered contacts of the line of the same number, when the counts changed (or ``force``).
        Returns how many NOTIFYs went out."""
        if not force and self._counts.get(mailbox) == (new, old):
            return 0
        self._counts[mailbox] = (new, old)
        sent = 0
        for key, sub in list(self._subs.items()):
            if sub.mailbox == mailbox:
                self._notify(key, sub, now, "active")
                sent += 1
        return sent + self._unsolicited(mailbox, now, wall)

    def on_registered(self, aor: str, now: float, wall: float) -> int:
        """A line registered: tell its contacts the current state of its mailbox when messages wait (as
        Asterisk does on registration). Returns how many NOTIFYs went out."""
        new, _ = self.counts(aor)
        return self._unsolicited(aor, now, wall) if new else 0

    # -- SUBSCRIBE ----------------------------------------------------------------------------------------
    def handle_subscribe(self, req: Request, tx: ServerTransaction, user: str, now: float) -> None:
        """Answer an authenticated SUBSCRIBE (new or in-dialog) and send the NOTIFY that follows.

        Args:
            req: the SUBSCRIBE.
            tx: its server transaction (answered here, through the endpoint).
            user: the authenticated line (the digest user name).
            now: monotonic seconds.
        """
        self.stats["subscribe"] += 1
        try:
            self._subscribe(req, tx, user, now)
        except SipParseError as exc:
            resp = make_response(req, exc.status, exc.reason, to_tag=self.endpoint.new_tag())
            self.endpoint.respond(tx, resp, now)

    def _subscribe(self, req: Request, tx: ServerTransaction, user: str, now: float) -> None:
        event = (req.get("event") or "").split(";", 1)[0].strip().lower()
        if event != EVENT:
            resp = make_response(req, 489, "Bad Event", to_tag=self.endpoint.new_tag())
            resp.fields.append(Field("allow-events", EVENT))
            self.endpoint.respond(tx, resp, now)
            return
        accept = [a.split(";", 1)[0].strip().lower() for a in req.get_all("accept")]
        if accept and not {CONTENT_TYPE, "application/*", "*/*"} & set(accept):
            resp = make_response(req, 406, to_tag=self.endpoint.new_tag())
            resp.fields.append(Field("accept", CONTENT_TYPE))
            self.endpoint.respond(tx, resp, now)
            return
        expires = req.expires
        if expires is None:
            expires = self.default_expires
        to_tag = req.to.tag
        if to_tag is not None:
            self._refresh(req, tx, (req.call_id, to_tag, req.from_.tag or ""), expires, now)
            return
        mailbox = req.request_uri.user_decoded or user
        if not self.may_subscribe(user, mailbox):
            self.endpoint.respond(
                tx, make_response(req, 403, "Not your mailbox", to_tag=self.endpoint.new_tag()), now
            )
            return
        if 0 < expires < self.min_expires:
            resp = make_response(req, 423, "Interval Too Brief", to_tag=self.endpoint.new_tag())
            resp.fields.append(Field("min-expires", str(self.min_expires)))
            self.endpoint.respond(tx, resp, now)
            return
        expires = min(expires, self.max_expires)
        local_tag = self.endpoint.new_tag()
        dialog = Dialog.as_uas(req, local_tag, f"<{self.contact}>", tx.peer)
        sub = Subscription(mailbox, user, dialog, now + expires, tx.peer)
        self.endpoint.respond(tx, self._ok(req, local_tag, expires), now)
        key = dialog.id
        if expires == 0:
            # RFC 6665 §4.2.1.1: a fetch: one NOTIFY with the state, the subscription ends at once.
            self._notify(key, sub, now, "terminated;reason=timeout")
            return
        self._subs[key] = sub
        heapq.heappush(self._expiry, (sub.expires_at, key))
        self._notify(key, sub, now, "active")

    def _refresh(self, req: Request, tx: ServerTransaction, key: _SubKey, expires: int, now: float) -> None:
        sub = self._subs.get(key)
        if sub is None:
            self.endpoint.respond(tx, make_response(req, 481, "Subscription Does Not Exist"), now)
            return
        status = sub.dialog.check_request(req)
        if status is not None:
            self.endpoint.respond(tx, make_response(req, status), now)
            return
        if 0 < expires < self.min_expires:
            resp = make_response(req, 423, "Interval Too Brief")
            resp.fields.append(Field("min-expires", str(self.min_expires)))
            self.endpoint.respond(tx, resp, now)
            return
        expires = min(expires, self.max_expires)
        self.endpoint.respond(tx, self._ok(req, None, expires), now)
        if expires == 0:
            del self._subs[key]
            self._notify(key, sub, now, "terminated;reason=timeout")
            return
        sub.expires_at = now + expires
        heapq.heappush(self._expiry, (sub.expires_at, key))
        self._notify(key, sub, now, "active")

    def _ok(self, req: Request, to_tag: str | None, expires: int) -> Response:
        resp = make_response(req, 200, to_tag=to_tag)
        resp.fields.append(Field("expires", str(expires)))
        resp.fields.append(Field("contact", f"<{self.contact}>"))
        return resp

    # -- NOTIFY -------------------------------------------------------------------------------------------
    def _notify(self, key: _SubKey, sub: Subscription, now: float, state: str) -> None:
        new, old = self.counts(sub.mailbox)
        body = message_summary_body(self._account(sub.mailbox), new, old)
        req = sub.dialog.request("NOTIFY", body, CONTENT_TYPE)
        if state == "active":
            state = f"active;expires={max(0, int(sub.expires_at - now))}"
        req.fields.append(Field("event", EVENT))
        req.fields.append(Field("subscription-state", state))
        req.fields.append(
            Field("contact", f"<{self.contact}>")
        )  # RFC 6665 §4.1.3: NOTIFY is a target refresh
        tx = self.endpoint.send_request(req, sub.peer, now)
        self._notifies[tx] = key
        self.stats["notify"] += 1

    def _unsolicited(self, mailbox: str, now: float, wall: float) -> int:
        subscribed = {s.peer for s in self._subs.values() if s.mailbox == mailbox}
        new, old = self.counts(mailbox)
        account = self._account(mailbox)
        body = message_summary_body(account, new, old)
        sent = 0
        for binding in self.location.lookup(mailbox, wall):
            if binding.source in subscribed:
                continue
            req = Request("NOTIFY", binding.contact)
            fields = req.fields
            fields.append(Field("max-forwards", "70"))
            for route in binding.path:
                fields.append(Field("route", route))
            fields.append(Field("from", f"<{account}>;tag={self.endpoint.new_tag()}"))
            fields.append(Field("to", f"<{account}>"))
            fields.append(Field("call-id", f"{self.endpoint.new_tag()}-mwi"))
            fields.append(Field("cseq", "1 NOTIFY"))
            fields.append(Field("contact", f"<{self.contact}>"))
            fields.append(Field("event", EVENT))
            fields.append(Field("subscription-state", "terminated"))
            fields.append(Field("allow-events", EVENT))
            fields.append(Field("content-type", CONTENT_TYPE))
            req.body = body
            tx = self.endpoint.send_request(req, binding.source, now)
            self._notifies[tx] = None
            sent += 1
        self.stats["unsolicited"] += sent
        return sent

    def _account(self, mailbox: str) -> str:
        return f"sip:{mailbox}@{self.realm}"

    def handle_event(self, event: ResponseReceived | TransactionTimedOut) -> bool:
        """A response to (or the time-out of) one of our NOTIFYs; False when the transaction is not ours.

        A final 481 or a time-out ends the subscription (RFC 6665 §4.2.2: "the notifier MUST remove the
        subscription"); other failures are logged and keep it (the next change tries again).
        """
        tx = event.transaction
        if not isinstance(tx, ClientTransaction) or tx not in self._notifies:
            return False
        if isinstance(event, ResponseReceived) and event.response.status < 200:
            return True
        key = self._notifies.pop(tx)
        failed = isinstance(event, TransactionTimedOut) or event.response.status == 481
        if key is not None and failed and self._subs.pop(key, None) is not None:
            logger.info("MWI subscription %s ended: its NOTIFY failed", key[0])
        elif isinstance(event, ResponseReceived) and event.response.status >= 300:
            logger.info("MWI NOTIFY answered %d %s", event.response.status, event.response.reason)
        return True

    # -- expiry -------------------------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """When the next subscription expires (monotonic), or None."""
        expiry, subs = self._expiry, self._subs
        while expiry:
            at, key = expiry[0]
            sub = subs.get(key)
            if sub is not None and sub.expires_at == at:
                return at
            heapq.heappop(expiry)  # ended or refreshed since
        return None

    def handle_timer(self, now: float) -> None:
        """End every subscription whose time is up with a final NOTIFY (``terminated;reason=timeout``)."""
        at = self.get_timer()
        while at is not None and at <= now:
            _, key = heapq.heappop(self._expiry)
            sub = self._subs.pop(key)
            self.stats["expired"] += 1
            self._notify(key, sub, now, "terminated;reason=timeout")
            at = self.get_timer()

    def subscriptions(self, mailbox: str | None = None) -> list[Subscription]:
        return [s for s in self._subs.values() if mailbox is None or s.mailbox == mailbox]
