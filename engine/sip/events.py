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
    """Timer B, F or H fired (or the transport failed): the transaction ended without its answer.

    ``transport_error`` is set when the transport could not send the request (§17.1.4: a refused TCP
    connect, a dead connection), which ends the transaction at once instead of at Timer B or F.
    """

    transaction: Transaction
    transport_error: bool = False

    @property
    def status(self) -> int:
        """The response a UAC acts on as if it had received it: 503 for a transport error (RFC 3261
        §8.1.3.1: "treat the reception of a transport error as a 503 (Service Unavailable)"), 408 for a
        time-out (§8.1.3.1: "as a 408 (Request Timeout)")."""
        return 503 if self.transport_error else 408


Event = RequestReceived | ResponseReceived | CancelReceived | TransactionTimedOut
