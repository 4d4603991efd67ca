"""The pure dial-plan evaluator: walks one call through a ``CompiledConfig``, one action at a time.

``PlanRun.start(now)`` returns the first action; the call controller (``engine.call``) performs it and
calls ``PlanRun.resume(outcome, now)`` with its outcome, until a terminal action: ``Hangup``,
``LeaveVoicemail`` (the voicemail flow takes over) or ``Done`` (a ring target answered and is bridged, or
the caller hung up). Actions are the media script's (``Answer``, ``Play``, ``Collect``, ``Hangup``, from
``engine.script``) plus the call actions defined here: ``Ring``, ``LeaveVoicemail``, ``Done``.
``Answer`` always comes before the first ``Play``/``Collect``; ringing does not answer the call.

Time is an argument (``now``, tz-aware wall time): schedules read it and sequential/round-robin ring
groups budget their overall ring time with it. The only mutable state outside a run is ``RingState``
(round robin's memory), owned by the engine; everything runs on one event loop, so it needs no lock.

A run is a generator underneath: each node's behaviour reads as straight-line code that yields actions and
receives outcomes. ``run.path`` records the steps taken (``"main/office_hours:open"``,
``"main/menu:1"``, ``"@line/201:voicemail"``) for the call's CDR.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from engine.dialplan.errors import PlanUsageError
from engine.dialplan.linefeatures import find_me_rings
from engine.dialplan.plan import (
    AutoAttendantOp,
    CompiledConfig,
    ConferenceOp,
    ConferenceRoom,
    DetectFaxOp,
    DialByNameOp,
    DirectoryEntry,
    Entry,
    ExternalNumberOp,
    FaxLine,
    GotoPlanOp,
    HangupOp,
    Language,
    LineVoicemailOp,
    ModifyCallerIdOp,
    Node,
    PasswordOp,
    PlayClipOp,
    Queue,
    QueueOp,
    ReceiveFaxOp,
    RingGroup,
    RingGroupOp,
    RingTarget,
    RingTargetKind,
    ScheduleOp,
    SetLanguageOp,
    SimpleDialOp,
    VoicemailOp,
)
from engine.model.features import LineFeatures
from engine.script import (
    Answer,
    Answered,
    Collect,
    Collected,
    File,
    Hangup,
    HungUp,
    MediaAction,
    MediaOutcome,
    Play,
    Played,
    PromptItem,
    Sound,
)

__all__ = [
    "PROMPT_KEYS",
    "Action",
    "CallFacts",
    "ConferenceResult",
    "DetectFax",
    "Done",
    "Enqueue",
    "FaxDetected",
    "FaxResult",
    "JoinConference",
    "LeaveVoicemail",
    "Outcome",
    "PlanRun",
    "QueueResult",
    "ReceiveFax",
    "Ring",
    "RingResult",
    "RingState",
    "RingTarget",
]

MAX_STEPS_WITHOUT_WAIT: Final = 1000
"""Nodes a run may pass without waiting for the caller or for ringing before it gives up with a 500.
The compiler rejects loops that never wait, so reaching this is a bug."""

PASSWORD_FIRST_TIMEOUT_S: Final = 10.0
PASSWORD_INTER_DIGIT_S: Final = 5.0
PASSWORD_MAX_DIGITS: Final = 16
_PIN_ENTRY: Final = Collect(
    max_digits=PASSWORD_MAX_DIGITS,
    terminators="#",
    first_timeout_s=PASSWORD_FIRST_TIMEOUT_S,
    inter_digit_timeout_s=PASSWORD_INTER_DIGIT_S,
)
"""A password or PIN: up to 16 digits ended by ``#``."""
CONFERENCE_PIN_TRIES: Final = 3
"""A caller who enters a wrong conference PIN this many times is told goodbye."""
NAME_FIRST_TIMEOUT_S: Final = 5.0
NAME_INTER_DIGIT_S: Final = 3.0
NAME_CHOICES: Final = 9
"""Dial by name reads out at most this many matches (one key each)."""

PROMPT_KEYS: Final = (
    "invalid-option",
    "goodbye",
    "enter-password",
    "password-wrong",
    "feature-unavailable",
    "dial-by-name-instructions",
    "dial-by-name-for-extension",
    "dial-by-name-press",
    "no-match",
    "conference-enter-pin",
    "conference-wrong-pin",
    "conference-locked",
    "conference-ended",
    *(f"digit-{d}" for d in range(10)),
)
"""Every system prompt key this module plays (recorded in EN and DE by the media module)."""


