"""The received-fax store: a fax is listed only once committed (TIFF moved, PDF and record written),
newest first, by line; files and records are found, deleted, and bad ids named; leftovers of a crash in
``incoming/`` are cleared on open."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from engine.store.faxes import FaxRecord, FaxStore, FaxStoreError

RECORD = FaxRecord(id="a" * 32, fax_line="office", caller="+4989555", caller_name="", called="+4930402",
                   call_id="c1", received_at=100.0, remote_id="+49 89 555", pages=2, x_dpi=204, y_dpi=196,
                   bit_rate=14400, ecm=True, code=0, text="OK", duration_s=20.0, ok=True, pdf=True)


def test_commit_list_get_files_and_delete(tmp_path: Path) -> None:
    store = FaxStore.open(tmp_path / "faxes")
    store.incoming_path(RECORD.id).write_bytes(b"TIFF")
    assert store.list() == []  # arriving, not listed
    store.commit(RECORD, b"%PDF")
    other = replace(RECORD, id="b" * 32, fax_line="sales", received_at=200.0, pdf=False, pages=0, ok=False)
    store.commit(other, None)
    assert store.list() == [other, RECORD] and store.list("office") == [RECORD]
    assert store.get(RECORD.id) == RECORD
    assert store.file(RECORD.id, "tiff").read_bytes() == b"TIFF"
    assert store.file(RECORD.id, "pdf").read_bytes() == b"%PDF"
    with pytest.raises(FaxStoreError) as err:
        store.file(other.id, "pdf")
    assert err.value.field == "format"
    assert list(store.incoming.iterdir()) == []
    store.delete(RECORD.id)
    assert store.list() == [other] and not (tmp_path / "faxes" / f"{RECORD.id}.tif").exists()
    with pytest.raises(FaxStoreError) as err:
        store.get(RECORD.id)
    assert err.value.field == "id"
    with pytest.raises(FaxStoreError):
        store.get("../../etc/passwd")


def test_open_clears_the_leftovers_of_an_interrupted_reception(tmp_path: Path) -> None:
    store = FaxStore.open(tmp_path / "faxes")
    store.incoming_path("c" * 32).write_bytes(b"half a page")
    store = FaxStore.open(tmp_path / "faxes")
    assert list(store.incoming.iterdir()) == [] and store.list() == []
