"""The admin domain model: frozen values, validation rules, the company document and CDRs (no I/O).

``engine.store`` persists these; the REST API (issue 6) and the CLI validate through ``rules`` so every
entry point gives the same ``ModelError(field, message)``.
"""

from __future__ import annotations

from engine.model.cdr import CallRecord, Direction, Disposition, LegRecord
from engine.model.document import (
    CompanyDocument,
    DialPlanSpec,
    RoutingObject,
    TrunkSpec,
    UserSpec,
    objects_by_kind,
    parse_company_document,
)
from engine.model.entities import (
    DEFAULT_COUNTRY,
    DEFAULT_DIAL_PERMISSIONS,
    DEFAULT_FIRST_EXTENSION,
    DEFAULT_SIP_REALM,
    DEFAULT_TIMEZONE,
    DEFAULT_TRUNK_PORT,
    DIAL_PERMISSIONS,
    TRUNK_TRANSPORTS,
    Company,
    DialPlan,
    Line,
    PhoneNumber,
    Trunk,
    User,
)
from engine.model.errors import ModelError
from engine.model.rules import free_extensions, next_free_extension

__all__ = [
    "DEFAULT_COUNTRY",
    "DEFAULT_DIAL_PERMISSIONS",
    "DEFAULT_FIRST_EXTENSION",
    "DEFAULT_SIP_REALM",
    "DEFAULT_TIMEZONE",
    "DEFAULT_TRUNK_PORT",
    "DIAL_PERMISSIONS",
    "TRUNK_TRANSPORTS",
    "CallRecord",
    "Company",
    "CompanyDocument",
    "DialPlan",
    "DialPlanSpec",
    "Direction",
    "Disposition",
    "LegRecord",
    "Line",
    "ModelError",
    "PhoneNumber",
    "RoutingObject",
    "Trunk",
    "TrunkSpec",
    "User",
    "UserSpec",
    "free_extensions",
    "next_free_extension",
    "objects_by_kind",
    "parse_company_document",
]
