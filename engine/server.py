"""Process lifecycle of ``pbx serve``: the composition root.

Opens the store (importing the example company into an empty data dir), restores the registrations,
builds the sans-IO endpoint, registrar and digest authenticator, the call layer and the signalling
application (``engine.call.app``), binds the transports, keeps the in-memory credentials in step with the
store (config_version poll), purges expired bindings, and shuts down in order on SIGTERM/SIGINT (stop
accepting, flush the binding writer, close the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import ipaddress
import logging
import os
import random
import signal
import socket
import zoneinfo
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from engine.call.app import SipApplication
from engine.call.b2bua import DEFAULT_RING_TIMEOUT_S, Call, CallManager, Destination
from engine.call.flows import FlowFactory, FlowServices, MediaPort, MediaRequest, MediaResult
from engine.call.mwi import MwiService
from engine.call.routing import MailboxMenu, Router, RoutingConfig
from engine.clock import LoopClock
from engine.dialplan.compiler import CompileResult, compile_config
from engine.dialplan.evaluate import RingState
from engine.dialplan.plan import CompiledConfig, RingTarget
from engine.dialplan.schema import ConfigInputs
from engine.files import write_atomic
from engine.media import prompts
from engine.media.io import MediaClock, MediaSession, RtpRelay
from engine.media.prompts import AudioFileCache, PromptLibrary
from engine.media.relay import RelayExhausted
from engine.media.wav import WavError, convert_to_8k_mono16
from engine.model import DialPlan, Line, User, objects_by_kind, parse_company_document
from engine.model.errors import ModelError
from engine.net.transport import SipTransport
from engine.script import Collected, Play, Played, Record, Recorded
from engine.sip.auth import DigestAuthenticator
from engine.sip.endpoint import EndpointConfig, SipEndpoint
from engine.sip.registrar import Location, Registrar
from engine.sip.sdp import SessionDescription, answer_audio
from engine.store import (
    BindingWriter,
    Store,
    default_company_file,
    load_company_file,
    sound_clip_path,
)
from engine.store.bindings import binding_from_record
from engine.store.cdrs import CdrWriter
from engine.voicemail.email import EmailError, SmtpConfig, VoicemailMailer
from engine.voicemail.flows import COUNT_CHANGING, Applied, DepositFlow, MailboxOpened, MenuFlow, OpenMailbox
from engine.voicemail.model import DepositReason, MessageInfo
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
DNS_REFRESH_S: Final = 300.0  # trunk host names are looked up again this often


class Server:
    """One engine process: store, SIP transport, application, background upkeep."""

    http: tuple[str, int] | None = None  # the admin API + provisioning address (issue 6); None: off
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
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        clock = LoopClock(loop)
        store = Store.open(self.data_dir)
        try:
            if store.is_empty():
                example = default_company_file()
                doc = load_company_file(example)
                install_sound_clips(doc, example.parent, self.data_dir)
                summary = store.import_company(doc)
                logger.info("empty data dir: imported the example company (%s)", summary)
            company = store.company()
            location = Location()
            for record in store.load_bindings(clock.wall()):
                location.restore(binding_from_record(record))
            logger.info("restored %d registrations of %d lines", len(location), location.aor_count())
            writer = BindingWriter(store)
            writer.start()
            advertised = self.advertise or advertised_address(self.sip_host)
            endpoint = SipEndpoint(EndpointConfig(via_host=advertised, via_port=self.sip_port))
            # The nonces' random part from the OS CSPRNG too (the HMAC tag is what makes them unforgeable).
            auth = DigestAuthenticator(company.sip_realm, os.urandom(32), algorithms=self.digest_algorithms,
                                       rng=random.SystemRandom())
            router = Router(self._routing(store), location)
            app = SipApplication(endpoint, auth, Registrar(location), store.sip_credentials(), clock, writer,
                                 router)
            transport = SipTransport(endpoint, app.handle, clock)
            cdr_writer = CdrWriter(store)
            cdr_writer.start()
            relay = RtpRelay(self.sip_host, *self.rtp_ports, loop=loop)
            calls = CallManager(endpoint, loop, transport.pump, relay, advertised, cdr_writer.write, clock)
            app.calls = calls
            voicemail = VoicemailStore.open(self.data_dir, autocreate=lambda n: shell.is_mailbox(n))
            shell = FlowShell(loop, router, calls, voicemail, transport.pump, relay, self.sip_host,
                              advertised)
            app.flows = shell.factory
            if self.smtp is not None:
                shell.mailer = VoicemailMailer(self.smtp, zoneinfo.ZoneInfo(company.timezone))
            uri_host = f"[{advertised}]" if ":" in advertised else advertised  # an IPv6 literal in a URI
            mwi = MwiService(endpoint, location, company.sip_realm, f"sip:mwi@{uri_host}:{self.sip_port}")
            for mailbox, (new, old) in (await loop.run_in_executor(None, voicemail.all_counts)).items():
                mwi.set_counts(mailbox, new, old)
            app.mwi = shell.mwi = mwi
            tune_gc()
            try:
                _, port = await transport.start(self.sip_host, self.sip_port)
                endpoint.config = EndpointConfig(via_host=advertised, via_port=port)
                mwi.contact = f"sip:mwi@{uri_host}:{port}"
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self._stop.set)
                self._spawn(self._purge_loop(app))
                transport.watch(mwi)  # one timer at the next subscription expiry, re-armed as it moves
                self._spawn(self._config_loop(app, store))
                self._http = await start_http(store, self.http, advertised, port) if self.http else None
                logger.info("pbx-engine serving %s (realm %s)", company.name, company.sip_realm)
                await self._stop.wait()
                logger.info("shutting down")
                calls.shutdown(clock.now())
                transport.pump()
                await asyncio.sleep(0.2)  # let the BYEs and final answers leave before the sockets close
            finally:
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

    def _routing(self, store: Store) -> RoutingConfig:
        """The routing snapshot (runs in an executor thread: it may wait for DNS)."""
        trunks = store.trunks()
        company, lines, users, numbers = store.company(), store.lines(), store.users(), store.numbers()
        plan = compile_plan(store, self.data_dir)
        return RoutingConfig.build(company, lines, users, numbers, trunks, ring_timeout=self.ring_timeout,
                                   addresses=resolve_hosts(t.host for t in trunks), plan=plan,
                                   no_voicemail=store.lines_without_voicemail(),
                                   voicemail_email=store.voicemail_email_targets())

    async def _config_loop(self, app: SipApplication, store: Store) -> None:
        """Reload credentials when the store's config_version moves (e.g. `pbx user add` while running)."""
        loop = asyncio.get_running_loop()
        clock = app.clock
        changed = asyncio.Event()
        # A change made in this process (the admin API) wakes the loop at once; other processes' changes
        # (pbx import, pbx user add) are seen at the next poll.
        def wake() -> None:
            loop.call_soon_threadsafe(changed.set)

        store.on_config_change = wake
        version = await loop.run_in_executor(None, store.config_version)
        resolved_at = clock.now()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), CONFIG_POLL_S)
            changed.clear()
            try:
                current = await loop.run_in_executor(None, store.config_version)
                if current != version:
                    app.credentials = await loop.run_in_executor(None, store.sip_credentials)
                    if app.router is not None:
                        app.router.config = await loop.run_in_executor(None, self._routing, store)
                        resolved_at = clock.now()
                    version = current
                    logger.info("configuration reloaded (version %d, %d lines)", current,
                                len(app.credentials))
                elif app.router is not None and app.router.config.trunks and \
                        clock.now() - resolved_at >= DNS_REFRESH_S:
                    app.router.config = await loop.run_in_executor(None, self._routing, store)  # DNS moves
                    resolved_at = clock.now()
            except Exception:
                logger.exception("configuration reload failed")





