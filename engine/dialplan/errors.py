"""The dial-plan error types and the compiler's issue record.

One root, ``PlanError``. ``PlanCompileError`` carries every issue the compiler found (a configuration that
fails compilation is never swapped in); ``PlanUsageError`` is our own misuse of the pure API (a naive
datetime, resuming a finished run, an outcome that does not answer the pending action) and fails loudly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CompileIssue:
    """One compiler error or warning.

    ``plan`` and ``node`` name the dial plan and node when the issue is inside one; ``field`` is the field
    within the node (``options["3"]``, ``next.closed``), within the plan (``start``), or, for issues outside
    any plan, the whole path (``ring_groups[sales].members[0].line``, ``numbers[+4930...].route``).
    """

    plan: str | None
    node: str | None
    field: str
    message: str

    @property
    def path(self) -> str:
        """Where the issue is, e.g. ``dial_plans[main].nodes.menu.options["3"]``."""
        if self.plan is None:
            return self.field
        at = f"dial_plans[{self.plan}]"
        if self.node is not None:
            at += f".nodes.{self.node}"
        return f"{at}.{self.field}" if self.field else at

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class PlanError(Exception):
    """Root of the dial-plan errors."""


class PlanCompileError(PlanError):
    """The configuration does not compile; ``issues`` lists every error found."""

    def __init__(self, issues: tuple[CompileIssue, ...]) -> None:
        self.issues = issues
        head = "; ".join(str(i) for i in issues[:5])
        more = f" (and {len(issues) - 5} more)" if len(issues) > 5 else ""
        super().__init__(f"{len(issues)} dial-plan error(s): {head}{more}")


class PlanUsageError(PlanError, ValueError):
    """The pure API was used wrongly by its caller (a bug in the caller, not bad configuration)."""
