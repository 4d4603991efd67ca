"""Process lifecycle of ``pbx serve``: the composition root.

Opens the store (importing the example company into an empty data dir), reads the configuration snapshot
(``engine.call.config``), restores the registrations, and builds the sans-IO endpoint, the transport, the
digest authenticator, the call layer, MWI, the flows' shell and the signalling application
(``engine.call.app``) in dependency order. Then it binds the transports, keeps the snapshot in step with
the store (config_version poll; one assignment swaps it), purges expired bindings, and shuts down in order
on SIGTERM/SIGINT (stop accepting, end the calls, flush the writers, close the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import signal
import ssl
import zoneinfo
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Final

from engine.call.app import SipApplication
from engine.call.b2bua import DEFAULT_RING_TIMEOUT_S, CallManager
from engine.call.config import CurrentConfig, EngineConfig, read_engine_config
from engine.call.fax import FaxService
from engine.call.hotdesk import DEFAULT_HOT_DESK_HOURS
from engine.call.mwi import MwiService
from engine.call.park import DEFAULT_PARK_TIMEOUT_S, ParkService
from engine.call.pickup import PickupService
from engine.call.routing import Router
from engine.call.shell import FlowShell
from engine.call.transfer import TransferService
from engine.clock import Clock, LoopClock
from engine.company import install_sound_clips
from engine.files import hold_lock
from engine.logs import configure as configure_logging
from engine.logs import with_call_id
from engine.media.io import RtpRelay
from engine.metrics import CallOutcomes, EngineParts
from engine.net.address import advertised_address
from engine.net.certificate import (
    CertificateFiles,
    certificate_names,
    client_context,
    default_certificate,
    fingerprint,
    server_context,
)
from engine.net.overload import OverloadConfig, OverloadMonitor
from engine.net.transport import MAX_TCP_CONNECTIONS, MAX_TCP_PER_SOURCE, SipTransport
from engine.net.ws import start_ws
from engine.sip.auth import DigestAuthenticator
from engine.sip.endpoint import EndpointConfig, LoadLimits, SipEndpoint
from engine.sip.events import Event
from engine.sip.guard import GuardConfig, SourceGuard
from engine.sip.registrar import Location, Registrar
from engine.store import (
    BindingWriter,
    Store,
    default_company_file,
    load_company_file,
)
from engine.store.bindings import binding_from_record
from engine.store.cdrs import CdrWriter
from engine.store.faxes import FaxStore, fax_store_dir
from engine.store.features import queue_agents
from engine.store.notify import ConfigListener
from engine.voicemail.email import SmtpConfig, VoicemailMailer
from engine.voicemail.store import VoicemailStore

logger = logging.getLogger("engine.server")

#: Digest algorithms challenged with, in order. MD5 alone by default, as Asterisk, FreeSWITCH and Kamailio do:
#: SIPp 3.6 answers only a first challenge that is MD5, and Debian's baresip 1.0 refuses to register when
#: any challenge names SHA-256. ``pbx serve --digest SHA-256,MD5`` offers RFC 8760's SHA-256 first, for
#: fleets whose phones handle it (pjsip 2.15 does).
DEFAULT_DIGEST_ALGORITHMS: Final = ("MD5",)
PURGE_INTERVAL_S: Final = 10.0
DEFAULT_RTP_PORTS: Final = (20000, 29999)
CONFIG_POLL_S: Final = 1.0
CONFIG_SAFETY_POLL_S: Final = 30.0  # on PostgreSQL, where NOTIFY wakes the config loop (engine.store.notify)
#: The option tags the engine supports: RFC 3327 Path (registrar), RFC 4028 timer, RFC 3891 Replaces.
SUPPORTED: Final = frozenset({"path", "timer", "replaces"})
#: the lock file of a served SQLite data directory (``Server._lock_data_dir``)
LOCK_FILE: Final = "pbx.lock"
DNS_REFRESH_S: Final = 300.0  # trunk host names are looked up again this often


class Server:
    """One engine process: store, SIP transport, application, background upkeep."""

    http: tuple[str, int] | None = None  # the admin API + provisioning address (issue 6); None: off
    #: music on hold for a bridged phone whose peer holds (``--no-hold-music``: the hold is passed on)
    hold_music: bool = True
    db_url: str | None = None  # ``--db``: the store's database (None: DATA_DIR/pbx.sqlite3)
    log_format: str = "text"  # ``--log-format``: json adds each SIP message's Call-ID to its lines
    config_listener: ConfigListener | None = None  # PostgreSQL's config change channel, while serving
    tls: tuple[str, int] | None = None  # ``--tls``: the SIP over TLS listener (issue 16); None: off
    #: ``--tls-cert``/``--tls-key``; None: the data dir's self-signed certificate (made on first start)
    tls_files: CertificateFiles | None = None
    ws: tuple[str, int] | None = None  # ``--ws``: SIP over WebSocket (RFC 7118; engine.net.ws); None: off
    wss: tuple[str, int] | None = None  # ``--wss``: the same over TLS, with the TLS listener's certificate
    #: ``--rate-limit``/``--ban-seconds``: the per-source flood and scanner guard (engine.sip.guard)
    guard: GuardConfig = GuardConfig()
    #: ``--park-timeout``: how long a parked call waits before its parker's line rings (engine.call.park)
    park_timeout: float = DEFAULT_PARK_TIMEOUT_S
    #: ``--max-transactions``/``--max-calls``/``--retry-after``: caps and 503s for load (issue 18 part 3)
    limits: LoadLimits = LoadLimits()
    #: ``--overload-cpu``: when new INVITEs and REGISTERs are shed (engine.net.overload)
    overload: OverloadConfig = OverloadConfig()
    #: ``--max-connections``/``--max-connections-per-source``: accepted TCP/TLS connections
    max_connections: int = MAX_TCP_CONNECTIONS
    max_connections_per_source: int = MAX_TCP_PER_SOURCE
    _http: Any = None

    def __init__(self, data_dir: Path, sip_host: str, sip_port: int,
                 digest_algorithms: tuple[str, ...] = DEFAULT_DIGEST_ALGORITHMS,
                 rtp_ports: tuple[int, int] = DEFAULT_RTP_PORTS,
                 ring_timeout: float = DEFAULT_RING_TIMEOUT_S, advertise: str | None = None) -> None:
        self.data_dir = data_dir
        self.advertise = advertise
        self.rtp_ports = rtp_ports
        self.ring_timeout = ring_timeout
        self.sip_host = sip_host
        self.sip_port = sip_port
        self.digest_algorithms = digest_algorithms
        #: where voicemail e-mails go out (``--smtp``); None: no voicemail to e-mail
        self.smtp: SmtpConfig | None = None
        #: how long a hot-desk login lasts (``--hot-desk-hours``)
        self.hot_desk_hours = DEFAULT_HOT_DESK_HOURS
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        clock = LoopClock(loop)
        lock = self._lock_data_dir()
        try:
            return await self._run(loop, clock)
        finally:
            if lock is not None:
                os.close(lock)

    def _lock_data_dir(self) -> int | None:
        """One engine per SQLite data directory: a second ``pbx serve`` on it would serve the same
        registrations and write the same files as the first (engines sharing a PostgreSQL database share
        their data directory by design, and take no lock).

        Raises:
            InUseError: another engine serves this data directory.
        """
        if self.db_url is not None:
            return None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return hold_lock(self.data_dir / LOCK_FILE, f"the data directory {self.data_dir}")

    async def _run(self, loop: asyncio.AbstractEventLoop, clock: LoopClock) -> int:
        store = Store.open(self.data_dir, self.db_url)
        try:
            if store.is_empty():
                example = default_company_file()
                doc = load_company_file(example)
                install_sound_clips(doc, example.parent, self.data_dir)
                summary = store.import_company(doc)
                logger.info("empty data dir: imported the example company (%s)", summary)
            # Built in dependency order; the one late link is the transport's handler, the application,
            # which needs what needs the transport (the call layer and the flows flush through it).
            config = CurrentConfig(self.read_config(store))
            company = config.snapshot.routing.company
            location = Location()
            for record in store.load_bindings(clock.wall()):
                location.restore(binding_from_record(record))
            logger.info("restored %d registrations of %d lines", len(location), location.aor_count())
            writer = BindingWriter(store)
            writer.start()
            cdr_writer = CdrWriter(store)
            cdr_writer.start()
            outcomes = CallOutcomes()
            advertised = self.advertise or advertised_address(self.sip_host)
            # The carriers' addresses are never rate-limited or banned: asked of the configuration in force.
            guard = SourceGuard(self.guard, trusted=lambda host: Router(config.snapshot.routing, location)
                                .trunk_for(host) is not None)
            endpoint = SipEndpoint(EndpointConfig(via_host=advertised, via_port=self.sip_port,
                                                  supported=SUPPORTED), guard=guard, limits=self.limits)
            transport = SipTransport(endpoint, _not_wired, clock, max_connections=self.max_connections,
                                     max_per_source=self.max_connections_per_source)
            overload = OverloadMonitor(endpoint, self.overload, clock)
            # The nonces' random part from the OS CSPRNG too (the HMAC tag is what makes them unforgeable).
            auth = DigestAuthenticator(company.sip_realm, os.urandom(32), algorithms=self.digest_algorithms,
                                       rng=random.SystemRandom())
            relay = RtpRelay(self.sip_host, *self.rtp_ports, loop=loop)
            calls = CallManager(endpoint, loop, transport.pump, relay, advertised,
                                outcomes.counting(cdr_writer.write), clock)
            endpoint.call_count = lambda: len(calls.calls)  # the endpoint's max_calls
            uri_host = f"[{advertised}]" if ":" in advertised else advertised  # an IPv6 literal in a URI
            mwi = MwiService(endpoint, location, company.sip_realm, f"sip:mwi@{uri_host}:{self.sip_port}")
            voicemail = VoicemailStore.open(self.data_dir, autocreate=config.has_mailbox)
            for mailbox, (new, old) in (await loop.run_in_executor(None, voicemail.all_counts)).items():
                mwi.set_counts(mailbox, new, old)
            mailer = (VoicemailMailer(self.smtp, zoneinfo.ZoneInfo(company.timezone)) if self.smtp is not None
                      else None)
            faxes = FaxService(loop, FaxStore.open(fax_store_dir(self.data_dir)), clock.wall, self.smtp,
                               zoneinfo.ZoneInfo(company.timezone))
            shell = FlowShell(loop, location, calls, voicemail, transport.pump, relay, self.sip_host,
                              advertised, mwi=mwi, mailer=mailer, fax=faxes, config=config, store=store,
                              hot_desk_hours=self.hot_desk_hours)
            shell.features.restore(await loop.run_in_executor(None, queue_agents, store))
            if self.hold_music:
                calls.sides.music = shell.music_on_hold
            transfers = TransferService(calls, config, location, shell.factory, clock.wall)
            calls.sides.refer = transfers.refer
            parks = ParkService(transfers, clock, self.park_timeout, shell.announce)
            app = SipApplication(endpoint, auth, Registrar(location), config, clock, writer, calls,
                                 flows=shell.factory, mwi=mwi, transfers=transfers)
            pickups = PickupService(transfers)
            app.retrieve = lambda req, tx, peer, line, now: (parks.retrieve(req, tx, peer, line, now)
                                                             or pickups.pick(req, tx, peer, line, now))
            transport.handler = with_call_id(app.handle) if self.log_format == "json" else app.handle
            tune_gc()
            try:
                _, port = await transport.start(self.sip_host, self.sip_port)
                tls_port, ws_port, wss_port = await self._start_secure(transport, advertised, clock)
                endpoint.config = EndpointConfig(via_host=advertised, via_port=port, tls_port=tls_port,
                                                 ws_port=ws_port, wss_port=wss_port, supported=SUPPORTED)
                mwi.contact = f"sip:mwi@{uri_host}:{port}"
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self._stop.set)
                self._spawn(self._purge_loop(app))
                transport.watch(mwi)  # one timer at the next subscription expiry, re-armed as it moves
                overload.start()
                self._spawn(self._config_loop(config, store, clock))
                parts = EngineParts(location, calls, endpoint, transport, relay, outcomes,
                                    parked=lambda: len(parks.parked), overload=overload)
                self._http = (await start_http(store, self.http, advertised, port, parts, shell)
                              if self.http
                              else None)
                logger.info("pbx-engine serving %s (realm %s)", company.name, company.sip_realm)
                await self._stop.wait()
                logger.info("shutting down")
                calls.shutdown(clock.now())
                transport.pump()
                await asyncio.sleep(0.2)  # let the BYEs and final answers leave before the sockets close
            finally:
                overload.stop()
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                if self._http is not None:
                    await self._http.close()
                await transport.stop()
                await loop.run_in_executor(None, writer.stop)
                relay.close_all()
                await loop.run_in_executor(None, cdr_writer.stop)
                # A config poll may still run in an executor thread: let it end before the store closes.
                await loop.shutdown_default_executor()
        finally:
            store.close()
        logger.info("stopped")
        return 0

    async def _start_secure(self, transport: SipTransport, advertised: str,
                            clock: Clock) -> tuple[int, int, int]:
        """Bind the TLS, WS and WSS listeners that are configured. Returns their ports (TLS, WS, WSS; each
        listener not configured gets its transport's default port, RFC 3261 §19.1.2 and RFC 7118 §7).

        Raises:
            CertificateError: the certificate or key cannot be loaded.
            OSError: the certificate cannot be written or an address bound.
        """
        ports = [5061, 80, 443]
        secure = self.tls is not None or self.wss is not None
        context = await self._tls_context(advertised, clock) if secure else None
        if self.tls is not None and context is not None:
            _, ports[0] = await transport.start_tls(*self.tls, context, client_context())
        if self.ws is not None:
            _, ports[1] = await start_ws(transport, *self.ws)
        if self.wss is not None and context is not None:
            _, ports[2] = await start_ws(transport, *self.wss, context)
        return ports[0], ports[1], ports[2]

    async def _tls_context(self, advertised: str, clock: Clock) -> ssl.SSLContext:
        """The server context of TLS and WSS: the configured certificate, or the data dir's own (made now if
        there is none); logs the certificate's SHA-256 fingerprint."""
        loop = asyncio.get_running_loop()
        if self.tls_files is not None:
            files = self.tls_files
        else:
            files, made = await loop.run_in_executor(None, default_certificate, self.data_dir,
                                                     certificate_names(advertised), clock.wall())
            logger.info("%s the self-signed TLS certificate %s", "made" if made else "using", files.cert)
        context = server_context(files)
        logger.info("TLS certificate SHA-256 fingerprint %s", fingerprint(files.cert))
        return context

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _purge_loop(self, app: SipApplication) -> None:
        while True:
            await asyncio.sleep(PURGE_INTERVAL_S)
            try:
                n = app.purge_expired()
                if n:
                    logger.info("purged %d expired registrations", n)
            except Exception:
                logger.exception("purging expired registrations failed")

    def read_config(self, store: Store, previous: EngineConfig | None = None) -> EngineConfig:
        """The configuration snapshot, read in one store transaction (blocking: the database, the dial-plan
        compiler, DNS for trunk host names); ``previous``, the snapshot in force, lends its compiled plan
        to a re-read at the same version (``build_engine_config``)."""
        return read_engine_config(store, self.data_dir, ring_timeout=self.ring_timeout, previous=previous)

    async def _config_loop(self, config: CurrentConfig, store: Store, clock: Clock) -> None:
        """Swap in a new snapshot when the store's config_version moves (e.g. `pbx user add` while
        running), and every ``DNS_REFRESH_S`` when trunks are named by host (their addresses move).

        The snapshot is read and built in an executor thread, then swapped in with one assignment: a
        request handled meanwhile sees the old configuration or the new one, never a mix.
        """
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        # A change made in this process (the admin API) wakes the loop at once; on PostgreSQL so do other
        # processes' changes (pbx user add, other nodes), through LISTEN/NOTIFY, and the poll is only a
        # safety net; on SQLite they are seen at the next poll.
        def wake() -> None:
            loop.call_soon_threadsafe(changed.set)

        store.on_config_change = wake
        listener = self.config_listener = store.listen_config(wake)
        poll_s = CONFIG_POLL_S if listener is None else CONFIG_SAFETY_POLL_S
        try:
            await self._reload_on_change(config, store, clock, changed, poll_s)
        finally:
            if listener is not None:
                listener.stop()

    async def _reload_on_change(self, config: CurrentConfig, store: Store, clock: Clock,
                                changed: asyncio.Event, poll_s: float) -> None:
        loop = asyncio.get_running_loop()
        resolved_at = clock.now()
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel that lands in the same
            # loop pass as the wake-up, and the shutdown then waits on this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_s):
                    await changed.wait()
            changed.clear()
            try:
                old = config.snapshot
                version = await loop.run_in_executor(None, store.config_version)
                dns_due = bool(old.routing.trunks) and clock.now() - resolved_at >= DNS_REFRESH_S
                if version == old.version and not dns_due:
                    continue
                new = await loop.run_in_executor(None, self.read_config, store, old)
                resolved_at = clock.now()
                config.snapshot = new
                if new.version != old.version:
                    logger.info("configuration reloaded (version %d, %d lines)", new.version,
                                len(new.credentials))
            except Exception:
                logger.exception("configuration reload failed")


