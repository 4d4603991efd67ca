"""``pbx serve --db postgresql://...`` as a real process (issue 17, part 1): the configuration, the
registrations and the CDRs live in PostgreSQL (no pbx.sqlite3 is made), SIPp registers a line, a user added
through that process's admin API can register at once, another process's ``pbx user add --db`` is picked up
through LISTEN/NOTIFY (well before the 30 s safety poll), and a restart keeps users and registrations."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from engine.server import CONFIG_SAFETY_POLL_S
from engine.store import DB_FILE
from tests.store.conftest import db_url

from .harness import (
    SCENARIO_DIR,
    SMALL_USERS,
    PbxServer,
    bindings_of,
    free_port,
    require_tool,
    run_pbx,
    wait_http,
)
from .test_sipp import write_injection_file

__all__ = ["db_url"]

pytestmark = pytest.mark.integration

RELOAD_WAIT_S = 10.0  # well under CONFIG_SAFETY_POLL_S: only a NOTIFY can reload this soon


def sipp_register(
    server: PbxServer, extension: str, password: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """One digest-authenticated REGISTER by SIPp (bench/scenarios/register_auth.xml); exit 0 means 200."""
    sipp = require_tool("sipp", "apt-get install sip-tester (scripts/test.sh does)")
    inf = write_injection_file(tmp_path / f"reg-{extension}.csv", [(extension, password)])
    once = ["-i", "127.0.0.1", "-m", "1", "-timeout", "20s", "-recv_timeout", "5000", "-nostdin"]
    cmd = [sipp, "-sf", str(SCENARIO_DIR / "register_auth.xml"), "-inf", str(inf), *once]
    cmd += ["-p", str(free_port()), f"{server.host}:{server.port}"]
    return subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_serve_on_postgresql_registers_reloads_and_restarts(
    db_url: str | None, tmp_path: Path, pbx_factory: Callable[..., PbxServer]
) -> None:
    assert db_url is not None and db_url.startswith("postgresql+psycopg://")
    url = "postgresql://" + db_url.removeprefix("postgresql+psycopg://")  # as an operator writes it
    assert RELOAD_WAIT_S < CONFIG_SAFETY_POLL_S
    http_port = free_port()
    db = ["--db", url]
    server = pbx_factory(db=url, log_level="info", extra_args=["--http", f"127.0.0.1:{http_port}"])
    data_dir = server.data_dir
    assert not (data_dir / DB_FILE).exists(), "the store must live in PostgreSQL, not a SQLite file"

    line = SMALL_USERS[0]
    first = sipp_register(server, line.extension, line.password, tmp_path)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]

    # A user added through this process's admin API registers at once.
    token = run_pbx(
        "admin", "token", "create", "--data-dir", str(data_dir), *db, "--email", "ops@pbx.test"
    ).stdout.strip()
    wait_http(f"http://127.0.0.1:{http_port}/api/health")
    with httpx.Client(
        base_url=f"http://127.0.0.1:{http_port}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as api:
        made = api.post(
            "/api/users",
            json={"first_name": "Pat", "last_name": "Gres", "extension": "1100", "softphone": True},
        )
    assert made.status_code == 201, made.text
    password = made.json()["sip_password"]
    assert password
    added = sipp_register(server, "1100", password, tmp_path)
    assert added.returncode == 0, added.stdout[-2000:] + added.stderr[-2000:]

    # Another process adds a user: the running engine is told by NOTIFY, not by its safety poll.
    offset = len(server.log_text())
    run_pbx(
        "user",
        "add",
        "--data-dir",
        str(data_dir),
        *db,
        "--first",
        "Al",
        "--last",
        "Other",
        "--extension",
        "1101",
        "--sip-password",
        "secret-1101x",
    )
    server.wait_log("configuration reloaded", offset, RELOAD_WAIT_S)
    other = sipp_register(server, "1101", "secret-1101x", tmp_path)
    assert other.returncode == 0, other.stdout[-2000:] + other.stderr[-2000:]

    def both(rows: list[dict[str, object]]) -> bool:
        return bool(bindings_of(rows, line.extension)) and bool(bindings_of(rows, "1100"))

    server.wait_bindings(both, "the bindings of 1000 and 1100")

    server.restart()  # SIGTERM (exit 0), then the same data dir, database and port

    rows = server.reg_list()
    assert bindings_of(rows, line.extension) and bindings_of(rows, "1100"), rows
    again = sipp_register(server, "1100", password, tmp_path)  # the API's user survived the restart
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert not (data_dir / DB_FILE).exists()
