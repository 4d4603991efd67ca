"""The compiled configuration: immutable routing table and node table that calls walk.

``compile_config`` (``engine.dialplan.compiler``) builds one ``CompiledConfig`` from the admin inputs. It is
made of frozen dataclasses, tuples, frozensets and ``MappingProxyType`` views over dicts nobody else holds:
a call keeps the snapshot it started with, and a recompile builds a new one (nothing is ever patched).

Every node of every plan sits in one table, ``CompiledConfig.nodes``; outputs are resolved to indexes into
it, so walking a plan never looks up a name. Destinations that are not dial plans (a line, a ring group, a
shared mailbox, a queue...) get *synthetic* nodes in the same table (plan ``@line``, ``@ring_group``, ...),
so routing a number or an extension always yields an ``Entry`` pointing at a node: ``route()`` is one dict
lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from engine.dialplan.schedule import Schedule
from engine.dialplan.starcodes import DEFAULT_TABLE, StarCodeTable
from engine.model.entities import Company
from engine.model.features import LineFeatures

DEFAULT_RING_S: Final = 20.0
"""Ring time of a line (Line & Voicemail, Simple Dial, dial by name) when the node does not say."""
DEFAULT_GROUP_RING_S: Final = 60.0
DEFAULT_MEMBER_RING_S: Final = 20.0
DEFAULT_EXTERNAL_RING_S: Final = 60.0

RingTargetKind = Literal["line", "external"]
Strategy = Literal["ring_all", "sequential", "round_robin"]
QueueStrategy = Literal["ring_all", "round_robin", "least_recent", "fewest_calls", "linear", "random"]
QUEUE_STRATEGIES: Final = ("ring_all", "round_robin", "least_recent", "fewest_calls", "linear", "random")
DEFAULT_AGENT_RING_S: Final = 15.0
MAX_QUEUE_CALLERS: Final = 1000
DEFAULT_ANNOUNCE_EVERY_S: Final = 60.0
"""How often a queue's waiting callers hear its announcements (when it has any)."""
DEFAULT_SERVICE_LEVEL_S: Final = 20.0
"""A queue call answered within this many seconds counts as within the service level (the common 80/20)."""
Language = Literal["en", "de"]
LANGUAGES: Final = ("en", "de")


@dataclass(frozen=True, slots=True)
class RingTarget:
    """What to ring: a line by extension, or an external number in E.164. ``via``: the line whose call
    forwarding rings it (its external caller ID rules then apply to an internal caller)."""

    kind: RingTargetKind
    value: str
    via: str | None = None


@dataclass(frozen=True, slots=True)
class Member:
    target: RingTarget
    ring_s: float

    @property
    def key(self) -> str:
        """Stable identity across recompiles (round robin remembers members by it, not by position)."""
        return f"{self.target.kind}:{self.target.value}"


@dataclass(frozen=True, slots=True)
class RingGroup:
    """``ring_s`` bounds the whole group (all passes); ``Member.ring_s`` one member's turn in
    sequential and round-robin strategies."""

    name: str
    strategy: Strategy
    members: tuple[Member, ...]
    ring_s: float


@dataclass(frozen=True, slots=True)
class Queue:
    """A call queue (ACD): callers wait on hold music and are offered, first come first served, to the
    ``agents`` (line extensions, static members) by ``strategy``.

    ``agent_ring_s``: how long one offer rings an agent; ``wrap_up_s``: the pause an agent gets after a
    queue call before the next offer; ``skip_busy``: agents already on a call (queue or not) are not
    offered calls; ``max_callers``: more waiting callers than this take the exit at once (0: no limit);
    ``max_wait_s``: a caller waiting this long takes the exit (None: no limit); ``join_empty``: a caller
    may join while no agent is available (False: the exit at once); ``exit_key``: a DTMF key that takes
    the exit; ``welcome_clip``/``hold_clip``: sound clip files (None: no welcome; the system hold music).
    The queue's own exit destination is a node of the plan that uses the queue (``QueueOp.exit``).
    ``dynamic``: the agents who are logged out until they log in from their phone (the others are logged
    in until they log out; ``engine.call.queue`` keeps who is).
    ``announce_position``/``announce_wait``: a waiting caller hears its place in line and the estimated
    wait when it joins and every ``announce_every_s``, after ``announce_clip`` (a periodic announcement
    of its own, e.g. "all our agents are busy"; played on the same beat).
    ``service_level_s``: the answer time the queue's report counts as within its service level.
    """

    name: str
    agents: tuple[str, ...]
    strategy: QueueStrategy = "ring_all"
    agent_ring_s: float = DEFAULT_AGENT_RING_S
    wrap_up_s: float = 0.0
    skip_busy: bool = True
    max_callers: int = 0
    max_wait_s: float | None = None
    join_empty: bool = True
    exit_key: str | None = None
    welcome_clip: str | None = None
    hold_clip: str | None = None
    dynamic: frozenset[str] = frozenset()
    announce_position: bool = False
    announce_wait: bool = False
    announce_every_s: float = DEFAULT_ANNOUNCE_EVERY_S
    announce_clip: str | None = None
    service_level_s: float = DEFAULT_SERVICE_LEVEL_S

    @property
    def announces(self) -> bool:
        """Whether a waiting caller hears anything besides the hold music (position, wait or a clip)."""
        return self.announce_position or self.announce_wait or self.announce_clip is not None