class FlowShell:
    """The engine side of call flows (``FlowServices``): voicemail on disk, ring destinations from the
    router, effects applied in an executor thread, media on the engine's RTP endpoint."""

    def __init__(self, loop: asyncio.AbstractEventLoop, router: Router, calls: CallManager,
                 voicemail: VoicemailStore, flush: Callable[[], None], relay: RtpRelay, media_bind: str,
                 media_host: str) -> None:
        self.loop = loop
        self.router = router
        self.voicemail = voicemail
        self.relay = relay
        self.media_bind = media_bind
        self.media_host = media_host
        self.media_clock = MediaClock(loop)
        self.mwi: MwiService | None = None
        #: voicemail to e-mail (``pbx serve --smtp``); None sends none
        self.mailer: VoicemailMailer | None = None
        self._mail_tasks: set[asyncio.Task[None]] = set()
        self.prompts = PromptLibrary()
        self.files = AudioFileCache()
        self.services = FlowServices(
            manager=calls, open_media=self._open_media, run_media=self._run_media,
            destination=self._destination, deposit=self._deposit, apply_effect=self._apply, wall=self._wall,
            flush=flush)
        self.factory = FlowFactory(self.services, lambda: router.config.plan, RingState(), self._menu,
                                   line_ring_s=lambda: router.config.ring_timeout)

    def _open_media(self, call: Call, offer: SessionDescription) -> tuple[MediaPort, bytes] | None:
        """The engine's RTP endpoint for ``call``, answering ``offer``; None when it cannot."""
        answer = answer_audio(offer)
        if answer is None:
            return None
        try:
            session = MediaSession.open(self.media_bind, self.relay.allocator, loop=self.loop,
                                        clock=self.media_clock, prompts=self.prompts, files=self.files)
        except (RelayExhausted, OSError) as exc:
            logger.warning("call %s: no media endpoint: %s", call.id, exc)
            return None
        if answer.host is not None:
            session.negotiate(answer.host, answer.port, answer.payload_type, answer.event_payload_type)
        ports = [session.local_port if m.port else 0 for m in answer.sdp.media]
        return session, call.caller_rewriter.rewrite(answer.sdp, self.media_host, ports)

    def _run_media(self, port: MediaPort, action: MediaRequest, done: Callable[[MediaResult], None]) -> None:
        assert isinstance(port, MediaSession)
        task = self.loop.create_task(port.run(action))

        def finished(t: asyncio.Task[Played | Collected | Recorded]) -> None:
            if t.cancelled() or t.exception() is not None:
                error = None if t.cancelled() else t.exception()
                logger.error("media action %r failed", action, exc_info=error)
                done(Recorded(None, 0.0, "hangup") if isinstance(action, Record)
                     else Played(False) if isinstance(action, Play) else Collected("", "timeout"))
                return
            done(t.result())

        task.add_done_callback(finished)

    def _wall(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.services.manager.clock.wall(), datetime.UTC)

    def _destination(self, call: Call, targets: tuple[RingTarget, ...], timeout: float,
                     prefix: str) -> Destination | None:
        return self.router.plan_destination(call.info, call.caller_peer, targets, timeout, prefix,
                                            self.services.manager.clock.wall())

    def _deposit(self, mailbox: str, reason: str, call: Call) -> DepositFlow | None:
        if mailbox in self.router.config.no_voicemail:
            return None
        why = DepositReason.BUSY if reason == "busy" else DepositReason.UNAVAILABLE
        return DepositFlow(mailbox, why, call.info.caller, call.info.caller_name,
                           self.voicemail.scratch_path(call.id), self._wall())

    def _menu(self, routed: MailboxMenu) -> MenuFlow:
        company = self.router.config.company
        plan = self.router.config.plan
        return MenuFlow(routed.mailbox, lang=plan.default_language if plan is not None else "en",
                        tz=zoneinfo.ZoneInfo(company.timezone), speech=prompts,
                        scratch_dir=str(self.voicemail.scratch_dir), token=os.urandom(8).hex(),
                        new_salt=lambda: os.urandom(16))

    def _apply(self, effect: Any, done: Callable[[Any], None]) -> None:
        """Apply a voicemail effect in an executor thread (disk writes, fsync), then resume the flow; when
        the message counts change, tell the phones (MWI)."""
        counting = isinstance(effect, COUNT_CHANGING)

        def work() -> tuple[Any, tuple[int, int] | None]:
            outcome = self.voicemail.apply(effect)
            return outcome, self.voicemail.counts(effect.mailbox) if counting else None

        future = self.loop.run_in_executor(None, work)

        def finished(f: asyncio.Future[tuple[Any, tuple[int, int] | None]]) -> None:
            counts = None
            try:
                outcome, counts = f.result()
            except Exception:
                logger.exception("voicemail: applying %r failed", effect)
                outcome = MailboxOpened(None) if isinstance(effect, OpenMailbox) else Applied()
            if counts is not None and self.mwi is not None:
                clock = self.services.manager.clock
                self.mwi.notify_counts(effect.mailbox, *counts, clock.now(), clock.wall())
                self.services.flush()
            if isinstance(outcome, Applied) and outcome.message is not None:
                self._email(outcome.message)
            done(outcome)

        future.add_done_callback(finished)

    def _email(self, info: MessageInfo) -> None:
        """Voicemail to e-mail: the new message to its mailbox's address (a line's user when the line's
        options ask for it), sent in a worker thread; a failure is logged, the message stays stored."""
        mailer = self.mailer
        to = self.router.config.voicemail_email.get(info.mailbox)
        if mailer is None or to is None:
            return

        async def send() -> None:
            try:
                await mailer.send(info, to, mailbox_label=info.mailbox)
                logger.info("voicemail: message %d of %s sent to %s", info.id, info.mailbox, to)
            except EmailError as exc:
                logger.warning("voicemail: e-mailing message %d of %s failed: %s", info.id, info.mailbox, exc)

        task = self.loop.create_task(send())
        self._mail_tasks.add(task)
        task.add_done_callback(self._mail_tasks.discard)

    def is_mailbox(self, number: str) -> bool:
        """A line's extension or a shared mailbox's number (mailboxes created on first use)."""
        cfg = self.router.config
        if number in cfg.lines:
            return True
        entry = cfg.plan.route(number) if cfg.plan is not None else None
        return entry is not None and entry.kind == "mailbox"


