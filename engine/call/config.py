"""``EngineConfig``: what the running engine reads of its configuration, as one immutable snapshot.

The store is the single source of truth. When its ``config_version`` moves, the server reads the whole
configuration in one store transaction (``Store.config_snapshot``), compiles the dial plans, resolves the
trunks' host names and builds a new ``EngineConfig`` off the event loop; then one assignment
(``CurrentConfig.snapshot``) swaps it in. Every new call takes the snapshot current when its INVITE
arrives and keeps it to its end: the flows ring, deposit and e-mail by the snapshot their call started
with (``FlowController.config``), never by one that changed mid-call. Nothing in a snapshot changes, so a
reader sees the old configuration or the new one, never a mix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.call.routing import RoutingConfig
from engine.company import compile_plan
from engine.dialplan.plan import CompiledConfig
from engine.net.address import resolve_hosts
from engine.sip.auth import Credentials
from engine.store import Store, StoredConfig

Resolver = Callable[[Iterable[str]], Mapping[str, str]]
"""Trunk host names -> IP addresses (``engine.net.address.resolve_hosts``; may wait for DNS)."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """One configuration snapshot. See the module docstring.

    Attributes:
        version: the store's ``config_version`` the snapshot was read at.
        credentials: SIP username (the extension) -> its digest credentials (REGISTER, INVITE, SUBSCRIBE).
        routing: what routing and the flows read: lines, numbers, trunks with their addresses, company
            settings, voicemail options and the compiled dial plans (``routing.plan``).
    """

    version: int
    credentials: Mapping[str, Credentials]
    routing: RoutingConfig

    @property
    def plan(self) -> CompiledConfig | None:
        """The compiled dial plans; None when they do not compile (lines still reach each other)."""
        return self.routing.plan

    def has_mailbox(self, number: str) -> bool:
        """Whether ``number`` has a mailbox: a line's extension or a shared mailbox's number (the voicemail
        store creates a mailbox on first use)."""
        if number in self.routing.lines:
            return True
        entry = self.plan.route(number) if self.plan is not None else None
        return entry is not None and entry.kind == "mailbox"


class CurrentConfig:
    """The configuration in force: ``snapshot``, the one reference a reload replaces (one assignment).

    The signalling application reads it for each new request; a call's flow keeps the snapshot its
    INVITE was routed by. The voicemail store asks it whether a mailbox exists.
    """

    __slots__ = ("snapshot",)

    def __init__(self, snapshot: EngineConfig) -> None:
        self.snapshot = snapshot

    def has_mailbox(self, number: str) -> bool:
        """``EngineConfig.has_mailbox`` of the snapshot in force."""
        return self.snapshot.has_mailbox(number)


def build_engine_config(stored: StoredConfig, data_dir: Path, *, ring_timeout: float,
                        addresses: Mapping[str, str], previous: EngineConfig | None = None) -> EngineConfig:
    """The snapshot of ``stored``: its dial plans compiled (sound clips played from ``data_dir``).

    The compiled plan is a function of the stored configuration, so a re-read at the same
    ``config_version`` (the periodic DNS refresh of trunk host names) takes ``previous``'s plan instead of
    compiling again: the compiler's warnings and errors are then logged once per configuration change,
    not once per re-read (the example company's menu warning came back every five minutes).

    Args:
        stored: the configuration as one store transaction read it.
        data_dir: the engine's data directory.
        ring_timeout: how long a line rings (``pbx serve --ring-timeout``).
        addresses: the trunks' host names resolved.
        previous: the snapshot in force, if any.

    Returns:
        The new snapshot; its ``plan`` is None (logged) when the dial plans do not compile.
    """
    if previous is not None and previous.version == stored.version:
        plan = previous.plan
    else:
        plan = compile_plan(stored, data_dir)
    routing = RoutingConfig.build(stored.company, stored.lines, stored.users, stored.numbers, stored.trunks,
                                  ring_timeout=ring_timeout, addresses=addresses,
                                  plan=plan, no_voicemail=stored.no_voicemail,
                                  voicemail_email=stored.voicemail_email)
    return EngineConfig(stored.version, dict(stored.credentials), routing)


def read_engine_config(store: Store, data_dir: Path, *, ring_timeout: float,
                       resolve: Resolver = resolve_hosts,
                       previous: EngineConfig | None = None) -> EngineConfig:
    """Read the configuration in one store transaction and build its snapshot (``previous``: the one in
    force, see ``build_engine_config``). Blocking (the database, the compiler, DNS): run it in an executor
    thread once the engine serves.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store cannot be read.
    """
    stored = store.config_snapshot()
    return build_engine_config(stored, data_dir, ring_timeout=ring_timeout,
                               addresses=resolve(t.host for t in stored.trunks), previous=previous)
