"""A line's phone features: do-not-disturb, call forwarding and find-me/follow-me (issue 19 part 5), as
kept in its options.

The line's ``options`` (JSON in the store, ``PATCH /api/lines/{id}``) hold ``do_not_disturb: true|false``
and ``forward: {always?, busy?, no_answer?}``, each a target: a line's extension or an external number in
E.164. Star codes change the same options (``engine.call.features``), so the API and the phone see one
state, and it survives a restart. ``LineFeatures`` is what the dial plan reads (``engine.dialplan``
compiles it into the configuration snapshot): a change bumps the configuration version like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from engine.model import rules
from engine.model.errors import ModelError

FORWARD_KINDS: Final = ("always", "busy", "no_answer")
"""always: every call goes to the target instead; busy: when the line is busy; no_answer: after the line
rang for its ring time unanswered."""
OPTION_KEYS: Final = frozenset({"do_not_disturb", "forward", "hot_desk"})


@dataclass(frozen=True, slots=True)
class FindMeStep:
    """One step of a line's find-me/follow-me: ring ``numbers`` (extensions or E.164) together for
    ``ring_s`` seconds."""

    numbers: tuple[str, ...]
    ring_s: float


@dataclass(frozen=True, slots=True)
class LineFeatures:
    """What a line's calls do besides ringing it. ``voicemail``: whether the line has a mailbox (DND sends
    callers there; without one they get busy)."""

    dnd: bool = False
    forward_always: str | None = None
    forward_busy: str | None = None
    forward_no_answer: str | None = None
    voicemail: bool = True
    #: find-me/follow-me (``options.find_me_follow_me``): rung in order after the line, before voicemail
    find_me: tuple[FindMeStep, ...] = ()
    #: a shared desk phone's hot-desk login (``options.hot_desk: {line, until}``, set by the star code):
    #: the user's line extension and the wall time it ends; the phone rings and dials as that line
    hot_desk: tuple[str, float] | None = None

    def hot_desk_line(self, wall: float) -> str | None:
        """The line this desk phone acts as at wall time ``wall`` (None: itself)."""
        if self.hot_desk is None or wall >= self.hot_desk[1]:
            return None
        return self.hot_desk[0]

    @property
    def active(self) -> bool:
        forwards = (self.forward_always, self.forward_busy, self.forward_no_answer)
        return self.dnd or bool(self.find_me) or self.hot_desk is not None \
            or any(t is not None for t in forwards)


def check_target(value: object, field: str) -> str:
    """A forward target: an extension (3-6 digits) or an E.164 number.

    Raises:
        ModelError: neither (``field`` named).
    """
    if isinstance(value, str) and value.startswith("+"):
        return rules.check_e164(value, field)
    return rules.check_extension(value, field)


def check_options(value: Mapping[str, Any]) -> dict[str, Any]:
    """The feature keys of a line's options (``do_not_disturb``, ``forward``) checked; the others are
    left to the caller.

    Raises:
        ModelError: naming the option (``options.forward.busy``).
    """
    out: dict[str, Any] = {}
    if "do_not_disturb" in value:
        out["do_not_disturb"] = rules.check_flag(value["do_not_disturb"], "options.do_not_disturb")
    forward = value.get("forward")
    if forward is not None:
        if not isinstance(forward, Mapping):
            raise ModelError("options.forward", "must be a mapping {always?, busy?, no_answer?}")
        unknown = sorted(set(forward) - set(FORWARD_KINDS))
        if unknown:
            raise ModelError(f"options.forward.{unknown[0]}", "unknown kind (always, busy or no_answer)")
        out["forward"] = {kind: check_target(target, f"options.forward.{kind}")
                          for kind, target in sorted(forward.items()) if target is not None}
    desk = value.get("hot_desk")
    if desk is not None:
        if not isinstance(desk, Mapping) or set(desk) != {"line", "until"}:
            raise ModelError("options.hot_desk", "must be {line, until} (set by the hot-desk star code)")
        rules.check_extension(desk["line"], "options.hot_desk.line")
        if _hot_desk(desk) is None:
            raise ModelError("options.hot_desk.until", "must be a wall time in seconds")
        out["hot_desk"] = {"line": desk["line"], "until": float(desk["until"])}
    return out


def features_of(options: Mapping[str, Any]) -> LineFeatures:
    """The features a line's stored (checked) options give it."""
    forward = options.get("forward") or {}
    voicemail = options.get("voicemail") or {}
    return LineFeatures(
        dnd=bool(options.get("do_not_disturb", False)),
        forward_always=forward.get("always"),
        forward_busy=forward.get("busy"),
        forward_no_answer=forward.get("no_answer"),
        voicemail=voicemail.get("enabled", True) is not False,
        hot_desk=_hot_desk(options.get("hot_desk")),
        find_me=tuple(FindMeStep(tuple(step["numbers"]), float(step.get("ring_seconds", 20)))
                      for step in options.get("find_me_follow_me") or ()),
    )


def _hot_desk(value: object) -> tuple[str, float] | None:
    if not isinstance(value, Mapping):
        return None
    line, until = value.get("line"), value.get("until")
    if not isinstance(line, str) or not isinstance(until, int | float) or isinstance(until, bool):
        return None
    return line, float(until)


def with_hot_desk(options: Mapping[str, Any], line: str | None, until: float = 0.0) -> dict[str, Any]:
    """``options`` of a desk phone's line with its hot-desk login set to ``line`` until wall time
    ``until`` (None: logged out)."""
    out = dict(options)
    if line is None:
        out.pop("hot_desk", None)
    else:
        out["hot_desk"] = {"line": line, "until": until}
    return out


def with_forward(options: Mapping[str, Any], kind: str, target: str | None) -> dict[str, Any]:
    """``options`` with forward ``kind`` set to ``target`` (None: removed)."""
    out = dict(options)
    forward = dict(out.get("forward") or {})
    if target is None:
        forward.pop(kind, None)
    else:
        forward[kind] = target
    if forward:
        out["forward"] = forward
    else:
        out.pop("forward", None)
    return out
