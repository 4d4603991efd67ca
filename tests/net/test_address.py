"""engine.net.address: the address to advertise, trunk host names resolved."""

from __future__ import annotations

import ipaddress

from engine.net.address import advertised_address, resolve_hosts


def test_advertised_address_is_the_bound_one_or_a_real_interface_for_a_wildcard() -> None:
    assert advertised_address("127.0.0.1") == "127.0.0.1"
    assert advertised_address("::1") == "::1"
    wildcard = ipaddress.ip_address(advertised_address("0.0.0.0"))
    assert not wildcard.is_unspecified and wildcard.version == 4


def test_trunk_host_names_resolve_and_ip_literals_need_no_lookup() -> None:
    assert resolve_hosts(["localhost", "192.0.2.1", "no-such-host.invalid"]) == {"localhost": "127.0.0.1"}
