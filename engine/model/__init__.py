"""The admin domain model: frozen values, validation rules and the company document (no I/O).

``engine.store`` persists these; the REST API (issue 6) and the CLI validate through ``rules`` so every
entry point gives the same ``ModelError(field, message)``.
"""

from __future__ import annotations

from engine.model.document import CompanyDocument, DialPlanSpec, UserSpec, parse_company_document
from engine.model.entities import (
    DEFAULT_COUNTRY,
    DEFAULT_FIRST_EXTENSION,
    DEFAULT_SIP_REALM,
    DEFAULT_TIMEZONE,
    Company,
    DialPlan,
    Line,
    PhoneNumber,
    User,
)
from engine.model.errors import ModelError
from engine.model.rules import free_extensions, next_free_extension

__all__ = [
    "DEFAULT_COUNTRY",
    "DEFAULT_FIRST_EXTENSION",
    "DEFAULT_SIP_REALM",
    "DEFAULT_TIMEZONE",
    "Company",
    "CompanyDocument",
    "DialPlan",
    "DialPlanSpec",
    "Line",
    "ModelError",
    "PhoneNumber",
    "User",
    "UserSpec",
    "free_extensions",
    "next_free_extension",
    "parse_company_document",
]
