"""The company document: the shape of ``config/example-company.yaml`` and files like it, validated whole.

``parse_company_document`` turns the loaded mapping into typed specs or raises the first ``ModelError``,
its field a path into the document (``users[3].extension``, ``numbers[0].route.target``). Every reference
must resolve (a number's route target, a line's external caller ID). Users without an extension get the
next free ones, in file order, after all explicit extensions are reserved. Trunk names are unique and no
two trunks' sources overlap (an inbound call is matched to its trunk by source address). Persistence (HA1
values, ids) is the store's job.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from engine.model import rules
from engine.model.entities import (
    DEFAULT_COUNTRY,
    DEFAULT_DIAL_PERMISSIONS,
    DEFAULT_FIRST_EXTENSION,
    DEFAULT_TIMEZONE,
    DEFAULT_TRUNK_PORT,
    Company,
    PhoneNumber,
)
from engine.model.errors import ModelError

FORMAT_VERSION: Final = 1
_TOP_KEYS: Final = frozenset(
    {"version", "company", "users", "numbers", "dial_plans", "trunks", *rules.ROUTING_OBJECT_KINDS}
)
_COMPANY_KEYS: Final = frozenset(
    {"name", "sip_realm", "timezone", "country", "first_extension", "area_code", "media_release_networks",
     "hold_clip", "star_codes"}
)
_USER_KEYS: Final = frozenset(
    {
        "first_name",
        "last_name",
        "email",
        "extension",
        "sip_password",
        "line_name",
        "external_caller_id",
        "dial_permissions",
        "voicemail",
        "voicemail_to_email",
    }
)
_NUMBER_KEYS: Final = frozenset({"number", "route"})
_ROUTE_KEYS: Final = frozenset({"kind", "target"})
_PLAN_KEYS: Final = frozenset({"name", "graph"})
_TRUNK_KEYS: Final = frozenset(
    {"name", "sources", "host", "port", "transport", "username", "password", "from_domain", "outbound"}
)


@dataclass(frozen=True, slots=True)
class UserSpec:
    """A user and their line as the document describes them (extension resolved, password in clear)."""

    first_name: str
    last_name: str
    email: str | None
    extension: str
    sip_password: str
    line_name: str
    external_caller_id: str | None
    dial_permissions: frozenset[str] = DEFAULT_DIAL_PERMISSIONS
    voicemail: bool = True  # False: an unanswered call to the line ends busy/unavailable instead
    voicemail_to_email: bool = False  # new messages are e-mailed to ``email`` (with pbx serve --smtp)


@dataclass(frozen=True, slots=True)
class DialPlanSpec:
    name: str
    graph: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TrunkSpec:
    """A trunk as the document describes it: ``engine.model.Trunk`` without the id the store assigns."""

    name: str
    sources: tuple[str, ...]
    host: str
    port: int = DEFAULT_TRUNK_PORT
    transport: str = "UDP"
    username: str | None = None
    password: str | None = None
    from_domain: str | None = None
    outbound: bool = True


@dataclass(frozen=True, slots=True)
class RoutingObject:
    """A ring group, schedule, sound clip, shared mailbox, queue, conference room or fax line: ``kind`` is
    its document section (``ring_groups``...), ``spec`` its JSON mapping, names unique per kind. Only the
    shape is checked here; the dial-plan compiler validates the content and every reference."""

    kind: str
    name: str
    spec: dict[str, Any]


def objects_by_kind(objects: Iterable[RoutingObject]) -> dict[str, list[dict[str, Any]]]:
    """Routing objects as the dial-plan compiler takes them: a copy of each spec, grouped by kind."""
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        out.setdefault(obj.kind, []).append(dict(obj.spec))
    return out


@dataclass(frozen=True, slots=True)
class CompanyDocument:
    """A whole company, validated: what an import replaces the store's configuration with."""

    company: Company
    users: tuple[UserSpec, ...]
    numbers: tuple[PhoneNumber, ...]
    dial_plans: tuple[DialPlanSpec, ...]
    trunks: tuple[TrunkSpec, ...] = ()
    objects: tuple[RoutingObject, ...] = ()


def parse_company_document(doc: object) -> CompanyDocument:
    """Validate a loaded company document. Raises ``ModelError`` naming the first bad field."""
    top = _mapping(doc, "", _TOP_KEYS)
    version = top.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ModelError("version", f"unsupported company file version {version!r} (this engine reads 1)")
    if "company" not in top:
        raise ModelError("company", "is required")
    company = _company(top["company"])
    plans = _dial_plans(_list(top.get("dial_plans"), "dial_plans"))
    raw_numbers = _list(top.get("numbers"), "numbers")
    number_set = {
        rules.check_e164(_mapping(item, f"numbers[{i}]", _NUMBER_KEYS).get("number"), f"numbers[{i}].number")
        for i, item in enumerate(raw_numbers)
    }
    users = _users(_list(top.get("users"), "users"), company.first_extension, number_set)
    extensions = {u.extension for u in users}
    numbers = _numbers(raw_numbers, {p.name for p in plans}, extensions)
    trunks = _trunks(_list(top.get("trunks"), "trunks"))
    objects = tuple(
        obj
        for kind in rules.ROUTING_OBJECT_KINDS
        for obj in _routing_objects(kind, _list(top.get(kind), kind))
    )
    return CompanyDocument(company, users, numbers, plans, trunks, objects)


