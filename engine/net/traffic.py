"""SIP traffic counts for metrics (issue 17): plain dict increments on the transport's hot path, read and
labelled only when ``/metrics`` is scraped (``engine.metrics``).

A message is counted by the first token of its start line: the method of a request (``b"INVITE"``), or
``b"SIP/2.0 N"`` for a response of class Nxx (no parsing beyond a ``find`` on the first bytes; the
transport counts before the endpoint parses). Peers choose methods, so the table is bounded: past
``MAX_KEYS`` distinct tokens, new ones are counted under ``OTHER``.
"""

from __future__ import annotations

from typing import Final

MAX_KEYS: Final = 32
OTHER: Final = b"other"
RESPONSE_PREFIX: Final = b"SIP/2.0 "
_KEY_SCAN: Final = 24  # a method longer than this is not one we know (the longest is SUBSCRIBE)


def count_message(counts: dict[bytes, int], data: bytes) -> None:
    """Count one message (a datagram or a framed stream message) in ``counts``."""
    if data.startswith(RESPONSE_PREFIX):
        key = data[:9]
    else:
        end = data.find(b" ", 0, _KEY_SCAN)
        key = data[:end] if end > 0 else OTHER  # keep-alives (CRLF) and garbage
    n = counts.get(key)
    if n is None:
        if len(counts) >= MAX_KEYS:
            key = OTHER
        n = counts.get(key, 0)
    counts[key] = n + 1
