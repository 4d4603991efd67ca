"""Persistence of the admin model and of registrar bindings (SQLite by default, PostgreSQL by URL).

Owns the schema and its migrations, the company-file loader, and the background writers that keep
database writes off the event loop: ``BindingWriter`` (registrations) and ``CdrWriter`` (call records).
"""

from __future__ import annotations

from engine.store import migrate, schema
from engine.store.bindings import BindingRecord, BindingWriter, WriterStats
from engine.store.cdrs import CdrWriter, CdrWriterStats, cdr_to_json
from engine.store.company_file import default_company_file, load_company_file, parse_company_yaml
from engine.store.errors import SchemaVersionError, StoreError
from engine.store.schema import SCHEMA_VERSION
from engine.store.store import (
    DB_FILE,
    SOUNDS_DIR,
    ImportSummary,
    Store,
    StoredConfig,
    generate_sip_password,
    sound_clip_path,
)

__all__ = [
    "DB_FILE",
    "SCHEMA_VERSION",
    "SOUNDS_DIR",
    "BindingRecord",
    "BindingWriter",
    "CdrWriter",
    "CdrWriterStats",
    "ImportSummary",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "StoredConfig",
    "WriterStats",
    "cdr_to_json",
    "default_company_file",
    "generate_sip_password",
    "load_company_file",
    "migrate",
    "parse_company_yaml",
    "schema",
    "sound_clip_path",
]
