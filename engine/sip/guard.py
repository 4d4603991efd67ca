"""The flood and scanner guard in front of the SIP endpoint: per-source rate limits, a ban table, scanners.

A PBX on the public internet is probed all day: SIPVicious-style scanners walk extensions and passwords
(``friendly-scanner``, ``sipcli``...), and a flood from one address can take the CPU that the real phones
need. The guard decides per datagram, *before* it is parsed, whether its source is served:

* **Rate**: a token bucket per source address (host, not port: a scanner changes ports), ``rate`` requests
  per second sustained with ``burst`` in reserve. A datagram beyond it is dropped: answering a flood doubles
  its traffic and costs the parse the guard exists to save (Kamailio's pike drops too); a UDP phone whose
  request is dropped retransmits it (Timer A/E), by which time its bucket has refilled.
* **Ban**: a source that goes over its limit ``ban_after`` times within one ``rate_window_s`` window is
  banned for ``ban_s``: everything it sends is dropped at the cost of one dict lookup. A source whose
  request carries a scanner's User-Agent is banned at once (``SCANNER_AGENTS``; matched case-insensitively
  as a substring, as fail2ban's and Kamailio's usual rules do).
* **Trusted** sources (the carriers' trunk addresses: the server passes a predicate over the configuration
  in force) are never limited or banned: one carrier address brings all of a company's inbound calls. The
  predicate runs only where a datagram would be dropped, so the common path stays a dict lookup.

The tables are bounded (``max_sources``): when full, the entry idle longest goes first (buckets before bans,
and a ban table full of live bans refuses to track more rather than forget a ban). Pure: no I/O, no clock
(``now`` is an argument); counters in ``stats`` for the logs and /metrics.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

#: User-Agent substrings of SIP scanners and attack tools (lower case).
SCANNER_AGENTS: Final = (
    "friendly-scanner", "sipvicious", "sipcli", "sip-scan", "sundayddr", "iwar", "vaxsipuseragent",
    "sivus", "smap", "pplsip", "sipsak-scan",
)
logger = logging.getLogger(__name__)

_SCANNER_RE: Final = re.compile("|".join(re.escape(agent) for agent in SCANNER_AGENTS), re.IGNORECASE)


def is_scanner(user_agent: str | None) -> bool:
    """True when ``user_agent`` (a User-Agent header's value) names a known scanner."""
    return user_agent is not None and _SCANNER_RE.search(user_agent) is not None


#: The defaults: no phone or office NAT sends 200 requests a second for long; a flood does at once.
DEFAULT_RATE: Final = 200.0
DEFAULT_BAN_S: Final = 300.0


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """Limits per source address.

    Attributes:
        rate: requests per second a source may send, sustained (0: no rate limit).
        burst: how many it may send at once on top of that (the bucket's size).
        ban_after: drops within ``rate_window_s`` that get a source banned (0: never ban for rate).
        rate_window_s: the window the drops are counted in, opened by a source's first drop.
        ban_s: how long a ban lasts.
        max_sources: bound on the tracked sources (buckets and bans each).
    """

    rate: float = DEFAULT_RATE
    burst: float = 2 * DEFAULT_RATE
    ban_after: int = 1000
    rate_window_s: float = 10.0
    ban_s: float = DEFAULT_BAN_S
    max_sources: int = 65_536

    def __post_init__(self) -> None:
        if self.rate < 0 or self.burst < 1 or self.ban_after < 0:
            raise ValueError("rate must be >= 0, burst >= 1, ban_after >= 0")
        if self.rate_window_s <= 0 or self.ban_s <= 0 or self.max_sources < 1:
            raise ValueError("rate_window_s and ban_s must be > 0, max_sources >= 1")


class _Bucket:
    __slots__ = ("drops", "tokens", "updated", "window_start")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now
        self.drops = 0
        self.window_start = now


class SourceGuard:
    """The guard's state: buckets and bans by source host. See the module docstring."""

    __slots__ = ("_bans", "_buckets", "config", "stats", "trusted")

    def __init__(self, config: GuardConfig, trusted: Callable[[str], bool] | None = None) -> None:
        self.config = config
        #: host -> never limited or banned (a trunk's address); asked only before a drop or a ban
        self.trusted = trusted
        self._buckets: dict[str, _Bucket] = {}  # ordered by last use: the front idles longest
        self._bans: dict[str, float] = {}  # host -> ban end, ordered by ban start
        self.stats: dict[str, int] = {"rate_dropped": 0, "banned_dropped": 0, "bans": 0, "scanners": 0}

    @property
    def banned(self) -> int:
        """Sources banned now or recently (a ban is removed when it is next looked at after it ends)."""
        return len(self._bans)

    def is_banned(self, host: str, now: float) -> bool:
        until = self._bans.get(host)
        if until is None:
            return False
        if now < until:
            return True
        del self._bans[host]
        return False

    def admit(self, host: str, now: float) -> bool:
        """Whether a datagram from ``host`` at ``now`` is to be processed; False drops it (counted)."""
        if self._bans and self.is_banned(host, now):
            if self._trusted(host):
                del self._bans[host]  # banned before it became a trunk
                return True
            self.stats["banned_dropped"] += 1
            return False
        config = self.config
        if config.rate <= 0:
            return True
        buckets = self._buckets
        bucket = buckets.pop(host, None)
        if bucket is None:
            if len(buckets) >= config.max_sources:
                del buckets[next(iter(buckets))]
            bucket = _Bucket(config.burst, now)
        else:
            bucket.tokens = min(config.burst, bucket.tokens + (now - bucket.updated) * config.rate)
            bucket.updated = now
        buckets[host] = bucket  # to the back: most recently used
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        if self._trusted(host):
            return True
        self.stats["rate_dropped"] += 1
        if config.ban_after:
            if now - bucket.window_start >= config.rate_window_s:
                bucket.window_start = now
                bucket.drops = 0
            bucket.drops += 1
            if bucket.drops >= config.ban_after and self.ban(host, now):
                logger.warning("%s banned for %.0f s: %d requests over the limit of %g/s within %.0f s", host,
                               config.ban_s, config.ban_after, config.rate, config.rate_window_s)
        return False

    def ban(self, host: str, now: float) -> bool:
        """Ban ``host`` for ``ban_s`` from ``now`` (a trusted host is not banned); True when banned."""
        if self._trusted(host):
            return False
        bans = self._bans
        if host not in bans and len(bans) >= self.config.max_sources:
            first = next(iter(bans))
            if bans[first] > now:
                return False  # full of live bans: keep them rather than forget one
            del bans[first]
        bans.pop(host, None)
        bans[host] = now + self.config.ban_s
        self._buckets.pop(host, None)
        self.stats["bans"] += 1
        return True

    def _trusted(self, host: str) -> bool:
        return self.trusted is not None and self.trusted(host)

    def scanner(self, host: str, now: float) -> bool:
        """A request from ``host`` carried a scanner's User-Agent: ban the source; True when banned."""
        self.stats["scanners"] += 1
        return self.ban(host, now)
