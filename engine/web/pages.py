"""The web admin's pages: one HTML shell for every page URL, its ES modules and CSS under ``/static/``.

The shell is the same document for every page; the browser's modules (``static/app.js``) draw the page
from the admin API with the session cookie. The server still refuses a page the user may not see: a
page URL without a live session answers 303 to ``/login?next=<page>``, one the session's permissions do
not allow answers 403 (the shell then says so), exactly as the API calls behind the page would. Which
permission each page needs is ``PAGES``, handed to the browser inside the shell, so the navigation and the
server use the one table.

Nothing is loaded from elsewhere: the modules, the CSS and the strings (English and German) are files of
this package (``package-data`` in pyproject.toml), written for this project, without a build step.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Final

import anyio.to_thread
from litestar import MediaType, Request, Response, get
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from engine.api import routes, sessions
from engine.model.admin import AdminRights
from engine.store.admin import AdminStore

STATIC_DIR: Final = Path(__file__).parent / "static"
OWN_SETTINGS: Final = "authenticated"
"""The permission of a page every logged-in user sees (their own settings)."""
PAGES: Final[dict[str, str]] = {
    "users": routes.CONFIGURE,
    "lines": routes.CONFIGURE,
    "devices": routes.CONFIGURE,
    "numbers": routes.CONFIGURE,
    "ring-groups": routes.CONFIGURE,
    "queues": routes.CONFIGURE,
    "conference-rooms": routes.CONFIGURE,
    "fax-lines": routes.CONFIGURE,
    "faxes": routes.CONFIGURE,
    "schedules": routes.CONFIGURE,
    "sound-clips": routes.CONFIGURE,
    "locations": routes.CONFIGURE,
    "reports": routes.REPORTS,
    "billing": routes.INVOICES,
    "settings": OWN_SETTINGS,
}
"""Page (its URL ``/<page>``) -> the permission it needs; the order is the navigation's."""
_SECURITY_HEADERS: Final = {
    # The pages run only our own scripts and styles, and talk only to this origin.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob:; frame-src blob:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@functools.cache
def _shell_template() -> str:
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8")


def shell(status: str) -> str:
    """The HTML shell with the page table and the server's verdict (``ok``, ``forbidden``) embedded."""
    config = json.dumps({"pages": PAGES, "status": status}).replace("<", "\\u003c")
    return _shell_template().replace("{{CONFIG}}", config)


def allowed(page: str, rights: AdminRights) -> bool:
    """Whether a user with ``rights`` may open ``page`` (the API's own check: ``AdminRights.allows``)."""
    needed = PAGES[page]
    return needed == OWN_SETTINGS or rights.allows(needed)


def _html(status: str, code: int) -> Response[str]:
    return Response(shell(status), status_code=code, media_type=MediaType.HTML, headers=_SECURITY_HEADERS)


@get(["/login", "/register"], opt={"permission": routes.PUBLIC}, include_in_schema=False)
async def login_page() -> Response[str]:
    """The login, and the registration an invitation links to (set your password): open to anyone."""
    return _html("ok", 200)


@get(
    ["/", *(f"/{page}" for page in PAGES)],
    opt={"permission": routes.PUBLIC},  # checked here: a page answers a redirect or a 403, never a 401
    include_in_schema=False,
)
async def page(request: Request[Any, Any, Any]) -> Response[Any]:
    """A page for the session's user: 303 to the login without a live session, 403 when not allowed."""
    name = request.url.path.strip("/")
    cookie = request.cookies.get(sessions.SESSION_COOKIE)
    admin: AdminStore = request.app.state["admin"]
    principal = None
    if cookie:
        principal = await anyio.to_thread.run_sync(
            admin.session_principal, cookie, sessions.session_ttl(request)
        )
    if principal is None:
        target = "/login" + (f"?next=/{name}" if name else "")
        return Redirect(target, status_code=303, headers={"Cache-Control": "no-store"})
    if name and not allowed(name, principal.rights):
        return _html("forbidden", 403)
    return _html("ok", 200)


static_files = create_static_files_router(
    path="/static",
    directories=[STATIC_DIR],
    opt={"permission": routes.PUBLIC},
    include_in_schema=False,
    send_as_attachment=False,
)

WEB_ROUTES: Final[list[Any]] = [login_page, page, static_files]