def _routing_objects(kind: str, items: list[object]) -> list[RoutingObject]:
    names: dict[str, int] = {}
    out: list[RoutingObject] = []
    for i, item in enumerate(items):
        at = f"{kind}[{i}]"
        if not isinstance(item, Mapping):
            raise ModelError(at, "must be a mapping")
        name = rules.check_plan_name(item.get("name"), f"{at}.name")
        if name in names:
            raise ModelError(f"{at}.name", f"{name!r} is already defined as {kind}[{names[name]}]")
        names[name] = i
        out.append(RoutingObject(kind, name, rules.check_graph(dict(item), at)))
    return out


def _company(value: object) -> Company:
    raw = _mapping(value, "company", _COMPANY_KEYS)
    return Company(
        name=rules.check_text(raw.get("name"), "company.name"),
        sip_realm=rules.check_realm(raw.get("sip_realm"), "company.sip_realm"),
        timezone=rules.check_timezone(raw.get("timezone", DEFAULT_TIMEZONE), "company.timezone"),
        country=rules.check_country(raw.get("country", DEFAULT_COUNTRY), "company.country"),
        first_extension=rules.check_first_extension(
            raw.get("first_extension", DEFAULT_FIRST_EXTENSION), "company.first_extension"
        ),
        area_code=rules.check_area_code(raw.get("area_code"), "company.area_code"),
        media_release_networks=rules.check_networks(
            raw.get("media_release_networks"), "company.media_release_networks"
        ),
        hold_clip=None if raw.get("hold_clip") is None
        else rules.check_text(raw.get("hold_clip"), "company.hold_clip"),
        star_codes=rules.check_star_codes(raw.get("star_codes"), "company.star_codes"),
    )


def _users(items: list[object], first_extension: int, numbers: set[str]) -> tuple[UserSpec, ...]:
    raws = [_mapping(item, f"users[{i}]", _USER_KEYS) for i, item in enumerate(items)]
    taken: dict[str, int] = {}
    for i, raw in enumerate(raws):
        if raw.get("extension") is None:
            continue
        ext = rules.check_extension(raw["extension"], f"users[{i}].extension")
        if ext in taken:
            raise ModelError(f"users[{i}].extension", f"{ext} is already in use by users[{taken[ext]}]")
        taken[ext] = i
    free = rules.free_extensions(taken.keys(), first_extension)
    emails: dict[str, int] = {}
    out: list[UserSpec] = []
    for i, raw in enumerate(raws):
        at = f"users[{i}]"
        first = rules.check_text(raw.get("first_name"), f"{at}.first_name")
        last = rules.check_text(raw.get("last_name"), f"{at}.last_name")
        email = rules.check_email(raw.get("email"), f"{at}.email")
        if email is not None:
            key = email.lower()
            if key in emails:
                raise ModelError(f"{at}.email", f"{email} is already used by users[{emails[key]}]")
            emails[key] = i
        if "sip_password" not in raw:
            raise ModelError(f"{at}.sip_password", "is required")
        password = rules.check_sip_password(raw["sip_password"], f"{at}.sip_password")
        given = raw.get("extension")
        extension = rules.check_extension(given) if given is not None else next(free)
        line_name = raw.get("line_name")
        caller_id = raw.get("external_caller_id")
        if caller_id is not None:
            caller_id = rules.check_e164(caller_id, f"{at}.external_caller_id")
            if caller_id not in numbers:
                raise ModelError(
                    f"{at}.external_caller_id", f"{caller_id} is not one of the company's numbers"
                )
        permissions = DEFAULT_DIAL_PERMISSIONS
        if raw.get("dial_permissions") is not None:
            permissions = rules.check_dial_permissions(raw["dial_permissions"], f"{at}.dial_permissions")
        out.append(
            UserSpec(
                first_name=first,
                last_name=last,
                email=email,
                extension=extension,
                sip_password=password,
                line_name=(
                    f"{first} {last}" if line_name is None else rules.check_text(line_name, f"{at}.line_name")
                ),
                external_caller_id=caller_id,
                dial_permissions=permissions,
                voicemail=rules.check_flag(raw.get("voicemail", True), f"{at}.voicemail"),
                voicemail_to_email=_voicemail_to_email(raw, email, at),
            )
        )
    return tuple(out)


def _voicemail_to_email(raw: Mapping[str, Any], email: str | None, at: str) -> bool:
    wanted = rules.check_flag(raw.get("voicemail_to_email", False), f"{at}.voicemail_to_email")
    if wanted and email is None:
        raise ModelError(f"{at}.voicemail_to_email", "needs an e-mail address on the user")
    return wanted


