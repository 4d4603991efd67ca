"""The end of the seed's guide on a real ``pbx serve --http``: a desk phone provisioned from the file it
fetched registers and receives a call on the company's number.

Everything is done the way an administrator and a phone would: the first token from ``pbx admin token
create``; over the API the seed's guide (users with a new Polycom desk phone, a softphone and none, admin
permissions, a bulk edit, web login enabled, registered and logged in, a number ordered from the pool as
the line's caller ID, a number ported in and completed, a location on the desk phone), a greeting uploaded
as a 44.1 kHz WAV, a dial plan that plays it and then rings the user's line, the ported number routed to
that plan. The phone (pjsua2) fetches ``<mac>-extension.cfg`` with
its provisioning credentials and registers with only what that file says (user, password, realm, server,
port). A carrier (pjsua2 on 127.0.0.2, which the company's trunk trusts by source) calls the number: the
caller hears the uploaded greeting (checked by its frequency), the phone rings and answers, both sides are
CONFIRMED, and the call's CDR is read back over the reports API.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.audio import dominant_frequency, signal_seconds, write_tone
from tests.integration.harness import PbxServer, free_port, require_module, run_pbx
from tests.integration.sipclient import SipClient
from tests.integration.test_calls_phones import rtp_range
from tests.peers.softphone import Softphone

pytestmark = pytest.mark.integration

REALM = "guide.test"
MAC = "00:04:F2:AB:CD:EF"  # a Polycom prefix
GREETING_HZ = 600.0
COMPANY = f"""version: 1
company: {{name: Guide Test Inc, sip_realm: {REALM}, timezone: America/New_York, country: US}}
users: []
trunks:
  - {{name: carrier, sources: ["127.0.0.2"], host: 127.0.0.2, port: 5080}}
