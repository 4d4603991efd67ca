"""Routing a new INVITE: who is calling (a line or a carrier trunk) and where the call goes.

``RoutingConfig`` is an immutable snapshot of what routing reads (lines, numbers, trunks, company
settings, the compiled plans), part of the engine's configuration snapshot (``engine.call.config``): built
from the store when the configuration changes and swapped in with one assignment; a call keeps the snapshot
it started with. A ``Router`` routes by one such snapshot: it answers with a ``Destination`` (the branches
to ring and how the call presents itself there) or a ``Rejection`` (the status the caller gets and why).

Until the dial-plan work lands, a DID routes to a line; a DID routed to a dial plan is refused with a clear
480 rather than silence.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.call.b2bua import DEFAULT_RING_TIMEOUT_S, Branch, CallInfo, Destination
from engine.dialplan.evaluate import CallFacts
from engine.dialplan.plan import CompiledConfig, Entry, RingTarget
from engine.dialplan.starcodes import DEFAULT_TABLE, HOT_DESK_FEATURES, Feature, StarCode
from engine.model.cdr import Direction, Disposition
from engine.model.entities import Company, Line, PhoneNumber, Trunk, User
from engine.model.numbering import classify_dialled, normalize_did, permitted, refusal_reason
from engine.sip.errors import SipParseError
from engine.sip.grammar import quote
from engine.sip.message import Request
from engine.sip.registrar import Binding, Location
from engine.sip.transaction import Peer
from engine.sip.uri import parse_uri

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Rejection:
    """The final answer for a call that cannot be routed."""

    status: int
    reason: str
    disposition: Disposition
    info: CallInfo
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class Routed:
    destination: Destination
    info: CallInfo


@dataclass(frozen=True, slots=True)
class Planned:
    """The call runs through the compiled dial plan from ``entry`` (a plan, a ring group, a shared
    mailbox, a line with its voicemail ...)."""

    entry: Entry
    info: CallInfo
    facts: CallFacts


@dataclass(frozen=True, slots=True)
class MailboxMenu:
    """``*99`` (the caller's own mailbox) or ``*98[mailbox]`` (any mailbox; None: ask for it)."""

    mailbox: str | None
    info: CallInfo


@dataclass(frozen=True, slots=True)
class FeatureCall:
    """A line dialled one of the company's star codes for a phone feature (DND, forwarding, queue login;
    ``engine.call.features`` runs it)."""

    star: StarCode
    extension: str
    info: CallInfo


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """What routing reads, as one immutable snapshot."""

    company: Company
    lines: Mapping[str, Line] = field(default_factory=dict)  # extension -> line
    users: Mapping[int, User] = field(default_factory=dict)
    numbers: Mapping[str, PhoneNumber] = field(default_factory=dict)  # E.164 -> number
    trunks: tuple[Trunk, ...] = ()
    trunk_networks: tuple[tuple[_Network, Trunk], ...] = ()
    release_networks: tuple[_Network, ...] = ()
    ring_timeout: float = DEFAULT_RING_TIMEOUT_S
    #: trunk host name -> IP address, resolved by the shell when the config is built (no DNS on the call
    #: path); an IP literal needs no entry.
    addresses: Mapping[str, str] = field(default_factory=dict)
    #: the compiled dial plans; None runs without them (numbers routed to a line ring it directly)
    plan: CompiledConfig | None = None
    #: lines whose voicemail is switched off (an unanswered call ends busy/unavailable)
    no_voicemail: frozenset[str] = frozenset()
    #: mailbox -> the address new messages are e-mailed to (voicemail to e-mail)
    voicemail_email: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, company: Company, lines: Iterable[Line], users: Iterable[User],
              numbers: Iterable[PhoneNumber], trunks: Iterable[Trunk],
              ring_timeout: float = DEFAULT_RING_TIMEOUT_S,
              addresses: Mapping[str, str] | None = None,
              plan: CompiledConfig | None = None, no_voicemail: frozenset[str] = frozenset(),
              voicemail_email: Mapping[str, str] | None = None) -> RoutingConfig:
        trunk_list = tuple(trunks)
        nets = tuple((ipaddress.ip_network(src, strict=False), t) for t in trunk_list for src in t.sources)
        release = tuple(ipaddress.ip_network(n, strict=False) for n in company.media_release_networks)
        return cls(company=company, lines={ln.extension: ln for ln in lines}, users={u.id: u for u in users},
                   numbers={n.e164: n for n in numbers}, trunks=trunk_list, trunk_networks=nets,
                   release_networks=release, ring_timeout=ring_timeout, addresses=dict(addresses or {}),
                   plan=plan, no_voicemail=no_voicemail, voicemail_email=dict(voicemail_email or {}))


