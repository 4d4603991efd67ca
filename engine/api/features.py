"""Phone features over the admin API (issues 19 and 12): the company's star codes and queue agents.

``GET /api/star-codes`` lists every feature's code in force (the company's own or the default) and
whether digits may follow it; ``PUT /api/star-codes`` replaces the company's own codes (``{dnd_on:
"*30"}``; the features not named keep their defaults), checked by the dial-plan compiler (a clash with an
extension or another code is a 422 naming ``company.star_codes.FEATURE``). ``GET
/api/queues/{name}/agents`` lists a queue's agents with their login and pause as the engine keeps them
(set from the phones by star code). A line's DND and forwarding are its options (``PATCH
/api/lines/{id}``, ``options.do_not_disturb`` and ``options.forward``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get, put
from litestar.params import FromPath, JSONBody

from engine.api.routes import CONFIGURE, Admin, Auth, threaded
from engine.dialplan.starcodes import DEFAULT_CODES, TAKES_ARGUMENT, Feature
from engine.store.admin import Validator
from engine.store.errors import NotFoundError
from engine.store.features import queue_agents, set_star_codes

_CONFIGURE = {"permission": CONFIGURE}


class StarCodeOut(msgspec.Struct):
    feature: str
    code: str
    default: str
    takes_digits: bool  # may be followed by digits: a number, a queue's extension, a mailbox


class AgentOut(msgspec.Struct):
    line: str
    dynamic: bool  # logged out until it logs in (the others are logged in until they log out)
    logged_in: bool
    paused: bool


def spec_agents(spec: dict[str, Any]) -> list[tuple[str, bool]]:
    """A stored queue spec's agents in its order: (line extension, dynamic)."""
    return [(str(a.get("line")), a.get("dynamic") is True) for a in spec.get("agents") or []
            if isinstance(a, dict)]


def _table(own: dict[str, str]) -> list[StarCodeOut]:
    return [StarCodeOut(f.value, own.get(f.value, DEFAULT_CODES[f]), DEFAULT_CODES[f], f in TAKES_ARGUMENT)
            for f in Feature]


@get("/api/star-codes", opt=_CONFIGURE, tags=["company"])
@threaded
def list_star_codes(admin: Admin, principal: Auth) -> list[StarCodeOut]:
    """Every phone feature's star code in force."""
    return _table(dict(admin.store.company().star_codes))


@put("/api/star-codes", opt=_CONFIGURE, tags=["company"])
@threaded
def replace_star_codes(admin: Admin, principal: Auth, request: Request[Any, Any, Any],
                       data: JSONBody[dict[str, str]]) -> list[StarCodeOut]:
    """The company's own codes, feature -> code (the features not named get their defaults)."""
    validator: Validator | None = request.app.state.get("validator")
    company = set_star_codes(admin, principal.actor, data, validator)
    return _table(dict(company.star_codes))


@get("/api/queues/{name:str}/agents", opt=_CONFIGURE, tags=["routing"])
@threaded
def list_agents(admin: Admin, principal: Auth, name: FromPath[str]) -> list[AgentOut]:
    """The queue's agents in its order, logged in or out and paused or not."""
    spec = next((o.spec for o in admin.objects("queues") if o.name == name), None)
    if spec is None:
        raise NotFoundError("queue", name)
    stored = {r.extension: r for r in queue_agents(admin.store, name)}
    out = []
    for ext, dynamic in spec_agents(spec):
        record = stored.get(ext)
        out.append(AgentOut(ext, dynamic, not dynamic if record is None else record.logged_in,
                            False if record is None else record.paused))
    return out


FEATURE_ROUTES = [list_star_codes, replace_star_codes, list_agents]
