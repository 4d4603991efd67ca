"""Serving desk-phone files over HTTP without handing credentials to a bare MAC.

Scanners probe ``/<mac>.cfg`` all day, so a device file needs the device's provisioning credentials
(HTTP Basic, over HTTPS in production: put the engine behind a TLS proxy) and, when the device lists
allowed networks, a source address inside one of them. Unknown MACs get the same 401 as a wrong password
(nothing tells a scanner which MACs exist); every failure counts against the source address, and a source
with ``FAILURE_LIMIT`` failures in ``FAILURE_WINDOW_S`` gets 429 until the window passes. Failures are
logged, once per source and window, so a scan does not flood the log. Common files carry no secrets and
are served to anyone.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
from collections import deque
from typing import Final

from engine.clock import SYSTEM_CLOCK, Clock
from engine.model.admin import verify_secret
from engine.provisioning import templates
from engine.store import Store
from engine.store.admin import AdminStore, ProvisioningData

logger = logging.getLogger(__name__)

FAILURE_LIMIT: Final = 10
FAILURE_WINDOW_S: Final = 60.0
MAX_SOURCES: Final = 10_000
"""Sources tracked at once; the oldest are forgotten first (a spoofed-source flood cannot grow memory)."""
REALM: Final = "pbx-engine provisioning"
Result = tuple[int, dict[str, str], bytes]


class FailureLimiter:
    """Failed requests per source address in a sliding window (pure: the caller passes ``now``)."""

    def __init__(self, limit: int = FAILURE_LIMIT, window: float = FAILURE_WINDOW_S) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, source: str, now: float) -> bool:
        """Whether ``source`` has used up its failures in the window ending at ``now``."""
        times = self._failures.get(source)
        if times is None:
            return False
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[source]
            return False
        return len(times) >= self.limit

    def fail(self, source: str, now: float) -> bool:
        """Count a failure; True when it is the first in the window (worth a log line)."""
        times = self._failures.pop(source, None)
        if times is None:
            times = deque()
            if len(self._failures) >= MAX_SOURCES:
                del self._failures[next(iter(self._failures))]
        self._failures[source] = times  # re-inserted: dict order is least recently failed first
        times.append(now)
        return len(times) == 1


class ProvisioningService:
    """Answers ``GET /prov/<file>`` (see ``engine.api.app.ProvisioningHandler``). Blocking: runs in a
    worker thread, like the API's handlers.

    ``clock``: its monotonic ``now()`` paces the failure limiter (a wall-clock step must not lift or
    extend a block), its ``wall()`` stamps ``last_provisioned_at``; the real clock by default, a
    ``FakeClock`` in tests.
    """

    def __init__(
        self,
        store: Store,
        sip_server: str,
        sip_port: int,
        *,
        clock: Clock = SYSTEM_CLOCK,
        limiter: FailureLimiter | None = None,
    ) -> None:
        self.admin = AdminStore(store, clock)
        self.sip_server = sip_server
        self.sip_port = sip_port
        self._clock = clock
        self.limiter = limiter or FailureLimiter()

    def handle(self, filename: str, source: str, authorization: str | None, user_agent: str) -> Result:
        """(status, headers, body) for one request."""
        wanted = templates.parse_filename(filename)
        if wanted is None:
            return 404, {}, b"not found\n"
        if wanted.mac is None:
            return 200, {}, templates.render_common(wanted.vendor).encode()
        now = self._clock.now()
        if self.limiter.blocked(source, now):
            return 429, {"Retry-After": str(int(self.limiter.window))}, b"too many failed requests\n"
        data = self.admin.provisioning_data(wanted.mac)
        problem = self._refuse(data, source, authorization)
        if problem is not None or data is None:
            if self.limiter.fail(source, now):
                logger.warning(
                    "provisioning: refused %s from %s (%s; User-Agent %r)",
                    filename,
                    source,
                    problem or "unknown MAC",
                    user_agent[:100],
                )
            return 401, {"WWW-Authenticate": f'Basic realm="{REALM}"'}, b"authentication required\n"
        lines = [
            templates.LineConfig(x.extension, x.name, x.sip_password) for x in data.lines if x.sip_password
        ]
        body = templates.render_device(wanted.vendor, self.sip_server, self.sip_port, data.realm, lines)
        self.admin.record_provisioned(
            data.device_id, templates.model_from_user_agent(user_agent), wanted.vendor
        )
        logger.info("provisioning: %s to %s (%d lines)", filename, source, len(lines))
        return 200, {"Cache-Control": "no-store"}, body.encode()

    @staticmethod
    def _refuse(data: ProvisioningData | None, source: str, authorization: str | None) -> str | None:
        """Why the request may not have the file, or None when it may."""
        if data is None:
            return "unknown MAC"
        if data.allowed_networks:
            try:
                address = ipaddress.ip_address(source)
            except ValueError:
                return "no source address"
            if not any(address in ipaddress.ip_network(n) for n in data.allowed_networks):
                return "source outside the device's allowed networks"
        if authorization is None or not authorization.startswith("Basic "):
            return "no credentials"
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "malformed credentials"
        username, _, password = decoded.partition(":")
        if username != data.prov_username or not verify_secret(password, data.prov_password_hash):
            return "wrong credentials"
        return None