def _numbers(items: list[object], plans: set[str], extensions: set[str]) -> tuple[PhoneNumber, ...]:
    seen: dict[str, int] = {}
    out: list[PhoneNumber] = []
    for i, item in enumerate(items):
        at = f"numbers[{i}]"
        raw = _mapping(item, at, _NUMBER_KEYS)
        e164 = rules.check_e164(raw.get("number"), f"{at}.number")
        if e164 in seen:
            raise ModelError(f"{at}.number", f"{e164} is already listed as numbers[{seen[e164]}]")
        seen[e164] = i
        if "route" not in raw:
            raise ModelError(f"{at}.route", "is required")
        route = _mapping(raw["route"], f"{at}.route", _ROUTE_KEYS)
        kind = rules.check_route_kind(route.get("kind"), f"{at}.route.kind")
        target = route.get("target")
        if kind == "extension":
            target = rules.check_extension(target, f"{at}.route.target")
            if target not in extensions:
                raise ModelError(f"{at}.route.target", f"no line has extension {target}")
        elif kind == "dial_plan":
            if not isinstance(target, str) or target not in plans:
                raise ModelError(f"{at}.route.target", f"no dial plan named {target!r}")
        elif kind == "number":
            target = rules.check_e164(target, f"{at}.route.target")
        else:  # the dial-plan compiler checks that the named object exists
            target = rules.check_plan_name(target, f"{at}.route.target")
        out.append(PhoneNumber(e164, kind, target))
    return tuple(out)


def _dial_plans(items: list[object]) -> tuple[DialPlanSpec, ...]:
    seen: set[str] = set()
    out: list[DialPlanSpec] = []
    for i, item in enumerate(items):
        at = f"dial_plans[{i}]"
        raw = _mapping(item, at, _PLAN_KEYS)
        name = rules.check_plan_name(raw.get("name"), f"{at}.name")
        if name in seen:
            raise ModelError(f"{at}.name", f"a dial plan named {name!r} is already defined")
        seen.add(name)
        out.append(DialPlanSpec(name, rules.check_graph(raw.get("graph", {}), f"{at}.graph")))
    return tuple(out)


def _trunks(items: list[object]) -> tuple[TrunkSpec, ...]:
    names: dict[str, int] = {}
    claimed: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    out: list[TrunkSpec] = []
    for i, item in enumerate(items):
        at = f"trunks[{i}]"
        raw = _mapping(item, at, _TRUNK_KEYS)
        name = rules.check_plan_name(raw.get("name"), f"{at}.name")
        if name in names:
            raise ModelError(
                f"{at}.name", f"a trunk named {name!r} is already defined as trunks[{names[name]}]"
            )
        names[name] = i
        # Required, so that a forgotten allow-list is an error here rather than a 403 on every inbound call;
        # an outbound-only trunk says so with ``sources: []``.
        if "sources" not in raw:
            raise ModelError(f"{at}.sources", "is required (an empty list: the trunk takes no inbound calls)")
        sources = rules.check_networks(raw["sources"], f"{at}.sources")
        mine: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
        for j, text in enumerate(sources):
            network = ipaddress.ip_network(text)
            for other, where in claimed:
                if network.overlaps(other):
                    raise ModelError(
                        f"{at}.sources[{j}]",
                        f"{text} overlaps {other} of {where}: a source address must name one trunk",
                    )
            mine.append((network, f"{at}.sources[{j}]"))
        claimed.extend(mine)
        if "host" not in raw:
            raise ModelError(f"{at}.host", "is required")
        username = raw.get("username")
        password = raw.get("password")
        if username is not None:
            username = rules.check_digest_username(username, f"{at}.username")
        if password is not None:
            if username is None:
                raise ModelError(f"{at}.password", "is given without a username")
            password = rules.check_sip_password(password, f"{at}.password")
        from_domain = raw.get("from_domain")
        if from_domain is not None:
            from_domain = rules.check_host(from_domain, f"{at}.from_domain")
        out.append(
            TrunkSpec(
                name=name,
                sources=sources,
                host=rules.check_host(raw["host"], f"{at}.host"),
                port=rules.check_port(raw.get("port", DEFAULT_TRUNK_PORT), f"{at}.port"),
                transport=rules.check_transport(raw.get("transport", "UDP"), f"{at}.transport"),
                username=username,
                password=password,
                from_domain=from_domain,
                outbound=rules.check_flag(raw.get("outbound", True), f"{at}.outbound"),
            )
        )
    return tuple(out)


def _mapping(value: object, field: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ModelError(field, "must be a mapping")
    for key in value:
        if key not in allowed:
            where = f"{field}.{key}" if field else str(key)
            raise ModelError(where, f"unknown key (expected one of: {', '.join(sorted(allowed))})")
    return value


def _list(value: object, field: str) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ModelError(field, "must be a list")
    return value
