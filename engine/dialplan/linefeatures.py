"""Where a line's calls may be forwarded: one rule for the compiler, the star codes and the API's state.

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

from engine.model.entities import Company, Line
from engine.model.features import LineFeatures
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
                           forward_no_answer=kept["no_answer"])
    return out
