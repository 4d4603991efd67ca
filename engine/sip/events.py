"""Events the SIP endpoint passes up to its transaction user (past-tense frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.sip.message import Request, Response
    from engine.sip.transaction import ClientTransaction, Peer, ServerTransaction, Transaction


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request. ``transaction`` is None only for ACK (an ACK to a 2xx is its own thing, §17)."""

    request: Request
    transaction: ServerTransaction | None
    peer: Peer


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response; ``transaction`` is None for a 2xx that arrives after its INVITE transaction ended."""

    response: Response
    transaction: ClientTransaction | None


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL matched a pending INVITE server transaction; the endpoint already answered it 200."""

    cancel: Request
    invite_transaction: ServerTransaction


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B, F or H fired (or the transport failed): the transaction ended without its answer."""

    transaction: Transaction
    transport_error: bool = False


Event = RequestReceived | ResponseReceived | CancelReceived | TransactionTimedOut