"""


def _wait_http(base: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the admin API at {base} did not answer within {timeout} s", pytrace=False)


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r.json() if r.content else None


def polycom_account(text: str) -> dict[str, str]:
    """Line 1 of a Polycom ``<mac>-extension.cfg``: what the phone registers with."""
    reg = ET.fromstring(text).find("reg")
    assert reg is not None, text
    a = reg.attrib
    return {
        "user": a["reg.1.auth.userId"],
        "password": a["reg.1.auth.password"],
        "realm": a["reg.1.auth.domain"],
        "server": f"{a['reg.1.server.1.address']}:{a['reg.1.server.1.port']}",
        "address": a["reg.1.address"],
    }


def wait_live(server: str, user: str, password: str, timeout: float = 10.0) -> None:
    """Until the running engine accepts the line's credentials (it polls the store's config_version): a
    REGISTER without Contact only queries the bindings, so no stray contact is left to be rung."""
    host, port = server.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    status = 0
    while time.monotonic() < deadline:
        with SipClient((host, int(port))) as probe:
            status = probe.register(user, password, contact=None).status
        if status == 200:
            return
        time.sleep(0.3)
    pytest.fail(f"the engine never accepted the provisioned credentials (last status {status})")


def test_a_provisioned_pjsua2_phone_receives_a_call_on_the_routed_number(tmp_path: Path) -> None:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    data = tmp_path / "data"
    company = tmp_path / "company.yaml"
    company.write_text(COMPANY)
    run_pbx("import", str(company), "--data-dir", str(data))
    token = run_pbx("admin", "token", "create", "--data-dir", str(data), "--email", "ops@example.com")
    admin_token = token.stdout.strip()
    http_port = free_port()
    rtp = rtp_range()
    server = PbxServer(
        data,
        tmp_path / "pbx.log",
        extra_args=["--http", f"127.0.0.1:{http_port}", "--rtp-ports", f"{rtp[0]}-{rtp[1]}"],
    )
    server.start()
    base = f"http://127.0.0.1:{http_port}"
    phones: list[Softphone] = []
    try:
        _wait_http(base)
        auth = {"Authorization": f"Bearer {admin_token}"}
        with httpx.Client(base_url=base, headers=auth, timeout=30) as c:
            made = _ok(
                c.post(
                    "/api/users",
                    json={
                        "first_name": "Paula",
                        "last_name": "Polycom",
                        "email": "paula@example.com",
                        "desk_phone": {"mac": MAC},
                    },
                ),
                201,
            )
            line = made["user"]["lines"][0]
            paula = made["user"]["id"]
            soft = _ok(
                c.post("/api/users", json={"first_name": "Sam", "last_name": "Soft", "softphone": True}), 201
            )
            alone = _ok(c.post("/api/users", json={"first_name": "Stan", "last_name": "Alone"}), 201)
            assert soft["user"]["softphone"] and not alone["user"]["lines"][0]["device_id"]
            rights = {"admin": {"role": "custom", "permissions": ["configure_pbx", "view_reports"]}}
            _ok(c.patch(f"/api/users/{paula}", json=rights))
            bulk = {
                "rows": [
                    {"id": soft["user"]["id"], "dial_username": "3050", "dial_password": "4321"},
                    {"id": paula, "allow_web_login": True, "groups": ["Front desk"]},
                ]
            }
            _ok(c.post("/api/users/bulk", json=bulk))
            invitation = _ok(c.post(f"/api/users/{paula}/login-invitation"), 201)["token"]
            # A number ordered from the pool for the caller ID; the main number ported in, then routed.
            _ok(c.post("/api/numbers/pool", json={"numbers": ["+1 212 555 0142"]}), 201)
            order = _ok(c.post("/api/numbers/orders", json={"quantity": 1, "prefix": "+1212"}), 201)
            (ordered,) = order["numbers"]
            port = {
                "numbers": ["+1 646 555 0199"],
                "carrier": "Old Telco",
                "account_name": "Guide Test Inc",
                "account_number": "A-1001",
            }
            port_id = _ok(c.post("/api/numbers/port-ins", json=port), 201)["id"]
            for step in (
                {"action": "submit"},
                {"action": "set_foc", "foc_date": "2027-01-15"},
                {"action": "complete"},
            ):
                _ok(c.post(f"/api/numbers/port-ins/{port_id}/actions", json=step))
            number = "+16465550199"
            location = {
                "name": "HQ",
                "country": "US",
                "street": "350 South Fifth Avenue",
                "city": "New York",
                "region": "NY",
                "postal_code": "10118",
            }
            loc = _ok(c.post("/api/locations", json=location), 201)
            _ok(c.patch(f"/api/devices/{line['device_id']}", json={"location_id": loc["id"]}))
            greeting = write_tone(tmp_path / "greeting-44k.wav", GREETING_HZ, 1.5, rate_hz=44_100)
            wav = {"Content-Type": "audio/wav"}
            up = c.put("/api/sound-clips/welcome", content=greeting.read_bytes(), headers=wav)
            assert _ok(up)["sample_rate_hz"] == 8000
            graph = {
                "start": "hello",
                "nodes": {
                    "hello": {"type": "play_clip", "clip": "welcome", "next": {"next": "ring"}},
                    "ring": {
                        "type": "simple_dial",
                        "line": line["extension"],
                        "ring_seconds": 20,
                        "next": {"no_answer": "bye"},
                    },
                    "bye": {"type": "hangup"},
                },
            }
            _ok(c.post("/api/dial-plans", json={"name": "reception", "graph": graph}), 201)
            _ok(c.put(f"/api/numbers/{number}/route", json={"kind": "dial_plan", "target": "reception"}))
            _ok(c.patch(f"/api/lines/{line['id']}", json={"external_caller_id": ordered}))
        with httpx.Client(base_url=base, timeout=30) as browser:  # Paula registers her web login
            pw = "front desk secret"
            reg = {"token": invitation, "email": "paula@example.com", "password": pw}
            _ok(browser.post("/api/login/register", json=reg), 201)
            assert (
                _ok(browser.post("/api/login", json={"email": "paula@example.com", "password": pw}))["role"]
                == "custom"
            )

        mac = MAC.replace(":", "").lower()
        bare = httpx.get(f"{base}/prov/{mac}-extension.cfg")
        assert bare.status_code == 401 and made["sip_password"] not in bare.text
        fetched = httpx.get(
            f"{base}/prov/{mac}-extension.cfg",
            auth=(mac, made["provisioning_password"]),
            headers={"User-Agent": "PolycomVVX-VVX_450-UA/6.3.0.14929"},
        )
        assert fetched.status_code == 200, fetched.text
        account = polycom_account(fetched.text)
        assert account["server"] == f"127.0.0.1:{server.port}" and account["realm"] == REALM
        wait_live(account["server"], account["user"], account["password"])

        desk = Softphone.pjsua2(
            "desk",
            tmp_path,
            user=account["user"],
            password=account["password"],
            realm=account["realm"],
            registrar=account["server"],
            auto_answer=200,
            ring_seconds=2.5,
        )
        phones.append(desk)
        desk.start()
        desk.wait_registered()
        carrier = Softphone.pjsua2("carrier", tmp_path, user="carrier", extra=["--bind", "127.0.0.2"])
        phones.append(carrier)
        carrier.start()

        carrier.call(f"sip:{number}@127.0.0.1:{server.port}")
        carrier.wait_state("CONFIRMED")  # the plan answers to play the greeting
        carrier.record(tmp_path / "heard.wav")
        time.sleep(1.2)
        heard = str(carrier.stop_record()["path"])
        assert abs(dominant_frequency(heard) - GREETING_HZ) <= 25.0, "the caller did not hear the greeting"
        assert signal_seconds(heard) >= 0.8
        incoming = desk.wait_for("incoming_call", timeout=15.0)
        assert incoming
        desk.wait_state("CONFIRMED")
        time.sleep(0.5)
        carrier.hangup()
        desk.wait_state("DISCONNECTED", fail_early=False)
        carrier.wait_state("DISCONNECTED", fail_early=False)

        with httpx.Client(base_url=base, headers=auth, timeout=30) as c:
            deadline = time.monotonic() + 10
            calls: list[dict[str, Any]] = []
            while time.monotonic() < deadline and not calls:
                calls = _ok(c.get("/api/reports/calls", params={"party": number}))
                time.sleep(0.2)
            device = _ok(c.get("/api/devices"))[0]
        assert len(calls) == 1, calls
        (cdr,) = calls
        assert (cdr["direction"], cdr["did"], cdr["disposition"]) == ("inbound", number, "answered"), cdr
        assert cdr["answered_at"] is not None and cdr["ended_at"] >= cdr["answered_at"]
        assert any("reception/hello" in step for step in cdr["path"]), cdr["path"]
        assert any("reception/ring" in step for step in cdr["path"]), cdr["path"]
        assert (device["vendor"], device["model"]) == ("polycom", "VVX_450")
        assert device["location_id"] == loc["id"]
    finally:
        for phone in phones:
            phone.close()
        rc = server.stop()
    assert rc == 0, server.log_tail()
    assert "Traceback" not in server.log_text(), server.log_tail(120)