class Router:
    """Decides where new calls go. See the module docstring."""

    def __init__(self, config: RoutingConfig, location: Location) -> None:
        self.config = config
        self.location = location

    def trunk_for(self, host: str) -> Trunk | None:
        """The trunk whose source networks contain ``host`` (the INVITE's real source address)."""
        nets = self.config.trunk_networks
        if not nets:
            return None
        try:
            addr = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return None
        for net, trunk in nets:
            if addr in net:
                return trunk
        return None

    def is_our_number(self, req: Request) -> bool:
        """Whether the Request-URI names one of the company's DIDs (an unauthenticated INVITE to a DID from
        an address that is no trunk is refused 403, not challenged: it is a carrier we do not know)."""
        return self._did_of(req) is not None

    def is_line_caller(self, req: Request) -> bool:
        """Whether the From user is one of our lines (a phone; it will be challenged to prove it)."""
        try:
            return (req.from_.uri.user_decoded or "") in self.config.lines
        except SipParseError:
            return False

    # -- calls from lines --------------------------------------------------------------------------
    def from_line(self, req: Request, extension: str, source: Peer,
                  now_wall: float) -> Routed | Rejection | Planned | MailboxMenu | FeatureCall:
        cfg = self.config
        target = req.request_uri.user_decoded or ""
        star = (cfg.plan.star_codes if cfg.plan is not None else DEFAULT_TABLE).match(target)
        if star is None or star.feature not in HOT_DESK_FEATURES:
            # a desk phone with a hot-desk login dials as the user's line (engine.call.hotdesk)
            extension = self._hot_desk_line(extension, now_wall) or extension
        line = cfg.lines.get(extension)
        caller_name = self._line_name(line) if line is not None else extension
        info = CallInfo(Direction.INTERNAL, caller=extension, caller_name=caller_name, callee=target)
        if line is None:
            return Rejection(403, "Forbidden", Disposition.FORBIDDEN, info, "the caller has no line")
        if star is not None and star.feature is Feature.VOICEMAIL_OWN:
            return MailboxMenu(extension, info)
        if star is not None and star.feature is Feature.VOICEMAIL_ANY:
            if star.argument.isdigit() or not star.argument:
                return MailboxMenu(star.argument or None, info)
        elif star is not None:
            return FeatureCall(star, extension, info)
        entry = cfg.plan.route(target) if cfg.plan is not None else None
        if entry is not None:
            return Planned(entry, info, CallFacts(extension, caller_name, target, from_line=extension))
        if target in cfg.lines:
            return self._to_line(target, f"{quote(caller_name)} <sip:{extension}@{cfg.company.sip_realm}>",
                                 info, source, now_wall)
        did_e164 = self._did_of(req)
        if did_e164 is not None:  # a line dialling one of our own numbers
            return self._to_number(did_e164, info, source, now_wall,
                                   f"{quote(caller_name)} <sip:{extension}@{cfg.company.sip_realm}>")
        return self._outbound(line, target, info, source)

    def _outbound(self, line: Line, target: str, info: CallInfo, source: Peer) -> Routed | Rejection:
        cfg = self.config
        dialled = classify_dialled(target, cfg.company.country, cfg.company.area_code)
        if dialled is None:
            return Rejection(404, "Not Found", Disposition.NOT_FOUND, info,
                             f"{target!r} is neither an extension nor a dialable number")
        info = CallInfo(Direction.OUTBOUND, caller=info.caller, caller_name=info.caller_name,
                        callee=dialled.e164)
        if not permitted(dialled.dial_class, line.dial_permissions):
            return Rejection(403, refusal_reason(dialled.dial_class), Disposition.FORBIDDEN, info,
                             f"line {line.extension} may not dial {dialled.dial_class.value} numbers")
        trunk = next((t for t in cfg.trunks if t.outbound), None)
        if trunk is None:
            return Rejection(503, "No outbound trunk configured", Disposition.FAILED, info)
        info = CallInfo(Direction.OUTBOUND, caller=info.caller, caller_name=info.caller_name,
                        callee=dialled.e164, trunk=trunk.name)
        address = _ip_literal(trunk.host) or cfg.addresses.get(trunk.host)
        if address is None:
            return Rejection(503, "Service Unavailable", Disposition.FAILED, info,
                             f"the address of trunk {trunk.name!r} ({trunk.host}) is not known (DNS)")
        domain = trunk.from_domain or trunk.host
        caller_id = self._caller_id(line)
        host = _uri_host(trunk.host)
        suffix = "" if trunk.transport.upper() == "UDP" else f";transport={trunk.transport.lower()}"
        uri = f"sip:{dialled.e164}@{host}:{trunk.port}{suffix}"
        identity = f"{quote(info.caller_name)} <sip:{caller_id}@{domain}>"
        creds = (trunk.username, trunk.password) if trunk.username and trunk.password is not None else None
        dest = Destination(
            branches=(Branch(uri, Peer(trunk.transport.upper(), address, trunk.port)),),
            from_address=identity,
            to_address=f"<sip:{dialled.e164}@{host}>",
            headers=(("P-Asserted-Identity", identity),),
            ring_timeout=max(cfg.ring_timeout, 120.0),  # the far end runs its own no-answer timer
            credentials=creds,
            media_release=False,
        )
        return Routed(dest, info)

    def _caller_id(self, line: Line) -> str:
        """The external caller ID of ``line`` (seed: "Externe Anrufer-ID"): its own number, else the company's
        first number, else the extension (a carrier will then present its own default)."""
        if line.external_caller_id:
            return line.external_caller_id
        if self.config.numbers:
            return min(self.config.numbers)
        return line.extension

    # -- calls from trunks -------------------------------------------------------------------------
    def from_trunk(self, req: Request, trunk: Trunk, source: Peer,
                   now_wall: float) -> Routed | Rejection | Planned:
        cfg = self.config
        try:
            from_addr = req.from_
        except SipParseError:
            from_addr = None
        # A carrier asserts the caller in P-Asserted-Identity (RFC 3325) when From is anonymous or not the
        # real number; a trusted trunk's PAI wins. Privacy: id means the callee must not see the number.
        identity = from_addr
        with contextlib.suppress(SipParseError):
            asserted = req.addresses("p-asserted-identity")
            if asserted:
                identity = asserted[0]
        caller_raw = (identity.uri.user_decoded or "") if identity is not None else ""
        caller = normalize_did(caller_raw, cfg.company.country) or caller_raw or "anonymous"
        caller_name = (from_addr.display if from_addr is not None else None) or caller
        privacy = {t.lower() for t in req.get_all("privacy") for t in t.replace(";", " ").split()}
        if "id" in privacy or "user" in privacy or caller.lower() == "anonymous":
            caller_name = "Anonymous"
        did = self._did_of(req)
        info = CallInfo(Direction.INBOUND, caller=caller, caller_name=caller_name,
                        callee=did or (req.request_uri.user_decoded or ""), did=did, trunk=trunk.name)
        if did is None:
            return Rejection(404, "Not Found", Disposition.NOT_FOUND, info, "not one of our numbers")
        presented = (f"{quote(caller_name)} <sip:{caller}@{cfg.company.sip_realm}>"
                     if caller_name != "Anonymous" else '"Anonymous" <sip:anonymous@anonymous.invalid>')
        return self._to_number(did, info, source, now_wall, presented)

    def _to_number(self, did: str, info: CallInfo, source: Peer, now_wall: float,
                   from_address: str) -> Routed | Rejection | Planned:
        number = self.config.numbers[did]
        info = CallInfo(info.direction, info.caller, info.caller_name, callee=number.route_target, did=did,
                        trunk=info.trunk)
        plan = self.config.plan
        entry = plan.route(did) if plan is not None else None
        if entry is not None:
            from_line = info.caller if info.direction is Direction.INTERNAL else None
            return Planned(entry, info, CallFacts(info.caller, info.caller_name, did, from_line=from_line))
        if number.route_kind == "extension":
            return self._to_line(number.route_target, from_address, info, source, now_wall)
        return Rejection(480, "Temporarily Unavailable", Disposition.UNAVAILABLE, info,
                         f"{did} routes to the {number.route_kind} {number.route_target!r}, which this build "
                         "cannot run yet")

    # -- ringing for a dial plan ---------------------------------------------------------------------
    def plan_destination(self, info: CallInfo, source: Peer, targets: tuple[RingTarget, ...],
                         timeout_s: float, name_prefix: str, now_wall: float) -> Destination | None:
        """What a dial plan's Ring rings: every registered contact of each line target, and each external
        number through the outbound trunk; the callee sees the caller (with the Modify Caller ID prefix).
        Media is released when the caller (at ``source``) and every branch are in one release network.
        None when nothing can ring (no phone registered, no trunk)."""
        cfg = self.config
        branches: list[Branch] = []
        headers: tuple[tuple[str, str], ...] = ()
        credentials: tuple[str, str] | None = None
        caller_name = f"{name_prefix}{info.caller_name}"
        for target in targets:
            if target.kind == "line":
                branches.extend(Branch(b.contact, branch_peer(b), b.aor)
                                for b in self._bindings(target.value, now_wall))
                continue
            trunk = next((t for t in cfg.trunks if t.outbound), None)
            address = None if trunk is None else _ip_literal(trunk.host) or cfg.addresses.get(trunk.host)
            if trunk is None or address is None:
                continue
            host = _uri_host(trunk.host)
            suffix = "" if trunk.transport.upper() == "UDP" else f";transport={trunk.transport.lower()}"
            branches.append(Branch(f"sip:{target.value}@{host}:{trunk.port}{suffix}",
                                   Peer(trunk.transport.upper(), address, trunk.port)))
            # Forwarded calls present the original caller (the carrier must allow it: most do with PAI
            # from a trusted PBX); internal callers present their line's external caller ID, or the
            # forwarding line's when a line's call forwarding rings the number (``via``).
            line = cfg.lines.get(info.caller)
            if line is not None and target.via is not None:
                line = cfg.lines.get(target.via, line)
            presented = self._caller_id(line) if line is not None else info.caller
            identity = f"{quote(caller_name)} <sip:{presented}@{trunk.from_domain or trunk.host}>"
            headers = (("P-Asserted-Identity", identity),)
            if trunk.username and trunk.password is not None:
                credentials = (trunk.username, trunk.password)
        if not branches:
            return None
        first = targets[0].value if targets else ""
        return Destination(
            branches=tuple(branches),
            from_address=f"{quote(caller_name)} <sip:{info.caller}@{cfg.company.sip_realm}>",
            to_address=f"<sip:{first}@{cfg.company.sip_realm}>",
            headers=headers,
            ring_timeout=timeout_s,
            credentials=credentials,
            media_release=not headers and self._release(source, tuple(branches)),
        )

    # -- ringing a line ----------------------------------------------------------------------------
    def _to_line(self, extension: str, from_address: str, info: CallInfo, source: Peer,
                 now_wall: float) -> Routed | Rejection:
        cfg = self.config
        if info.callee != extension:
            info = CallInfo(info.direction, info.caller, info.caller_name, extension, info.did, info.trunk)
        bindings = self._bindings(extension, now_wall)
        branches = tuple(Branch(b.contact, branch_peer(b), b.aor) for b in bindings)
        if not branches:
            return Rejection(480, "Temporarily Unavailable", Disposition.UNAVAILABLE, info,
                             f"extension {extension} has no registered phone")
        release = self._release(source, branches)
        dest = Destination(branches=branches, from_address=from_address,
                           to_address=f"<sip:{extension}@{cfg.company.sip_realm}>",
                           ring_timeout=cfg.ring_timeout, media_release=release)
        return Routed(dest, info)

    def _hot_desk_line(self, desk: str, now_wall: float) -> str | None:
        """The line desk phone ``desk`` is logged in as (a hot-desk login in force), or None."""
        plan = self.config.plan
        features = plan.line_features.get(desk) if plan is not None else None
        return features.hot_desk_line(now_wall) if features is not None else None

    def _bindings(self, extension: str, now_wall: float) -> list[Binding]:
        """The phones that ring for line ``extension``: its own, and desk phones logged in as it."""
        found = list(self.location.lookup(extension, now_wall))
        plan = self.config.plan
        if plan is not None:
            for desk, features in plan.line_features.items():
                if features.hot_desk is not None and features.hot_desk_line(now_wall) == extension:
                    found.extend(self.location.lookup(desk, now_wall))
        return found

    def _release(self, source: Peer, branches: tuple[Branch, ...]) -> bool:
        """Media release: the caller and every branch are inside one allowed network."""
        nets = self.config.release_networks
        if not nets:
            return False
        hosts = [source.host, *(b.peer.host for b in branches)]
        try:
            addrs = [ipaddress.ip_address(h.strip("[]")) for h in hosts]
        except ValueError:
            return False
        return any(all(a in net for a in addrs) for net in nets)

    # -- helpers -----------------------------------------------------------------------------------
    def _did_of(self, req: Request) -> str | None:
        """The company DID a request is addressed to: the Request-URI user, else the To user (carriers differ
        in where they put it), in any common format."""
        numbers = self.config.numbers
        if not numbers:
            return None
        country = self.config.company.country
        candidates = [req.request_uri.user_decoded or ""]
        with contextlib.suppress(SipParseError):
            candidates.append(req.to.uri.user_decoded or "")
        for text in candidates:
            if not text or text in self.config.lines:
                continue
            e164 = normalize_did(text, country)
            if e164 is not None and e164 in numbers:
                return e164
            # A line may dial one of our numbers the way it dials any other (local or national form).
            dialled = classify_dialled(text, country, self.config.company.area_code)
            if dialled is not None and dialled.e164 in numbers:
                return dialled.e164
        return None

    def _line_name(self, line: Line) -> str:
        return line.name or line.extension


def branch_peer(binding: Binding) -> Peer:
    """Where an INVITE to a registered contact goes.

    Over TCP: the connection the phone registered on (it may be behind NAT and unreachable otherwise).
    Over UDP: the Contact's own address when it is on the host the REGISTER came from; when the Contact
    names another host (a private address behind NAT), the REGISTER's source address and port, which
    the NAT keeps open (Kamailio's ``fix_nated_register`` logic, Asterisk's ``rewrite_contact``).
    """
    source = binding.source
    if source.reliable:
        return source
    try:
        uri = parse_uri(binding.contact)
    except ValueError:
        return source
    if uri.host.strip("[]") != source.host.strip("[]"):
        return source
    transport = (uri.params.get("transport") or "udp").upper()
    if transport != "UDP":
        return source
    return Peer("UDP", source.host, uri.port or 5060)


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def _uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
