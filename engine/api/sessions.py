"""Web-login sessions for the web admin (``engine.web``): log in with e-mail and password, a session
cookie, log out.

A user who may log in (``allow_web_login``) and completed the registration (``POST /api/login/register``
with the invitation token, their own e-mail and a password) logs in with ``POST /api/login``. The answer
sets the session cookie ``pbx_session``: 256 random bits, stored only as a SHA-256 digest, ``HttpOnly`` (no
script can read it), ``SameSite=Strict``, ``Path=/`` (the web admin's pages check it too), ``Secure`` when
the request came over HTTPS, and expiring after ``SESSION_TTL_S`` (the server checks; the cookie's Max-Age
only tells the browser). The cookie then authenticates every API route exactly like a bearer token of the
same user, with the same permissions. ``GET /api/session`` tells a page loaded later (a reload, a new tab)
the session's user and CSRF token, which only this origin can read. ``POST /api/logout`` ends the session.
A new invitation, a changed e-mail, web login turned off or a password change ends the user's sessions.

CSRF: a browser adds cookies to requests that other sites make it send, so a cookie alone must not be
enough to change anything. Two defences, either of which suffices in current browsers:

1. ``SameSite=Strict``: the browser does not send the cookie on any request started from another site.
2. A synchroniser token: the login answer carries ``csrf_token``, an HMAC of the session secret (so it
   needs no storage and dies with the session). Every request that is not GET/HEAD/OPTIONS and is
   authenticated by the cookie must send it back in the ``X-CSRF-Token`` header, else 403. Another site
   cannot read it (the same-origin policy hides the login answer from it) nor set a custom header on a
   cross-site request without a CORS preflight, which this API never grants (it sends no CORS headers).

Requests with a bearer token need no CSRF token: browsers never add an ``Authorization`` header by
themselves. Failed logins are throttled per source address and per e-mail address (429 with
Retry-After); the answer for an unknown e-mail, a user without web login and a wrong password is the same.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Final

import anyio.to_thread
import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import NotAuthorizedException, NotFoundException, TooManyRequestsException
from litestar.params import JSONBody

from engine.api import routes
from engine.api import schemas as s

SESSION_COOKIE: Final = "pbx_session"
CSRF_HEADER: Final = "X-CSRF-Token"
SESSION_TTL_S: Final = 12 * 3600.0
"""A session lasts a working day; then the user logs in again."""
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
COOKIE_PATH: Final = "/"
"""The whole site: the web admin's pages (``engine.web``) check the session too, not only ``/api``."""
MAX_FAILURES: Final = 10
"""Failed logins allowed per source address, and per e-mail address, in ``FAILURE_WINDOW_S``."""
FAILURE_WINDOW_S: Final = 300.0
MAX_TRACKED: Final = 10_000
"""Sources and addresses remembered at most (the oldest are forgotten first): bounded memory."""
_CSRF_CONTEXT: Final = b"pbx-engine csrf v1"


def csrf_token(session_secret: str) -> str:
    """The CSRF token of a session: an HMAC of its secret, so it needs no storage and ends with it."""
    return hmac.new(session_secret.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def csrf_ok(session_secret: str, header: str | None) -> bool:
    """Whether ``header`` carries the session's CSRF token (constant-time comparison)."""
    return header is not None and hmac.compare_digest(header.encode(), csrf_token(session_secret).encode())


class LoginThrottle:
    """Failed logins per key (a source address, an e-mail address) in a sliding window.

    ``clock`` gives seconds (the app's wall clock; tests inject one). Thread-safe enough for its purpose:
    every step is a single dict or deque operation under the GIL, and a lost update only miscounts one try.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        max_failures: int = MAX_FAILURES,
        window_s: float = FAILURE_WINDOW_S,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_tracked = max_tracked
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, *keys: str) -> float:
        """Seconds until a login for ``keys`` may be tried again (0 when it may now)."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            times = self._failures.get(key)
            if times is None:
                continue
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) >= self.max_failures:
                wait = max(wait, times[0] + self.window_s - now)
        return wait

    def failed(self, *keys: str) -> None:
        now = self.clock()
        for key in keys:
            times = self._failures.pop(key, None) or deque(maxlen=self.max_failures)
            times.append(now)
            self._failures[key] = times  # most recent last
        while len(self._failures) > self.max_tracked:
            self._failures.popitem(last=False)


