"""The ``pbx`` command line as operators and the integration tests run it: a subprocess per command."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.cli import build_parser, main, parse_hostport
from engine.model import CallRecord, Direction, Disposition, LegRecord
from engine.net.certificate import CertificateFiles
from engine.net.overload import OverloadConfig
from engine.sip.auth import compute_ha1
from engine.sip.endpoint import LoadLimits
from engine.sip.guard import GuardConfig
from engine.store import BindingRecord, Store
from engine.voicemail.email import SmtpConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


EXAMPLE = REPO_ROOT / "config" / "example-company.yaml"


def pbx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def pbx_json(*args: str) -> Any:
    done = pbx(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_user_add_on_a_new_data_dir_creates_an_empty_company(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    done = pbx("user", "add", "--data-dir", str(data), "--first", "Anna", "--last", "Schmidt")
    assert done.returncode == 0, done.stderr
    assert "extension:    201" in done.stdout and "SIP password:" in done.stdout
    store = Store.open(data)
    try:
        assert [u.last_name for u in store.users()] == ["Schmidt"]  # not the example company's five
        assert store.company().name != "Beispiel GmbH"
    finally:
        store.close()


def test_user_add_json_shape_and_next_free_extension(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    first = pbx_json(
        "user",
        "add",
        "--data-dir",
        data,
        "--first",
        "Anna",
        "--last",
        "Schmidt",
        "--email",
        "anna@example.org",
    )
    assert set(first) >= {"user", "line", "extension", "sip_username", "sip_password", "sip_realm"}
    assert first["extension"] == first["sip_username"] == first["line"]["extension"] == "201"
    assert first["user"] == {
        "id": 1,
        "first_name": "Anna",
        "last_name": "Schmidt",
        "email": "anna@example.org",
    }
    assert len(first["sip_password"]) >= 16
    explicit = pbx_json(
        "user",
        "add",
        "--data-dir",
        data,
        "--first",
        "Bob",
        "--last",
        "Braun",
        "--extension",
        "203",
        "--sip-password",
        "secret-203",
    )
    assert (explicit["extension"], explicit["sip_password"]) == ("203", "secret-203")
    assert pbx_json("user", "add", "--data-dir", data, "--first", "C", "--last", "D")["extension"] == "202"
    store = Store.open(data)
    try:
        creds = store.sip_credentials()
    finally:
        store.close()
    assert creds["203"].ha1_md5 == compute_ha1("203", explicit["sip_realm"], "secret-203")
    assert creds["201"].ha1_sha256 == compute_ha1("201", first["sip_realm"], first["sip_password"], "SHA-256")


def test_user_add_duplicate_extension_exits_2_naming_the_field(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    assert (
        pbx("user", "add", "--data-dir", data, "--first", "A", "--last", "B", "--extension", "201").returncode
        == 0
    )
    done = pbx("user", "add", "--data-dir", data, "--first", "C", "--last", "D", "--extension", "201")
    assert done.returncode == 2
    assert "extension: 201 is already in use" in done.stderr
    as_json = pbx(
        "user", "add", "--data-dir", data, "--first", "C", "--last", "D", "--extension", "20", "--json"
    )
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"]["field"] == "extension"


def test_import_the_example_and_a_bad_file(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    done = pbx("import", str(EXAMPLE), "--data-dir", data)
    assert done.returncode == 0, done.stderr
    assert "Beispiel GmbH: 5 users, 5 lines, 2 numbers, 1 dial plan" in done.stdout
    bad = yaml.safe_load(EXAMPLE.read_text())
    bad["users"][3]["extension"] = "201"
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text(yaml.safe_dump(bad))
    failed = pbx("import", str(bad_file), "--data-dir", data)
    assert failed.returncode == 2
    assert "users[3].extension: 201 is already in use by users[0]" in failed.stderr
    store = Store.open(data)
    try:
        assert store.company().name == "Beispiel GmbH" and len(store.lines()) == 5
    finally:
        store.close()


def test_import_of_a_thousand_users_prints_a_json_summary(tmp_path: Path) -> None:
    doc = {
        "version": 1,
        "company": {"name": "Integration Test GmbH", "sip_realm": "pbx.test"},
        "users": [
            {"first_name": "Load", "last_name": f"U{n}", "extension": str(n), "sip_password": f"pw{n}"}
            for n in range(100000, 101000)
        ],
    }
    path = tmp_path / "bulk.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    started = time.perf_counter()
    summary = pbx_json("import", str(path), "--data-dir", str(tmp_path / "data"))
    assert time.perf_counter() - started < 30
    assert (summary["users"], summary["lines"], summary["company"]) == (1000, 1000, "Integration Test GmbH")


def test_import_of_a_missing_file_fails_cleanly(tmp_path: Path) -> None:
    done = pbx("import", str(tmp_path / "nope.yaml"), "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 1 and "nope.yaml" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()


def test_reg_list_on_an_empty_store_and_with_bindings(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = pbx("reg", "list", "--data-dir", str(data))
    assert done.returncode == 0 and "No registrations." in done.stdout
    assert pbx_json("reg", "list", "--data-dir", str(data)) == []
    store = Store.open(data)
    try:
        store.write_bindings(
            [
                BindingRecord(
                    "sip:201@pbx.test",
                    "sip:201@10.0.0.1:5062",
                    time.time() + 600,
                    1.0,
                    "c",
                    3,
                    "udp",
                    "10.0.0.1",
                    5062,
                    "baresip",
                )
            ]
        )
    finally:
        store.close()
    (row,) = pbx_json("reg", "list", "--data-dir", str(data))
    assert (row["aor"], row["contact"], row["source_port"], row["user_agent"]) == (
        "sip:201@pbx.test",
        "sip:201@10.0.0.1:5062",
        5062,
        "baresip",
    )
    assert 590 <= row["expires_in"] <= 600
    table = pbx("reg", "list", "--data-dir", str(data)).stdout
    assert "sip:201@10.0.0.1:5062" in table and "1 registration" in table


def test_help_documents_every_command() -> None:
    done = pbx("--help")
    assert done.returncode == 0
    for command in ("serve", "user", "import", "reg", "cdr"):
        assert command in done.stdout
    serve_help = pbx("serve", "--help").stdout
    for flag in ("--data-dir", "--sip", "--api", "--log-level"):
        assert flag in serve_help
    add_help = pbx("user", "add", "--help").stdout
    for flag in ("--first", "--last", "--email", "--extension", "--sip-password", "--json"):
        assert flag in add_help
    assert "--dial-permissions" in add_help and "international must be granted" in " ".join(add_help.split())
    cdr_help = pbx("cdr", "list", "--help").stdout
    for flag in ("--data-dir", "--limit", "--json"):
        assert flag in cdr_help
    assert pbx("--version").stdout.startswith("pbx-engine ")


def test_serve_arguments_are_parsed_into_the_server_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake_serve(**kwargs: Any) -> int:
        calls.append(kwargs)
        return 0

    monkeypatch.setitem(sys.modules, "engine.server", types.SimpleNamespace(serve=fake_serve))
    assert (
        main(
            [
                "serve",
                "--data-dir",
                "/tmp/x",
                "--db",
                "postgresql://pbx@db.example/pbx",
                "--log-format",
                "json",
                "--sip",
                "127.0.0.1:5070",
                "--api",
                "[::1]:8080",
                "--log-level",
                "debug",
                "--digest",
                "sha-256, MD5",
                "--rtp-ports",
                "30000-30099",
                "--ring-timeout",
                "12.5",
                "--park-timeout",
                "90",
                "--advertise",
                "192.0.2.10",
                "--smtp",
                "127.0.0.1:2525",
                "--smtp-from",
                "pbx@example.com",
                "--no-hold-music",
                "--tls",
                "127.0.0.1:5071",
                "--tls-cert",
                "/etc/pbx/sip.crt",
                "--tls-key",
                "/etc/pbx/sip.key",
                "--ws",
                "127.0.0.1:8088",
                "--wss",
                "127.0.0.1:8089",
                "--rate-limit",
                "50",
                "--ban-seconds",
                "600",
                "--hot-desk-hours",
                "8",
                "--max-transactions",
                "1000",
                "--max-calls",
                "40",
                "--max-connections",
                "500",
                "--max-connections-per-source",
                "20",
                "--overload-cpu",
                "0.8",
                "--retry-after",
                "30",
            ]
        )
        == 0
    )
    assert main(["serve"]) == 0
    assert calls == [
        {
            "data_dir": Path("/tmp/x"),
            "db_url": "postgresql://pbx@db.example/pbx",
            "log_format": "json",
            "sip_host": "127.0.0.1",
            "sip_port": 5070,
            "api": ("::1", 8080),
            "log_level": "debug",
            "digest_algorithms": ("SHA-256", "MD5"),
            "rtp_ports": (30000, 30099),
            "ring_timeout": 12.5,
            "park_timeout": 90.0,
            "hot_desk_hours": 8.0,
            "advertise": "192.0.2.10",
            "smtp": SmtpConfig("127.0.0.1", 2525, "pbx@example.com"),
            "hold_music": False,
            "tls": ("127.0.0.1", 5071),
            "tls_files": CertificateFiles(Path("/etc/pbx/sip.crt"), Path("/etc/pbx/sip.key")),
            "ws": ("127.0.0.1", 8088),
            "wss": ("127.0.0.1", 8089),
            "guard": GuardConfig(rate=50, burst=100, ban_s=600),
            "limits": LoadLimits(max_transactions=1000, max_calls=40, retry_after_s=30),
            "overload": OverloadConfig(enter=0.8, leave=0.8 * 0.85),
            "connections": (500, 20),
        },
        {
            "data_dir": Path("./data"),
            "db_url": None,
            "log_format": "text",
            "sip_host": "0.0.0.0",
            "sip_port": 5060,
            "api": ("127.0.0.1", 8080),  # --http's default (issue 6)
            "log_level": "info",
            "digest_algorithms": ("MD5",),
            "rtp_ports": (20000, 29999),
            "ring_timeout": 30.0,
            "park_timeout": 60.0,
            "hot_desk_hours": 12.0,
            "advertise": None,
            "smtp": None,
            "hold_music": True,
            "tls": None,
            "tls_files": None,
            "ws": None,
            "wss": None,
            "guard": GuardConfig(),
            "limits": LoadLimits(),
            "overload": OverloadConfig(enter=0.95, leave=0.95 * 0.85),
            "connections": (10_000, 200),
        },
    ]
    # The certificate and key go together, and only with a TLS listener.
    assert main(["serve", "--tls", "127.0.0.1:5061", "--tls-cert", "/etc/pbx/sip.crt"]) == 2
    assert main(["serve", "--tls-cert", "/etc/pbx/sip.crt", "--tls-key", "/etc/pbx/sip.key"]) == 2
    # --wss uses the same certificate: it is enough for --tls-cert.
    assert main(["serve", "--wss", "127.0.0.1:8443", "--tls-cert", "/etc/pbx/sip.crt",
                 "--tls-key", "/etc/pbx/sip.key"]) == 0
    assert calls[2]["wss"] == ("127.0.0.1", 8443) and calls[2]["tls"] is None
    assert len(calls) == 3
    for bad in ("SHA-512", "MD5,MD5", ""):
        with pytest.raises(SystemExit):
            main(["serve", "--digest", bad])
    for flag, bad in (("--rtp-ports", "2000"), ("--rtp-ports", "30001-30000"), ("--rtp-ports", "80-90"),
                      ("--ring-timeout", "0"), ("--ring-timeout", "soon"), ("--advertise", "pbx.example"),
                      ("--smtp", "mail.example"), ("--tls", "5061"), ("--rate-limit", "0.5"),
                      ("--rate-limit", "-1"), ("--rate-limit", "many"), ("--ban-seconds", "0"),
                      ("--overload-cpu", "1.5"), ("--overload-cpu", "-0.1"), ("--max-calls", "-1"),
                      ("--max-transactions", "many")):
        with pytest.raises(SystemExit):
            main(["serve", flag, bad])


def test_serve_without_a_server_module_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "engine.server", None)  # makes the import fail as if missing
    assert main(["serve"]) == 1
    assert "engine.server is missing" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["5060", "host:", ":5060", "host:99999", "::1:5060", "h:p"])
def test_bad_host_port_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["serve", "--sip", bad])
    assert exit_.value.code == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_parse_hostport() -> None:
    assert parse_hostport("0.0.0.0:5060") == ("0.0.0.0", 5060)
    assert parse_hostport("[::]:5060") == ("::", 5060)
    assert parse_hostport("pbx.example:5080") == ("pbx.example", 5080)


def test_user_add_with_dial_permissions(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    default = pbx_json("user", "add", "--data-dir", data, "--first", "A", "--last", "B")
    assert default["line"]["dial_permissions"] == ["internal", "local", "national", "mobile"]
    granted = pbx_json(
        "user", "add", "--data-dir", data, "--first", "C", "--last", "D",
        "--dial-permissions", "international, internal",
    )
    assert granted["line"]["dial_permissions"] == ["internal", "international"]
    text = pbx("user", "add", "--data-dir", data, "--first", "E", "--last", "F", "--dial-permissions", "")
    assert text.returncode == 0 and "may dial:     emergency numbers only" in text.stdout
    bad = pbx(
        "user", "add", "--data-dir", data, "--first", "G", "--last", "H", "--dial-permissions", "local,abroad"
    )
    assert bad.returncode == 2
    assert "dial_permissions[1]: unknown permission 'abroad'" in bad.stderr
    store = Store.open(data)
    try:
        assert [sorted(line.dial_permissions) for line in store.lines()] == [
            ["internal", "local", "mobile", "national"],
            ["internal", "international"],
            [],
        ]
    finally:
        store.close()


def test_import_counts_the_trunks(tmp_path: Path) -> None:
    summary = pbx_json("import", str(EXAMPLE), "--data-dir", str(tmp_path / "data"))
    assert summary["trunks"] == 1
    text = pbx("import", str(EXAMPLE), "--data-dir", str(tmp_path / "data")).stdout
    assert "2 numbers, 1 dial plan, 1 trunk in" in text


def _record(call_id: str, started_at: float, **over: Any) -> CallRecord:
    fields: dict[str, Any] = {
        "call_id": call_id,
        "direction": Direction.INBOUND,
        "caller": "+4915112345678",
        "caller_name": "Erika Mustermann",
        "callee": "201",
        "did": "+493023125100",
        "trunk": "carrier",
        "started_at": started_at,
        "answered_at": started_at + 3,
        "ended_at": started_at + 3 + 754,
        "disposition": Disposition.ANSWERED,
        "status": 200,
        "hangup_cause": "caller hung up",
        "legs": (LegRecord("sip:201@10.0.0.1:5062", started_at, started_at + 3, started_at + 757, 200),),
    }
    fields.update(over)
    return CallRecord(**fields)


def test_cdr_list_table_json_and_limit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = pbx("cdr", "list", "--data-dir", str(data))
    assert done.returncode == 0 and "No calls recorded." in done.stdout
    assert pbx_json("cdr", "list", "--data-dir", str(data)) == []
    assert pbx("import", str(EXAMPLE), "--data-dir", str(data)).returncode == 0  # Europe/Berlin
    t0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC, 01:00 in Berlin
    store = Store.open(data)
    try:
        store.write_cdrs(
            [
                _record("in-1", t0),
                _record(
                    "out-1", t0 + 3600, direction=Direction.OUTBOUND, caller="201", caller_name="Empfang",
                    callee="+441632960000", did=None, answered_at=None, ended_at=t0 + 3620,
                    disposition=Disposition.NO_ANSWER, status=408, hangup_cause="ring timeout", legs=(),
                ),
                _record("int-1", t0 + 7200, direction=Direction.INTERNAL, caller="202", caller_name="",
                        callee="203", did=None, trunk=None, ended_at=t0 + 7200 + 3 + 3725),
            ]
        )
    finally:
        store.close()
    table = pbx("cdr", "list", "--data-dir", str(data)).stdout.splitlines()
    assert table[0].split() == [
        "TIME", "(Europe/Berlin)", "DIRECTION", "CALLER", "CALLEE", "DID", "DISPOSITION", "DURATION", "CAUSE",
    ]
    assert table[1].startswith("2026-01-01 03:00:00") and table[1].split()[2:4] == ["internal", "202"]
    assert "1:02:05" in table[1]
    assert "Empfang <201>" in table[2] and "no_answer" in table[2] and "ring timeout" in table[2]
    assert table[2].split()[-3] == "-"  # no talk time
    assert table[3].startswith("2026-01-01 01:00:00")
    assert "Erika Mustermann <+4915112345678>" in table[3] and "12:34" in table[3]
    assert table[3].split()[-5:] == ["answered", "12:34", "caller", "hung", "up"]
    assert table[-1] == "3 calls, newest first"
    rows = pbx_json("cdr", "list", "--data-dir", str(data), "--limit", "2")
    assert [r["call_id"] for r in rows] == ["int-1", "out-1"]
    assert rows[1] == {
        "call_id": "out-1",
        "direction": "outbound",
        "caller": "201",
        "caller_name": "Empfang",
        "callee": "+441632960000",
        "did": None,
        "trunk": "carrier",
        "started_at": t0 + 3600,
        "answered_at": None,
        "ended_at": t0 + 3620,
        "disposition": "no_answer",
        "status": 408,
        "hangup_cause": "ring timeout",
        "legs": [],
        "path": [],
        "queues": [],
        "duration": 0.0,
    }
    (inbound,) = pbx_json("cdr", "list", "--data-dir", str(data))[2:]
    assert inbound["legs"] == [
        {"target": "sip:201@10.0.0.1:5062", "started_at": t0, "answered_at": t0 + 3, "ended_at": t0 + 757,
         "status": 200}
    ]
    assert inbound["duration"] == 754.0
    for bad in ("0", "-1", "x"):
        assert pbx("cdr", "list", "--data-dir", str(data), "--limit", bad).returncode == 2


def test_a_db_url_that_is_not_one_fails_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--db`` with a URL SQLAlchemy has no dialect for: exit 1, a line naming the problem, no traceback."""
    assert main(["reg", "list", "--data-dir", str(tmp_path), "--db", "nosuchdb://x/y"]) == 1
    err = capsys.readouterr().err
    assert "not a database URL" in err and "Traceback" not in err


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_postgresql_fails_with_one_line_and_no_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--db`` naming a PostgreSQL server that is not there: exit 1 and one line that names the database
    (password hidden) and the driver's reason, for a data command and for ``pbx serve``; no traceback."""
    url = f"postgresql://pbx:s3cret-pw@127.0.0.1:{_closed_port()}/pbx"
    assert main(["reg", "list", "--data-dir", str(tmp_path), "--db", url]) == 1
    err = capsys.readouterr().err
    assert "cannot open the database" in err and "127.0.0.1" in err, err
    assert "refused" in err.lower() and "s3cret-pw" not in err and "Traceback" not in err, err
    served = pbx("serve", "--data-dir", str(tmp_path), "--db", url, "--sip", f"127.0.0.1:{_closed_port()}",
                 "--http", f"127.0.0.1:{_closed_port()}")
    assert served.returncode == 1, served
    assert "cannot open the database" in served.stderr and "Traceback" not in served.stderr, served.stderr
    assert "s3cret-pw" not in served.stderr + served.stdout
