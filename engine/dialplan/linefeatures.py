"""Where a line's calls may be forwarded: one rule for the compiler, the star codes and the API's state
(and for the numbers of its find-me/follow-me, ``find_me_rings``).

A forward goes to another line (by extension) or to an external number the forwarding line may dial
itself (its dialling permissions; emergency numbers are no forward target). ``forward_target`` reads what
a phone dialled after a forward code (``*72`` + ``202`` or + ``030 1234567``) by that rule;
``check_line_features`` holds the stored features to it when the configuration compiles (permissions may
have changed since): a target the rule refuses is dropped with a warning naming
``lines[EXT].options.forward.KIND``, so the line rings as if it had no such forward. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Literal

from engine.dialplan.plan import RingTarget, RingTargetKind
from engine.model.entities import Company, Line
from engine.model.features import FindMeStep, LineFeatures
from engine.model.numbering import DialClass, classify_dialled, permitted

Refusal = Literal["invalid", "not_allowed"]


def forward_target(digits: str, line: Line, lines: Mapping[str, Line], company: Company) -> str | Refusal:
    """The forward target ``digits`` name for ``line``: a line's extension, an E.164 number, or why not
    (``invalid``: no line and no number; ``not_allowed``: the line itself, an emergency number, or a
    number beyond the line's dialling permissions).

    Raises:
        Nothing.
    """
    if digits in lines:
        return "not_allowed" if digits == line.extension else digits
    dialled = classify_dialled(digits, company.country, company.area_code)
    if dialled is None or dialled.dial_class is DialClass.INTERNAL:
        return "invalid"
    if dialled.dial_class is DialClass.EMERGENCY or not permitted(dialled.dial_class, line.dial_permissions):
        return "not_allowed"
    return dialled.e164


def check_line_features(features: Mapping[str, LineFeatures], lines: Mapping[str, Line], company: Company,
                        warn: Callable[[str, str], None]) -> dict[str, LineFeatures]:
    """The features of existing lines, each forward target held to ``forward_target``'s rule (a refused
    one dropped, ``warn(field, message)``).

    Raises:
        Nothing.
    """
    out: dict[str, LineFeatures] = {}
    for ext, feats in features.items():
        line = lines.get(ext)
        if line is None:
            continue
        kept: dict[str, str | None] = {}
        for kind in ("always", "busy", "no_answer"):
            target = getattr(feats, f"forward_{kind}")
            if target is not None and forward_target(target, line, lines, company) in ("invalid",
                                                                                         "not_allowed"):
                warn(f"lines[{ext}].options.forward.{kind}",
                     f"{target} is no line and no number this line may dial: the forward is ignored")
                target = None
            kept[kind] = target
        out[ext] = replace(feats, forward_always=kept["always"], forward_busy=kept["busy"],
                           forward_no_answer=kept["no_answer"],
                           find_me=_checked_find_me(ext, feats.find_me, line, lines, company, warn),
                           hot_desk=feats.hot_desk if feats.hot_desk is not None
                           and feats.hot_desk[0] in lines and feats.hot_desk[0] != ext else None)
    return out


def _checked_find_me(ext: str, steps: tuple[FindMeStep, ...], line: Line, lines: Mapping[str, Line],
                     company: Company, warn: Callable[[str, str], None]) -> tuple[FindMeStep, ...]:
    """Find-me/follow-me steps held to ``forward_target``'s rule, number by number (a step left without
    numbers is dropped)."""
    out = []
    for i, step in enumerate(steps):
        kept = []
        for j, number in enumerate(step.numbers):
            if forward_target(number, line, lines, company) in ("invalid", "not_allowed"):
                warn(f"lines[{ext}].options.find_me_follow_me[{i}].numbers[{j}]",
                     f"{number} is no other line and no number this line may dial: it is not rung")
            else:
                kept.append(number)
        if kept:
            out.append(replace(step, numbers=tuple(kept)))
    return tuple(out)


def find_me_rings(extension: str, steps: tuple[FindMeStep, ...]) -> tuple[tuple[tuple[RingTarget, ...],
                                                                                float], ...]:
    """What line ``extension``'s find-me/follow-me rings, step by step: (targets, seconds). Each target
    is rung ``via`` the line, so an external number is dialled with its caller ID (as a forward is)."""
    def target(number: str) -> RingTarget:
        kind: RingTargetKind = "external" if number.startswith("+") else "line"
        return RingTarget(kind, number, via=extension)
    return tuple((tuple(target(n) for n in step.numbers), step.ring_s) for step in steps)
