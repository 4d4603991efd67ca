"""The dial-plan compiler: admin inputs in, one immutable ``CompiledConfig`` or every error out.

``compile_config`` validates the configuration as a whole and never stops at the first problem: missing
references (line, ring group, sound clip, schedule, mailbox, plan, number, queue, room, fax line), outputs
left unconnected (GoTo silently drops such calls; we refuse them at save time), unknown node types and
fields, bad values (time zones, times, days, digits, numbers), extensions used twice across lines, ring
groups, plans, queues, rooms, fax lines and shared mailboxes, number -> number routing loops, and loops
that can spin without waiting for the caller. Unreachable nodes are warnings. Each issue names the plan,
the node and the field (``CompileIssue.path``).

A loop is harmless only if it passes a node that waits for the caller (an auto attendant, a password or
dial-by-name prompt, which wait for digits) or for ringing (simple dial, ring group, external number):
the compiler finds the strongly connected components of the graph of all other nodes, across plans
(``goto_plan`` edges included); any cycle there is an error. Hostile or random input never raises:
it yields errors (a Hypothesis test holds the compiler to that).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, time
from types import MappingProxyType
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.dialplan.errors import CompileIssue, PlanCompileError
from engine.dialplan.faxline import FAX_LINE_KEYS, read_fax_line
from engine.dialplan.linefeatures import check_line_features
from engine.dialplan.plan import (
    DEFAULT_AGENT_RING_S,
    DEFAULT_ANNOUNCE_EVERY_S,
    DEFAULT_EXTERNAL_RING_S,
    DEFAULT_GROUP_RING_S,
    DEFAULT_MEMBER_RING_S,
    DEFAULT_RING_S,
    DEFAULT_SERVICE_LEVEL_S,
    LANGUAGES,
    MAX_QUEUE_CALLERS,
    QUEUE_STRATEGIES,
    AutoAttendantOp,
    CompiledConfig,
    ConferenceOp,
    ConferenceRoom,
    DetectFaxOp,
    DialByNameOp,
    DirectoryEntry,
    Entry,
    EntryKind,
    ExternalNumberOp,
    FaxLine,
    GotoPlanOp,
    HangupOp,
    Language,
    LineVoicemailOp,
    Member,
    ModifyCallerIdOp,
    Node,
    Op,
    PasswordOp,
    PlayClipOp,
    Queue,
    QueueOp,
    QueueStrategy,
    ReceiveFaxOp,
    RingGroup,
    RingGroupOp,
    RingTarget,
    ScheduleOp,
    SetLanguageOp,
    SimpleDialOp,
    Strategy,
    VoicemailOp,
)
from engine.dialplan.room import ROOM_KEYS, read_room
from engine.dialplan.schedule import (
    DAY_NAMES,
    HolidayCalendar,
    HolidayRange,
    Schedule,
    build_week,
    check_calendar,
    holiday_range,
)
from engine.dialplan.schema import (
    COMMON_NODE_KEYS,
    GRAPH_KEYS,
    HANGUP_STATUSES,
    NODE_TYPES,
    OBJECT_KINDS,
    ROUTE_KINDS,
    ConfigInputs,
)
from engine.dialplan.starcodes import check_table

__all__ = ["CompileIssue", "CompileResult", "ConfigInputs", "compile_config"]

_EXTENSION_RE: Final = re.compile(r"[0-9]{2,8}")
_E164_RE: Final = re.compile(r"\+[1-9][0-9]{5,14}")
_OPTION_RE: Final = re.compile(r"[0-9*#]{1,8}")
_PIN_RE: Final = re.compile(r"[0-9]{1,16}")
_TIME_RE: Final = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")
_GERMAN_COUNTRIES: Final = frozenset({"DE", "AT", "CH", "LI", "LU"})
_KEYPAD: Final = {
    c: str(d)
    for d, letters in enumerate(("", "", "ABC", "DEF", "GHI", "JKL", "MNO", "PQRS", "TUV", "WXYZ"))
    for c in letters
}
_SPECIAL_LETTERS: Final = {
    "ß": "SS",
    "\u0131": "I",
    "ł": "L",
    "Ł": "L",
    "ø": "O",
    "Ø": "O",
    "æ": "AE",
    "Æ": "AE",
}
_WAITING_OPS: Final = (AutoAttendantOp, SimpleDialOp, RingGroupOp, ExternalNumberOp, PasswordOp, DialByNameOp)
"""Ops that wait for the caller's digits or for ringing: a loop through one cannot spin."""

_SYSTEM_PLAN: Final = "@system"
QUEUE_KEYS: Final = frozenset(
    {
        "name",
        "extension",
        "agents",
        "strategy",
        "agent_ring_seconds",
        "wrap_up_seconds",
        "skip_busy_agents",
        "max_callers",
        "max_wait_seconds",
        "exit",
        "when_no_agents",
        "exit_key",
        "welcome_clip",
        "hold_clip",
        "announce_position",
        "announce_wait",
        "announce_every_seconds",
        "announce_clip",
        "service_level_seconds",
    }
)
QUEUE_EXIT_KINDS: Final = ("extension", "dial_plan", "ring_group", "queue", "mailbox", "voicemail", "number")
"""Where a queue's callers go when they leave it without an agent (``exit: {kind, target}``):
``voicemail`` leaves a message in a line's or a shared mailbox, ``number`` rings an external E.164 number."""


@dataclass(frozen=True, slots=True)
class CompileResult:
    """``config`` is None when there are ``errors``; ``warnings`` never block a config."""

    config: CompiledConfig | None
    errors: tuple[CompileIssue, ...]
    warnings: tuple[CompileIssue, ...]

    @property
    def ok(self) -> bool:
        return self.config is not None

    def unwrap(self) -> CompiledConfig:
        """The config.

        Raises:
            PlanCompileError: the configuration had errors (all of them are in the exception).
        """
        if self.config is None:
            raise PlanCompileError(self.errors)
        return self.config


def compile_config(inputs: ConfigInputs) -> CompileResult:
    """Validate ``inputs`` as a whole and build the routing snapshot.

    Args:
        inputs: the company, its users, lines, numbers, dial plans and routing objects.
    Returns:
        A ``CompileResult``: the config, or None with every error found; warnings in both cases.
    Raises:
        Nothing for bad configuration: every problem is an issue in the result.
    """
    return _Compiler(inputs).run()


def keypad_key(last_name: str) -> str:
    """The keypad digits of the first three letters of ``last_name`` (accents dropped: Müller -> 685).

    Raises:
        Nothing: characters that are no letters are skipped ("" if none is left).
    """
    letters: list[str] = []
    for ch in last_name:
        ch = _SPECIAL_LETTERS.get(ch, ch)
        for base in unicodedata.normalize("NFKD", ch).upper():
            if base in _KEYPAD:
                letters.append(_KEYPAD[base])
        if len(letters) >= 3:
            break
    return "".join(letters[:3])


@dataclass(slots=True)
class _PlanInfo:
    name: str
    start: int | None
    ids: dict[str, int]
    raw_nodes: dict[str, Mapping[str, Any]]


#: how long a Detect Fax node listens for CNG by default (a fax machine repeats it every 3.5 s)
DEFAULT_DETECT_FAX_S: Final = 4.0


