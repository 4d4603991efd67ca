"""The one hook between the admin API and the dial-plan compiler.

Saving a routing change runs ``engine.dialplan.compiler.compile_config`` on the configuration as it would
be after the change, inside the store's transaction; a ``PlanCompileError`` rolls the change back and the
API answers 422 with every issue and its node id. Until that module exists (it is being written alongside
this API) changes are saved unchecked beyond the model rules, and ``dialplan_validator`` returns None.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from engine.store.admin import ConfigSnapshot, Validator

logger = logging.getLogger(__name__)


def dialplan_validator() -> Validator | None:
    """A validator running the dial-plan compiler, or None when this build has no compiler."""
    try:
        module = importlib.import_module("engine.dialplan.compiler")
    except ModuleNotFoundError as exc:
        if exc.name not in ("engine.dialplan.compiler", "engine.dialplan"):
            raise
        logger.warning("engine.dialplan.compiler is missing: dial plans are saved without compiling them")
        return None
    compile_config: Callable[[Any], object] | None = getattr(module, "compile_config", None)
    if compile_config is None:
        return None
    from engine.dialplan.schema import ConfigInputs

    def validate(snapshot: ConfigSnapshot) -> None:
        result = compile_config(
            ConfigInputs(
                company=snapshot.company,
                users=snapshot.users,
                lines=snapshot.lines,
                numbers=snapshot.numbers,
                dial_plans=snapshot.dial_plans,
                objects=snapshot.objects,
            )
        )
        # compile_config returns a CompileResult (``unwrap`` raises PlanCompileError with every issue);
        # an older shape that raised by itself is covered by the call above.
        unwrap = getattr(result, "unwrap", None)
        if callable(unwrap):
            unwrap()

    return validate
