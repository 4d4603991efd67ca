"""Hot desking (issue 19 part 4): a user logs into a shared desk phone by star code.

The desk phone dials the company's hot-desk login code (``*11``); the engine answers and asks for the
user's dialable username, then their dialable password (each keyed in and ended by ``#``, collected as
the password node and conference rooms collect PINs). A user with hot desking allowed and the right
password is logged in: the desk phone's line gets ``options.hot_desk: {line, until}`` in the store (the
configuration version moves, so the login survives a restart and the API shows it), ``until`` being the
login time plus the engine's hot-desk time (``pbx serve --hot-desk-hours``). While it lasts, calls to the
user's line ring the desk phone too, and what the desk phone dials is routed as the user's line (its
caller ID and dialling permissions: ``engine.call.routing``). The logout code (``*12``) from the desk
phone ends it; so does the time passing (routing ignores a login past its ``until``).

Refusals are spoken and change nothing: no such username or a wrong password ("wrong user name or
password": one prompt for both, so the codes cannot be probed for usernames), a user without hot desking
("not allowed"), a logout where nobody is logged in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from engine.call.config import EngineConfig
from engine.call.features import FAILED, FeatureApplied, FeatureFlow
from engine.call.routing import FeatureCall
from engine.clock import Clock
from engine.dialplan.starcodes import HOT_DESK_FEATURES, Feature
from engine.model.admin import DEFAULT_DIAL_PASSWORD, MAX_DIAL_DIGITS, verify_secret
from engine.model.features import with_hot_desk
from engine.script import Answer, Answered, Collect, Collected, Hangup, Play, Played, Sound
from engine.store import Store
from engine.store.features import HotDeskAccount, change_line_options, hot_desk_account

logger = logging.getLogger(__name__)

DEFAULT_HOT_DESK_HOURS: Final = 12.0
"""How long a hot-desk login lasts unless ``pbx serve --hot-desk-hours`` says otherwise (a working day)."""
_ENTRY: Final = Collect(max_digits=MAX_DIAL_DIGITS, terminators="#", first_timeout_s=10.0,
                        inter_digit_timeout_s=5.0)  # keys pressed during the prompt count


@dataclass(frozen=True, slots=True)
class HotDeskChange:
    """The effect of a hot-desk call: log ``username`` (None: whoever is) in at or out of ``desk``."""

    desk: str
    username: str | None = None
    password: str = ""


class HotDeskFlow:
    """Login: answer, ask for the username, then the password, apply, say the outcome, hang up. Logout:
    answer, apply, say it, hang up."""

    def __init__(self, routed: FeatureCall) -> None:
        self.desk = routed.extension
        self.login = routed.star.feature is Feature.HOT_DESK_LOGIN
        self.username: str | None = None
        self.prompts: tuple[str, ...] = ()

    def start(self) -> Answer:
        return Answer()

    def resume(self, outcome: object) -> HotDeskChange | Play | Collect | Hangup:
        if isinstance(outcome, Answered):
            if not self.login:
                return HotDeskChange(self.desk)
            return Play((Sound("hotdesk-username"),), barge_in=True)
        if isinstance(outcome, Played) and not self.prompts:
            return _ENTRY
        if isinstance(outcome, Collected) and outcome.digits:
            if self.username is None:
                self.username = outcome.digits
                return Play((Sound("hotdesk-password"),), barge_in=True)
            return HotDeskChange(self.desk, self.username, outcome.digits)
        if isinstance(outcome, Collected):  # nothing keyed in
            self.prompts = ("hotdesk-wrong-password",)
            return Play((Sound(self.prompts[0]),), barge_in=False)
        if isinstance(outcome, FeatureApplied):
            self.prompts = outcome.prompts
            return Play(tuple(Sound(key) for key in outcome.prompts), barge_in=False)
        return Hangup()


def feature_flow(routed: FeatureCall) -> HotDeskFlow | FeatureFlow:
    """The flow of a star code call: hot desking here, the other features in ``engine.call.features``."""
    if routed.star.feature in HOT_DESK_FEATURES:
        return HotDeskFlow(routed)
    return FeatureFlow(routed)


def decide(change: HotDeskChange, account: HotDeskAccount | None, current: str | None) -> str:
    """The prompt of a hot-desk change: a refusal, or what was done. ``current``: who is logged in at
    the desk now (a line's extension, or None). Pure."""
    if change.username is None:
        return "hotdesk-logged-out" if current is not None else "hotdesk-not-logged-in"
    if account is None:
        return "hotdesk-wrong-password"
    expected = account.password_hash
    right = verify_secret(change.password, expected) if expected is not None \
        else change.password == DEFAULT_DIAL_PASSWORD
    if not right:
        return "hotdesk-wrong-password"
    if not account.allowed or account.line == change.desk:
        return "hotdesk-not-allowed"
    return "hotdesk-logged-in"


class HotDeskService:
    """Carries out hot-desk changes for the engine (the store reads and writes in the loop's executor).

    Args:
        loop: the event loop.
        store: where logins are kept (None: every change fails, said as such).
        clock: wall time of the login and its end.
        hours: how long a login lasts.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, store: Store | None, clock: Clock,
                 hours: float = DEFAULT_HOT_DESK_HOURS) -> None:
        self.loop = loop
        self.store = store
        self.clock = clock
        self.hours = hours

    def apply(self, change: HotDeskChange, config: EngineConfig,
              done: Callable[[FeatureApplied], None]) -> None:
        store = self.store
        wall = self.clock.wall()
        plan = config.plan
        features = plan.line_features.get(change.desk) if plan is not None else None
        current = features.hot_desk_line(wall) if features is not None else None
        if store is None:
            done(FeatureApplied((FAILED,)))
            return

        def work() -> str:
            account = hot_desk_account(store, change.username) if change.username is not None else None
            prompt = decide(change, account, current)
            if prompt == "hotdesk-logged-in" and account is not None:
                until = wall + self.hours * 3600.0
                change_line_options(store, change.desk, lambda o: with_hot_desk(o, account.line, until), wall)
                logger.info("hot desk: line %s logged in at %s until %.0f", account.line, change.desk, until)
            elif prompt == "hotdesk-logged-out":
                change_line_options(store, change.desk, lambda o: with_hot_desk(o, None), wall)
                logger.info("hot desk: %s logged out", change.desk)
            return prompt

        def finished(f: asyncio.Future[str]) -> None:
            try:
                prompt = f.result()
            except Exception:
                logger.exception("hot desk at %s: the change failed", change.desk)
                prompt = FAILED
            done(FeatureApplied((prompt,)))

        self.loop.run_in_executor(None, work).add_done_callback(finished)