# -- call actions and outcomes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ring:
    """Ring all ``targets`` in parallel for ``timeout_s``; the first to answer is bridged to the caller.
    Outcome: ``RingResult``."""

    targets: tuple[RingTarget, ...]
    timeout_s: float


@dataclass(frozen=True, slots=True)
class RingResult:
    """``answered``: a target answered (the evaluator ends with ``Done``). ``busy``: every target was
    busy (or rejected the call); neither: nobody answered in time."""

    answered: bool
    busy: bool = False


@dataclass(frozen=True, slots=True)
class LeaveVoicemail:
    """Terminal: hand the caller to the voicemail deposit flow for ``mailbox`` (a line's extension or a
    shared box's number), with the greeting for ``reason``."""

    mailbox: str
    reason: Literal["unavailable", "busy"]


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Wait in ``queue`` (the caller is answered first): the engine plays its welcome and hold music and
    offers the call to its agents. Outcome: ``QueueResult``."""

    queue: Queue


QueueExit = Literal["answered", "timeout", "key", "full", "no_agents"]


@dataclass(frozen=True, slots=True)
class QueueResult:
    """How a caller left a queue: ``answered`` (bridged to an agent: the run ends with ``Done``), or the
    reason it takes the queue's exit: ``timeout`` (maximum wait), ``key`` (the exit key), ``full``
    (maximum callers reached), ``no_agents`` (none available and the queue does not let callers join)."""

    how: QueueExit


@dataclass(frozen=True, slots=True)
class ReceiveFax:
    """Receive a fax for ``fax_line`` on the answered call (the engine runs the fax modem on the call's
    audio and stores what arrives). Outcome: ``FaxResult``."""

    fax_line: FaxLine


@dataclass(frozen=True, slots=True)
class DetectFax:
    """Listen on the answered call for a fax machine's calling tone for ``listen_s`` (the caller hears
    silence). Outcome: ``FaxDetected``."""

    listen_s: float


@dataclass(frozen=True, slots=True)
class FaxDetected:
    """``fax``: the calling tone was heard."""

    fax: bool


@dataclass(frozen=True, slots=True)
class FaxResult:
    """How a reception ended: ``ok`` (the document arrived whole), the ``pages`` that arrived, and the
    T.30 result ``text`` ("OK", "Call dropped prematurely", ...)."""

    ok: bool
    pages: int
    text: str = ""


@dataclass(frozen=True, slots=True)
class JoinConference:
    """Join ``room`` (the caller is answered and passed its PIN): the engine connects the caller's media to
    the room's mixer until they leave. ``host``: entered the host PIN. Outcome: ``ConferenceResult``."""

    room: ConferenceRoom
    host: bool


ConferenceExit = Literal["left", "locked", "ended", "removed"]


@dataclass(frozen=True, slots=True)
class ConferenceResult:
    """How a caller left a room: ``left`` (hung up), ``locked`` (the room was locked: never joined),
    ``ended`` (the last host left a room that ends with its hosts), ``removed`` (ejected by a host or the
    API)."""

    how: ConferenceExit


@dataclass(frozen=True, slots=True)
class Done:
    """Terminal: the call is bridged to whoever answered, or the caller has hung up."""


Action = MediaAction | Ring | Enqueue | ReceiveFax | DetectFax | JoinConference | LeaveVoicemail | Done
Outcome = MediaOutcome | RingResult | QueueResult | FaxResult | FaxDetected | ConferenceResult
_TERMINAL: Final = (Hangup, LeaveVoicemail, Done)
_EXPECTED: Final[Mapping[type, type]] = {
    Answer: Answered,
    Play: Played,
    Collect: Collected,
    Ring: RingResult,
    Enqueue: QueueResult,
    ReceiveFax: FaxResult,
    JoinConference: ConferenceResult,
    DetectFax: FaxDetected,
}


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the plan knows of the call: caller number and name, the number or extension dialled, and the
    caller's own line when an internal phone calls (None from a trunk)."""

    caller: str
    caller_name: str | None
    called: str
    from_line: str | None = None