PIN_DIGITS: Final = (4, 10)
"""A conference room's PINs are 4-10 digits."""


@dataclass(frozen=True, slots=True)
class ConferenceRoom:
    """A conference bridge (issue 13): callers who reach it are mixed together (``engine.media.mixer``).

    ``participant_pin``/``host_pin``: asked for on entry when either is set (4-10 digits); the host PIN makes
    the caller a host; with only a host PIN, an empty entry joins as a participant. ``waiting_room``: nobody
    is connected until a host is there (the others hear hold music). ``enter_muted``: participants (not
    hosts) join muted. ``end_with_last_host``: the conference ends for everyone when the last host leaves.
    ``announce_participants``: each records their name on entry, announced on join and leave (stored now;
    announcing comes later). ``omit_from_directory``: an auto attendant's extension dialling does not reach
    the room (its own extension and numbers routed to it still do).
    """

    name: str
    participant_pin: str | None = None
    host_pin: str | None = None
    waiting_room: bool = False
    enter_muted: bool = False
    end_with_last_host: bool = False
    announce_participants: bool = False
    omit_from_directory: bool = False

    @property
    def has_pin(self) -> bool:
        return self.participant_pin is not None or self.host_pin is not None


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """A user with a line, for dial by name; ``key`` is the keypad digits of the last name's first
    three letters (``"724"`` for Schmidt)."""

    last_name: str
    first_name: str
    extension: str
    key: str


# -- node operations (one per node type), outputs resolved to node indexes ----------------------------


@dataclass(frozen=True, slots=True)
class AutoAttendantOp:
    """``options`` maps a digit string to a node; ``option_prefixes`` holds every proper prefix of an
    option (pressing one waits for more digits). ``dial_extensions`` lets the caller dial any extension
    (``CompiledConfig.extension_prefixes`` says when to wait); an option wins over an extension at
    once, unless ``wait_for_extensions``: then an option that begins an extension waits for more digits."""

    clip: str
    options: Mapping[str, int]
    option_prefixes: frozenset[str]
    dial_extensions: bool
    wait_for_extensions: bool
    retries: int
    timeout_s: float
    inter_digit_s: float
    timeout: int
    invalid: int


@dataclass(frozen=True, slots=True)
class ScheduleOp:
    schedule: Schedule
    open: int
    closed: int


@dataclass(frozen=True, slots=True)
class SimpleDialOp:
    """Ring a line (``targets``) or a ring group (``group``) for ``ring_s``, then ``no_answer``."""

    targets: tuple[RingTarget, ...]
    group: RingGroup | None
    ring_s: float
    no_answer: int


@dataclass(frozen=True, slots=True)
class LineVoicemailOp:
    extension: str
    ring_s: float


@dataclass(frozen=True, slots=True)
class RingGroupOp:
    group: RingGroup
    no_answer: int


@dataclass(frozen=True, slots=True)
class ExternalNumberOp:
    number: str
    ring_s: float
    no_answer: int


@dataclass(frozen=True, slots=True)
class VoicemailOp:
    """``mailbox`` is a line's extension (personal box) or a shared box's number."""

    mailbox: str
    reason: Literal["unavailable", "busy"]


@dataclass(frozen=True, slots=True)
class PlayClipOp:
    clip: str
    barge_in: bool
    next: int


@dataclass(frozen=True, slots=True)
class ModifyCallerIdOp:
    prefix: str
    next: int


@dataclass(frozen=True, slots=True)
class SetLanguageOp:
    language: Language
    next: int


@dataclass(frozen=True, slots=True)
class PasswordOp:
    """PINs are kept as plain digits in the node config (compared in constant time)."""

    pin: str
    tries: int
    ok: int
    fail: int


@dataclass(frozen=True, slots=True)
class HangupOp:
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class GotoPlanOp:
    plan: str
    target: int


