"""Errors the store raises besides ``engine.model.ModelError`` (bad admin data)."""

from __future__ import annotations


class StoreError(Exception):
    """The database cannot be used (not ours, damaged, or of an unknown schema)."""


class SchemaVersionError(StoreError):
    """The database was written by a newer engine: refuse it rather than misread or damage it.

    Attributes:
        found: the schema version recorded in the database.
        supported: the newest schema version this engine knows.
    """

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"the database has schema version {found}, newer than this engine supports ({supported}); "
            "upgrade pbx-engine or use a data directory written by this version"
        )
        self.found = found
        self.supported = supported