class RingState:
    """Round robin's memory: the member each ring group rang last, by member key (so a recompiled group
    whose members moved still continues after the right one). Owned by the engine, mutated by runs."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    def last(self, group: str) -> str | None:
        return self._last.get(group)

    def remember(self, group: str, member_key: str) -> None:
        self._last[group] = member_key


_Step = Generator[Action, Outcome | None, int | None]
"""A node handler: yields actions, receives outcomes, returns the next node index (None: it ended)."""


class PlanRun:
    """One call's walk through the plan, from ``entry``.

    Args:
        config: the snapshot the call started with (kept for the whole call).
        entry: where the call enters (``config.route(called)``).
        facts: the call's facts.
        ring_state: the engine's round-robin memory.
        language: the prompt language to start with; None: ``config.default_language``.
        max_steps: the no-wait guard (``MAX_STEPS_WITHOUT_WAIT``).
    """

    def __init__(
        self,
        config: CompiledConfig,
        entry: Entry,
        facts: CallFacts,
        ring_state: RingState,
        *,
        language: Language | None = None,
        max_steps: int = MAX_STEPS_WITHOUT_WAIT,
    ) -> None:
        self._config = config
        self._entry = entry
        self.facts = facts
        self._ring_state = ring_state
        self._language: Language = language or config.default_language
        self._prefix = ""
        self._forwarded = False  # a line's features act once per call (a forward to a forwarding line)
        self._path: list[str] = []
        self._answered = False
        self._max_steps = max_steps
        self._unwaited = 0
        self._now: datetime | None = None
        self._gen: Generator[Action, Outcome | None, None] | None = None
        self._pending: Action | None = None

    # -- public API -----------------------------------------------------------------------------------

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self._path)

    @property
    def language(self) -> Language:
        return self._language

    @property
    def caller_name_prefix(self) -> str:
        return self._prefix

    @property
    def finished(self) -> bool:
        return self._gen is not None and self._pending is None

    def close(self) -> None:
        """End the run early (the call was torn down by the engine): the walk is dropped at once, so a
        run never lingers in a reference cycle for the garbage collector. Idempotent.

        Raises:
            Nothing.
        """
        if self._gen is not None:
            self._gen.close()
        self._pending = None

    def start(self, now: datetime) -> Action:
        """The first action.

        Args:
            now: the current wall time, timezone-aware.
        Returns:
            The action to perform.
        Raises:
            PlanUsageError: the run was already started, or ``now`` is naive.
        """
        if self._gen is not None:
            raise PlanUsageError("PlanRun.start called twice")
        self._set_now(now)
        self._gen = self._walk()
        return self._advance(None)

    def resume(self, outcome: Outcome, now: datetime) -> Action:
        """The next action, given the outcome of the previous one.

        Args:
            outcome: what the previous action gave (``HungUp`` at any time ends the run with ``Done``).
            now: the current wall time, timezone-aware.
        Returns:
            The action to perform.
        Raises:
            PlanUsageError: not started, already finished, a naive ``now``, or an outcome that does not
                answer the pending action (e.g. ``Played`` for a ``Collect``).
        """
        if self._gen is None or self._pending is None:
            raise PlanUsageError("PlanRun.resume before start or after a terminal action")
        self._set_now(now)
        if isinstance(outcome, HungUp):
            self._path.append("caller:hung_up")
            self._gen.close()
            self._pending = None
            return Done()
        expected = _EXPECTED.get(type(self._pending))
        if expected is None or not isinstance(outcome, expected):
            raise PlanUsageError(
                f"outcome {type(outcome).__name__} does not answer {type(self._pending).__name__}"
            )
        return self._advance(outcome)

    # -- driver ---------------------------------------------------------------------------------------

    def _set_now(self, now: datetime) -> None:
        if now.tzinfo is None or now.utcoffset() is None:
            raise PlanUsageError("PlanRun needs a timezone-aware 'now'")
        self._now = now

    def _advance(self, outcome: Outcome | None) -> Action:
        assert self._gen is not None
        try:
            action = self._gen.send(outcome)
        except StopIteration:  # pragma: no cover - every handler ends with a terminal action
            action = Hangup(500, "Server Internal Error")
        if isinstance(action, _TERMINAL):
            self._gen.close()
            self._pending = None
        else:
            self._pending = action
        return action

    def _walk(self) -> Generator[Action, Outcome | None, None]:
        index: int | None = self._entry.node
        nodes = self._config.nodes
        while index is not None:
            self._unwaited += 1
            if self._unwaited > self._max_steps:
                self._path.append("guard:too_many_steps")
                yield Hangup(500, "Server Internal Error")
                return
            node = nodes[index]
            index = yield from _HANDLERS[type(node.op)](self, node)

    def _exit(self, node: Node, output: str, index: int) -> int:
        self._path.append(f"{node.label}:{output}")
        return index

    # -- primitives -----------------------------------------------------------------------------------

    def _answer(self) -> Generator[Action, Outcome | None, None]:
        if not self._answered:
            yield Answer()
            self._answered = True

    def _play(self, items: tuple[PromptItem, ...], barge_in: bool) -> Generator[Action, Outcome | None, None]:
        yield from self._answer()
        yield Play(items, barge_in=barge_in)

    def _collect(self, collect: Collect) -> Generator[Action, Outcome | None, Collected]:
        yield from self._answer()
        outcome = yield collect
        self._unwaited = 0
        assert isinstance(outcome, Collected)  # resume() checked it
        return outcome

    def _ring(
        self, targets: tuple[RingTarget, ...], timeout_s: float
    ) -> Generator[Action, Outcome | None, RingResult]:
        outcome = yield Ring(targets, timeout_s)
        self._unwaited = 0
        assert isinstance(outcome, RingResult)
        return outcome

    def _ring_group(self, group: RingGroup, total_s: float) -> Generator[Action, Outcome | None, bool]:
        """Ring a group by its strategy within ``total_s``; True if a member answered. A member line in
        do-not-disturb is skipped (as Asterisk/FreePBX do)."""
        features = self._config.line_features
        members = tuple(m for m in group.members if not (
            m.target.kind == "line" and (f := features.get(m.target.value)) is not None and f.dnd))
        if not members:
            return False
        if group.strategy == "ring_all":
            result = yield from self._ring(tuple(m.target for m in members), total_s)
            return result.answered
        if group.strategy == "round_robin":
            last = self._ring_state.last(group.name)
            keys = [m.key for m in members]
            start = keys.index(last) + 1 if last in keys else 0
            members = members[start:] + members[:start]
        assert self._now is not None
        started = self._now
        for member in members:
            remaining = total_s - (self._now - started).total_seconds()
            if remaining <= 0:
                break
            if group.strategy == "round_robin":
                self._ring_state.remember(group.name, member.key)
            result = yield from self._ring((member.target,), min(member.ring_s, remaining))
            if result.answered:
                return True
        return False

    def _line_then_voicemail(self, node: Node, extension: str, ring_s: float) -> _Step:
        features = None if self._forwarded else self._config.line_features.get(extension)
        if features is not None:
            self._forwarded = True
            result = yield from self._featured_line(node, extension, ring_s, features)
        else:
            result = yield from self._ring((RingTarget("line", extension),), ring_s)
        if result is None:
            return None
        if result.answered:
            self._path.append(f"{node.label}:answered")
            yield Done()
            return None
        reason: Literal["unavailable", "busy"] = "busy" if result.busy else "unavailable"
        self._path.append(f"{node.label}:voicemail")
        yield LeaveVoicemail(extension, reason)
        return None

    def _featured_line(self, node: Node, extension: str, ring_s: float,
                       features: LineFeatures) -> Generator[Action, Outcome | None, RingResult | None]:
        """Ring a line with DND or forwarding (``engine.model.features``): DND sends the caller to the
        line's voicemail as busy (the busy greeting), or busy (486) without one; forward always rings the
        target instead; forward busy / no answer ring it after the line was busy / rang ``ring_s``
        unanswered; then, unless answered, the find-me/follow-me steps ring in order (each its numbers
        together, for its seconds). Returns how the line's ring went, or the answered step's (None: the
        call was ended here)."""
        if features.dnd:
            self._path.append(f"{node.label}:dnd")
            if features.voicemail:
                return RingResult(answered=False, busy=True)
            yield Hangup(486, "Busy Here")
            return None
        result = yield from self._forwarded_line(node, extension, ring_s, features)
        for i, (targets, step_s) in enumerate(find_me_rings(extension, features.find_me)):
            if result.answered:
                break
            self._path.append(f"{node.label}:find me {i + 1}")
            step = yield from self._ring(targets, step_s)
            result = step if step.answered else result  # voicemail greets by how the line itself fared
        return result

    def _forwarded_line(self, node: Node, extension: str, ring_s: float,
                        features: LineFeatures) -> Generator[Action, Outcome | None, RingResult]:
        if features.forward_always is not None:
            return (yield from self._forward(node, extension, "always", features.forward_always, ring_s))
        result = yield from self._ring((RingTarget("line", extension),), ring_s)
        target = None if result.answered else features.forward_busy if result.busy \
            else features.forward_no_answer
        if target is None:
            return result
        return (yield from self._forward(node, extension, "busy" if result.busy else "no answer", target,
                                         ring_s))

    def _forward(self, node: Node, extension: str, why: str, target: str,
                 ring_s: float) -> Generator[Action, Outcome | None, RingResult]:
        self._path.append(f"{node.label}:forward {why} {target}")
        kind: RingTargetKind = "external" if target.startswith("+") else "line"
        return (yield from self._ring((RingTarget(kind, target, via=extension),), ring_s))

    # -- node handlers --------------------------------------------------------------------------------

    def _auto_attendant(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, AutoAttendantOp)
        failures = 0
        while True:
            yield from self._play((File(op.clip),), barge_in=True)
            kind, digits, target = yield from self._menu_choice(op)
            if kind == "option":
                return self._exit(node, digits, target)
            if kind == "extension":
                return self._exit(node, f"extension {digits}", target)
            failures += 1
            if failures > op.retries:
                return self._exit(node, kind, op.timeout if kind == "timeout" else op.invalid)
            if kind == "invalid":
                yield from self._play((Sound("invalid-option"),), barge_in=False)

    def _menu_choice(self, op: AutoAttendantOp) -> Generator[Action, Outcome | None, tuple[str, str, int]]:
        """Walk the option trie digit by digit: ("option"|"extension"|"invalid"|"timeout", digits, node).

        An option wins as soon as it is complete and no longer option starts with it (so "1" acts at once
        even when extension 101 exists, unless ``wait_for_extensions``); otherwise, while the digits are
        the start of a longer option or dialable extension, wait up to the inter-digit timeout for the next
        digit.
        """
        digits = ""
        config = self._config
        while True:
            first = not digits
            got = yield from self._collect(
                Collect(
                    max_digits=1,
                    first_timeout_s=op.timeout_s if first else op.inter_digit_s,
                    inter_digit_timeout_s=op.inter_digit_s,
                )
            )
            if not got.digits:
                if first:
                    return ("timeout", "", -1)
                return self._complete(op, digits)
            digits += got.digits[:1]
            option = op.options.get(digits)
            more_option = digits in op.option_prefixes
            more_extension = op.dial_extensions and digits in config.extension_prefixes
            if option is not None and not more_option and not (op.wait_for_extensions and more_extension):
                return ("option", digits, option)
            if option is None and not more_option and not more_extension:
                return self._complete(op, digits)
            if len(digits) >= 8:  # pragma: no cover - prefixes are at most 7 long
                return ("invalid", digits, -1)

    def _complete(self, op: AutoAttendantOp, digits: str) -> tuple[str, str, int]:
        option = op.options.get(digits)
        if option is not None:
            return ("option", digits, option)
        if op.dial_extensions:
            entry = self._config.routes.get(digits)
            if entry is not None and not digits.startswith("+") and not self._omitted(entry):
                return ("extension", digits, entry.node)
        return ("invalid", digits, -1)

    def _omitted(self, entry: Entry) -> bool:
        """A room kept out of the directory is not reached by an auto attendant's extension dialling."""
        room = self._config.rooms.get(entry.name) if entry.kind == "conference_room" else None
        return room is not None and room.omit_from_directory

    def _schedule(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, ScheduleOp) and self._now is not None
        if op.schedule.is_open(self._now):
            return self._exit(node, "open", op.open)
        return self._exit(node, "closed", op.closed)
        yield  # pragma: no cover - makes this a generator

    def _simple_dial(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, SimpleDialOp)
        if op.group is not None:
            answered = yield from self._ring_group(op.group, op.ring_s)
        else:
            result = yield from self._ring(op.targets, op.ring_s)
            answered = result.answered
        if answered:
            self._path.append(f"{node.label}:answered")
            yield Done()
            return None
        return self._exit(node, "no_answer", op.no_answer)

    def _line_voicemail_node(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, LineVoicemailOp)
        return (yield from self._line_then_voicemail(node, op.extension, op.ring_s))

    def _ring_group_node(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, RingGroupOp)
        answered = yield from self._ring_group(op.group, op.group.ring_s)
        if answered:
            self._path.append(f"{node.label}:answered")
            yield Done()
            return None
        return self._exit(node, "no_answer", op.no_answer)

    def _external_number(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, ExternalNumberOp)
        result = yield from self._ring((RingTarget("external", op.number),), op.ring_s)
        if result.answered:
            self._path.append(f"{node.label}:answered")
            yield Done()
            return None
        return self._exit(node, "no_answer", op.no_answer)

    def _voicemail(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, VoicemailOp)
        self._path.append(f"{node.label}:voicemail")
        yield LeaveVoicemail(op.mailbox, op.reason)
        return None

    def _play_clip(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, PlayClipOp)
        yield from self._play((File(op.clip),), barge_in=op.barge_in)
        return self._exit(node, "next", op.next)

    def _modify_caller_id(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, ModifyCallerIdOp)
        self._prefix = op.prefix + self._prefix
        return self._exit(node, "next", op.next)
        yield  # pragma: no cover - makes this a generator

    def _set_language(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, SetLanguageOp)
        self._language = op.language
        return self._exit(node, "next", op.next)
        yield  # pragma: no cover - makes this a generator

    def _password(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, PasswordOp)
        pin = op.pin.encode()
        for attempt in range(op.tries):
            yield from self._play((Sound("enter-password"),), barge_in=True)
            got = yield from self._collect(_PIN_ENTRY)
            if hmac.compare_digest(got.digits.encode(), pin):
                return self._exit(node, "ok", op.ok)
            if attempt + 1 < op.tries:
                yield from self._play((Sound("password-wrong"),), barge_in=False)
        return self._exit(node, "fail", op.fail)

    def _hangup(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, HangupOp)
        if self._answered:
            yield Play((Sound("goodbye"),), barge_in=False)
        self._path.append(f"{node.label}:hangup")
        yield Hangup(op.status, op.reason)
        return None

    def _goto_plan(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, GotoPlanOp)
        return self._exit(node, op.plan, op.target)
        yield  # pragma: no cover - makes this a generator

    def _dial_by_name(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, DialByNameOp)
        for attempt in range(op.tries):
            yield from self._play((Sound("dial-by-name-instructions"),), barge_in=True)
            got = yield from self._collect(
                Collect(
                    max_digits=3,
                    first_timeout_s=NAME_FIRST_TIMEOUT_S,
                    inter_digit_timeout_s=NAME_INTER_DIGIT_S,
                )
            )
            matches = self._config.directory.get(got.digits, ()) if got.digits else ()
            chosen: DirectoryEntry | None = None
            if len(matches) == 1:
                chosen = matches[0]
            elif matches:
                shown = matches[:NAME_CHOICES]
                yield from self._play(_choices(shown), barge_in=True)
                pick = yield from self._collect(
                    Collect(
                        max_digits=1,
                        first_timeout_s=NAME_FIRST_TIMEOUT_S,
                        inter_digit_timeout_s=NAME_INTER_DIGIT_S,
                    )
                )
                if pick.digits.isdigit() and 1 <= int(pick.digits) <= len(shown):
                    chosen = shown[int(pick.digits) - 1]
                elif attempt + 1 < op.tries:
                    yield from self._play((Sound("invalid-option"),), barge_in=False)
                    continue
            if chosen is not None:
                self._path.append(f"{node.label}:{chosen.extension}")
                return (yield from self._line_then_voicemail(node, chosen.extension, op.ring_s))
            if not matches and attempt + 1 < op.tries:
                yield from self._play((Sound("no-match"),), barge_in=False)
        return self._exit(node, "no_match", op.no_match)

    def _queue(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, QueueOp)
        yield from self._answer()
        outcome = yield Enqueue(op.queue)
        self._unwaited = 0
        assert isinstance(outcome, QueueResult)
        if outcome.how == "answered":
            self._path.append(f"{node.label}:answered")
            yield Done()
            return None
        return self._exit(node, f"exit {outcome.how}", op.exit)

    def _conference(self, node: Node) -> _Step:
        """The PIN (when the room has one: three tries, then goodbye), then the room until the caller
        leaves it; a locked or ended room is announced before the hang-up."""
        op = node.op
        assert isinstance(op, ConferenceOp)
        room = op.room
        host = False
        yield from self._answer()
        if room.has_pin:
            for attempt in range(CONFERENCE_PIN_TRIES):
                yield from self._play((Sound("conference-enter-pin"),), barge_in=True)
                got = yield from self._collect(_PIN_ENTRY)
                entered = got.digits.encode()
                if room.host_pin is not None and hmac.compare_digest(entered, room.host_pin.encode()):
                    host = True
                    break
                wanted = (room.participant_pin or "").encode()
                if hmac.compare_digest(entered, wanted):
                    break
                if attempt + 1 < CONFERENCE_PIN_TRIES:
                    yield from self._play((Sound("conference-wrong-pin"),), barge_in=False)
            else:
                self._path.append(f"{node.label}:wrong pin")
                yield Play((Sound("conference-wrong-pin"), Sound("goodbye")), barge_in=False)
                yield Hangup(403, "Forbidden")
                return None
        outcome = yield JoinConference(room, host)
        self._unwaited = 0
        assert isinstance(outcome, ConferenceResult)
        self._path.append(f"{node.label}:{'host ' if host else ''}{outcome.how}")
        if outcome.how in ("locked", "ended"):
            yield Play((Sound(f"conference-{outcome.how}"), Sound("goodbye")), barge_in=False)
            yield Hangup(200, "OK")
            return None
        if outcome.how == "removed":
            yield Hangup(200, "OK")
            return None
        yield Done()
        return None

    def _receive_fax(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, ReceiveFaxOp)
        yield from self._answer()
        outcome = yield ReceiveFax(op.fax_line)
        self._unwaited = 0
        assert isinstance(outcome, FaxResult)
        how = "received" if outcome.ok else "failed"
        self._path.append(f"{node.label}:{how} {outcome.pages} pages")
        yield Hangup(200, "OK")
        return None

    def _detect_fax(self, node: Node) -> _Step:
        op = node.op
        assert isinstance(op, DetectFaxOp)
        yield from self._answer()
        outcome = yield DetectFax(op.listen_s)
        self._unwaited = 0
        assert isinstance(outcome, FaxDetected)
        return self._exit(node, "fax", op.fax) if outcome.fax else self._exit(node, "voice", op.voice)


