"""Received faxes over the admin API (issue 14): listed newest first and by fax line, one record, the PDF
and the TIFF downloaded byte for byte, deleted (then 404); an unknown or malformed id or format is 404."""

from __future__ import annotations

from dataclasses import replace

import httpx

from engine.store.faxes import FaxRecord, FaxStore, fax_store_dir
from tests.api.conftest import Api

FIRST = FaxRecord(id="1" * 32, fax_line="office", caller="+4989555", caller_name="", called="+4930402",
                  call_id="c1", received_at=100.0, remote_id="+49 89 555", pages=2, x_dpi=204, y_dpi=196,
                  bit_rate=14400, ecm=True, code=0, text="OK", duration_s=20.0, ok=True, pdf=True)
SECOND = replace(FIRST, id="2" * 32, fax_line="sales", received_at=200.0, pages=0, ok=False, code=49,
                 text="Call dropped prematurely", pdf=False)


def test_faxes_are_listed_downloaded_and_deleted(api: Api, client: httpx.Client) -> None:
    store = FaxStore.open(fax_store_dir(api.store.data_dir))
    store.incoming_path(FIRST.id).write_bytes(b"II*\x00 tiff")
    store.commit(FIRST, b"%PDF-1.4 fax")
    store.commit(SECOND, None)
    listed = client.get("/api/faxes")
    assert listed.status_code == 200, listed.text
    assert [f["id"] for f in listed.json()] == [SECOND.id, FIRST.id]
    assert [f["id"] for f in client.get("/api/faxes", params={"fax_line": "office"}).json()] == [FIRST.id]
    one = client.get(f"/api/faxes/{FIRST.id}").json()
    assert one == FIRST.to_json()
    pdf = client.get(f"/api/faxes/{FIRST.id}/pdf")
    assert pdf.status_code == 200 and pdf.content == b"%PDF-1.4 fax"
    assert pdf.headers["content-type"] == "application/pdf"
    tiff = client.get(f"/api/faxes/{FIRST.id}/tiff")
    assert tiff.content == b"II*\x00 tiff" and tiff.headers["content-type"] == "image/tiff"
    for path in (f"/api/faxes/{SECOND.id}/pdf", f"/api/faxes/{FIRST.id}/gif", f"/api/faxes/{'3' * 32}",
                 "/api/faxes/..%2Fetc"):
        assert client.get(path).status_code == 404, path
    assert client.delete(f"/api/faxes/{FIRST.id}").status_code == 204
    assert client.get(f"/api/faxes/{FIRST.id}").status_code == 404
    assert [f["id"] for f in client.get("/api/faxes").json()] == [SECOND.id]
    assert client.delete(f"/api/faxes/{FIRST.id}").status_code == 404
