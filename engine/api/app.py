"""The admin REST API application: authentication, permissions, error mapping, OpenAPI, and serving it.

``create_app(store)`` builds the Litestar app: the routes of ``engine.api.routes`` and
``engine.api.sessions``, bearer-token or web-login session auth (cookie + CSRF token), the permission each
route declares, and one error shape for bad input, ``{"detail", "field"}`` (422 for values the model rules
refuse, 400 for bodies of the wrong shape, 404 for missing objects, 409 when a concurrent change took a
unique value first). Bulk edits and dial-plan compile errors add ``errors`` with one entry per row or
issue. Nothing a client sends should produce a 5xx.

``serve_api(app, host, port)`` runs it with uvicorn inside the running asyncio loop (the engine's), on a
socket it binds itself (so port 0 works and the bound port is known), without uvicorn's signal handlers:
the engine owns SIGTERM/SIGINT. The OpenAPI document is at ``/api/openapi.json`` (no HTML viewer: those
load their scripts from the internet).

Desk-phone provisioning (``engine.provisioning``) is served by the same app under ``/prov/`` when a
``ProvisioningHandler`` is passed in: this layer does not import that package (they are siblings).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import anyio.to_thread
import msgspec
import sqlalchemy as sa
import uvicorn
from litestar import Litestar, MediaType, Request, Response, get
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import FromPath

from engine.api import routes, sessions
from engine.api.conferences import CONFERENCE_ROUTES, LiveConferences
from engine.api.faxes import FAX_ROUTES
from engine.api.features import FEATURE_ROUTES
from engine.api.queues import QUEUE_ROUTES, LiveQueues
from engine.api.validation import dialplan_validator
from engine.api.voicemail import VOICEMAIL_ROUTES, LiveVoicemail
from engine.clock import SYSTEM_CLOCK, Clock
from engine.model import ModelError
from engine.model.admin import ADMIN_PERMISSIONS
from engine.store import Store
from engine.store.admin import AdminStore, Principal, Validator
from engine.store.errors import BulkEditError, NotFoundError

logger = logging.getLogger(__name__)

OPENAPI_PATH: Final = "/api"
_MSGSPEC_PATH: Final = re.compile(r"at `\$\.(?:data\.)?([^`]+)`")
BEARER: Final = "Bearer "
_AUTO: Final = object()


class ProvisioningHandler(Protocol):
    """What serves a desk phone's configuration file (``engine.provisioning.ProvisioningService``)."""

    def handle(
        self, filename: str, source: str, authorization: str | None, user_agent: str
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for ``GET /prov/<filename>`` from ``source`` (an IP address)."""
        ...


async def _principal(request: Request[Any, Any, Any], admin: routes.Admin) -> Principal:
    """The authenticated user of a request (the token lookup runs in a worker thread)."""
    return await anyio.to_thread.run_sync(functools.partial(_check_principal, request, admin))


def _check_principal(request: Request[Any, Any, Any], admin: AdminStore) -> Principal:
    """The authenticated user of a request, checked against the route's declared permission.

    A bearer token authenticates; without an Authorization header, a web-login session cookie does, and
    then a request that may change something must carry the session's CSRF token (``engine.api.sessions``).

    Raises:
        NotAuthorizedException: no or an unknown bearer token or session (401).
        PermissionDeniedException: the user lacks the route's permission, or a session's change request
            lacks its CSRF token (403).
    """
    needed = request.route_handler.opt.get("permission")
    header = request.headers.get("authorization")
    cookie = request.cookies.get(sessions.SESSION_COOKIE)
    if header is None and cookie:
        principal = admin.session_principal(cookie, sessions.session_ttl(request))
        if principal is None:
            raise NotAuthorizedException("the session has expired or ended: log in again")
        if request.method not in sessions.SAFE_METHODS and not sessions.csrf_ok(
            cookie, request.headers.get(sessions.CSRF_HEADER)
        ):
            raise PermissionDeniedException(
                f"a change made with a session needs the {sessions.CSRF_HEADER} header "
                "(the csrf_token of the login)"
            )
    else:
        header = header or ""
        if not header.startswith(BEARER) or not header[len(BEARER) :].strip():
            raise NotAuthorizedException(
                "an API token (Authorization: Bearer <token>) or a web-login session is required"
            )
        token_principal = admin.principal(header[len(BEARER) :].strip())
        if token_principal is None:
            raise NotAuthorizedException("unknown or revoked API token")
        principal = token_principal
    if needed in ADMIN_PERMISSIONS and not principal.rights.allows(needed):
        raise PermissionDeniedException(f"this needs the {needed} permission")
    if needed not in (*ADMIN_PERMISSIONS, routes.AUTHENTICATED):
        raise PermissionDeniedException("this route declares no permission")  # fail closed
    return principal


def _error(
    status: int, detail: str, field: str | None = None, errors: list[dict[str, Any]] | None = None
) -> Response[Any]:
    body: dict[str, Any] = {"status_code": status, "detail": detail}
    if field is not None:
        body["field"] = field
    if errors is not None:
        body["errors"] = errors
    return Response(body, status_code=status, media_type=MediaType.JSON)


def _model_error(_: Request[Any, Any, Any], exc: ModelError) -> Response[Any]:
    return _error(422, str(exc), exc.field)


def _not_found(_: Request[Any, Any, Any], exc: NotFoundError) -> Response[Any]:
    return _error(404, str(exc))


def _bulk_error(_: Request[Any, Any, Any], exc: BulkEditError) -> Response[Any]:
    rows = [{"row": row, "field": field, "message": message} for row, field, message in exc.errors]
    return _error(422, str(exc), None, rows)


def _integrity_error(_: Request[Any, Any, Any], exc: sa.exc.IntegrityError) -> Response[Any]:
    logger.info("conflicting concurrent change: %s", exc.orig)
    return _error(409, "a concurrent change took a value this one needs; retry")


def _data_error(_: Request[Any, Any, Any], exc: sa.exc.StatementError) -> Response[Any]:
    # Values the model rules let through but the database cannot store (a NUL in text on PostgreSQL,
    # an integer beyond 64 bits): the client's input, so a 400, never a 500.
    logger.info("input the database refused: %s", exc.orig)
    return _error(400, "the input contains values the database cannot store")


def _compile_error(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    issues = [
        {"path": i.path, "plan": i.plan, "node": i.node, "field": i.field, "message": i.message}
        for i in getattr(exc, "issues", ())
    ]
    first = issues[0]["path"] if issues else None
    return _error(422, str(exc), first, issues)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    cause = exc.__cause__
    if exc.status_code == 500 and isinstance(cause, msgspec.ValidationError):
        # Litestar 2.25 reports a body error below the top level (``$.data.admin``) as a 500 because the
        # key is not a handler parameter; it is the client's input.
        text = str(cause)
        where = _MSGSPEC_PATH.search(text)
        field = where[1] if where else None
        return _error(400, f"invalid request body: {text}", field)
    body: dict[str, Any] = {"status_code": exc.status_code, "detail": exc.detail}
    if exc.extra:
        body["extra"] = exc.extra
        if isinstance(exc.extra, list) and exc.extra and isinstance(exc.extra[0], dict):
            body["field"] = exc.extra[0].get("key")
    return Response(body, status_code=exc.status_code, media_type=MediaType.JSON, headers=exc.headers)


def _exception_handlers() -> dict[Any, Callable[..., Response[Any]]]:
    handlers: dict[Any, Callable[..., Response[Any]]] = {
        ModelError: _model_error,
        NotFoundError: _not_found,
        BulkEditError: _bulk_error,
        sa.exc.IntegrityError: _integrity_error,
        sa.exc.DataError: _data_error,
        HTTPException: _http_error,
    }
    try:
        from engine.dialplan.errors import PlanCompileError
    except ModuleNotFoundError:  # pragma: no cover - the package ships with the engine
        return handlers
    handlers[PlanCompileError] = _compile_error
    return handlers


@get("/api/health", opt={"permission": routes.PUBLIC}, include_in_schema=False)
async def health() -> dict[str, str]:
    return {"status": "ok"}


def create_app(
    store: Store,
    *,
    provisioning: ProvisioningHandler | None = None,
    validator: Validator | object | None = _AUTO,
    clock: Clock = SYSTEM_CLOCK,
    session_ttl_s: float = sessions.SESSION_TTL_S,
    pages: Sequence[Any] = (),
    conferences: LiveConferences | None = None,
    queues: LiveQueues | None = None,
    voicemail: LiveVoicemail | None = None,
) -> Litestar:
    """The admin API over ``store``.

    Args:
        store: the open store (shared with the engine; the API's writes bump its config_version).
        provisioning: serves ``GET /prov/<file>`` for desk phones when given.
        validator: checks routing changes before they commit; by default the dial-plan compiler when
            this build has one (``engine.api.validation``), None to save without compiling.
        clock: the clock whose wall time stamps audit records, orders and sessions and paces the login
            throttle (the real one by default; the handlers run in worker threads, so never a LoopClock).
        session_ttl_s: how long a web-login session lasts.
        pages: more route handlers served by the same app (the web admin, ``engine.web.pages``, which
            sits above this layer); each declares its permission like the API's.
        queues: the engine's call queues and their loop (``engine.api.queues``' live view); None: 503.
        conferences: the engine's live conference rooms and their loop (``engine.api.conferences``); None
            when no call engine runs in this process (the live-room routes then answer 503).
        voicemail: the engine's mailbox store and its MWI hand-off (``engine.api.voicemail``); None: the
            users' own voicemail routes open the store on the data directory.

    Raises:
        RuntimeError: a route declares no permission (a programming error, caught at start-up).
    """
    admin = AdminStore(store, clock)
    chosen = dialplan_validator() if validator is _AUTO else validator
    handlers: list[Any] = [
        *routes.ROUTES, *FAX_ROUTES, *CONFERENCE_ROUTES, *QUEUE_ROUTES, *VOICEMAIL_ROUTES, *FEATURE_ROUTES,
        *sessions.SESSION_ROUTES, health, *pages,
    ]
    if provisioning is not None:
        handlers.append(_provisioning_route(provisioning))
    for handler in handlers:
        if "permission" not in handler.opt:
            raise RuntimeError(f"route {handler} declares no permission")
    app = Litestar(
        route_handlers=handlers,
        dependencies={
            "admin": Provide(lambda: admin, sync_to_thread=False),
            "principal": Provide(_principal),
        },
        exception_handlers=_exception_handlers(),
        openapi_config=OpenAPIConfig(
            title="pbx-engine admin API",
            version="1",
            path=OPENAPI_PATH,
            # Only the document itself: the HTML viewers Litestar offers load their scripts from CDNs,
            # and nothing here may load from the internet at run time (the web admin is the UI).
            render_plugins=[JsonRenderPlugin(path="/openapi.json")],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer"),
                    "session": SecurityScheme(
                        type="apiKey",
                        name=sessions.SESSION_COOKIE,
                        security_scheme_in="cookie",
                        description=f"from POST /api/login; changes also need {sessions.CSRF_HEADER}",
                    ),
                }
            ),
            security=[{"bearer": []}, {"session": []}],
        ),
        logging_config=None,
        debug=False,
    )
    app.state["validator"] = chosen
    app.state["admin"] = admin
    app.state["conferences"] = conferences
    app.state["queues"] = queues
    app.state["voicemail"] = voicemail
    app.state["session_ttl_s"] = session_ttl_s
    app.state["login_throttle"] = sessions.LoginThrottle(clock.wall)
    return app


def _provisioning_route(service: ProvisioningHandler) -> Any:
    @get(
        "/prov/{filename:str}",
        opt={"permission": routes.PUBLIC},
        sync_to_thread=True,
        include_in_schema=False,
    )
    def provision(request: Request[Any, Any, Any], filename: FromPath[str]) -> Response[bytes]:
        client = request.client
        source = client.host if client is not None else ""
        status, headers, body = service.handle(
            filename, source, request.headers.get("authorization"), request.headers.get("user-agent", "")
        )
        return Response(body, status_code=status, headers=headers, media_type=MediaType.TEXT)

    return provision


# -- serving --------------------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the engine's loop owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class ApiHandle:
    """A running API server: ``port`` is the bound port; ``close()`` stops it (gracefully, bounded)."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int

    async def close(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except TimeoutError:
            self.server.force_exit = True
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def serve_api(app: Litestar, host: str, port: int) -> ApiHandle:
    """Start serving ``app`` on ``host:port`` in the running loop; returns once it accepts connections.

    Raises:
        OSError: the address cannot be bound.
        RuntimeError: uvicorn failed to start.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=3
    )
    server = _Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            sock.close()
            exc = task.exception()
            raise RuntimeError(f"the admin API failed to start: {exc}") from exc
        await asyncio.sleep(0.01)
    logger.info("admin API on http://%s:%d/api (OpenAPI: /api/openapi.json)", host, bound)
    return ApiHandle(server, task, host, int(bound))
