"""The one hook between the admin API and the dial-plan compiler.

Saving a routing change runs ``engine.dialplan.compiler.compile_config`` on the configuration as it would
be after the change, inside the store's transaction; a ``PlanCompileError`` rolls the change back and the
API answers 422 with every issue and its node id.
"""

from __future__ import annotations

from engine.dialplan.compiler import compile_config
from engine.dialplan.schema import ConfigInputs
from engine.store.admin import ConfigSnapshot, Validator


def dialplan_validator() -> Validator:
    """A validator running the dial-plan compiler on a configuration snapshot.

    Raises:
        Nothing itself; the validator raises ``PlanCompileError`` with every issue.
    """

    def validate(snapshot: ConfigSnapshot) -> None:
        compile_config(
            ConfigInputs(
                company=snapshot.company,
                users=snapshot.users,
                lines=snapshot.lines,
                numbers=snapshot.numbers,
                dial_plans=snapshot.dial_plans,
                objects=snapshot.objects,
            )
        ).unwrap()

    return validate
