"""The addresses the engine asks the operating system for: the one it advertises in Via, Contact and SDP
when not told, and the IP addresses of carrier trunks configured by host name (looked up when the
configuration is built, never on the call path)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable

logger = logging.getLogger(__name__)


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
