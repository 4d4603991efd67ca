"""The call controller: runs a call's pure flows (the dial plan, then possibly voicemail) against the call
layer and the engine's own media.

A ``FlowController`` drives one call. It asks its current flow for an action, executes it, and resumes
the flow with the outcome:

- media actions (``engine.script``): ``Answer`` answers the caller with the engine's own RTP
  endpoint (``CallManager.answer_locally``); ``Play``/``Collect``/``Record`` run on that endpoint;
  ``Hangup`` ends the call;
- dial-plan actions (``engine.dialplan.evaluate``): ``Ring`` becomes a ring round of the ``CallManager``
  (the first answer is bridged and ends the flow; an unanswered round resumes it), ``LeaveVoicemail``
  switches to the voicemail deposit flow, ``ReceiveFax`` runs the fax receiver on the engine's endpoint
  (``FlowServices.receive_fax``), ``Done`` ends the flow;
- voicemail effects (``engine.voicemail.flows``): applied by the voicemail service.

The controller is callback-driven, not a coroutine: an action either completes at once (and the loop goes
on) or starts something that completes later (a media action on the event loop, a ring round in the
``CallManager``) and calls ``_step`` with its outcome. So the same controller runs on the event loop in
production and on the in-memory network in tests. Exactly one action is outstanding at any time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from engine.call.b2bua import BUSY, Call, CallManager, CallState, Destination
from engine.call.conference import ConferenceService, Seat
from engine.call.config import EngineConfig
from engine.call.queue import QueueService
from engine.call.queuewait import QueueWait
from engine.call.routing import FeatureCall, MailboxMenu, Planned
from engine.dialplan.evaluate import (
    ConferenceResult,
    DetectFax,
    Enqueue,
    FaxDetected,
    FaxResult,
    JoinConference,
    LeaveVoicemail,
    PlanRun,
    QueueResult,
    ReceiveFax,
    Ring,
    RingResult,
    RingState,
)
from engine.dialplan.evaluate import Done as PlanDone
from engine.dialplan.plan import RingTarget
from engine.media.g711 import G711Codec
from engine.media.hold import AudioSink, FrameSource, HoldStream
from engine.model.cdr import Disposition
from engine.script import (
    Answer,
    Answered,
    Collect,
    Collected,
    Hangup,
    HungUp,
    Play,
    Played,
    Record,
    Recorded,
)
from engine.sip.sdp import SessionDescription
from engine.voicemail.flows import Done as VoicemailDone

logger = logging.getLogger(__name__)

MediaRequest = Play | Collect | Record
#: How long the engine's media keeps running after the last prompt before a hangup (see ``_end_call``).
MEDIA_DRAIN_S: Final = 0.3
MediaResult = Played | Collected | Recorded


class MediaPort(Protocol):
    """The engine's RTP endpoint for one call (``engine.media.session.MediaSession``)."""

    language: str
    hold: FrameSource | None
    sink: AudioSink | None

    @property
    def codec(self) -> G711Codec: ...

    def interrupt(self) -> None: ...

    def push_digit(self, key: str) -> object: ...

    def hangup(self) -> None: ...

    def close(self) -> None: ...


class FaxReception(Protocol):
    """A fax being received on a call (``engine.call.fax``): ``step`` is its outcome for the CDR path
    ("fax:office:received 2 pages", "fax:office:failed 1 pages: Call dropped"), None while it runs."""

    def step(self) -> str | None: ...


FaxReceiver = Callable[[MediaPort, ReceiveFax, Call, Callable[[FaxResult], None]], FaxReception]
FaxDetector = Callable[[MediaPort, DetectFax, Callable[[FaxDetected], None]], None]


