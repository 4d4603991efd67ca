"""The RTP relay's decisions, without sockets: which ports a call gets and where each side sends.

``io.py`` owns the sockets and calls into this module per packet; everything here is plain state that unit
tests drive by hand.

* ``PortAllocator`` hands out even RTP ports (RTCP on port+1, RFC 3550 §11) from the configured range,
  first-in first-out: a port freed by a call that just ended goes to the back of the queue, so the late or
  retransmitted packets of that call do not land in the next call to get the port.
* ``Latch`` is symmetric RTP (RFC 4961) as NAT traversal needs it: a phone behind NAT writes its private
  address into the SDP, so the relay sends there only until the phone's first packet arrives; from then on
  it sends to the address that packet came from, which is the NAT binding that reaches the phone.

Latching is where relays get attacked ("RTP bleed": whoever sends a packet to a relay port first receives the
call's audio). The rule here: the first packet after ``set_remote`` latches, packets from any other source
are then dropped, except one from the exact address the SDP gave, which always takes over. A public phone
(its SDP address is its real one) therefore can never be locked out by a stranger, and a NATed phone is
locked to the first source, normally itself, since it starts sending as soon as it has our answer. A new
SDP (re-INVITE) resets the latch. Pure: no I/O, no clock.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from typing import Final

#: A socket address as the socket module gives it: (host, port) for IPv4, (host, port, flow, scope) for IPv6.
SockAddr = tuple[str, int] | tuple[str, int, int, int]

MIN_PORT: Final = 1024


class MediaError(Exception):
    """Root of the errors the media package raises."""


class RelayExhausted(MediaError):
    """No RTP port pair is free in the configured range (or every free one is taken by another process):
    the call cannot be anchored, answer it 503 or 488."""


class PortAllocator:
    """Even RTP ports from ``[first, last]``, each with its RTCP port (+1) also in the range, reused FIFO."""

    __slots__ = ("_free", "_used", "first", "last")

    def __init__(self, first: int, last: int) -> None:
        """Args:
            first: the lowest port of the range (rounded up to even).
            last: the highest port of the range (an RTCP port may be ``last`` itself).

        Raises:
            ValueError: the range is outside 1024-65535 or holds no even/odd pair.
        """
        if not MIN_PORT <= first <= last <= 65535:
            raise ValueError(f"RTP port range {first}-{last} must lie within {MIN_PORT}-65535")
        start = first + (first & 1)
        if start + 1 > last:
            raise ValueError(f"RTP port range {first}-{last} holds no even/odd port pair")
        self.first = first
        self.last = last
        self._free: deque[int] = deque(range(start, last, 2))
        self._used: set[int] = set()

    @property
    def capacity(self) -> int:
        """How many RTP ports (pairs) the range holds."""
        return len(self._free) + len(self._used)

    @property
    def available(self) -> int:
        """How many pairs are free now."""
        return len(self._free)

    @property
    def in_use(self) -> int:
        return len(self._used)

    def allocate(self) -> int:
        """The least recently released free RTP port (even; RTCP is the next one).

        Raises:
            RelayExhausted: every pair of the range is in use.
        """
        if not self._free:
            raise RelayExhausted(f"all {self.capacity} RTP port pairs of {self.first}-{self.last} are in use")
        port = self._free.popleft()
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        """Give ``port`` back; it is handed out again only after every other free port.

        Raises:
            ValueError: ``port`` is not allocated (a double release would hand one port to two calls).
        """
        try:
            self._used.remove(port)
        except KeyError:
            raise ValueError(f"RTP port {port} is not allocated") from None
        self._free.append(port)


class Latch:
    """Where one relay socket sends: the SDP's address until the peer's first packet, then that packet's
    source (see the module docstring for the rule and why).

    Attributes:
        signalled: the address from the SDP, or None when it gave none we can send to.
        latched: the source of the packet we latched on, or None before one arrived.
    """

    __slots__ = ("ipv6", "latched", "signalled")

    def __init__(self, ipv6: bool = False) -> None:
        """Args:
            ipv6: the socket is AF_INET6 (IPv4 SDP addresses are then sent to as v4-mapped addresses).
        """
        self.ipv6 = ipv6
        self.signalled: SockAddr | None = None
        self.latched: SockAddr | None = None

    @property
    def destination(self) -> SockAddr | None:
        """Where to send now: the latched source, else the SDP address, else None (drop)."""
        return self.latched if self.latched is not None else self.signalled

    def set_remote(self, host: str, port: int) -> None:
        """Take the address from a (new) SDP and forget the latch, so the next packet latches again.

        An address we cannot send to stays unknown (the side then waits for the peer's first packet): port 0,
        the unspecified address (RFC 2543 hold: c=0.0.0.0), a host name (no DNS on the media path), or IPv6
        on an IPv4 socket.

        Raises:
            ValueError: ``port`` is outside 0-65535 (our own misuse: SDP parsing bounds it).
        """
        if not 0 <= port <= 65535:
            raise ValueError(f"RTP port {port} out of range")
        self.signalled = normalise_address(host, port, self.ipv6)
        self.latched = None

    def accept(self, source: SockAddr) -> bool:
        """Whether to relay a packet from ``source``; latches on the first one.

        Returns:
            True for the latched source, for the first source after ``set_remote`` (which latches), and for
            the SDP address (which takes the latch over); False for any other source (drop it).
        """
        latched = self.latched
        if latched is not None and source == latched:
            return True
        signalled = self.signalled
        if latched is None or (
            signalled is not None and source[0] == signalled[0] and source[1] == signalled[1]
        ):
            self.latched = source
            return True
        return False


def normalise_address(host: str, port: int, ipv6: bool) -> SockAddr | None:
    """``(host, port)`` in the form a socket of the given family sends to, or None when it cannot.

    Returns None for port 0, a host that is not an IP literal, the unspecified address, and IPv6 on IPv4.
    IPv4 on an IPv6 socket becomes the v4-mapped address ``::ffff:a.b.c.d``.
    """
    if port == 0:
        return None
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if address.is_unspecified:
        return None
    if address.version == 6:
        if not ipv6:
            return None
        return (address.compressed, port)
    if ipv6:
        return (f"::ffff:{address}", port)
    return (str(address), port)
