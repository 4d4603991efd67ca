"""Persistence of the admin model and of registrar bindings (SQLite by default, PostgreSQL by URL).

Owns the schema and its migrations, the company-file loader, and the background ``BindingWriter`` that keeps
SQLite writes off the event loop.
"""

from __future__ import annotations

from engine.store import migrate, schema
from engine.store.bindings import BindingRecord, BindingWriter, WriterStats
from engine.store.company_file import default_company_file, load_company_file, parse_company_yaml
from engine.store.errors import SchemaVersionError, StoreError
from engine.store.schema import SCHEMA_VERSION
from engine.store.store import DB_FILE, ImportSummary, Store, generate_sip_password

__all__ = [
    "DB_FILE",
    "SCHEMA_VERSION",
    "BindingRecord",
    "BindingWriter",
    "ImportSummary",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "WriterStats",
    "default_company_file",
    "generate_sip_password",
    "load_company_file",
    "migrate",
    "parse_company_yaml",
    "schema",
]