class Flow(Protocol):
    """A voicemail flow (``DepositFlow``, ``MenuFlow``): ``start()`` then ``resume(outcome)``."""

    def start(self) -> Any: ...

    def resume(self, outcome: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class FlowServices:
    """What controllers need from the engine (built once by the server).

    Attributes:
        manager: the call layer.
        open_media: opens an RTP endpoint answering ``offer``; returns it and the SDP answer (bytes), or
            None when no media port is free.
        run_media: starts a media action on a port and calls back with its result (on the event loop:
            a task around ``MediaSession.run``).
        destination: the ``Destination`` that rings ``targets`` for this call by its configuration snapshot
            (None: nothing to ring, e.g. no registered phone); ``prefix`` is the Modify Caller ID text.
        deposit: a voicemail deposit flow for (mailbox, reason, call, snapshot), or None when voicemail is
            not available (the caller then hears nothing more: the call ends 480).
        apply_effect: applies a voicemail effect under the call's snapshot, calling back with its outcome.
        wall: the current wall time, timezone-aware (schedules, message times).
        flush: sends what the SIP endpoint queued (after acting outside a SIP event).
        queues: the call queues (None: a call to a queue takes its exit at once, as if it had no agent).
        hold_stream: the shared hold stream of a clip (None: the system hold music).
        receive_fax: runs a fax reception for a fax line on the call's endpoint and calls back with its
            ``FaxResult`` once it is stored (None: fax lines are not available, the reception fails).
        conferences: the live conference rooms (None: a call to a room hears that it has ended).
        detect_fax: listens on the call's endpoint for a fax machine's calling tone and calls back with
            ``FaxDetected`` (None: every caller is taken for a voice caller).
    """

    manager: CallManager
    open_media: Callable[[Call, SessionDescription], tuple[MediaPort, bytes] | None]
    run_media: Callable[[MediaPort, MediaRequest, Callable[[MediaResult], None]], None]
    destination: Callable[[Call, EngineConfig, tuple[RingTarget, ...], float, str], Destination | None]
    deposit: Callable[[str, str, Call, EngineConfig], Flow | None]
    apply_effect: Callable[[Any, EngineConfig, Callable[[Any], None]], None]
    wall: Callable[[], datetime]
    flush: Callable[[], None]
    queues: QueueService | None = None
    hold_stream: Callable[[str | None], HoldStream | None] = lambda path: None
    receive_fax: FaxReceiver | None = None
    conferences: ConferenceService | None = None
    detect_fax: FaxDetector | None = None


class FlowController:
    """Runs one call's flows; the ``CallController`` of that call (see the module docstring).

    ``config`` is the configuration snapshot the call started with (``engine.call.config``): every ring
    round, deposit and voicemail effect of the call uses it, whatever was reloaded since.
    """

    def __init__(self, services: FlowServices, run: PlanRun | None = None, flow: Flow | None = None, *,
                 config: EngineConfig, line_ring_s: float | None = None, language: str | None = None) -> None:
        self.services = services
        self.config = config
        #: the prompt language of a call without a plan run (the ``*98``/``*99`` menu); a run has its own
        self.language = language
        #: a call to a line's own extension rings for the engine's ring timeout (``pbx serve --ring-timeout``)
        self.line_ring_s = line_ring_s
        self.run = run
        self.flow: Flow | None = flow if run is None else None
        self.call: Call | None = None
        self.media: MediaPort | None = None
        self.hung_up = False
        self.finished = False
        self._waiting_ring = False
        self._nothing_rang = False  # a Ring found nothing to ring (no registered phone)
        self._steps: list[str] = []
        self.queued: QueueWait | None = None
        self.fax: FaxReception | None = None
        self.seat: Seat | None = None

    # -- starting ------------------------------------------------------------------------------------
    def begin(self, call: Call) -> None:
        """Start the flow for ``call`` (taken by ``CallManager.start_controlled``)."""
        self.call = call
        if self.run is not None:
            self._execute(self.run.start(self.services.wall()))
        elif self.flow is not None:
            self._execute(self.flow.start())

    # -- CallController --------------------------------------------------------------------------------
    def ring_ended(self, call: Call, status: int, now: float) -> None:
        if self.queued is not None and self.queued.ringing:
            self.queued.offer_over(None)
            return
        if self._waiting_ring:
            self._waiting_ring = False
            self._step(RingResult(answered=False, busy=status in BUSY))

    def bridged(self, call: Call, now: float) -> None:
        if self.queued is not None and self.queued.ringing:
            self.queued.answered(call)
            return
        self._close_media()
        if self._waiting_ring:
            self._waiting_ring = False
            self._step(RingResult(answered=True))

    def ended(self, call: Call, now: float) -> None:
        self.hung_up = True
        if self.queued is not None:
            self.queued.caller_gone()
        if self.seat is not None:
            self.seat.caller_gone()
        if self.flow is None and not self._waiting_ring and self.media is None:
            self._finish()  # nothing runs that could still act (an unanswered call refused or cancelled)
        if self.media is not None:
            self.media.hangup()  # a running action returns promptly (a recording is still written)
        if self._waiting_ring:
            self._waiting_ring = False
            self._step(HungUp())

    def dtmf(self, call: Call, key: str) -> None:
        if self.media is not None:
            self.media.push_digit(key)

    def path(self) -> tuple[str, ...]:
        steps = self.run.path if self.run is not None else ()
        fax = None if self.fax is None else self.fax.step()
        return (*steps, *self._steps) if fax is None else (*steps, *self._steps, fax)

    # -- the loop --------------------------------------------------------------------------------------
    def _step(self, outcome: Any) -> None:
        """Resume the current flow with ``outcome`` and execute what it asks next."""
        if self.finished:
            return
        try:
            if self.flow is not None:
                action = self.flow.resume(outcome)
            elif self.run is not None:
                if self.hung_up and not isinstance(outcome, HungUp | FaxResult):
                    outcome = HungUp()
                action = self.run.resume(outcome, self.services.wall())
            else:
                return
        except Exception:
            logger.exception("call flow failed")
            self._end_call(500, "Server Internal Error", "flow error")
            return
        self._execute(action)

    def _execute(self, action: Any) -> None:
        services = self.services
        call = self.call
        assert call is not None
        try:
            if isinstance(action, Answer):
                self._step(Answered() if self._answer() else HungUp())
            elif isinstance(action, Play | Collect | Record):
                if self.hung_up and not isinstance(action, Record):
                    self._step(HungUp())
                    return
                if self.media is None and not self._answer():
                    self._step(HungUp())
                    return
                assert self.media is not None
                if self.run is not None and self.flow is None:
                    self.media.language = self.run.language  # a Set Language node may have changed it
                services.run_media(self.media, action, self._step)
            elif isinstance(action, Hangup):
                self._end_call(action.status, action.reason, "dial plan hung up" if self.flow is None
                               else "voicemail hung up")
            elif isinstance(action, Ring):
                self._ring(call, action)
            elif isinstance(action, Enqueue):
                self._enqueue(action)
            elif isinstance(action, ReceiveFax):
                self._receive_fax(call, action)
            elif isinstance(action, JoinConference):
                if self.services.conferences is None or self.media is None:
                    self._step(ConferenceResult("ended"))
                else:
                    self.services.conferences.seat(self, action)
            elif isinstance(action, DetectFax):
                detect = self.services.detect_fax
                if detect is None or self.media is None:
                    self._step(FaxDetected(False))
                else:
                    detect(self.media, action, self._step)
            elif isinstance(action, LeaveVoicemail):
                self._voicemail(call, action)
            elif isinstance(action, PlanDone | VoicemailDone):
                self._finish()
            else:  # a voicemail effect
                services.apply_effect(action, self.config, self._step)
        except Exception:
            logger.exception("call flow action %r failed", action)
            self._end_call(500, "Server Internal Error", "flow error")

    # -- actions ---------------------------------------------------------------------------------------
    def _answer(self) -> bool:
        """Answer the caller with the engine's media (once); False when the call cannot be served."""
        if self.media is not None:
            return True
        call = self.call
        assert call is not None
        if self.hung_up or call.state is CallState.ENDED:
            return False
        if call.offer is None:
            # A late offer (INVITE without SDP) would need our offer in the 200: not supported here.
            self._end_call(488, "Not Acceptable Here", "no SDP offer for the engine's media")
            return False
        opened = self.services.open_media(call, call.offer)
        if opened is None:
            self._end_call(503, "Service Unavailable", "no free media ports")
            return False
        self.media, sdp = opened
        language = self.run.language if self.run is not None else self.language
        if language is not None:
            self.media.language = language
        self.services.manager.answer_locally(call, sdp, self.services.manager.clock.now())
        self.services.flush()
        return True

    def _ring(self, call: Call, action: Ring) -> None:
        prefix = self.run.caller_name_prefix if self.run is not None else ""
        timeout = action.timeout_s if self.line_ring_s is None else self.line_ring_s
        dest = self.services.destination(call, self.config, action.targets, timeout, prefix)
        if dest is None:
            self._nothing_rang = True
            self._step(RingResult(answered=False))
            return
        self._waiting_ring = True
        self.services.manager.ring(call, dest, self.services.manager.clock.now())
        self.services.flush()

    def _enqueue(self, action: Enqueue) -> None:
        queues = self.services.queues
        if queues is None or self.media is None:
            self._step(QueueResult("no_agents"))
            return
        QueueWait(self, queues, action)

    def _receive_fax(self, call: Call, action: ReceiveFax) -> None:
        receive = self.services.receive_fax
        if receive is None or self.media is None or self.hung_up:
            self._step(FaxResult(False, 0, "fax reception not available"))
            return
        self.fax = receive(self.media, action, call, self._step)

    def _voicemail(self, call: Call, action: LeaveVoicemail) -> None:
        self._steps.append(f"voicemail:{action.mailbox}:{action.reason}")
        flow = self.services.deposit(action.mailbox, action.reason, call, self.config)
        if flow is None:
            manager = self.services.manager
            self._finish()
            if manager.end_as_rung(call, manager.clock.now()):
                self.services.flush()
            elif self._nothing_rang:
                self._end_call(480, "Temporarily Unavailable", f"{action.mailbox} has no registered phone",
                               Disposition.UNAVAILABLE)
            else:
                self._end_call(480, "Temporarily Unavailable", "no voicemail")
            return
        self.flow = flow
        if self.media is not None and self.run is not None:
            self.media.language = self.run.language
        self._execute(flow.start())

    # -- ending ----------------------------------------------------------------------------------------
    def _end_call(self, status: int, reason: str, cause: str, disposition: Disposition | None = None) -> None:
        call = self.call
        assert call is not None
        manager = self.services.manager

        def end() -> None:
            self._finish()
            manager.end_controlled(call, manager.clock.now(), status, reason, cause, disposition)
            self.services.flush()

        if self.media is not None and call.state is CallState.SERVING and not self.hung_up:
            # The last prompt ("goodbye") has just left; the phone plays it from its jitter buffer for a
            # few tens of ms more: a BYE right now would cut its end off.
            self.finished = True
            manager.scheduler.call_at(manager.clock.now() + MEDIA_DRAIN_S, end)
            return
        end()

    def _finish(self) -> None:
        self.finished = True
        self._close_media()
        if self.run is not None:
            self.run.close()  # the walk's generator would otherwise hold a cycle until the cyclic GC

    def _close_media(self) -> None:
        if self.media is not None:
            self.media.close()
            self.media = None


class FlowFactory:
    """Builds the controller of a new call that routing handed to a flow (``Planned``/``MailboxMenu``).

    ``controller`` takes the configuration snapshot the call's INVITE was routed by; the call keeps it.
    ``ring_state`` is the engine's round-robin memory; ``menu`` builds the ``*98``/``*99`` flow (None
    while voicemail is not available: such calls get 480). The menu speaks the plans' default language (the
    company's), as the flow's numbers do. A call to a line's own extension rings for the snapshot's ring
    timeout (``pbx serve --ring-timeout``).
    """

    def __init__(self, services: FlowServices, ring_state: RingState,
                 menu: Callable[[MailboxMenu, EngineConfig], Flow | None] | None = None,
                 features: Callable[[FeatureCall], Flow] | None = None) -> None:
        self.services = services
        self.ring_state = ring_state
        self.menu = menu
        #: builds the flow of a star code call (``engine.call.features``; None: such calls get 480)
        self.features = features

    def controller(self, routed: Planned | MailboxMenu | FeatureCall,
                   config: EngineConfig) -> FlowController | None:
        """The controller of the call ``routed`` under ``config``; None when its flow cannot run (no
        compiled plans, no voicemail)."""
        plan = config.plan
        if isinstance(routed, MailboxMenu | FeatureCall):
            if isinstance(routed, FeatureCall):
                flow = self.features(routed) if self.features is not None else None
            else:
                flow = self.menu(routed, config) if self.menu is not None else None
            if flow is None:
                return None
            language = plan.default_language if plan is not None else None
            return FlowController(self.services, flow=flow, config=config, language=language)
        if plan is None:
            return None
        run = PlanRun(plan, routed.entry, routed.facts, self.ring_state)
        line_ring_s = config.routing.ring_timeout if routed.entry.kind == "line" else None
        return FlowController(self.services, run=run, config=config, line_ring_s=line_ring_s)