def compile_plan(store: Store, data_dir: Path) -> CompiledConfig | None:
    """The compiled dial plans of the stored configuration, or None (logged) when they do not compile:
    lines still reach each other directly then, numbers routed to plans get 480."""
    objects = objects_by_kind(store.routing_objects())
    for clip in objects.get("sound_clips", []):
        clip["file"] = str(sound_clip_path(data_dir, clip["name"]))  # played from the data directory
    result = compile_config(ConfigInputs(store.company(), store.users(), store.lines(), store.numbers(),
                                         store.dial_plans(), objects))
    for issue in result.warnings:
        logger.warning("dial plans: %s", issue)
    for issue in result.errors:
        logger.error("dial plans: %s", issue)
    return result.config


def check_document_plans(doc: Mapping[str, Any]) -> CompileResult:
    """Compile the dial plans of a company document before it is imported (what ``pbx import`` and the
    first start refuse on): the document's users and lines stand in for the stored ones.

    Raises:
        ModelError: the document itself is invalid (the field named).
    """
    parsed = parse_company_document(doc)
    users = [User(i + 1, u.first_name, u.last_name, u.email) for i, u in enumerate(parsed.users)]
    lines = [Line(i + 1, i + 1, u.extension, u.line_name, u.external_caller_id, "", "", u.dial_permissions)
             for i, u in enumerate(parsed.users)]
    plans = [DialPlan(i + 1, p.name, p.graph) for i, p in enumerate(parsed.dial_plans)]
    return compile_config(ConfigInputs(parsed.company, users, lines, parsed.numbers, plans,
                                       objects_by_kind(parsed.objects)))


