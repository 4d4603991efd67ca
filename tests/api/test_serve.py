"""``pbx serve --http``: the admin API, provisioning and the web admin in the engine process, next to SIP.

The first token comes from ``pbx admin token create``; a user added over the API with a new desk phone is
live for SIP without a restart (the engine polls config_version); the phone's provisioning file needs the
device's credentials, and the SIP credentials in it register.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import PbxServer, free_port, run_pbx
from tests.integration.sipclient import SipClient

pytestmark = pytest.mark.integration


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


def test_pbx_serve_http_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = run_pbx("admin", "token", "create", "--data-dir", str(data), "--email", "ops@example.com")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert len(token) == 64 and "shown once" in made.stderr
    http_port = free_port()
    server = PbxServer(data, tmp_path / "pbx.log", extra_args=["--http", f"127.0.0.1:{http_port}"])
    server.start()
    base = f"http://127.0.0.1:{http_port}"
    try:
        _wait_http(base)
        assert httpx.get(f"{base}/api/openapi.json").json()["info"]["title"] == "pbx-engine admin API"
        # The web admin is served at / by the same process (tests/web walk it in a browser).
        assert httpx.get(f"{base}/users").headers["location"] == "/login?next=/users"
        login = httpx.get(f"{base}/login")
        assert login.status_code == 200 and "/static/app.js" in login.text
        assert httpx.get(f"{base}/static/app.js").status_code == 200
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
            version = c.get("/api/company").json()["config_version"]
            created = c.post(
                "/api/users",
                json={"first_name": "Desk", "last_name": "Phone", "desk_phone": {"mac": "80:5E:C0:11:22:33"}},
            )
            assert created.status_code == 201, created.text
            body = created.json()
            extension = body["user"]["lines"][0]["extension"]
            assert c.get("/api/company").json()["config_version"] > version

        bare = httpx.get(f"{base}/prov/805ec0112233.cfg")
        assert bare.status_code == 401 and "password" not in bare.text
        wrong = httpx.get(f"{base}/prov/805ec0112233.cfg", auth=("805ec0112233", "guess"))
        assert wrong.status_code == 401
        common = httpx.get(f"{base}/prov/y000000000000.cfg")
        assert common.status_code == 200 and "password" not in common.text
        fetched = httpx.get(
            f"{base}/prov/805ec0112233.cfg",
            auth=("805ec0112233", body["provisioning_password"]),
            headers={"User-Agent": "Yealink SIP-T46U 108.86.0.20 80:5e:c0:11:22:33"},
        )
        assert fetched.status_code == 200, fetched.text
        config = dict(line.split(" = ", 1) for line in fetched.text.splitlines() if " = " in line)
        assert config["account.1.user_name"] == extension
        assert config["account.1.sip_server.1.port"] == str(server.port)

        # The phone registers with what it fetched: the API's change is live in the running engine.
        deadline = time.monotonic() + 10
        status = 0
        while time.monotonic() < deadline and status != 200:
            with SipClient(server.addr) as phone:
                status = phone.register(extension, config["account.1.password"]).status
            if status != 200:
                time.sleep(0.3)
        assert status == 200
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
            device = c.get("/api/devices").json()[0]
        assert device["model"] == "T46U" and device["vendor"] == "yealink"
        assert device["last_provisioned_at"] is not None
    finally:
        rc = server.stop()
    assert rc == 0, server.log_tail()
    assert "admin API on http://127.0.0.1" in server.log_text()


def test_test_servers_run_without_the_admin_api_unless_a_test_asks(tmp_path: Path) -> None:
    # Parallel ``pbx serve`` processes would all bind the API's default 127.0.0.1:8080.
    plain = PbxServer(tmp_path, tmp_path / "a.log").command()
    assert plain.count("--http") == 1 and plain[plain.index("--http") + 1] == "off"
    asked = PbxServer(tmp_path, tmp_path / "b.log", extra_args=["--http", "127.0.0.1:9"]).command()
    assert asked.count("--http") == 1 and asked[asked.index("--http") + 1] == "127.0.0.1:9"
    alias = PbxServer(tmp_path, tmp_path / "c.log", extra_args=["--api=127.0.0.1:9"]).command()
    assert "--http" not in alias