def _choices(entries: tuple[DirectoryEntry, ...]) -> tuple[PromptItem, ...]:
    """ "For extension 2 0 2 press 1, for extension 2 0 5 press 2, ..." (names are not recorded yet)."""
    items: list[PromptItem] = []
    for i, entry in enumerate(entries, start=1):
        items.append(Sound("dial-by-name-for-extension"))
        items.extend(Sound(f"digit-{d}") for d in entry.extension)
        items.append(Sound("dial-by-name-press"))
        items.append(Sound(f"digit-{i}"))
    return tuple(items)


_HANDLERS: Final[Mapping[type, Callable[[PlanRun, Node], _Step]]] = {
    AutoAttendantOp: PlanRun._auto_attendant,
    ScheduleOp: PlanRun._schedule,
    SimpleDialOp: PlanRun._simple_dial,
    LineVoicemailOp: PlanRun._line_voicemail_node,
    RingGroupOp: PlanRun._ring_group_node,
    ExternalNumberOp: PlanRun._external_number,
    VoicemailOp: PlanRun._voicemail,
    PlayClipOp: PlanRun._play_clip,
    ModifyCallerIdOp: PlanRun._modify_caller_id,
    SetLanguageOp: PlanRun._set_language,
    PasswordOp: PlanRun._password,
    HangupOp: PlanRun._hangup,
    GotoPlanOp: PlanRun._goto_plan,
    DialByNameOp: PlanRun._dial_by_name,
    QueueOp: PlanRun._queue,
    ConferenceOp: PlanRun._conference,
    ReceiveFaxOp: PlanRun._receive_fax,
    DetectFaxOp: PlanRun._detect_fax,
}
"""Node handlers by op type, unbound: bound methods kept on the run would make every run a reference cycle."""