def _not_wired(event: Event, now: float) -> None:
    """The transport's handler until the application is built (the transport receives nothing before it
    starts)."""


async def start_http(store: Store, address: tuple[str, int], sip_server: str, sip_port: int,
                     metrics: EngineParts | None = None, shell: FlowShell | None = None) -> Any:
    """The admin REST API, desk-phone provisioning (issue 6), the web admin (issue 15, at ``/``),
    ``metrics``' Prometheus ``/metrics`` (issue 17), and ``shell``'s live conference participants (issue 13)
    and mailboxes (the users' own voicemail, with MWI) on ``address``, in this loop; None when the address
    cannot be bound (logged: SIP keeps serving)."""
    from engine.api.app import create_app, serve_api
    from engine.api.conferences import LiveConferences
    from engine.api.queues import LiveQueues
    from engine.api.voicemail import LiveVoicemail
    from engine.metrics import metrics_route
    from engine.provisioning import ProvisioningService
    from engine.web.pages import WEB_ROUTES

    loop = asyncio.get_running_loop()
    conferences = voicemail = queues = None
    if shell is not None:
        live = shell

        def counts_changed(mailbox: str, new: int, old: int) -> None:  # from an API worker thread
            loop.call_soon_threadsafe(live.counts_changed, mailbox, new, old)

        conferences = LiveConferences(loop, shell.conferences)
        queues = LiveQueues(loop, shell.queues)
        voicemail = LiveVoicemail(shell.voicemail, counts_changed)
    app = create_app(
        store, provisioning=ProvisioningService(store, sip_server, sip_port),
        pages=[*WEB_ROUTES, *([] if metrics is None else [metrics_route(metrics)])],
        conferences=conferences, voicemail=voicemail, queues=queues,
    )
    try:
        return await serve_api(app, *address)
    except OSError as exc:
        logger.error("admin API not started: cannot bind %s:%d: %s", *address, exc)
        return None