def install_sound_clips(doc: Mapping[str, Any], base_dir: Path, data_dir: Path) -> int:
    """Convert the sound clips a company document names (``file`` relative to the document) into the data
    directory (8 kHz 16-bit mono WAV, written atomically). Returns how many were installed.

    Raises:
        OSError: a clip file cannot be read or written.
        ModelError: a clip file is not a WAV file we can read (field ``sound_clips[i].file``).
    """
    count = 0
    for i, clip in enumerate(doc.get("sound_clips") or []):
        name, file = clip.get("name"), clip.get("file")
        if not isinstance(name, str) or not isinstance(file, str):
            continue
        try:
            data = convert_to_8k_mono16((base_dir / file).read_bytes())
        except WavError as exc:
            raise ModelError(f"sound_clips[{i}].file", f"{file}: {exc}") from None
        target = sound_clip_path(data_dir, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data)
        count += 1
    return count


def resolve_hosts(hosts: Iterable[str]) -> dict[str, str]:
    """Host name -> first IPv4 (else IPv6) address, for carrier trunks configured by name. Names that do not
    resolve are logged and left out (calls to them get 503 until a later reload resolves them)."""
    out: dict[str, str] = {}
    for host in set(hosts):
        try:
            ipaddress.ip_address(host)
            continue
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        except OSError as exc:
            logger.warning("trunk host %s does not resolve: %s", host, exc)
            continue
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        out[host] = str(infos[0][4][0])
    return out


def advertised_address(bind_host: str) -> str:
    """The address we write in Via, Contact and SDP when not told (``--advertise``): the bound address, or
    for a wildcard bind the address of the interface that holds the default route (a UDP ``connect`` only
    picks a route; nothing is sent), else loopback."""
    if bind_host not in ("0.0.0.0", "::", ""):
        return bind_host
    family = socket.AF_INET6 if bind_host == "::" else socket.AF_INET
    probe = "2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1"  # documentation ranges
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return "::1" if family == socket.AF_INET6 else "127.0.0.1"


async def start_http(store: Store, address: tuple[str, int], sip_server: str, sip_port: int) -> Any:
    """The admin REST API and desk-phone provisioning (issue 6) on ``address``, in this loop; None when the
    address cannot be bound (logged: SIP keeps serving)."""
    from engine.api.app import create_app, serve_api
    from engine.provisioning import ProvisioningService

    app = create_app(store, provisioning=ProvisioningService(store, sip_server, sip_port))
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
          log_level: str = "info", digest_algorithms: tuple[str, ...] = DEFAULT_DIGEST_ALGORITHMS,
          rtp_ports: tuple[int, int] = DEFAULT_RTP_PORTS,
          ring_timeout: float = DEFAULT_RING_TIMEOUT_S, advertise: str | None = None,
          smtp: SmtpConfig | None = None) -> int:
    """Run the engine in the foreground until SIGTERM/SIGINT; returns the process exit status."""
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = Server(Path(data_dir), sip_host, sip_port, digest_algorithms, rtp_ports, ring_timeout, advertise)
    server.http = api
    server.smtp = smtp
    try:
        import uvloop
    except ImportError:
        logger.info("uvloop not installed: using the default asyncio loop")
        return asyncio.run(server.run())
    return int(uvloop.run(server.run()))
