"""REGISTER semantics (RFC 3261 §10.3) over an in-memory location service; persistence lives in the shell.

``Registrar.register`` takes an authenticated REGISTER, the address-of-record it is for, where it came
from and the wall-clock time, and returns the response to send plus the binding changes to persist. It
implements: Call-ID/CSeq ordering per binding (step 7), ``Contact: *`` with ``Expires: 0`` (step 6),
several contacts per AOR with q-values, min/max expires with 423 + Min-Expires (step 7), a query without
Contact (step 8), Contact and expires echoed in the 200 (step 8), and RFC 5626 ``+sip.instance``/``reg-id``
replacing a device's stale binding (a phone that rebooted behind NAT gets a new port, not a second binding).
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from engine.sip.errors import SipParseError
from engine.sip.grammar import is_digits, unquote
from engine.sip.headers import Address
from engine.sip.message import Field, Request, Response, make_response
from engine.sip.transaction import Peer

DEFAULT_EXPIRES: Final = 3600
MIN_EXPIRES: Final = 60
MAX_EXPIRES: Final = 7200
MAX_CONTACTS: Final = 10


@dataclass(slots=True)
class Binding:
    """One contact bound to an address-of-record."""

    aor: str
    contact: str  # the Contact URI as the UA wrote it (echoed back verbatim: UAs compare it)
    expires_at: float  # wall-clock epoch seconds
    q: float = 1.0
    call_id: str = ""
    cseq: int = 0
    source: Peer = field(default_factory=lambda: Peer("UDP", "", 0))
    user_agent: str = ""
    instance_id: str | None = None
    reg_id: int | None = None
    path: tuple[str, ...] = ()

    def contact_value(self, now: float) -> str:
        """The Contact header value we echo in a 200 (§10.3 step 8, RFC 5626 §6)."""
        out = f"<{self.contact}>;expires={max(0, int(self.expires_at - now + 0.5))}"
        if self.q != 1.0:
            out += f";q={self.q:g}"
        if self.instance_id is not None:
            out += f';+sip.instance="{self.instance_id}"'
        if self.reg_id is not None:
            out += f";reg-id={self.reg_id}"
        return out


@dataclass(frozen=True, slots=True)
class BindingChange:
    """A change for the persistent store: ``binding`` upserted, or (aor, contact) deleted."""

    aor: str
    contact: str
    binding: Binding | None  # None = delete


@dataclass(slots=True)
class RegisterOutcome:
    response: Response
    changes: list[BindingChange]


class Location:
    """The location service: address-of-record -> {contact key: Binding}."""

    def __init__(self) -> None:
        self._aors: dict[str, dict[str, Binding]] = {}

    def __len__(self) -> int:
        return sum(len(b) for b in self._aors.values())

    def aor_count(self) -> int:
        return len(self._aors)

    def lookup(self, aor: str, now: float) -> list[Binding]:
        """The live bindings of ``aor``, highest q first (then most recently refreshed)."""
        found = self._aors.get(aor)
        if not found:
            return []
        live = [b for b in found.values() if b.expires_at > now]
        live.sort(key=lambda b: (-b.q, -b.expires_at))
        return live

    def restore(self, binding: Binding) -> None:
        """Put back a binding loaded from the store at start-up."""
        self._aors.setdefault(binding.aor, {})[contact_key(binding.contact)] = binding

    def purge_expired(self, now: float) -> list[Binding]:
        """Drop every expired binding; return what was dropped (so the shell deletes it from the store)."""
        gone: list[Binding] = []
        for aor in list(self._aors):
            bindings = self._aors[aor]
            for key in [k for k, b in bindings.items() if b.expires_at <= now]:
                gone.append(bindings.pop(key))
            if not bindings:
                del self._aors[aor]
        return gone

    def _bindings(self, aor: str) -> dict[str, Binding]:
        return self._aors.setdefault(aor, {})

    def _drop_empty(self, aor: str) -> None:
        if not self._aors.get(aor, True):
            del self._aors[aor]


def contact_key(uri_text: str) -> str:
    """A comparison key for a contact URI (§19.1.4 in practice: scheme and host are case-insensitive)."""
    colon = uri_text.find(":")
    at = uri_text.find("@")
    if at > colon >= 0:
        return uri_text[: colon + 1].lower() + uri_text[colon + 1 : at + 1] + uri_text[at + 1 :].lower()
    return uri_text.lower()


class Registrar:
    """§10.3 processing of an authenticated REGISTER (steps 5-8) against a ``Location``."""

    def __init__(self, location: Location, *, default_expires: int = DEFAULT_EXPIRES,
                 min_expires: int = MIN_EXPIRES, max_expires: int = MAX_EXPIRES,
                 max_contacts: int = MAX_CONTACTS) -> None:
        self.location = location
        self.default_expires = default_expires
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.max_contacts = max_contacts

    def register(self, req: Request, aor: str, source: Peer, now: float, to_tag: str) -> RegisterOutcome:
        """Apply one REGISTER for ``aor`` (already authenticated) and build its response.

        Raises:
            SipParseError: a malformed Contact or Expires (the caller answers 400).
        """
        raw_contacts = req.get_all("contact")
        header_expires = req.expires
        call_id = req.call_id
        cseq = req.cseq.seq
        # Look, don't create: a refused request must not leave an empty AOR behind.
        bindings = self.location._aors.get(aor, {})
        changes: list[BindingChange] = []

        if raw_contacts == ["*"]:
            # §10.3 step 6: "*" is valid only alone and with Expires: 0.
            if header_expires != 0:
                return self._fail(req, 400, "Wildcard Contact requires Expires: 0", to_tag)
            # Step 6: a binding with the same Call-ID is removed only if the CSeq is higher; otherwise
            # "the update MUST be aborted and the request fails" -- so check them all before removing any.
            if any(b.call_id == call_id and cseq <= b.cseq for b in bindings.values()):
                return self._fail(req, 500, "Out of order REGISTER (CSeq not higher)", to_tag,
                                  retry_after=True)
            for b in bindings.values():
                changes.append(BindingChange(aor, b.contact, None))
            self.location._aors.pop(aor, None)
            return RegisterOutcome(self._ok(req, aor, now, to_tag), changes)
        if "*" in raw_contacts:
            return self._fail(req, 400, "Wildcard Contact must be the only Contact", to_tag)

        # Validate every contact before changing anything (a bad second contact must not half-apply).
        contacts = req.addresses("contact")
        planned: list[tuple[Address, int, float, str | None, int | None]] = []
        for contact in contacts:
            expires = self._expires_of(contact, header_expires)
            q, instance, reg_id = _q_value(contact), _instance_id(contact), _reg_id(contact)
            if 0 < expires < self.min_expires:
                resp = make_response(req, 423, "Interval Too Brief", to_tag=to_tag)
                resp.fields.append(Field("min-expires", str(self.min_expires)))
                return RegisterOutcome(resp, [])
            old = bindings.get(contact_key(contact.uri_text))
            if old is not None and old.call_id == call_id and cseq <= old.cseq:
                # §10.3 step 7: an out-of-order request for a binding is refused, before anything changes.
                return self._fail(req, 500, "Out of order REGISTER (CSeq not higher)", to_tag,
                                  retry_after=True)
            planned.append((contact, min(expires, self.max_expires), q, instance, reg_id))
        if not planned:
            return RegisterOutcome(self._ok(req, aor, now, to_tag), [])  # §10.3 step 8: a query

        user_agent = req.get("user-agent") or ""
        path = tuple(req.get_all("path"))
        bindings = self.location._bindings(aor)
        for contact, expires, q, instance, reg_id in planned:
            uri_text = contact.uri_text
            key = contact_key(uri_text)
            old = bindings.get(key)
            if instance is not None:
                # RFC 5626 §6: the same instance (and reg-id) replaces the device's previous contact.
                for other_key, other in list(bindings.items()):
                    if other_key != key and other.instance_id == instance and other.reg_id == reg_id:
                        del bindings[other_key]
                        changes.append(BindingChange(aor, other.contact, None))
            if expires == 0:
                if old is not None:
                    del bindings[key]
                    changes.append(BindingChange(aor, old.contact, None))
                continue
            binding = Binding(aor, uri_text, now + expires, q, call_id, cseq, source, user_agent, instance,
                              reg_id, path)
            bindings[key] = binding
            changes.append(BindingChange(aor, uri_text, binding))

        while len(bindings) > self.max_contacts:
            # Over the limit: the binding that would expire first makes room (kamailio's overwrite mode).
            key, victim = min(bindings.items(), key=lambda kv: kv[1].expires_at)
            del bindings[key]
            changes.append(BindingChange(aor, victim.contact, None))
        self.location._drop_empty(aor)
        return RegisterOutcome(self._ok(req, aor, now, to_tag), changes)

    def _expires_of(self, contact: Address, header_expires: int | None) -> int:
        value = contact.params.get("expires")
        if value is not None:
            if not is_digits(value) or len(value) > 10:
                raise SipParseError(400, "Bad Contact expires parameter", header="contact")
            return int(value)
        return self.default_expires if header_expires is None else header_expires

    def _ok(self, req: Request, aor: str, now: float, to_tag: str) -> Response:
        resp = make_response(req, 200, to_tag=to_tag)
        for b in self.location.lookup(aor, now):
            resp.fields.append(Field("contact", b.contact_value(now)))
        resp.fields.append(Field("date", http_date(now)))
        return resp

    @staticmethod
    def _fail(req: Request, status: int, reason: str, to_tag: str, *, retry_after: bool = False
              ) -> RegisterOutcome:
        resp = make_response(req, status, reason, to_tag=to_tag)
        if retry_after:
            resp.fields.append(Field("retry-after", "1"))
        return RegisterOutcome(resp, [])


@lru_cache(maxsize=4)
def _http_date(second: int) -> str:
    return email.utils.formatdate(second, usegmt=True)


def http_date(now: float) -> str:
    """RFC 3261 §20.17 Date value for wall-clock ``now`` (formatted once per second)."""
    return _http_date(int(now))


def _q_value(contact: Address) -> float:
    text = contact.params.get("q")
    if text is None:
        return 1.0
    try:
        q = float(text)
    except ValueError:
        raise SipParseError(400, "Bad Contact q-value", header="contact") from None
    if not 0.0 <= q <= 1.0:
        raise SipParseError(400, "Contact q-value out of range", header="contact")
    return q


def _instance_id(contact: Address) -> str | None:
    text = contact.params.get("+sip.instance")
    if text is None:
        return None
    try:
        return unquote(text) if text.startswith('"') else text
    except ValueError:
        raise SipParseError(400, "Bad +sip.instance", header="contact") from None


def _reg_id(contact: Address) -> int | None:
    text = contact.params.get("reg-id")
    if text is None:
        return None
    if not is_digits(text) or len(text) > 9:
        raise SipParseError(400, "Bad reg-id", header="contact")
    return int(text)