@dataclass(frozen=True, slots=True)
class DialByNameOp:
    tries: int
    ring_s: float
    no_match: int


@dataclass(frozen=True, slots=True)
class QueueOp:
    """Wait in ``queue`` until an agent answers (the call is bridged), else take ``exit`` (maximum wait,
    the exit key, a full queue, or no agent when the queue does not let callers join then)."""

    queue: Queue
    exit: int


@dataclass(frozen=True, slots=True)
class ConferenceOp:
    """Join ``room`` (after its PIN, when it has one); the caller stays until they leave or are removed."""

    room: ConferenceRoom


@dataclass(frozen=True, slots=True)
class FaxLine:
    """A virtual fax line: the engine answers its calls and receives the fax.

    ``station_id`` is the CSI the sender's machine shows (20 characters at most), ``header`` the page
    header of faxes sent from it, ``email`` the addresses each received fax is mailed to (PDF attached).
    """

    name: str
    station_id: str = ""
    header: str = ""
    email: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceiveFaxOp:
    """Answer and receive a fax for ``fax_line``; the flow ends there (the call ends with the fax)."""

    fax_line: FaxLine


@dataclass(frozen=True, slots=True)
class DetectFaxOp:
    """Answer and listen for a fax machine's calling tone (CNG) for ``listen_s``: a fax takes ``fax``,
    anyone else ``voice`` (having heard silence meanwhile)."""

    voice: int
    fax: int
    listen_s: float = 4.0


Op = (
    AutoAttendantOp
    | ScheduleOp
    | SimpleDialOp
    | LineVoicemailOp
    | RingGroupOp
    | ExternalNumberOp
    | VoicemailOp
    | PlayClipOp
    | ModifyCallerIdOp
    | SetLanguageOp
    | PasswordOp
    | HangupOp
    | GotoPlanOp
    | DialByNameOp
    | QueueOp
    | ConferenceOp
    | ReceiveFaxOp
    | DetectFaxOp
)


@dataclass(frozen=True, slots=True)
class Node:
    """One node: ``plan``/``id`` name it (synthetic nodes: plan ``@line``, ``@ring_group``, ...)."""

    plan: str
    id: str
    op: Op

    @property
    def label(self) -> str:
        return f"{self.plan}/{self.id}"


EntryKind = Literal["line", "dial_plan", "ring_group", "queue", "conference_room", "fax_line", "mailbox"]


@dataclass(frozen=True, slots=True)
class Entry:
    """Where a dialled number or extension enters the node table.

    ``kind``/``name`` name the destination (a line's extension, a plan's or group's name, a mailbox's
    number); ``via`` lists the numbers followed to get there (number -> number routes), outermost first.
    """

    kind: EntryKind
    name: str
    node: int
    via: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledConfig:
    """An immutable snapshot of everything calls are routed by.

    ``routes`` maps every E.164 DID and every extension (lines, ring groups, plans, queues, rooms, fax
    lines, shared mailboxes) to its ``Entry``; ``extension_prefixes`` holds every proper prefix of an
    extension (the auto attendant waits for more digits on one); ``directory`` maps a three-digit keypad
    key to the users whose last name starts with those letters.
    """

    company: Company
    nodes: tuple[Node, ...]
    routes: Mapping[str, Entry]
    plans: Mapping[str, int]
    ring_groups: Mapping[str, RingGroup]
    queues: Mapping[str, Queue]
    rooms: Mapping[str, ConferenceRoom]
    schedules: Mapping[str, Schedule]
    extension_prefixes: frozenset[str]
    directory: Mapping[str, tuple[DirectoryEntry, ...]]
    default_language: Language
    #: the company's hold clip (a sound clip file; None: the system music): a phone's hold, and the hold
    #: music of every queue without a clip of its own (the compiler fills those in)
    hold_clip: str | None = None
    #: the company's star codes (``engine.dialplan.starcodes``), checked against every extension
    star_codes: StarCodeTable = DEFAULT_TABLE
    #: extension -> the line's DND and forwarding (only lines with any; forward targets checked)
    line_features: Mapping[str, LineFeatures] = field(default_factory=lambda: MappingProxyType({}))

    def route(self, number_or_extension: str) -> Entry | None:
        """The entry for an E.164 number (``+4930...``) or an extension, or None if nothing has it.

        Raises:
            Nothing: an unknown number is None (the caller answers 404).
        """
        return self.routes.get(number_or_extension)

    def is_extension(self, digits: str) -> bool:
        return not digits.startswith("+") and digits in self.routes
