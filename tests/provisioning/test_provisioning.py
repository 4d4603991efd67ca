"""Provisioning: file names, templates, and the service's refusals (credentials, networks, rate limit)."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest

from engine.clock import FakeClock
from engine.provisioning import FailureLimiter, ProvisioningService
from engine.provisioning.templates import (
    LineConfig,
    model_from_user_agent,
    parse_filename,
    render_common,
    render_device,
)
from engine.store import Store
from engine.store.admin import AdminStore


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("name", "vendor", "mac"),
    [
        ("y000000000000.cfg", "yealink", None),
        ("001565AABBCC.cfg", "yealink", "001565aabbcc"),
        ("000000000000.cfg", "polycom", None),
        ("0004f2aabbcc-extension.cfg", "polycom", "0004f2aabbcc"),
    ],
)
def test_file_names(name: str, vendor: str, mac: str | None) -> None:
    parsed = parse_filename(name)
    assert parsed is not None and (parsed.vendor, parsed.mac) == (vendor, mac)


@pytest.mark.parametrize(
    "name", ["", "../etc/passwd", "001565aabbc.cfg", "001565aabbccd.cfg", "x.cfg", "0015.cfg"]
)
def test_other_names_are_not_ours(name: str) -> None:
    assert parse_filename(name) is None


def test_templates_carry_server_lines_and_credentials() -> None:
    lines = [LineConfig("201", 'Anna "A" <Empfang>', "s3cret&x"), LineConfig("202", "Two", "pw2")]
    yealink = render_device("yealink", "192.0.2.10", 5060, "pbx.example", lines)
    assert "account.1.user_name = 201" in yealink and "account.2.password = pw2" in yealink
    assert "account.1.sip_server.1.address = 192.0.2.10" in yealink
    polycom = render_device("polycom", "192.0.2.10", 5070, "pbx.example", lines)
    assert 'reg.1.auth.password="s3cret&amp;x"' in polycom
    assert 'reg.1.label="Anna &quot;A&quot; &lt;Empfang&gt;"' in polycom
    assert 'reg.2.server.1.port="5070"' in polycom
    assert "password" not in render_common("yealink") and "password" not in render_common("polycom")
    assert "[PHONE_MAC_ADDRESS]-extension.cfg" in render_common("polycom")


def test_model_from_user_agent() -> None:
    assert model_from_user_agent("Yealink SIP-T54W 96.86.0.70 00:15:65:aa:bb:cc") == "T54W"
    assert (
        model_from_user_agent("FileTransport PolycomVVX-VVX_450-UA/6.3.0.14929 Type/Application") == "VVX_450"
    )
    assert model_from_user_agent("curl/8.0") is None


@pytest.fixture
def setup(tmp_path: Path) -> tuple[ProvisioningService, FakeClock, str, str]:
    store = Store.open(tmp_path / "data")
    admin = AdminStore(store)
    _, made = admin.create_user(
        "test", {"first_name": "A", "last_name": "B"}, new_device={"mac": "00:15:65:aa:bb:cc"}
    )
    clock = FakeClock(start=1000.0)
    service = ProvisioningService(store, "192.0.2.10", 5060, clock=clock, limiter=FailureLimiter(3, 60.0))
    return service, clock, made["provisioning_password"], made["sip_password"]


def test_a_bare_mac_never_yields_credentials(setup: tuple[ProvisioningService, FakeClock, str, str]) -> None:
    service, _, password, sip_password = setup
    for auth in (None, _basic("001565aabbcc", "wrong"), "Basic !!!", _basic("other", password)):
        status, headers, body = service.handle("001565aabbcc.cfg", "198.51.100.7", auth, "")
        assert status == 401 and sip_password.encode() not in body
        assert headers["WWW-Authenticate"].startswith("Basic")
        service.limiter = FailureLimiter(3, 60.0)
    status, _, body = service.handle("001565aabbcc.cfg", "198.51.100.7", _basic("001565aabbcc", password), "")
    assert status == 200 and f"account.1.password = {sip_password}".encode() in body


def test_unknown_macs_are_rate_limited_and_logged_once(
    setup: tuple[ProvisioningService, FakeClock, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    service, clock, password, _ = setup
    caplog.set_level(logging.WARNING, logger="engine.provisioning.service")
    statuses = [service.handle(f"00156500000{i}.cfg", "203.0.113.9", None, "scanner")[0] for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    assert len([r for r in caplog.records if "203.0.113.9" in r.getMessage()]) == 1
    # Even the right credentials wait out the window; another source is unaffected.
    good = _basic("001565aabbcc", password)
    assert service.handle("001565aabbcc.cfg", "203.0.113.9", good, "")[0] == 429
    assert service.handle("001565aabbcc.cfg", "203.0.113.10", good, "")[0] == 200
    clock.advance(61)
    assert service.handle("001565aabbcc.cfg", "203.0.113.9", good, "")[0] == 200


def test_allowed_networks_restrict_the_source(
    setup: tuple[ProvisioningService, FakeClock, str, str],
) -> None:
    service, _, password, _ = setup
    admin = service.admin
    device = admin.devices()[0]
    admin.update_device("test", device.id, {"allowed_networks": ["10.1.0.0/16"]})
    good = _basic("001565aabbcc", password)
    assert service.handle("001565aabbcc.cfg", "192.0.2.1", good, "")[0] == 401
    assert service.handle("001565aabbcc-extension.cfg", "10.1.2.3", good, "")[0] == 200
    assert service.handle("y000000000000.cfg", "192.0.2.1", None, "")[0] == 200
    assert service.handle("nothing.txt", "192.0.2.1", None, "")[0] == 404
