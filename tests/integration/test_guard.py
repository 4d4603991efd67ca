"""Issue 18 part 2 against a running ``pbx serve`` with its default limits: a SIPp OPTIONS flood from
127.0.0.1 is cut off and its source banned while a line on 127.0.0.2 registers (digest, SIPp) and is
answered; SIPVicious (Debian's sipvicious) svwar finds no extension and svcrack no password, each banned
at its first request; a banned source gets nothing while other sources are served."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from .harness import SCENARIO_DIR, SMALL_USERS, PbxServer, free_port, require_tool
from .test_sipp import write_injection_file

pytestmark = pytest.mark.integration

FLOOD_SCENARIO = Path(__file__).parent / "scenarios" / "options_flood.xml"
SIPVICIOUS_HINT = "apt-get install sipvicious (scripts/test.sh does)"


def options_answered(server: PbxServer, source: str, *, user_agent: str | None = None,
                     timeout: float = 1.5) -> bool:
    """Send one OPTIONS from ``source`` (a 127.0.0.x address) and say whether any answer came back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        port = sock.getsockname()[1]
        ua = f"User-Agent: {user_agent}\r\n" if user_agent else ""
        msg = (f"OPTIONS sip:{server.host}:{server.port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bKprobe{time.monotonic_ns()};rport\r\n"
               "Max-Forwards: 70\r\n"
               f"From: <sip:probe@{source}>;tag=p1\r\nTo: <sip:{server.host}>\r\n"
               f"Call-ID: probe-{time.monotonic_ns()}@{source}\r\nCSeq: 1 OPTIONS\r\n{ua}"
               "Content-Length: 0\r\n\r\n").encode()
        sock.sendto(msg, (server.host, server.port))
        sock.settimeout(timeout)
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            return False
        return data.startswith(b"SIP/2.0 ")


def sipp_register(server: PbxServer, source: str, extension: str, password: str,
                  tmp_path: Path) -> subprocess.Popen[str]:
    sipp = require_tool("sipp", "apt-get install sip-tester (scripts/test.sh does)")
    inf = write_injection_file(tmp_path / f"reg-{extension}.csv", [(extension, password)])
    cmd = [sipp, "-sf", str(SCENARIO_DIR / "register_auth.xml"), "-inf", str(inf), "-i", source,
           "-p", str(free_port(source)), "-m", "1", "-timeout", "20s", "-recv_timeout", "5000", "-nostdin",
           f"{server.host}:{server.port}"]
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)


def test_an_options_flood_is_cut_off_while_a_phone_elsewhere_registers(pbx_factory, tmp_path: Path) -> None:
    server = pbx_factory(log_level="info")
    sipp = require_tool("sipp", "apt-get install sip-tester (scripts/test.sh does)")
    # 5,000 OPTIONS a second for 3 seconds from 127.0.0.1 (bounded: -m 15000, -timeout 20 s)
    flood = subprocess.Popen(
        [sipp, "-sf", str(FLOOD_SCENARIO), "-i", "127.0.0.1", "-p", str(free_port()), "-r", "5000",
         "-m", "15000", "-timeout", "20s", "-nostdin", f"{server.host}:{server.port}"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # the flood is on
        user = SMALL_USERS[0]
        phone = sipp_register(server, "127.0.0.2", user.extension, user.password, tmp_path)
        out, _ = phone.communicate(timeout=60)
        assert phone.returncode == 0, f"the phone on 127.0.0.2 did not register during the flood:\n{out}"
        assert options_answered(server, "127.0.0.2")
    finally:
        flood.wait(timeout=60)
    log = server.log_text()
    assert "127.0.0.1 banned for 300 s" in log, server.log_tail()
    assert not options_answered(server, "127.0.0.1")  # banned, for the flood's every port
    assert options_answered(server, "127.0.0.3")
    assert "Traceback" not in log


def run_sipvicious(tool: str, args: list[str], server: PbxServer, tmp_path: Path) -> str:
    """Run one SIPVicious tool against the server (bounded by --maximumtime and a timeout); its output.
    (Its -b option does not choose the source address here: it sends from 127.0.0.1.)"""
    binary = require_tool(tool, SIPVICIOUS_HINT)
    done = subprocess.run([binary, *args, "-p", str(server.port), "--maximumtime", "5", server.host],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    return done.stdout + done.stderr


def assert_scanner_banned(server: PbxServer, method: str) -> None:
    log = server.log_text()
    assert f"127.0.0.1 banned for 300 s: scanner User-Agent 'friendly-scanner' ({method})" in log, \
        server.log_tail()
    assert "Traceback" not in log
    assert not options_answered(server, "127.0.0.1")  # banned: a request without the User-Agent too
    assert options_answered(server, "127.0.0.8", user_agent="Yealink SIP-T46U 108.86.0.20")


def test_svwar_finds_no_extension_and_is_banned(pbx_factory, tmp_path: Path) -> None:
    server = pbx_factory(log_level="info")
    extensions = [u.extension for u in SMALL_USERS]
    out = run_sipvicious("svwar", ["-e", f"{min(extensions)}-{max(extensions)}"], server, tmp_path)
    found = [ext for ext in extensions if f"| {ext} " in out or f"|{ext} " in out]
    assert found == [], f"svwar enumerated {found}:\n{out}"
    assert_scanner_banned(server, "REGISTER")


def test_svcrack_finds_no_password_and_is_banned(pbx_factory, tmp_path: Path) -> None:
    server = pbx_factory(log_level="info")
    user = SMALL_USERS[1]
    words = tmp_path / "words.txt"
    words.write_text("\n".join(["1234", "0000", "password", user.password, "secret"]) + "\n")
    out = run_sipvicious("svcrack", ["-u", user.extension, "-d", str(words)], server, tmp_path)
    assert user.password not in out, f"svcrack found the password:\n{out}"
    assert_scanner_banned(server, "REGISTER")


def test_any_scanner_user_agent_bans_its_source(pbx_factory) -> None:
    server = pbx_factory(log_level="info")
    assert not options_answered(server, "127.0.0.7", user_agent="sipcli/v1.8")
    assert not options_answered(server, "127.0.0.7")
    assert "127.0.0.7 banned for 300 s: scanner User-Agent 'sipcli/v1.8' (OPTIONS)" in server.log_text()
    assert options_answered(server, "127.0.0.8", user_agent="Yealink SIP-T46U 108.86.0.20")