class _Compiler:
    """One compilation: collects issues while it builds the tables."""

    def __init__(self, inputs: ConfigInputs) -> None:
        self.inputs = inputs
        self.errors: list[CompileIssue] = []
        self.warnings: list[CompileIssue] = []
        self.nodes: list[Node | None] = []
        self.edges: list[tuple[int, ...]] = []
        self.lines: dict[str, Any] = {}
        self.clips: dict[str, str] = {}
        self.schedules: dict[str, Schedule] = {}
        self.groups: dict[str, RingGroup] = {}
        self.mailboxes: dict[str, str] = {}  # name -> number
        self.mailbox_numbers: set[str] = set()
        self.queues: dict[str, Queue] = {}
        self.queue_exits: dict[str, tuple[Mapping[str, Any] | None, str]] = {}  # name -> (exit, path)
        self.rooms: dict[str, ConferenceRoom] = {}
        self.fax_lines: dict[str, FaxLine] = {}
        self.plans: dict[str, _PlanInfo] = {}
        self.routes: dict[str, Entry] = {}
        self.extension_owner: dict[str, str] = {}
        self.group_nodes: dict[str, int] = {}
        self._owner_prefixes: frozenset[str] | None = None
        zone = inputs.company.timezone
        self.company_zone: ZoneInfo | None = self._zone(zone, "company.timezone")

    # -- issues ---------------------------------------------------------------------------------------

    def error(self, plan: str | None, node: str | None, field: str, message: str) -> None:
        self.errors.append(CompileIssue(plan, node, field, message))

    def warn(self, plan: str | None, node: str | None, field: str, message: str) -> None:
        self.warnings.append(CompileIssue(plan, node, field, message))

    # -- driver ---------------------------------------------------------------------------------------

    def run(self) -> CompileResult:
        for line in self.inputs.lines:
            self.lines[line.extension] = line
            self.claim_extension(
                line.extension, f"line {line.extension}", f"lines[{line.extension}].extension"
            )
        self.read_objects()
        hold_clip = self.company_hold_clip()
        self.read_plans()
        star_codes = check_table(dict(self.inputs.company.star_codes), self.extension_owner,
                                 lambda field, message: self.error(None, None, field, message))
        self.add_synthetic_entries()
        self.compile_plans()
        self.route_numbers()
        self.check_reachability()
        self.check_loops()
        if self.errors or any(n is None for n in self.nodes):
            if not self.errors:  # pragma: no cover - every unfilled node has reported an error
                self.error(None, None, "dial_plans", "internal: a node was not compiled")
            return CompileResult(None, tuple(self.errors), tuple(self.warnings))
        nodes = tuple(n for n in self.nodes if n is not None)
        prefixes = frozenset(
            ext[:i] for ext in self.routes if not ext.startswith("+") for i in range(1, len(ext))
        )
        config = CompiledConfig(
            company=self.inputs.company,
            nodes=nodes,
            routes=MappingProxyType(dict(self.routes)),
            plans=MappingProxyType(
                {name: info.start for name, info in self.plans.items() if info.start is not None}
            ),
            ring_groups=MappingProxyType(dict(self.groups)),
            queues=MappingProxyType(dict(self.queues)),
            rooms=MappingProxyType(dict(self.rooms)),
            schedules=MappingProxyType(dict(self.schedules)),
            extension_prefixes=prefixes,
            directory=self.build_directory(),
            default_language=self.default_language(),
            hold_clip=hold_clip,
            star_codes=star_codes,
            line_features=MappingProxyType(check_line_features(
                self.inputs.line_features, self.lines, self.inputs.company,
                lambda field, message: self.warn(None, None, field, message))),
        )
        return CompileResult(config, (), tuple(self.warnings))

    def company_hold_clip(self) -> str | None:
        """The file of the company's hold clip (``company.hold_clip`` must name a sound clip), which the
        queues without a hold clip of their own take too: one hold music, set in one place."""
        name = self.inputs.company.hold_clip
        if name is None:
            return None
        file = self.clips.get(name)
        if file is None:
            self.error(None, None, "company.hold_clip", f"no sound clip named {name!r}")
            return None
        for queue_name, queue in self.queues.items():
            if queue.hold_clip is None:
                self.queues[queue_name] = replace(queue, hold_clip=file)
        return file

    def default_language(self) -> Language:
        if self.inputs.default_language is not None:
            return self.inputs.default_language
        return "de" if self.inputs.company.country.upper() in _GERMAN_COUNTRIES else "en"

    def build_directory(self) -> Mapping[str, tuple[DirectoryEntry, ...]]:
        first_line: dict[int, str] = {}
        for line in self.inputs.lines:
            first_line.setdefault(line.user_id, line.extension)
        by_key: dict[str, list[DirectoryEntry]] = {}
        for user in self.inputs.users:
            ext = first_line.get(user.id)
            key = keypad_key(user.last_name)
            if ext is None or not key:
                continue
            by_key.setdefault(key, []).append(DirectoryEntry(user.last_name, user.first_name, ext, key))
        return MappingProxyType(
            {
                k: tuple(sorted(v, key=lambda e: (e.last_name, e.first_name, e.extension)))
                for k, v in by_key.items()
            }
        )

    # -- small value checks ---------------------------------------------------------------------------

    def _zone(
        self, name: object, path: str, plan: str | None = None, node: str | None = None
    ) -> ZoneInfo | None:
        if not isinstance(name, str) or not name:
            self.error(plan, node, path, f"time zone must be an IANA name, got {name!r}")
            return None
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            self.error(plan, node, path, f"unknown time zone {name!r}")
            return None

    def claim_extension(self, ext: str, owner: str, path: str) -> bool:
        if ext in self.extension_owner:
            self.error(None, None, path, f"extension {ext} is already used by {self.extension_owner[ext]}")
            return False
        self.extension_owner[ext] = owner
        return True

    def seconds(
        self,
        raw: Mapping[str, Any],
        key: str,
        default: float,
        where: _Where,
        low: float = 1.0,
        high: float = 600.0,
    ) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            where.error(key, f"must be a number of seconds from {low:g} to {high:g}, got {value!r}")
            return default
        return float(value)

    def integer(
        self, raw: Mapping[str, Any], key: str, default: int, where: _Where, low: int, high: int
    ) -> int:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            where.error(key, f"must be a whole number from {low} to {high}, got {value!r}")
            return default
        return value

    # -- routing objects ------------------------------------------------------------------------------

    def object_list(self, kind: str) -> list[tuple[str, Mapping[str, Any], str]]:
        """The objects of one kind as (name, mapping, path); bad entries and duplicate names reported."""
        items = self.inputs.objects.get(kind, ())
        out: list[tuple[str, Mapping[str, Any], str]] = []
        if isinstance(items, str | bytes) or not isinstance(items, Sequence):
            self.error(None, None, kind, "must be a list")
            return out
        seen: set[str] = set()
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                self.error(None, None, f"{kind}[{i}]", "must be a mapping")
                continue
            name = item.get("name")
            if not isinstance(name, str) or not name.strip():
                self.error(None, None, f"{kind}[{i}].name", "is required (non-empty text)")
                continue
            path = f"{kind}[{name}]"
            if name in seen:
                self.error(None, None, f"{path}.name", f"{name!r} is defined twice")
                continue
            seen.add(name)
            out.append((name, item, path))
        return out

    def check_keys(self, raw: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
        for key in raw:
            if key not in allowed:
                self.error(
                    None,
                    None,
                    f"{path}.{key}",
                    f"unknown field (expected one of: {', '.join(sorted(allowed))})",
                )

    def object_extension(self, raw: Mapping[str, Any], path: str, owner: str) -> str | None:
        ext = raw.get("extension")
        if ext is None:
            return None
        if not isinstance(ext, str) or not _EXTENSION_RE.fullmatch(ext):
            self.error(None, None, f"{path}.extension", f"must be 2-8 digits as text, got {ext!r}")
            return None
        return ext if self.claim_extension(ext, owner, f"{path}.extension") else None

    def read_objects(self) -> None:
        for kind in self.inputs.objects:
            if kind not in OBJECT_KINDS:
                self.error(
                    None,
                    None,
                    str(kind),
                    f"unknown kind of object (expected one of: {', '.join(OBJECT_KINDS)})",
                )
        for name, raw, path in self.object_list("sound_clips"):
            self.check_keys(raw, frozenset({"name", "file"}), path)
            file = raw.get("file")
            if not isinstance(file, str) or not file:
                self.error(None, None, f"{path}.file", "is required (the stored WAV file's path)")
                continue
            self.clips[name] = file
        for name, raw, path in self.object_list("schedules"):
            schedule = self.read_schedule(name, raw, path)
            if schedule is not None:
                self.schedules[name] = schedule
        for name, raw, path in self.object_list("mailboxes"):
            number = raw.get("number")
            if not isinstance(number, str) or not _EXTENSION_RE.fullmatch(number):
                self.error(None, None, f"{path}.number", f"must be 2-8 digits as text, got {number!r}")
                continue
            if self.claim_extension(number, f"mailbox {name!r}", f"{path}.number"):
                self.mailboxes[name] = number
                self.mailbox_numbers.add(number)
        for name, raw, path in self.object_list("queues"):
            queue = self.read_queue(name, raw, path)
            if queue is not None:
                self.queues[name] = queue
        for name, raw, path in self.object_list("conference_rooms"):
            self.read_room(name, raw, path)
        for name, raw, path in self.object_list("fax_lines"):
            self.check_keys(raw, FAX_LINE_KEYS, path)
            ext = self.object_extension(raw, path, f"fax line {name!r}")
            fax_line = read_fax_line(name, raw, path, lambda field, message: self.error(None, None, field,
                                                                                          message))
            if fax_line is None:
                continue
            self.fax_lines[name] = fax_line
            if ext is not None:
                self.routes[ext] = Entry("fax_line", name, -1)
        for name, raw, path in self.object_list("ring_groups"):
            group = self.read_ring_group(name, raw, path)
            if group is not None:
                self.groups[name] = group

    def read_room(self, name: str, raw: Mapping[str, Any], path: str) -> None:
        """A conference room (``engine.dialplan.room``): its extension is required (it is how the room is
        dialled and listed), its options checked."""
        self.check_keys(raw, ROOM_KEYS, path)
        room, problems = read_room(name, raw)
        for field, message in problems:
            self.error(None, None, f"{path}.{field}", message)
        if "extension" not in raw:
            self.error(None, None, f"{path}.extension", "is required (2-8 digits as text)")
            return
        ext = self.object_extension(raw, path, f"conference room {name!r}")
        if room is not None and ext is not None:
            self.rooms[name] = room
            self.routes[ext] = Entry("conference_room", name, -1)

    def read_ring_group(self, name: str, raw: Mapping[str, Any], path: str) -> RingGroup | None:
        allowed = frozenset(
            {"name", "extension", "strategy", "members", "member_ring_seconds", "ring_seconds"}
        )
        self.check_keys(raw, allowed, path)
        where = _Where(self, None, None, path + ".")
        ext = self.object_extension(raw, path, f"ring group {name!r}")
        if ext is not None:
            self.routes[ext] = Entry("ring_group", name, -1)
        strategy = raw.get("strategy", "ring_all")
        if strategy not in ("ring_all", "sequential", "round_robin"):
            self.error(
                None,
                None,
                f"{path}.strategy",
                f"must be ring_all, sequential or round_robin, got {strategy!r}",
            )
            strategy = "ring_all"
        member_s = self.seconds(raw, "member_ring_seconds", DEFAULT_MEMBER_RING_S, where)
        total_s = self.seconds(raw, "ring_seconds", DEFAULT_GROUP_RING_S, where, high=3600.0)
        members_raw = raw.get("members")
        members: list[Member] = []
        if not isinstance(members_raw, list) or not members_raw:
            self.error(None, None, f"{path}.members", "must be a non-empty list")
            return None
        seen: set[str] = set()
        ok = True
        for i, m in enumerate(members_raw):
            at = f"{path}.members[{i}]"
            if not isinstance(m, Mapping):
                self.error(None, None, at, "must be {line: EXTENSION} or {number: E164}")
                ok = False
                continue
            self.check_keys(m, frozenset({"line", "number", "ring_seconds"}), at)
            ring_s = self.seconds(m, "ring_seconds", member_s, _Where(self, None, None, at + "."))
            if ("line" in m) == ("number" in m):
                self.error(None, None, at, "needs exactly one of line or number")
                ok = False
                continue
            if "line" in m:
                ext = m["line"]
                if not isinstance(ext, str) or ext not in self.lines:
                    self.error(None, None, f"{at}.line", f"no line has extension {ext!r}")
                    ok = False
                    continue
                target = RingTarget("line", ext)
            else:
                number = m["number"]
                if not isinstance(number, str) or not _E164_RE.fullmatch(number):
                    self.error(
                        None, None, f"{at}.number", f"must be an E.164 number (+4930...), got {number!r}"
                    )
                    ok = False
                    continue
                target = RingTarget("external", number)
            member = Member(target, ring_s)
            if member.key in seen:
                self.error(None, None, at, f"{target.value} is a member twice")
                ok = False
                continue
            seen.add(member.key)
            members.append(member)
        if not ok:
            return None
        strat: Strategy = strategy
        return RingGroup(name, strat, tuple(members), total_s)

    def read_queue(self, name: str, raw: Mapping[str, Any], path: str) -> Queue | None:
        """A queue's fields checked; its exit destination is resolved once every node exists
        (``add_queue_nodes``)."""
        self.check_keys(raw, QUEUE_KEYS, path)
        n_errors = len(self.errors)
        where = _Where(self, None, None, path + ".")
        ext = self.object_extension(raw, path, f"queue {name!r}")
        if ext is not None:
            self.routes[ext] = Entry("queue", name, -1)
        strategy = raw.get("strategy", "ring_all")
        if strategy not in QUEUE_STRATEGIES:
            where.error("strategy", f"must be one of {', '.join(QUEUE_STRATEGIES)}, got {strategy!r}")
        agents_raw = raw.get("agents", [])
        agents: list[str] = []
        dynamic: set[str] = set()
        if not isinstance(agents_raw, list):
            where.error("agents", "must be a list of {line: EXTENSION}")
            agents_raw = []
        for i, agent in enumerate(agents_raw):
            at = f"{path}.agents[{i}]"
            if not isinstance(agent, Mapping) or "line" not in agent:
                self.error(None, None, at, "must be {line: EXTENSION}")
                continue
            self.check_keys(agent, frozenset({"line", "dynamic"}), at)
            ext = agent["line"]
            if not isinstance(agent.get("dynamic", False), bool):
                self.error(None, None, f"{at}.dynamic", "must be true or false")
            if not isinstance(ext, str) or ext not in self.lines:
                self.error(None, None, f"{at}.line", f"no line has extension {ext!r}")
            elif ext in agents:
                self.error(None, None, f"{at}.line", f"line {ext} is an agent twice")
            else:
                agents.append(ext)
                if agent.get("dynamic") is True:
                    dynamic.add(ext)
        ring_s = self.seconds(raw, "agent_ring_seconds", DEFAULT_AGENT_RING_S, where, 2.0, 300.0)
        wrap_s = self.seconds(raw, "wrap_up_seconds", 0.0, where, 0.0, 3600.0)
        max_callers = self.integer(raw, "max_callers", 0, where, 0, MAX_QUEUE_CALLERS)
        max_wait_s: float | None = None
        if raw.get("max_wait_seconds") is not None:
            max_wait_s = self.seconds(raw, "max_wait_seconds", 0.0, where, 1.0, 24 * 3600.0)
        flags: dict[str, bool] = {}
        flag_keys = (("skip_busy_agents", True), ("announce_position", False), ("announce_wait", False))
        for key, default in flag_keys:
            flag = raw.get(key, default)
            if not isinstance(flag, bool):
                where.error(key, f"must be true or false, got {flag!r}")
            flags[key] = flag is True
        announce_s = self.seconds(raw, "announce_every_seconds", DEFAULT_ANNOUNCE_EVERY_S, where, 10.0, 3600)
        level_s = self.seconds(raw, "service_level_seconds", DEFAULT_SERVICE_LEVEL_S, where, 1.0, 3600.0)
        empty = raw.get("when_no_agents", "join")
        if empty not in ("join", "leave"):
            where.error("when_no_agents", f"must be join or leave, got {empty!r}")
        exit_key = raw.get("exit_key")
        if exit_key is not None and (
            not isinstance(exit_key, str) or len(exit_key) != 1 or exit_key not in "0123456789*#"
        ):
            where.error("exit_key", f"must be one key of 0-9, * or #, got {exit_key!r}")
        clips: dict[str, str | None] = {}
        for field in ("welcome_clip", "hold_clip", "announce_clip"):
            if raw.get(field) is not None:
                clips[field] = self.ref(raw, field, self.clips, "sound clip", where)
        exit_raw = raw.get("exit")
        if exit_raw is not None and not isinstance(exit_raw, Mapping):
            where.error("exit", "must be {kind: KIND, target: NAME}")
            exit_raw = None
        if len(self.errors) > n_errors:
            return None
        self.queue_exits[name] = (exit_raw, f"{path}.exit")
        welcome, hold = clips.get("welcome_clip"), clips.get("hold_clip")
        announce = clips.get("announce_clip")
        strat: QueueStrategy = strategy
        return Queue(
            name=name,
            agents=tuple(agents),
            strategy=strat,
            agent_ring_s=ring_s,
            wrap_up_s=wrap_s,
            skip_busy=flags["skip_busy_agents"],
            max_callers=max_callers,
            max_wait_s=max_wait_s,
            join_empty=empty == "join",
            exit_key=exit_key,
            welcome_clip=None if welcome is None else self.clips[welcome],
            hold_clip=None if hold is None else self.clips[hold],
            dynamic=frozenset(dynamic),
            announce_position=flags["announce_position"],
            announce_wait=flags["announce_wait"],
            announce_every_s=announce_s,
            announce_clip=None if announce is None else self.clips[announce],
            service_level_s=level_s,
        )

    def queue_exit(self, name: str) -> int:
        """The node a queue's callers take when they leave it without an agent: its ``exit`` destination
        (a line's extension, a plan, a ring group, another queue, a shared mailbox, a mailbox's
        voicemail, an external number), or the hang-up node when it has none."""
        raw, path = self.queue_exits[name]
        if raw is None:
            return self.hangup_node
        self.check_keys(raw, frozenset({"kind", "target"}), path)
        kind, target = raw.get("kind"), raw.get("target")
        node: int | None = None
        if not isinstance(target, str):
            self.error(None, None, f"{path}.target", f"is required (text), got {target!r}")
            return self.hangup_node
        if kind == "extension":
            node = self.line_nodes.get(target)
        elif kind == "dial_plan":
            info = self.plans.get(target)
            node = None if info is None else info.start
        elif kind == "ring_group":
            node = self.group_nodes.get(target)
        elif kind == "queue":
            node = self.queue_nodes.get(target)
        elif kind == "mailbox":
            node = self.box_nodes.get(target)
        elif kind == "voicemail":
            box = self.mailboxes.get(target)
            if target in self.lines or target in self.mailbox_numbers:
                box = target
            if box is not None:
                node = self.new_node()
                self.nodes[node] = Node("@queue", f"{name}:exit", VoicemailOp(box, "unavailable"))
        elif kind == "number":
            if _E164_RE.fullmatch(target):
                node = self.new_node()
                self.nodes[node] = Node(
                    "@queue",
                    f"{name}:exit",
                    ExternalNumberOp(target, DEFAULT_EXTERNAL_RING_S, self.hangup_node),
                )
                self.edges[node] = (self.hangup_node,)
        else:
            self.error(
                None, None, f"{path}.kind", f"must be one of {', '.join(QUEUE_EXIT_KINDS)}, got {kind!r}"
            )
            return self.hangup_node
        if node is None:
            what = {"extension": "line with extension", "voicemail": "mailbox", "number": "E.164 number"}
            named = what.get(kind, kind.replace("_", " "))
            self.error(None, None, f"{path}.target", f"no {named} {target!r}")
            return self.hangup_node
        return node

    def read_schedule(self, name: str, raw: Mapping[str, Any], path: str) -> Schedule | None:
        allowed = frozenset(
            {"name", "timezone", "open", "override", "holidays", "recurring_holidays", "holiday_calendar"}
        )
        self.check_keys(raw, allowed, path)
        n_errors = len(self.errors)
        zone = self.company_zone
        if "timezone" in raw:
            zone = self._zone(raw["timezone"], f"{path}.timezone")
        override = raw.get("override", "none")
        if override not in ("none", "open", "closed"):
            self.error(None, None, f"{path}.override", f"must be none, open or closed, got {override!r}")
        blocks: list[tuple[tuple[int, ...], int, int]] = []
        for i, block in enumerate(self.list_field(raw, "open", path)):
            at = f"{path}.open[{i}]"
            if not isinstance(block, Mapping):
                self.error(None, None, at, "must be {days: [mon..sun], from: HH:MM, to: HH:MM}")
                continue
            self.check_keys(block, frozenset({"days", "from", "to"}), at)
            days = block.get("days")
            weekdays: list[int] = []
            if not isinstance(days, list) or not days:
                self.error(None, None, f"{at}.days", "must be a non-empty list of mon, tue, ..., sun")
            else:
                for d in days:
                    if d not in DAY_NAMES:
                        self.error(None, None, f"{at}.days", f"unknown day {d!r} (use mon, tue, ..., sun)")
                    else:
                        weekdays.append(DAY_NAMES.index(d))
            start = self.clock_time(block.get("from"), f"{at}.from", allow_24=False)
            end = self.clock_time(block.get("to"), f"{at}.to", allow_24=True)
            if start is not None and end is not None:
                if start == end:
                    self.error(None, None, f"{at}.to", "must differ from 'from' (an empty block)")
                else:
                    blocks.append((tuple(weekdays), start, end))
        ranges: list[HolidayRange] = []
        for i, h in enumerate(self.list_field(raw, "holidays", path)):
            at = f"{path}.holidays[{i}]"
            hr = self.read_holiday(h, at)
            if hr is not None:
                ranges.append(hr)
        recurring: set[tuple[int, int]] = set()
        for i, h in enumerate(self.list_field(raw, "recurring_holidays", path)):
            at = f"{path}.recurring_holidays[{i}]"
            if not isinstance(h, Mapping):
                self.error(None, None, at, "must be {month, day}")
                continue
            self.check_keys(h, frozenset({"name", "month", "day"}), at)
            month, day = h.get("month"), h.get("day")
            if isinstance(month, bool) or not isinstance(month, int) or not 1 <= month <= 12:
                self.error(None, None, f"{at}.month", f"must be 1-12, got {month!r}")
                continue
            if isinstance(day, bool) or not isinstance(day, int) or not _valid_day(month, day):
                self.error(None, None, f"{at}.day", f"no day {day!r} in month {month}")
                continue
            recurring.add((month, day))
        calendar: HolidayCalendar | None = None
        cal = raw.get("holiday_calendar")
        if cal is not None:
            at = f"{path}.holiday_calendar"
            if not isinstance(cal, Mapping) or not isinstance(cal.get("country"), str):
                self.error(None, None, at, "must be {country: ISO CODE, subdivision?: CODE}")
            else:
                self.check_keys(cal, frozenset({"country", "subdivision"}), at)
                sub = cal.get("subdivision")
                if sub is not None and not isinstance(sub, str):
                    self.error(None, None, f"{at}.subdivision", f"must be text, got {sub!r}")
                else:
                    why = check_calendar(cal["country"], sub)
                    if why is not None:
                        self.error(None, None, at, why)
                    else:
                        calendar = HolidayCalendar(cal["country"], sub)
        if len(self.errors) > n_errors or zone is None:
            return None
        return Schedule(
            name=name,
            zone=zone,
            week=build_week(blocks),
            override=override,
            holidays=tuple(ranges),
            recurring=frozenset(recurring),
            calendar=calendar,
        )

    def list_field(self, raw: Mapping[str, Any], key: str, path: str) -> list[Any]:
        value = raw.get(key, [])
        if not isinstance(value, list):
            self.error(None, None, f"{path}.{key}", "must be a list")
            return []
        return value

    def clock_time(self, value: object, path: str, allow_24: bool) -> int | None:
        """ "HH:MM" as seconds since midnight; "24:00" only where ``allow_24``."""
        if not isinstance(value, str) or not _TIME_RE.fullmatch(value) or (value == "24:00" and not allow_24):
            self.error(
                None,
                None,
                path,
                f"must be a time HH:MM (00:00-23:59{', or 24:00' if allow_24 else ''}), got {value!r}",
            )
            return None
        hh, mm = value.split(":")
        return int(hh) * 3600 + int(mm) * 60

    def read_holiday(self, h: object, at: str) -> HolidayRange | None:
        if not isinstance(h, Mapping):
            self.error(None, None, at, "must be {from: YYYY-MM-DD, to?, from_time?, to_time?}")
            return None
        self.check_keys(h, frozenset({"name", "from", "to", "from_time", "to_time"}), at)
        first = self.iso_date(h.get("from"), f"{at}.from")
        last = self.iso_date(h["to"], f"{at}.to") if "to" in h else first
        from_ok, from_t = self.opt_time(h.get("from_time"), f"{at}.from_time")
        to_ok, to_t = self.opt_time(h.get("to_time"), f"{at}.to_time")
        if first is None or last is None or not from_ok or not to_ok:
            return None
        hr = holiday_range(str(h.get("name", "")), first, last, from_t, to_t)
        if hr.end <= hr.start:
            self.error(None, None, at, "ends before it starts")
            return None
        return hr

    def iso_date(self, value: object, path: str) -> date | None:
        if isinstance(value, date):  # YAML reads an unquoted 2026-12-24 as a date
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        self.error(None, None, path, f"must be a date YYYY-MM-DD, got {value!r}")
        return None

    def opt_time(self, value: object, path: str) -> tuple[bool, time | None]:
        """(ok, time): None is fine (no time given), a bad value is reported and not ok."""
        if value is None:
            return True, None
        seconds = self.clock_time(value, path, allow_24=False)
        if seconds is None:
            return False, None
        return True, time(seconds // 3600, seconds % 3600 // 60)

    # -- plans: pass 1 assigns indexes ----------------------------------------------------------------

    def new_node(self) -> int:
        self.nodes.append(None)
        self.edges.append(())
        return len(self.nodes) - 1

    def read_plans(self) -> None:
        for i, plan in enumerate(self.inputs.dial_plans):
            name = plan.name
            if not isinstance(name, str) or not name:
                self.error(None, None, f"dial_plans[{i}].name", "is required")
                continue
            if name in self.plans:
                self.error(name, None, "name", f"dial plan {name!r} is defined twice")
                continue
            info = _PlanInfo(name, None, {}, {})
            self.plans[name] = info
            graph = plan.graph
            if not isinstance(graph, Mapping):
                self.error(name, None, "graph", "must be a mapping {start, nodes}")
                continue
            for key in graph:
                if key not in GRAPH_KEYS:
                    self.error(
                        name, None, str(key), "unknown field (expected one of: extension, nodes, start)"
                    )
            nodes = graph.get("nodes")
            if not isinstance(nodes, Mapping) or not nodes:
                self.error(name, None, "nodes", "must be a non-empty mapping of node id -> node")
                nodes = {}
            for node_id, raw in nodes.items():
                if not isinstance(node_id, str) or not node_id:
                    self.error(name, None, f"nodes[{node_id!r}]", "node ids must be non-empty text")
                    continue
                if not isinstance(raw, Mapping):
                    self.error(name, node_id, "", "must be a mapping with a type")
                    continue
                info.ids[node_id] = self.new_node()
                info.raw_nodes[node_id] = raw
            start = graph.get("start")
            if not isinstance(start, str) or start not in info.ids:
                if nodes:
                    self.error(name, None, "start", f"no node {start!r} in this plan")
            else:
                info.start = info.ids[start]
            ext = graph.get("extension")
            if ext is not None:
                if not isinstance(ext, str) or not _EXTENSION_RE.fullmatch(ext):
                    self.error(name, None, "extension", f"must be 2-8 digits as text, got {ext!r}")
                elif (
                    self.claim_extension(ext, f"dial plan {name!r}", f"dial_plans[{name}].extension")
                    and info.start is not None
                ):
                    self.routes[ext] = Entry("dial_plan", name, info.start)

    def add_synthetic_entries(self) -> None:
        """Nodes for destinations that are not plans, and the entries of their extensions."""
        self.hangup_node = self.new_node()
        self.nodes[self.hangup_node] = Node(_SYSTEM_PLAN, "hangup", HangupOp(480, HANGUP_STATUSES[480]))
        self.line_nodes: dict[str, int] = {}
        for ext in self.lines:
            idx = self.new_node()
            self.nodes[idx] = Node("@line", ext, LineVoicemailOp(ext, DEFAULT_RING_S))
            self.line_nodes[ext] = idx
            self.routes[ext] = Entry("line", ext, idx)
        for name, group in self.groups.items():
            idx = self.new_node()
            self.nodes[idx] = Node("@ring_group", name, RingGroupOp(group, self.hangup_node))
            self.edges[idx] = (self.hangup_node,)
            self.group_nodes[name] = idx
        self.box_nodes: dict[str, int] = {}
        for name, number in self.mailboxes.items():
            idx = self.new_node()
            self.nodes[idx] = Node("@mailbox", name, VoicemailOp(number, "unavailable"))
            self.box_nodes[name] = idx
            self.routes[number] = Entry("mailbox", name, idx)
        self.queue_nodes: dict[str, int] = {name: self.new_node() for name in self.queues}
        for name, idx in self.queue_nodes.items():
            exit_node = self.queue_exit(name)
            self.nodes[idx] = Node("@queue", name, QueueOp(self.queues[name], exit_node))
            self.edges[idx] = (exit_node,)
        self.room_nodes: dict[str, int] = {}
        for name, room in self.rooms.items():
            idx = self.new_node()
            self.nodes[idx] = Node("@conference", name, ConferenceOp(room))
            self.room_nodes[name] = idx
        self.fax_nodes: dict[str, int] = {}
        for name, fax_line in self.fax_lines.items():
            idx = self.new_node()
            self.nodes[idx] = Node("@receive_fax", name, ReceiveFaxOp(fax_line))
            self.fax_nodes[name] = idx
        for ext, entry in list(self.routes.items()):
            if entry.node == -1:  # an object's extension, read before its node existed
                if entry.kind == "ring_group":
                    node = self.group_nodes.get(entry.name)
                elif entry.kind == "queue":
                    node = self.queue_nodes.get(entry.name)
                elif entry.kind == "fax_line":
                    node = self.fax_nodes.get(entry.name)
                else:
                    node = self.room_nodes.get(entry.name)
                if node is None:
                    del self.routes[ext]  # the object had errors, already reported
                else:
                    self.routes[ext] = Entry(entry.kind, entry.name, node)

    # -- plans: pass 2 compiles nodes -----------------------------------------------------------------

    def compile_plans(self) -> None:
        for info in self.plans.values():
            for node_id, raw in info.raw_nodes.items():
                where = _Where(self, info.name, node_id, "")
                result = self.compile_node(info, node_id, raw, where)
                if result is not None:
                    op, edges = result
                    idx = info.ids[node_id]
                    self.nodes[idx] = Node(info.name, node_id, op)
                    self.edges[idx] = edges

    def compile_node(
        self, info: _PlanInfo, node_id: str, raw: Mapping[str, Any], where: _Where
    ) -> tuple[Op, tuple[int, ...]] | None:
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in NODE_TYPES:
            where.error("type", f"unknown node type {kind!r} (expected one of: {', '.join(NODE_TYPES)})")
            return None
        spec = NODE_TYPES[kind]
        n_errors = len(self.errors)
        for key in raw:
            if key not in spec.required and key not in spec.optional and key not in COMMON_NODE_KEYS:
                known = sorted(spec.required | spec.optional | COMMON_NODE_KEYS)
                where.error(str(key), f"unknown field for {kind} (expected one of: {', '.join(known)})")
        for key in sorted(spec.required):
            if key not in raw:
                where.error(key, "is required")
        label = raw.get("label")
        if label is not None and not isinstance(label, str):
            where.error("label", "must be text")
        outputs = self.outputs(info, raw, spec.outputs, where)
        op = _NODE_BUILDERS[kind](self, info, raw, outputs, where)
        if op is None or len(self.errors) > n_errors:
            return None
        edges = list(outputs.values())
        if isinstance(op, AutoAttendantOp):
            edges.extend(op.options.values())
        elif isinstance(op, GotoPlanOp):
            edges.append(op.target)
        return op, tuple(edges)

    def outputs(
        self, info: _PlanInfo, raw: Mapping[str, Any], names: tuple[str, ...], where: _Where
    ) -> dict[str, int]:
        nxt = raw.get("next", {})
        resolved: dict[str, int] = {}
        if not isinstance(nxt, Mapping):
            where.error("next", "must be a mapping output -> node id")
            nxt = {}
        for key in nxt:
            if key not in names:
                expected = ", ".join(names) if names else "none: this node ends the call"
                where.error(f"next.{key}", f"unknown output (expected: {expected})")
        for name in names:
            target = nxt.get(name)
            if target is None:
                where.error(f"next.{name}", "output is not connected")
            else:
                idx = self.node_ref(info, target, f"next.{name}", where)
                if idx is not None:
                    resolved[name] = idx
        return resolved

    def node_ref(self, info: _PlanInfo, target: object, field: str, where: _Where) -> int | None:
        if not isinstance(target, str) or target not in info.ids:
            where.error(field, f"no node {target!r} in plan {info.name!r}")
            return None
        return info.ids[target]

    def ref(
        self, raw: Mapping[str, Any], key: str, known: Mapping[str, Any] | set[str], what: str, where: _Where
    ) -> str | None:
        value = raw.get(key)
        if not isinstance(value, str) or value not in known:
            if key in raw:
                named = "" if what.endswith("extension") else " named"
                where.error(key, f"no {what}{named} {value!r}")
            return None
        return value

    # node builders: (compiler, plan, raw, outputs, where) -> Op | None

    def b_auto_attendant(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        clip = self.ref(raw, "clip", self.clips, "sound clip", where)
        options_raw = raw.get("options", {})
        options: dict[str, int] = {}
        if not isinstance(options_raw, Mapping):
            where.error("options", "must be a mapping digits -> node id")
            options_raw = {}
        for key, target in options_raw.items():
            field = f"options[{json_quote(key)}]"
            if not isinstance(key, str) or not _OPTION_RE.fullmatch(key):
                where.error(field, "an option is 1-8 keys of 0-9, * and #")
                continue
            idx = self.node_ref(info, target, field, where)
            if idx is not None:
                options[key] = idx
        dial = raw.get("allow_extension_dialling", False)
        if not isinstance(dial, bool):
            where.error("allow_extension_dialling", f"must be true or false, got {dial!r}")
            dial = False
        if not options and not dial:
            where.error("options", "an auto attendant needs options or allow_extension_dialling")
        wait = raw.get("wait_for_extensions", False)
        if not isinstance(wait, bool):
            where.error("wait_for_extensions", f"must be true or false, got {wait!r}")
            wait = False
        retries = self.integer(raw, "retries", 2, where, 0, 9)
        timeout_s = self.seconds(raw, "timeout_seconds", 5.0, where, 1.0, 60.0)
        inter_s = self.seconds(raw, "inter_digit_seconds", 3.0, where, 1.0, 30.0)
        if clip is None or "timeout" not in out or "invalid" not in out:
            return None
        if dial:
            for key in options:
                field = f"options[{json_quote(key)}]"
                if key in self.extension_owner:
                    where.warn(
                        field, f"option {key} is also extension {key} (options win): callers cannot dial it"
                    )
                elif key in self.owner_prefixes() and not wait:
                    where.warn(
                        field,
                        f"option {key} wins over the extensions starting with {key}: "
                        "callers cannot dial them here (wait_for_extensions: true lets them)",
                    )
        prefixes = frozenset(k[:i] for k in options for i in range(1, len(k)))
        return AutoAttendantOp(
            self.clips[clip],
            MappingProxyType(options),
            prefixes,
            dial,
            wait and dial,
            retries,
            timeout_s,
            inter_s,
            out["timeout"],
            out["invalid"],
        )

    def owner_prefixes(self) -> frozenset[str]:
        if self._owner_prefixes is None:
            self._owner_prefixes = frozenset(
                ext[:i] for ext in self.extension_owner for i in range(1, len(ext))
            )
        return self._owner_prefixes

    def b_schedule(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        name = self.ref(raw, "schedule", self.schedules, "schedule", where)
        if name is None or len(out) != 2:
            return None
        return ScheduleOp(self.schedules[name], out["open"], out["closed"])

    def b_simple_dial(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        ring_s = self.seconds(raw, "ring_seconds", DEFAULT_RING_S, where)
        if ("line" in raw) == ("ring_group" in raw):
            where.error("line", "simple_dial needs exactly one of line or ring_group")
            return None
        targets: tuple[RingTarget, ...] = ()
        group: RingGroup | None = None
        if "line" in raw:
            ext = self.ref(raw, "line", self.lines, "line with extension", where)
            if ext is None:
                return None
            targets = (RingTarget("line", ext),)
        else:
            name = self.ref(raw, "ring_group", self.groups, "ring group", where)
            if name is None:
                return None
            group = self.groups[name]
        if "no_answer" not in out:
            return None
        return SimpleDialOp(targets, group, ring_s, out["no_answer"])

    def b_line_voicemail(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        ring_s = self.seconds(raw, "ring_seconds", DEFAULT_RING_S, where)
        ext = self.ref(raw, "line", self.lines, "line with extension", where)
        return None if ext is None else LineVoicemailOp(ext, ring_s)

    def b_ring_group(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        name = self.ref(raw, "ring_group", self.groups, "ring group", where)
        if name is None or "no_answer" not in out:
            return None
        return RingGroupOp(self.groups[name], out["no_answer"])

    def b_external_number(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        ring_s = self.seconds(raw, "ring_seconds", DEFAULT_EXTERNAL_RING_S, where, high=3600.0)
        number = raw.get("number")
        if not isinstance(number, str) or not _E164_RE.fullmatch(number):
            if "number" in raw:
                where.error("number", f"must be an E.164 number (+4930...), got {number!r}")
            return None
        if "no_answer" not in out:
            return None
        return ExternalNumberOp(number, ring_s, out["no_answer"])

    def b_voicemail(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        box = raw.get("mailbox")
        reason = raw.get("reason", "unavailable")
        if reason not in ("unavailable", "busy"):
            where.error("reason", f"must be unavailable or busy, got {reason!r}")
            return None
        if isinstance(box, str) and box in self.lines:
            return VoicemailOp(box, reason)
        if isinstance(box, str) and box in self.mailboxes:
            return VoicemailOp(self.mailboxes[box], reason)
        if isinstance(box, str) and box in self.mailbox_numbers:
            return VoicemailOp(box, reason)
        if "mailbox" in raw:
            where.error("mailbox", f"no line extension or shared mailbox named {box!r}")
        return None

    def b_play_clip(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        clip = self.ref(raw, "clip", self.clips, "sound clip", where)
        barge = raw.get("barge_in", False)
        if not isinstance(barge, bool):
            where.error("barge_in", f"must be true or false, got {barge!r}")
            return None
        if clip is None or "next" not in out:
            return None
        return PlayClipOp(self.clips[clip], barge, out["next"])

    def b_modify_caller_id(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        prefix = raw.get("prefix")
        if not isinstance(prefix, str) or not prefix or len(prefix) > 40 or not prefix.isprintable():
            if "prefix" in raw:
                where.error("prefix", f"must be 1-40 printable characters, got {prefix!r}")
            return None
        return ModifyCallerIdOp(prefix, out["next"]) if "next" in out else None

    def b_set_language(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        lang = raw.get("language")
        if lang not in LANGUAGES:
            if "language" in raw:
                where.error("language", f"must be one of {', '.join(LANGUAGES)}, got {lang!r}")
            return None
        return SetLanguageOp(lang, out["next"]) if "next" in out else None

    def b_password(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        pin = raw.get("pin")
        tries = self.integer(raw, "tries", 3, where, 1, 9)
        if not isinstance(pin, str) or not _PIN_RE.fullmatch(pin):
            if "pin" in raw:
                where.error("pin", "must be 1-16 digits as text")
            return None
        if len(out) != 2:
            return None
        return PasswordOp(pin, tries, out["ok"], out["fail"])

    def b_hangup(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        status = raw.get("status", 480)
        if isinstance(status, bool) or not isinstance(status, int) or status not in HANGUP_STATUSES:
            where.error("status", f"must be one of {', '.join(map(str, HANGUP_STATUSES))}, got {status!r}")
            return None
        return HangupOp(status, HANGUP_STATUSES[status])

    def b_goto_plan(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        name = self.ref(raw, "plan", self.plans, "dial plan", where)
        if name is None:
            return None
        start = self.plans[name].start
        return None if start is None else GotoPlanOp(name, start)

    def b_dial_by_name(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        tries = self.integer(raw, "tries", 3, where, 1, 9)
        ring_s = self.seconds(raw, "ring_seconds", DEFAULT_RING_S, where)
        return DialByNameOp(tries, ring_s, out["no_match"]) if "no_match" in out else None

    def b_queue(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        name = self.ref(raw, "queue", self.queues, "queue", where)
        if name is None or "exit" not in out:
            return None
        return QueueOp(self.queues[name], out["exit"])

    def b_conference(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        name = self.ref(raw, "room", self.rooms, "conference room", where)
        return None if name is None else ConferenceOp(self.rooms[name])

    def b_receive_fax(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        name = self.ref(raw, "fax_line", self.fax_lines, "fax line", where)
        return None if name is None else ReceiveFaxOp(self.fax_lines[name])

    def b_detect_fax(
        self, info: _PlanInfo, raw: Mapping[str, Any], out: dict[str, int], where: _Where
    ) -> Op | None:
        listen_s = self.seconds(raw, "seconds", DEFAULT_DETECT_FAX_S, where, 1.0, 30.0)
        return DetectFaxOp(out["voice"], out["fax"], listen_s) if len(out) == 2 else None

    # -- numbers --------------------------------------------------------------------------------------

    def route_numbers(self) -> None:
        by_number: dict[str, Any] = {}
        for n in self.inputs.numbers:
            path = f"numbers[{n.e164}]"
            if not isinstance(n.e164, str) or not _E164_RE.fullmatch(n.e164):
                self.error(None, None, path, f"must be an E.164 number (+4930...), got {n.e164!r}")
                continue
            if n.e164 in by_number:
                self.error(None, None, path, f"{n.e164} is listed twice")
                continue
            by_number[n.e164] = n
        for e164 in by_number:
            entry = self.number_entry(e164, by_number)
            if entry is not None:
                self.routes[e164] = entry

    def number_entry(self, e164: str, by_number: Mapping[str, Any]) -> Entry | None:
        via: list[str] = []
        current = by_number[e164]
        while current.route_kind == "number":
            via.append(current.e164)
            nxt = by_number.get(current.route_target)
            if nxt is None:
                self.error(
                    None,
                    None,
                    f"numbers[{current.e164}].route_target",
                    f"no number {current.route_target!r} in the system",
                )
                return None
            if nxt.e164 in via:
                loop_members = via[via.index(nxt.e164) :]
                if nxt.e164 == e164 and e164 == min(loop_members):  # each loop once, at its lowest number
                    loop = " -> ".join([*via, nxt.e164])
                    self.error(None, None, f"numbers[{e164}].route_target", f"number routing loop: {loop}")
                return None
            current = nxt
        entry = self.destination(current.route_kind, current.route_target, f"numbers[{current.e164}]")
        if entry is None:
            return None
        return Entry(entry.kind, entry.name, entry.node, tuple(via))

    def destination(self, kind: str, target: str, path: str) -> Entry | None:
        found: tuple[EntryKind, int | None] | None = None
        if kind == "extension":
            found = ("line", self.line_nodes.get(target))
        elif kind == "dial_plan":
            info = self.plans.get(target)
            found = ("dial_plan", None if info is None else info.start)
        elif kind == "ring_group":
            found = ("ring_group", self.group_nodes.get(target))
        elif kind == "queue":
            found = ("queue", self.queue_nodes.get(target))
        elif kind == "conference_room":
            found = ("conference_room", self.room_nodes.get(target))
        elif kind == "fax_line":
            found = ("fax_line", self.fax_nodes.get(target))
        elif kind == "mailbox":
            name = target
            if target not in self.box_nodes:
                name = next((n for n, num in self.mailboxes.items() if num == target), target)
            found = ("mailbox", self.box_nodes.get(name))
            target = name
        if found is None:
            self.error(
                None,
                None,
                f"{path}.route_kind",
                f"unknown route kind {kind!r} (expected one of: {', '.join(ROUTE_KINDS)})",
            )
            return None
        entry_kind, node = found
        if node is None:
            if not (kind == "dial_plan" and target in self.plans):  # a broken plan has reported already
                what = "line with extension" if kind == "extension" else kind.replace("_", " ")
                self.error(None, None, f"{path}.route_target", f"no {what} {target!r}")
            return None
        return Entry(entry_kind, target, node)

    # -- whole-graph checks ---------------------------------------------------------------------------

    def check_reachability(self) -> None:
        for info in self.plans.values():
            if info.start is None:
                continue
            seen = {info.start}
            stack = [info.start]
            owned = set(info.ids.values())
            while stack:
                for nxt in self.edges[stack.pop()]:
                    if nxt in owned and nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
            for node_id, idx in info.ids.items():
                if idx not in seen:
                    self.warn(info.name, node_id, "", "unreachable from the plan's start node")

    def check_loops(self) -> None:
        """Tarjan's strongly connected components over the nodes that do not wait (iterative)."""
        nodes = self.nodes
        waiting = [n is None or isinstance(n.op, _WAITING_OPS) for n in nodes]
        index: dict[int, int] = {}
        low: dict[int, int] = {}
        on_stack: set[int] = set()
        stack: list[int] = []
        counter = 0
        for root in range(len(nodes)):
            if waiting[root] or root in index:
                continue
            work: list[tuple[int, int]] = [(root, 0)]
            while work:
                v, i = work.pop()
                if i == 0:
                    index[v] = low[v] = counter
                    counter += 1
                    stack.append(v)
                    on_stack.add(v)
                succ = [w for w in self.edges[v] if not waiting[w]]
                if i < len(succ):
                    work.append((v, i + 1))
                    w = succ[i]
                    if w not in index:
                        work.append((w, 0))
                    elif w in on_stack:
                        low[v] = min(low[v], index[w])
                    continue
                for w in succ:
                    if w in on_stack:
                        low[v] = min(low[v], low[w])
                if low[v] == index[v]:
                    component: list[int] = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1 or v in self.edges[v]:
                        self.report_loop(sorted(component))

    def report_loop(self, component: list[int]) -> None:
        named = [n for n in (self.nodes[i] for i in component) if n is not None]
        first = named[0]
        labels = " -> ".join(n.label for n in named)
        if any(isinstance(n.op, GotoPlanOp) for n in named):
            message = f"goto_plan cycle that never waits for the caller: {labels}"
        else:
            message = f"loop that never waits for the caller (add a prompt or a ringing step): {labels}"
        self.error(first.plan, first.id, "next", message)


class _Where:
    """Reports issues at one plan node (or one object path prefix)."""

    __slots__ = ("compiler", "node", "plan", "prefix")

    def __init__(self, compiler: _Compiler, plan: str | None, node: str | None, prefix: str) -> None:
        self.compiler, self.plan, self.node, self.prefix = compiler, plan, node, prefix

    def error(self, field: str, message: str) -> None:
        self.compiler.error(self.plan, self.node, self.prefix + field, message)

    def warn(self, field: str, message: str) -> None:
        self.compiler.warn(self.plan, self.node, self.prefix + field, message)


def json_quote(key: object) -> str:
    """An option key as it appears in a path: ``options["3"]``."""
    return f'"{key}"' if isinstance(key, str) else repr(key)


def _valid_day(month: int, day: int) -> bool:
    days_in = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    return 1 <= day <= days_in[month - 1]


_NODE_BUILDERS: Final = {
    "auto_attendant": _Compiler.b_auto_attendant,
    "schedule": _Compiler.b_schedule,
    "simple_dial": _Compiler.b_simple_dial,
    "line_voicemail": _Compiler.b_line_voicemail,
    "ring_group": _Compiler.b_ring_group,
    "external_number": _Compiler.b_external_number,
    "voicemail": _Compiler.b_voicemail,
    "play_clip": _Compiler.b_play_clip,
    "modify_caller_id": _Compiler.b_modify_caller_id,
    "set_language": _Compiler.b_set_language,
    "password": _Compiler.b_password,
    "hangup": _Compiler.b_hangup,
    "goto_plan": _Compiler.b_goto_plan,
    "dial_by_name": _Compiler.b_dial_by_name,
    "queue": _Compiler.b_queue,
    "conference": _Compiler.b_conference,
    "receive_fax": _Compiler.b_receive_fax,
    "detect_fax": _Compiler.b_detect_fax,
}
