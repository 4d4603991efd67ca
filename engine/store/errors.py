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


class NotFoundError(LookupError):
    """An admin object that does not exist (the API answers 404).

    Attributes:
        kind: what was looked up (``user``, ``device``, ``dial_plan``...).
        key: its id or name as given.
    """

    def __init__(self, kind: str, key: object) -> None:
        super().__init__(f"no {kind} {key!r}")
        self.kind = kind
        self.key = key


class BulkEditError(ValueError):
    """A bulk edit that changed nothing because rows are invalid.

    Attributes:
        errors: (row index, field, message) for every bad row, in row order.
    """

    def __init__(self, errors: list[tuple[int, str, str]]) -> None:
        super().__init__(f"{len(errors)} row(s) invalid; nothing was changed")
        self.errors = errors
