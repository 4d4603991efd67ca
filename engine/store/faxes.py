"""Received faxes on disk: each fax is a TIFF (the pages as they arrived), a PDF of them and a JSON record
of its metadata, under ``<data dir>/faxes/``.

Nothing is ever half-written where a listing looks: spandsp writes the pages into ``incoming/<id>.tif``
while the fax arrives; ``commit`` then moves the TIFF into place (rename), writes the PDF (temp file +
rename) and writes the record last (temp file + rename, ``engine.files``), so a fax is listed only once all
its files are complete, and a crash leaves at most a leftover in ``incoming/`` (``open`` clears it).
Blocking file I/O: the engine calls these from a worker thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

from engine.files import fsync_dir, move_durably, write_atomic

FaxFile = Literal["tiff", "pdf"]
_ID_RE: Final = re.compile(r"[0-9a-f]{32}")


def fax_store_dir(data_dir: Path) -> Path:
    """Where a data directory keeps its received faxes."""
    return data_dir / "faxes"


class FaxStoreError(Exception):
    """A fax id that is no fax of this store, or a file it does not have (``field`` names which)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class FaxRecord:
    """One received fax (complete or not): who sent it, to which fax line, and how it went.

    ``received_at`` is wall-clock epoch seconds at the start; resolutions are in dots per inch; ``code`` and
    ``text`` are spandsp's T.30 completion (0, "OK" when the document arrived whole); ``pdf`` is False when
    no page arrived (or the pages could not be converted).
    """

    id: str
    fax_line: str
    caller: str
    caller_name: str
    called: str
    call_id: str
    received_at: float
    remote_id: str
    pages: int
    x_dpi: int
    y_dpi: int
    bit_rate: int
    ecm: bool
    code: int
    text: str
    duration_s: float
    ok: bool
    pdf: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FaxStore:
    """The received faxes under one directory (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"

    @classmethod
    def open(cls, root: Path) -> FaxStore:
        """The store at ``root``, created when missing; leftovers of receptions a crash cut off are removed.

        Raises:
            OSError: the directory cannot be created.
        """
        store = cls(root)
        store.incoming.mkdir(parents=True, exist_ok=True)
        for leftover in store.incoming.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()
        return store

    def incoming_path(self, fax_id: str) -> Path:
        """Where spandsp writes the pages of fax ``fax_id`` while it arrives."""
        return self.incoming / f"{self._checked(fax_id)}.tif"

    def commit(self, record: FaxRecord, pdf: bytes | None) -> None:
        """Move the received TIFF into place, write the PDF and then the record (see the module docstring).

        Raises:
            OSError: a write failed (the record is not written then, so the fax is not listed).
        """
        fax_id = self._checked(record.id)
        tiff = self.incoming_path(fax_id)
        if tiff.exists():
            move_durably(tiff, self.root / f"{fax_id}.tif")
        if pdf is not None:
            write_atomic(self.root / f"{fax_id}.pdf", pdf)
        write_atomic(self.root / f"{fax_id}.json", json.dumps(record.to_json(), sort_keys=True).encode())

    def list(self, fax_line: str | None = None) -> list[FaxRecord]:
        """Every fax (of ``fax_line`` when given), newest first."""
        records = []
        for path in self.root.glob("*.json"):
            record = self._read(path)
            if record is not None and (fax_line is None or record.fax_line == fax_line):
                records.append(record)
        return sorted(records, key=lambda r: (r.received_at, r.id), reverse=True)

    def get(self, fax_id: str) -> FaxRecord:
        """Raises:
        FaxStoreError: no such fax (``field`` is ``id``).
        """
        record = self._read(self.root / f"{self._checked(fax_id)}.json")
        if record is None:
            raise FaxStoreError("id", f"no fax {fax_id!r}")
        return record

    def file(self, fax_id: str, kind: FaxFile) -> Path:
        """The path of a fax's TIFF or PDF.

        Raises:
            FaxStoreError: no such fax (``id``) or it has no such file (``format``).
        """
        self.get(fax_id)
        path = self.root / f"{fax_id}.{'tif' if kind == 'tiff' else 'pdf'}"
        if not path.exists():
            raise FaxStoreError("format", f"fax {fax_id} has no {kind} (no page arrived)")
        return path

    def delete(self, fax_id: str) -> None:
        """Remove a fax: its record first (it is no longer listed), then its files.

        Raises:
            FaxStoreError: no such fax (``id``).
        """
        self.get(fax_id)
        for suffix in ("json", "pdf", "tif"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.root / f"{fax_id}.{suffix}")
        fsync_dir(self.root)

    def _checked(self, fax_id: str) -> str:
        if not _ID_RE.fullmatch(fax_id):
            raise FaxStoreError("id", f"not a fax id: {fax_id!r}")
        return fax_id

    @staticmethod
    def _read(path: Path) -> FaxRecord | None:
        try:
            data = json.loads(path.read_bytes())
            return FaxRecord(**data)
        except (OSError, ValueError, TypeError):
            return None
