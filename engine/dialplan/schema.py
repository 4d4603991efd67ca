"""The input format of the dial-plan compiler: what an admin API POSTs and the store keeps as JSON.

``ConfigInputs`` bundles the model values (company, users, lines, numbers, dial plans) with the routing
objects, which arrive as raw JSON-able mappings grouped by kind. This module only describes the shapes
(the tables below are what the compiler checks against); ``engine.dialplan.compiler`` validates them.

Routing objects (``ConfigInputs.objects``; every object has a unique ``name``)::

    ring_groups:      {name, extension?, strategy: ring_all | sequential | round_robin,
                       members: [{line: "202"} | {number: "+4930..."}, with optional ring_seconds],
                       member_ring_seconds?: 20, ring_seconds?: 60}
    schedules:        {name, timezone?: IANA (default the company's),
                       open: [{days: [mon..sun], from: "08:00", to: "18:00"}],
                             ("to" <= "from" crosses midnight; "to" may be "24:00")
                       override?: none | open | closed,
                       holidays?: [{name?, from: "2026-12-24", to?: "2026-12-26", from_time?, to_time?}],
                       recurring_holidays?: [{name?, month, day}],
                       holiday_calendar?: {country: "DE", subdivision?: "BE"}}
    sound_clips:      {name, file}          file: the stored 8 kHz WAV's absolute path
    mailboxes:        {name, number, ...}   shared boxes; other keys belong to the voicemail module
    queues:           {name, extension?, agents: [{line: "202", dynamic?: false}],
                       strategy?: ring_all | round_robin | least_recent | fewest_calls | linear | random,
                       agent_ring_seconds?: 15,
                       wrap_up_seconds?: 0, skip_busy_agents?: true, max_callers?: 0 (no limit),
                       max_wait_seconds?: null (no limit), when_no_agents?: join | leave, exit_key?: "0",
                       exit?: {kind: extension | dial_plan | ring_group | queue | mailbox | voicemail |
                       number, target}, welcome_clip?: CLIP, hold_clip?: CLIP,
                       announce_position?: false, announce_wait?: false, announce_clip?: CLIP,
                       announce_every_seconds?: 60, service_level_seconds?: 20}
    conference_rooms: {name, extension, participant_pin?: "1234", host_pin?: "98765" (4-10 digits),
                       waiting_room?, enter_muted?, end_with_last_host?, announce_participants?,
                       omit_from_directory? (true/false, default false); see engine.dialplan.room}
    fax_lines:        {name, extension?}

Dial-plan graph (``DialPlan.graph``)::

    {start: NODE_ID, extension?: "500", nodes: {NODE_ID: {type: TYPE, label?: TEXT, <fields>,
                                                          next: {OUTPUT: NODE_ID, ...}}}}

Every output of a node must be connected (``next``); ``NODE_TYPES`` lists each type's fields and outputs.
The auto attendant's digit options are their own field, ``options: {"1": NODE_ID, "*": NODE_ID, "12": ...}``.
With ``allow_extension_dialling`` the caller may also dial any extension; an option wins over an extension
it equals or begins, at once, unless ``wait_for_extensions`` is set: then after such an option the menu
waits ``inter_digit_seconds`` for more digits, so "2" picks option 2 after the pause and "202" rings 202.

Numbers route by ``PhoneNumber.route_kind`` / ``route_target``: ``extension`` (a line's extension),
``dial_plan``, ``ring_group``, ``queue``, ``conference_room``, ``fax_line`` (by name), ``mailbox`` (a shared
box by name or number) or ``number`` (another of the company's numbers, followed; loops are errors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from engine.dialplan.plan import Language
from engine.model.entities import Company, DialPlan, Line, PhoneNumber, User
from engine.model.features import LineFeatures


@dataclass(frozen=True, slots=True)
class ConfigInputs:
    """Everything the compiler reads. ``default_language`` (``en``/``de``) is the prompt language of a
    call before any Set Language node; None derives it from the company's country (DE, AT, CH, LI, LU:
    ``de``, else ``en``)."""

    company: Company
    users: Sequence[User]
    lines: Sequence[Line]
    numbers: Sequence[PhoneNumber]
    dial_plans: Sequence[DialPlan]
    objects: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    default_language: Language | None = None
    #: extension -> the line's DND and forwarding (``engine.model.features``), for lines that have any
    line_features: Mapping[str, LineFeatures] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A node type: ``required``/``optional`` fields (besides ``type``, ``label``, ``next``) and the
    outputs that must all be connected."""

    required: frozenset[str]
    optional: frozenset[str]
    outputs: tuple[str, ...]


def _spec(required: str = "", optional: str = "", outputs: str = "") -> NodeSpec:
    return NodeSpec(frozenset(required.split()), frozenset(optional.split()), tuple(outputs.split()))


NODE_TYPES: Final[Mapping[str, NodeSpec]] = {
    "auto_attendant": _spec(
        "clip",
        "options allow_extension_dialling wait_for_extensions retries timeout_seconds inter_digit_seconds",
        "timeout invalid",
    ),
    "schedule": _spec("schedule", "", "open closed"),
    "simple_dial": _spec("", "line ring_group ring_seconds", "no_answer"),
    "line_voicemail": _spec("line", "ring_seconds"),
    "ring_group": _spec("ring_group", "", "no_answer"),
    "external_number": _spec("number", "ring_seconds", "no_answer"),
    "voicemail": _spec("mailbox", "reason"),
    "play_clip": _spec("clip", "barge_in", "next"),
    "modify_caller_id": _spec("prefix", "", "next"),
    "set_language": _spec("language", "", "next"),
    "password": _spec("pin", "tries", "ok fail"),
    "hangup": _spec("", "status"),
    "goto_plan": _spec("plan"),
    "dial_by_name": _spec("", "tries ring_seconds", "no_match"),
    "queue": _spec("queue", "", "exit"),
    "conference": _spec("room"),
    "receive_fax": _spec("fax_line"),
    "detect_fax": _spec("", "seconds", "voice fax"),
}
"""Node types by their ``type`` value."""

COMMON_NODE_KEYS: Final = frozenset({"type", "label", "next"})
GRAPH_KEYS: Final = frozenset({"start", "extension", "nodes"})

OBJECT_KINDS: Final = (
    "ring_groups",
    "schedules",
    "sound_clips",
    "mailboxes",
    "queues",
    "conference_rooms",
    "fax_lines",
)

ROUTE_KINDS: Final = (
    "extension",
    "dial_plan",
    "ring_group",
    "queue",
    "conference_room",
    "fax_line",
    "mailbox",
    "number",
)

HANGUP_STATUSES: Final[Mapping[int, str]] = {
    404: "Not Found",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    503: "Service Unavailable",
    603: "Decline",
}
"""Final responses a Hangup node may give a caller it has not answered (after an answer it is a BYE)."""
