"""The engine side of the call flows: ``FlowShell`` implements ``engine.call.flows.FlowServices`` over the
engine's RTP endpoint (``engine.media.session.MediaSession``), the voicemail store, MWI and voicemail
to e-mail.

The flows themselves (``engine.call.flows``) are callback-driven and know nothing of the event loop; this
adapter is where they meet it: media actions run as tasks, voicemail effects (disk writes and fsyncs) in an
executor thread, e-mails in tasks of their own, and each finished piece calls the flow back on the loop.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import zoneinfo
from collections.abc import Callable
from typing import Any

from engine.call.b2bua import Call, CallManager, Destination
from engine.call.conference import ConferenceService
from engine.call.config import CurrentConfig, EngineConfig
from engine.call.fax import FaxService
from engine.call.features import ApplyFeature, FeatureService
from engine.call.flows import FlowFactory, FlowServices, MediaPort, MediaRequest, MediaResult
from engine.call.hotdesk import DEFAULT_HOT_DESK_HOURS, HotDeskChange, HotDeskService, feature_flow
from engine.call.mwi import MwiService
from engine.call.queue import QueueService, line_on_call
from engine.call.routing import MailboxMenu, Router
from engine.dialplan.evaluate import RingState
from engine.dialplan.plan import RingTarget
from engine.media import prompts
from engine.media.clock import MediaClock
from engine.media.g711 import PT_PCMA, PT_PCMU
from engine.media.hold import HoldStream, HoldStreams, OneShot
from engine.media.io import RelayMusic, RelaySide, RtpRelay
from engine.media.prompts import AudioFileCache, PromptLibrary
from engine.media.relay import RelayExhausted
from engine.media.session import MediaSession
from engine.script import Collected, Play, Played, Record, Recorded
from engine.sip.registrar import Location
from engine.sip.sdp import SdpError, SessionDescription, answer_audio, parse_sdp
from engine.store import Store
from engine.voicemail.email import EmailError, VoicemailMailer
from engine.voicemail.flows import COUNT_CHANGING, Applied, DepositFlow, MailboxOpened, MenuFlow, OpenMailbox
from engine.voicemail.model import DepositReason, MessageInfo
from engine.voicemail.store import VoicemailStore

logger = logging.getLogger(__name__)


class FlowShell:
    """The engine side of call flows (``FlowServices``): voicemail on disk, ring destinations routed by the
    call's configuration snapshot, effects applied in an executor thread, media on the engine's RTP endpoint.

    Each call goes by the configuration snapshot its controller keeps (``FlowController.config``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, location: Location, calls: CallManager,
                 voicemail: VoicemailStore, flush: Callable[[], None], relay: RtpRelay, media_bind: str,
                 media_host: str, *, mwi: MwiService | None = None,
                 mailer: VoicemailMailer | None = None, fax: FaxService | None = None,
                 config: CurrentConfig | None = None, store: Store | None = None,
                 hot_desk_hours: float = DEFAULT_HOT_DESK_HOURS) -> None:
        self.loop = loop
        #: the configuration in force: the company's hold clip for music on hold
        self.config = config
        self.location = location
        self.voicemail = voicemail
        self.relay = relay
        self.media_bind = media_bind
        self.media_host = media_host
        self.media_clock = MediaClock(loop)
        self.mwi = mwi
        #: voicemail to e-mail (``pbx serve --smtp``); None sends none
        self.mailer = mailer
        self._mail_tasks: set[asyncio.Task[None]] = set()
        self.prompts = PromptLibrary()
        self.files = AudioFileCache()
        self._hold_streams = HoldStreams(self.files)
        self.queues = QueueService(calls.scheduler, calls.clock, busy=lambda ext: line_on_call(calls, ext),
                                   flush=flush, away=self._in_dnd)
        self.conferences = ConferenceService(lambda: self._hold_stream(None), calls.clock.now)
        self.services = FlowServices(
            manager=calls, open_media=self._open_media, run_media=self._run_media,
            destination=self._destination, deposit=self._deposit, apply_effect=self._apply, wall=self._wall,
            flush=flush, queues=self.queues, hold_stream=self._hold_stream,
            receive_fax=None if fax is None else fax.receive, detect_fax=None if fax is None else fax.detect,
            conferences=self.conferences)
        #: star codes (their changes kept in ``store``; None: in memory only)
        self.features = FeatureService(loop, self.queues, store, calls.clock)
        self.hot_desks = HotDeskService(loop, store, calls.clock, hot_desk_hours)
        self.factory = FlowFactory(self.services, RingState(), self._menu, feature_flow)

    def _in_dnd(self, extension: str) -> bool:
        """Whether line ``extension`` is in do-not-disturb now: queues do not offer it calls."""
        plan = self.config.snapshot.plan if self.config is not None else None
        features = plan.line_features.get(extension) if plan is not None else None
        return features is not None and features.dnd

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

    def _hold_stream(self, path: str | None) -> HoldStream | None:
        """The one hold stream of a clip, shared by every caller who listens to it (None: the system
        music); a clip that cannot be read gets the system music."""
        return self._hold_streams.get(path)

    def music_on_hold(self, call: Call, side: RelaySide, sdp: bytes) -> RelayMusic | None:
        """Hold music for a bridged leg whose peer holds (``InDialog.music``): the stream of the company's
        hold clip in force (the one queues without a clip play), in the G.711 codec of the SDP we last sent
        that leg; None when it has none."""
        codec = _g711_of(sdp)
        if codec is None:
            return None
        plan = self.config.snapshot.plan if self.config is not None else None
        stream = self._hold_stream(plan.hold_clip if plan is not None else None)
        if stream is None:
            return None
        return RelayMusic(side, stream, codec, self.media_clock)

    def announce(self, side: RelaySide, sdp: bytes, keys: tuple[str, ...]) -> tuple[RelayMusic, float] | None:
        """Speak the prompts ``keys`` once out of a leg's relay side, in the plans' language and the G.711
        codec of the SDP we last sent it (a parker hears its orbit): the sender and how long it speaks;
        None when the leg runs no G.711 or a prompt is missing."""
        codec = _g711_of(sdp)
        if codec is None:
            return None
        plan = self.config.snapshot.plan if self.config is not None else None
        try:
            samples = self.prompts.sequence(plan.default_language if plan is not None else "en", keys)
        except prompts.PromptError as exc:
            logger.warning("announcement %s: %s", keys, exc)
            return None
        stream = OneShot(samples)
        return RelayMusic(side, stream, codec, self.media_clock), stream.seconds

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

    def _destination(self, call: Call, config: EngineConfig, targets: tuple[RingTarget, ...], timeout: float,
                     prefix: str) -> Destination | None:
        return Router(config.routing, self.location).plan_destination(
            call.info, call.caller_peer, targets, timeout, prefix, self.services.manager.clock.wall())

    def _deposit(self, mailbox: str, reason: str, call: Call, config: EngineConfig) -> DepositFlow | None:
        if mailbox in config.routing.no_voicemail:
            return None
        why = DepositReason.BUSY if reason == "busy" else DepositReason.UNAVAILABLE
        return DepositFlow(mailbox, why, call.info.caller, call.info.caller_name,
                           self.voicemail.scratch_path(call.id), self._wall())

    def _menu(self, routed: MailboxMenu, config: EngineConfig) -> MenuFlow:
        company = config.routing.company
        plan = config.plan
        return MenuFlow(routed.mailbox, lang=plan.default_language if plan is not None else "en",
                        tz=zoneinfo.ZoneInfo(company.timezone), speech=prompts,
                        scratch_dir=str(self.voicemail.scratch_dir), token=os.urandom(8).hex(),
                        new_salt=lambda: os.urandom(16))

    def _apply(self, effect: Any, config: EngineConfig, done: Callable[[Any], None]) -> None:
        """Apply a voicemail effect in an executor thread (disk writes, fsync), then resume the flow; when
        the message counts change, tell the phones (MWI). A star code's effect goes to ``features``."""
        if isinstance(effect, ApplyFeature):
            self.features.apply(effect, config, done)
            return
        if isinstance(effect, HotDeskChange):
            self.hot_desks.apply(effect, config, done)
            return
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
                self._email(outcome.message, config)
            done(outcome)

        future.add_done_callback(finished)

    def counts_changed(self, mailbox: str, new: int, old: int) -> None:
        """A mailbox changed outside a call (the admin API: a user deleted or heard a message in the web
        admin): its subscribed phones are told the new counts. Runs on the loop."""
        if self.mwi is not None:
            clock = self.services.manager.clock
            self.mwi.notify_counts(mailbox, new, old, clock.now(), clock.wall())
            self.services.flush()

    def _email(self, info: MessageInfo, config: EngineConfig) -> None:
        """Voicemail to e-mail: the new message to its mailbox's address (a line's user when the line's
        options ask for it), sent in a worker thread; a failure is logged, the message stays stored."""
        mailer = self.mailer
        to = config.routing.voicemail_email.get(info.mailbox)
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


def _g711_of(sdp: bytes) -> int | None:
    """The G.711 payload type (PCMU or PCMA) of the first audio stream of ``sdp``; None when it has none."""
    try:
        offer = parse_sdp(sdp)
    except SdpError:
        return None
    audio = next((m for m in offer.media if m.media == "audio" and m.port != 0), None)
    return next((int(pt) for pt in audio.formats if pt in (str(PT_PCMU), str(PT_PCMA))), None) \
        if audio is not None else None