def _throttle(request: Request[Any, Any, Any]) -> LoginThrottle:
    throttle: LoginThrottle = request.app.state["login_throttle"]
    return throttle


def session_ttl(request: Request[Any, Any, Any]) -> float:
    ttl: float = request.app.state["session_ttl_s"]
    return ttl


@post("/api/login", opt={"permission": routes.PUBLIC}, status_code=200, tags=["auth"], security=[])
async def login(
    request: Request[Any, Any, Any], admin: routes.Admin, data: JSONBody[s.LoginIn]
) -> Response[s.SessionOut]:
    """Log in with e-mail and web-login password: sets the ``pbx_session`` cookie (HttpOnly,
    SameSite=Strict) and returns the ``csrf_token`` that state-changing requests send as ``X-CSRF-Token``.
    Wrong credentials are 401 (the same for an unknown e-mail); too many failures 429 with Retry-After."""
    throttle = _throttle(request)
    source = request.client.host if request.client is not None else ""
    keys = (f"ip:{source}", f"mail:{data.email.strip().lower()[:254]}")
    wait = throttle.retry_after(*keys)
    if wait > 0:
        raise TooManyRequestsException(
            "too many failed logins; try again later", headers={"Retry-After": str(math.ceil(wait))}
        )
    ttl = session_ttl(request)
    made = await anyio.to_thread.run_sync(admin.login, data.email, data.password, ttl)
    if made is None:
        throttle.failed(*keys)
        raise NotAuthorizedException("wrong e-mail address or password, or no web login for this user")
    principal, secret, expires_at = made
    body = s.SessionOut(
        principal.user_id,
        principal.email,
        principal.rights.role,
        principal.rights.listed(),
        csrf_token(secret),
        expires_at,
    )
    cookie = Cookie(
        key=SESSION_COOKIE,
        value=secret,
        path=COOKIE_PATH,
        max_age=int(ttl),
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
    )
    return Response(body, cookies=[cookie], headers={"Cache-Control": "no-store"})


@post("/api/logout", opt={"permission": routes.AUTHENTICATED}, status_code=204, tags=["auth"])
async def logout(admin: routes.Admin, principal: routes.Auth) -> Response[None]:
    """End this session (its cookie is cleared); with an API token it changes nothing."""
    await anyio.to_thread.run_sync(admin.logout, principal)
    response: Response[None] = Response(None, status_code=204)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


@post("/api/me/password", opt={"permission": routes.AUTHENTICATED}, status_code=204, tags=["auth"])
@routes.threaded
def change_password(admin: routes.Admin, principal: routes.Auth, data: JSONBody[s.PasswordChangeIn]) -> None:
    """Change your web-login password (the current one is required); your other sessions end."""
    admin.change_web_password(principal, data.current_password, data.new_password)


class CurrentSessionOut(msgspec.Struct):
    """The session a page runs in: its user (with the name to greet) and the CSRF token for changes."""

    user_id: int
    email: str | None
    first_name: str
    last_name: str
    role: str
    permissions: list[str]
    csrf_token: str


@get("/api/session", opt={"permission": routes.AUTHENTICATED}, tags=["auth"])
async def current_session(
    request: Request[Any, Any, Any], admin: routes.Admin, principal: routes.Auth
) -> Response[CurrentSessionOut]:
    """The web-login session of this request (404 with an API token, which has none)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not principal.via_session or not cookie:
        raise NotFoundException("no web-login session: this request carries an API token")
    user = await anyio.to_thread.run_sync(admin.user, principal.user_id)
    body = CurrentSessionOut(
        principal.user_id,
        principal.email,
        user.first_name,
        user.last_name,
        principal.rights.role,
        principal.rights.listed(),
        csrf_token(cookie),
    )
    return Response(body, headers={"Cache-Control": "no-store"})


SESSION_ROUTES: Final = [login, logout, change_password, current_session]