def tune_gc() -> None:
    """Keep the cyclic GC off the hot path: what start-up built (store, credentials, restored bindings) is
    frozen out of collections, and young-generation sweeps run every 50,000 net allocations instead of 700.
    Signalling objects die by reference counting; the collector only has to find rare cycles."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def serve(data_dir: Path, sip_host: str, sip_port: int, api: tuple[str, int] | None = None,
          db_url: str | None = None, log_format: str = "text",
          log_level: str = "info", digest_algorithms: tuple[str, ...] = DEFAULT_DIGEST_ALGORITHMS,
          rtp_ports: tuple[int, int] = DEFAULT_RTP_PORTS,
          ring_timeout: float = DEFAULT_RING_TIMEOUT_S, advertise: str | None = None,
          smtp: SmtpConfig | None = None, hold_music: bool = True, tls: tuple[str, int] | None = None,
          tls_files: CertificateFiles | None = None, guard: GuardConfig | None = None,
          ws: tuple[str, int] | None = None, wss: tuple[str, int] | None = None,
          park_timeout: float = DEFAULT_PARK_TIMEOUT_S,
          hot_desk_hours: float = DEFAULT_HOT_DESK_HOURS,
          limits: LoadLimits | None = None, overload: OverloadConfig | None = None,
          connections: tuple[int, int] | None = None) -> int:
    """Run the engine in the foreground until SIGTERM/SIGINT; returns the process exit status."""
    configure_logging(log_level, log_format)
    server = Server(Path(data_dir), sip_host, sip_port, digest_algorithms, rtp_ports, ring_timeout, advertise)
    server.http = api
    server.db_url = db_url
    server.log_format = log_format
    server.smtp = smtp
    server.hot_desk_hours = hot_desk_hours
    server.hold_music = hold_music
    server.tls = tls
    server.tls_files = tls_files
    server.ws = ws
    server.wss = wss
    server.park_timeout = park_timeout
    if guard is not None:
        server.guard = guard
    if limits is not None:
        server.limits = limits
    if overload is not None:
        server.overload = overload
    if connections is not None:
        server.max_connections, server.max_connections_per_source = connections
    try:
        import uvloop
    except ImportError:
        logger.info("uvloop not installed: using the default asyncio loop")
        return asyncio.run(server.run())
    return int(uvloop.run(server.run()))
