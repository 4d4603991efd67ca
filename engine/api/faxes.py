"""Received faxes over the admin API: listed (newest first, by fax line), their metadata, the PDF or TIFF
downloaded, and deleted. Reading them is a report (``view_reports``); deleting one changes the PBX's data
(``configure_pbx``). The files are the engine's (``engine.store.faxes``, under the data directory); the API
only reads them and removes them.
"""

from __future__ import annotations

from typing import Final

from litestar import Response, delete, get
from litestar.params import FromPath, FromQuery

from engine.api.routes import CONFIGURE, REPORTS, Admin, Auth, threaded
from engine.store.errors import NotFoundError
from engine.store.faxes import FaxFile, FaxRecord, FaxStore, FaxStoreError, fax_store_dir

_REPORTS: Final = {"permission": REPORTS}
_MEDIA_TYPES: Final[dict[str, tuple[FaxFile, str]]] = {"pdf": ("pdf", "application/pdf"),
                                                       "tiff": ("tiff", "image/tiff")}


def _store(admin: Admin) -> FaxStore:
    return FaxStore(fax_store_dir(admin.store.data_dir))


def _record(admin: Admin, fax_id: str) -> FaxRecord:
    try:
        return _store(admin).get(fax_id)
    except FaxStoreError:
        raise NotFoundError("fax", fax_id) from None


@get("/api/faxes", opt=_REPORTS, tags=["faxes"])
@threaded
def list_faxes(admin: Admin, principal: Auth, fax_line: FromQuery[str | None] = None) -> list[FaxRecord]:
    """Received faxes, newest first (of one fax line with ``fax_line``): sender's station ID, caller,
    pages, resolution, bit rate, ECM, the T.30 result (``ok``, ``code``, ``text``) and whether a PDF
    exists (none when no page arrived)."""
    return _store(admin).list(fax_line)


@get("/api/faxes/{fax_id:str}", opt=_REPORTS, tags=["faxes"])
@threaded
def get_fax(admin: Admin, principal: Auth, fax_id: FromPath[str]) -> FaxRecord:
    """One received fax's record."""
    return _record(admin, fax_id)


@get("/api/faxes/{fax_id:str}/{kind:str}", opt=_REPORTS, tags=["faxes"])
@threaded
def download_fax(admin: Admin, principal: Auth, fax_id: FromPath[str],
                 kind: FromPath[str]) -> Response[bytes]:
    """The fax as ``pdf`` or as ``tiff`` (the pages as they arrived, TIFF-F)."""
    chosen = _MEDIA_TYPES.get(kind)
    if chosen is None:
        raise NotFoundError("fax format", kind)
    _record(admin, fax_id)
    try:
        data = _store(admin).file(fax_id, chosen[0]).read_bytes()
    except (FaxStoreError, FileNotFoundError):
        raise NotFoundError(f"fax {kind}", fax_id) from None
    return Response(data, media_type=chosen[1],
                    headers={"Content-Disposition": f'attachment; filename="fax-{fax_id}.{kind[:3]}"'})


@delete("/api/faxes/{fax_id:str}", opt={"permission": CONFIGURE}, tags=["faxes"])
@threaded
def delete_fax(admin: Admin, principal: Auth, fax_id: FromPath[str]) -> None:
    """Delete a received fax (record, PDF and TIFF)."""
    _record(admin, fax_id)
    _store(admin).delete(fax_id)
    admin.record_event(principal.actor, "fax.deleted", f"fax:{fax_id}", {})


FAX_ROUTES: Final = [list_faxes, get_fax, download_fax, delete_fax]
