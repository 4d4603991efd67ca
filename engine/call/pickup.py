"""Call pickup (issue 19 part 3): a phone answers a call that rings another line.

Two ways in, one operation:

- **Directed pickup by star code**: the company's ``pickup`` code followed by the ringing extension
  (default ``**``, as FreePBX: ``**202``). An authenticated INVITE to it is taken here before routing.
- **INVITE with Replaces naming a leg the engine is ringing** (RFC 3891 on an early dialog: what a desk
  phone's BLF key sends, from the dialog it was told of): the Replaces' Call-ID is our INVITE's to the
  ringing phone and one of its tags our From tag (the other, the phone's, is not checked: a phone that
  has not answered may not have sent one yet). ``TransferService.invite`` asks here before it answers 481.

The picked call (the caller still ringing at the engine, state RINGING, its media anchored) stops ringing
everywhere (its legs CANCELled), the caller is answered with the relay's port (as if a branch had
answered) and the picker's INVITE is answered on a new call bridged to the caller
(``TransferService.connect``). Refusals are answered: nothing ringing on that extension (or a bare code)
``404 Nothing to pick up``; the picker's own call, or a call whose media the engine does not anchor,
``403``. Calls the engine serves itself meanwhile (a queue's caller on hold music) are not ringing calls
here: they are picked up by answering the queue's offer as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from engine.call.b2bua import CallManager
from engine.call.fork import UNFINISHED
from engine.call.legs import Call, CallInfo, CallState, OutLeg
from engine.call.transfer import TransferService, answer_on_relay
from engine.dialplan.starcodes import DEFAULT_TABLE, Feature
from engine.model.cdr import Direction, Disposition
from engine.sip.errors import SipParseError
from engine.sip.message import Request
from engine.sip.refer import Replaces
from engine.sip.sdp import answer_audio
from engine.sip.transaction import Peer, ServerTransaction

logger = logging.getLogger(__name__)


class PickupService:
    """Directed pickup (see the module docstring).

    Args:
        transfers: the engine's transfers (the picker's call: ``connect``).
    """

    def __init__(self, transfers: TransferService) -> None:
        self.transfers = transfers
        self.manager: CallManager = transfers.manager
        self.picked = 0  # calls picked up (tests read it)
        transfers.pickup = self.replaces

    # -- by star code (SipApplication.retrieve) ----------------------------------------------------------
    def pick(self, req: Request, tx: ServerTransaction, peer: Peer, line: str, now: float) -> bool:
        """An authenticated INVITE from ``line``: when it dials the pickup code (True), pick up the call
        ringing the extension after it, or refuse; False for anything else."""
        plan = self.transfers.config.snapshot.plan
        table = plan.star_codes if plan is not None else DEFAULT_TABLE
        dialled = req.request_uri.user_decoded or ""
        star = table.match(dialled)
        if star is None or star.feature is not Feature.PICKUP:
            return False
        target = star.argument
        call = self.ringing(lambda leg: leg.branch.line == target) if target else None
        self._take(call, req, tx, peer, line, dialled, now)
        return True

    # -- by INVITE with Replaces (TransferService.invite) --------------------------------------------------
    def replaces(self, req: Request, tx: ServerTransaction, peer: Peer, line: str, replaces: Replaces,
                 now: float) -> bool:
        """An INVITE with Replaces that names no confirmed dialog of ours: when it names a leg we are
        ringing (True), pick that call up; False otherwise (the caller answers 481)."""
        tags = {replaces.to_tag, replaces.from_tag}

        def named(leg: OutLeg) -> bool:
            invite = leg.invite
            if invite is None or invite.call_id != replaces.call_id:
                return False
            try:
                return invite.from_.tag in tags
            except SipParseError:
                return False

        call = self.ringing(named)
        if call is None:
            return False
        self._take(call, req, tx, peer, line, replaces.call_id, now)
        return True

    # -- the operation ---------------------------------------------------------------------------------------
    def ringing(self, leg_matches: Callable[[OutLeg], bool]) -> Call | None:
        """The oldest call still ringing (unanswered at the engine) with a ringing leg ``leg_matches``."""
        found = [call for call in self.manager.calls.values()
                 if call.state is CallState.RINGING and call.ring_active
                 and any(leg.state in UNFINISHED and leg_matches(leg) for leg in call.legs)]
        return min(found, key=lambda c: c.started_at) if found else None

    def _take(self, call: Call | None, req: Request, tx: ServerTransaction, peer: Peer, line: str,
              dialled: str, now: float) -> None:
        manager = self.manager
        info = CallInfo(Direction.INTERNAL, caller=line, caller_name=line, callee=dialled)
        if call is None:
            logger.info("pickup by %s of %s: nothing rings", line, dialled)
            manager.refuse(req, tx, 404, "Nothing to pick up", Disposition.NOT_FOUND, info, now)
            return
        relay = call.relay
        audio = answer_audio(call.offer) if call.offer is not None else None
        if call.info.caller == line or relay is None or audio is None:
            why = "the call is your own" if call.info.caller == line else "its media is not anchored"
            logger.info("pickup by %s of %s refused: %s", line, dialled, why)
            manager.refuse(req, tx, 403, "Cannot pick up that call", Disposition.FORBIDDEN, info, now)
            return
        manager.stop_ring(call, now)  # the phones that rang are CANCELled
        side = answer_on_relay(manager, call, audio, relay, now)
        if side is None:
            return
        self.picked += 1
        logger.info("line %s picked up call %s (%s)", line, call.id, dialled)
        if not self.transfers.connect(req, tx, peer, line, side, call.info.caller, now):
            manager.hang_up_leg(side, now, "the picker could not be connected")
