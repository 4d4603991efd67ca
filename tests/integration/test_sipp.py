"""SIPp (apt sip-tester) registers 1,000 lines with digest auth; `pbx reg list` then shows 1,000 AORs."""

from __future__ import annotations

import csv
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import SCENARIO_DIR, SMALL_USERS, PbxServer, aor_user, bulk_users, free_port, require_tool

pytestmark = pytest.mark.integration

USERS = 1000
RATE = 250  # registrations per second: a functional check, not the benchmark (bench/register.sh)


def write_injection_file(path: Path, extensions: list[tuple[str, str]]) -> Path:
    lines = ["SEQUENTIAL"] + [f"{u};{pw};[authentication username={u} password={pw}]" for u, pw in extensions]
    path.write_text("\n".join(lines) + "\n")
    return path


def sipp_stats(path: Path) -> dict[str, str]:
    """The last line of a SIPp -trace_stat file, by column name."""
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def test_sipp_registers_1000_users(pbx_factory: Callable[..., PbxServer], tmp_path: Path) -> None:
    sipp = require_tool("sipp", "apt-get install sip-tester (scripts/test.sh does)")
    scenario = SCENARIO_DIR / "register_auth.xml"
    assert scenario.is_file(), f"{scenario} is missing"
    users = bulk_users(USERS)
    # a load test from one address: the per-source flood limit (200 requests/s by default) and load
    # shedding are off
    server = pbx_factory(users=[*SMALL_USERS, *users], log_level="info",
                         extra_args=("--rate-limit", "0", "--overload-cpu", "0"))
    inf = write_injection_file(tmp_path / "users.csv", [(u.extension, u.password) for u in users])
    stat = tmp_path / "sipp_stat.csv"
    cmd = [
        sipp,
        "-sf",
        str(scenario),
        "-inf",
        str(inf),
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port()),
        "-m",
        str(USERS),
        "-r",
        str(RATE),
        "-timeout",
        "60s",
        "-recv_timeout",
        "10000",
        "-nostdin",
        "-buff_size",
        "4194304",
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
        "-trace_err",
        "-trace_counts",
        f"{server.host}:{server.port}",
    ]
    try:
        proc = subprocess.run(
            cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"sipp did not finish within 120 s: {' '.join(cmd)}\n{server.log_tail()}")
    errors = "\n".join(p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("*_errors.log"))
    stats = sipp_stats(stat) if stat.exists() else {}
    report = (
        f"command: {' '.join(cmd)}\nexit {proc.returncode}\nstats: {stats}\nstderr:\n{proc.stderr[-2000:]}\n"
        f"sipp errors:\n{errors}\n{server.log_tail(30)}"
    )
    if "authentication must use MD5" in errors:
        pytest.fail(
            "SIPp 3.6 answers only the FIRST WWW-Authenticate and only MD5: the server must list its MD5 "
            "challenge first\n" + report
        )
    assert stats, f"SIPp wrote no statistics\n{report}"
    assert int(stats.get("SuccessfulCall(C)", 0)) == USERS, report
    assert int(stats.get("FailedCall(C)", -1)) == 0, report
    assert proc.returncode == 0, report

    wanted = {u.extension for u in users}
    rows = server.wait_bindings(
        lambda rows: wanted <= {aor_user(str(r.get("aor", ""))) for r in rows},
        f"all {USERS} AORs",
        timeout=30,
    )
    registered = {aor_user(str(r.get("aor", ""))) for r in rows} & wanted
    assert len(registered) == USERS
