"""Process harness for the integration tests: a real ``pbx serve`` subprocess, the ``pbx`` CLI, test
companies, and peer processes (tests/peers/*.py) that report JSON events on stdout.

Every wait here has a deadline, and every failure message carries what is needed to debug it without
rerunning: the server's log tail, the peer's events and stderr, the command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import pytest
import yaml

from .sipclient import SipClient

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
SHARED_DIR: Final = REPO_ROOT.parent / "shared"
PEERS_DIR: Final = REPO_ROOT / "tests" / "peers"
SCENARIO_DIR: Final = REPO_ROOT / "bench" / "scenarios"

TEST_REALM: Final = "pbx.test"
START_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 15.0


@dataclass(frozen=True)
class LineUser:
    """A test user and its line: the SIP username is the extension."""

    extension: str
    password: str
    first: str = "Test"
    last: str = "User"


#: Ten lines 1000..1009 for the functional tests.
SMALL_USERS: Final = tuple(
    LineUser(str(1000 + i), f"secret-{1000 + i}", "Test", f"User{i}") for i in range(10)
)


def bulk_users(count: int, first: int = 100000) -> list[LineUser]:
    """``count`` lines from ``first`` upwards with password ``pw<extension>`` (the anchors' convention)."""
    return [LineUser(str(u), f"pw{u}", "Load", f"U{u}") for u in range(first, first + count)]


def write_company_file(path: Path, users: Sequence[LineUser], realm: str = TEST_REALM) -> Path:
    """A company document in the shape of config/example-company.yaml, for ``pbx import``."""
    doc = {
        "version": 1,
        "company": {
            "name": "Integration Test GmbH",
            "sip_realm": realm,
            "timezone": "Europe/Berlin",
            "country": "DE",
        },
        # Voicemail off: these lines test the SIP layer, where busy and no answer must reach the caller
        # (voicemail, which answers such calls instead, is tested in test_dialplan_calls/test_voicemail).
        "users": [
            {"first_name": u.first, "last_name": u.last, "extension": u.extension, "sip_password": u.password,
             "voicemail": False}
            for u in users
        ],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def require_tool(name: str, install_hint: str) -> str:
    """The path of an executable; a missing tool FAILS the test (never skips), with how to install it."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` is not installed, so this test cannot run: {install_hint}", pytrace=False)
    return found


def require_module(name: str, install_hint: str) -> None:
    import importlib.util

    if importlib.util.find_spec(name) is None:
        pytest.fail(
            f"Python module `{name}` is not installed in {sys.executable}: {install_hint}", pytrace=False
        )


def free_port(host: str = "127.0.0.1", *, span: int = 1) -> int:
    """A port free for both UDP and TCP on ``host`` (``span`` consecutive ports, for peers that use p+1)."""
    for _ in range(200):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((host, 0))
        base = int(probe.getsockname()[1])
        probe.close()
        if base + span > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(base, base + span):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    s = socket.socket(socket.AF_INET, kind)
                    held.append(s)
                    s.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free UDP+TCP port found")


def ping(addr: tuple[str, int], timeout: float = 1.0) -> int | None:
    """The status code the server answers an OPTIONS with over UDP (lenient: readiness, not conformance)."""
    with SipClient(addr) as client:
        uri = f"sip:{addr[0]}:{addr[1]}"
        client.send_raw(client.build("OPTIONS", uri, []))
        data = client.transport.recv(timeout)
    if data is None or not data.startswith(b"SIP/2.0 "):
        return None
    return int(data[8:11]) if data[8:11].isdigit() else None


def pbx_command() -> list[str]:
    """The ``pbx`` console script of this interpreter's environment (``PBX_COMMAND`` overrides it)."""
    override = os.environ.get("PBX_COMMAND")
    if override:
        return shlex.split(override)
    beside = Path(sys.executable).with_name("pbx")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("pbx")
    if found:
        return [found]
    pytest.fail(
        "the `pbx` command is not installed (run `pip install -e '.[test]'` in the repo)", pytrace=False
    )


def run_pbx(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """Run a ``pbx`` CLI command to completion; fails the test (with its output) on a nonzero exit."""
    cmd = [*pbx_command(), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`{' '.join(cmd)}` did not finish within {timeout} s; output: {exc.output!r}")
    if proc.returncode != 0:
        pytest.fail(
            f"`{' '.join(cmd)}` exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def aor_user(aor: str) -> str:
    """'sip:1000@pbx.test' / '1000@pbx.test' / '1000' -> '1000'."""
    text = aor.split(":", 1)[1] if aor.lower().startswith(("sip:", "sips:")) else aor
    return text.split("@", 1)[0]


class PbxServer:
    """A ``pbx serve`` subprocess on 127.0.0.1 (UDP and TCP on one port), its data dir and its log."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_level: str = "debug",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.extra_args = tuple(extra_args)
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.data_dir = data_dir
        self.log_path = log_path
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_codes: list[int] = []
        self.failed_start = False  # already reported by start(): teardown does not repeat it
        self._log: IO[bytes] | None = None

    @property
    def addr(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        # ``pbx serve`` binds the admin API on 127.0.0.1:8080 by default; servers running side by side would
        # fight for that port, so the API is off unless the test asks for it (``--http HOST:PORT``).
        wants_http = any(
            arg in ("--http", "--api") or arg.startswith(("--http=", "--api=")) for arg in self.extra_args
        )
        return [
            *pbx_command(),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--sip",
            f"{self.host}:{self.port}",
            "--log-level",
            self.log_level,
            *([] if wants_http else ["--http", "off"]),
            *self.extra_args,
        ]

    def db_args(self) -> list[str]:
        """``--db URL`` when the server runs on a database of its own (the CLI must read the same one)."""
        args = list(self.extra_args)
        for i, arg in enumerate(args):
            if arg == "--db" and i + 1 < len(args):
                return ["--db", args[i + 1]]
            if arg.startswith("--db="):
                return [arg]
        return []

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, needle: str, after: int = 0, timeout: float = 10.0) -> None:
        """Until ``needle`` appears in the log past offset ``after``; fails the test otherwise. For what the
        engine logs after it first answers (``start`` waits for UDP only: listeners such as WebSocket's
        may come up a moment later on a loaded machine)."""
        deadline = time.monotonic() + timeout
        while needle not in self.log_text()[after:]:
            if time.monotonic() >= deadline:
                pytest.fail(f"the server never logged {needle!r} within {timeout} s\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 60) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the server and wait until it answers OPTIONS over UDP; fails the test otherwise."""
        assert self.proc is None, "server already running"
        cmd = self.command()
        self._log = self.log_path.open("ab")
        self._log.write(f"=== harness: starting {' '.join(cmd)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.data_dir.parent,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self._closed(rc)
                self.failed_start = True
                pytest.fail(
                    f"`pbx serve` exited with status {rc} before answering OPTIONS\n"
                    f"command: {' '.join(cmd)}\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                status = ping(self.addr)
                if status == 200:
                    return
                last_error = f"OPTIONS answered {status}" if status else "no answer to OPTIONS"
            except OSError as exc:
                last_error = str(exc)
            time.sleep(0.2)
        self.kill()
        self.failed_start = True
        pytest.fail(
            f"`pbx serve` did not answer OPTIONS with 200 within {timeout} s ({last_error})\n"
            f"command: {' '.join(cmd)}\n{self.log_tail()}",
            pytrace=False,
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait; returns the exit status (kills it and fails the test after ``timeout``)."""
        proc = self.proc
        assert proc is not None, "server not running"
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"`pbx serve` did not exit within {timeout} s of SIGTERM\n{self.log_tail()}", pytrace=False
            )
        self._closed(rc)
        return rc

    def restart(self, timeout: float = START_TIMEOUT_S) -> None:
        """Stop (asserting a clean exit) and start again on the same data dir and port."""
        rc = self.stop()
        if rc != 0:
            pytest.fail(f"`pbx serve` exited {rc} on SIGTERM (expected 0)\n{self.log_tail()}", pytrace=False)
        self.start(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self._closed(self.proc.wait(10))

    def _closed(self, rc: int) -> None:
        self.exit_codes.append(rc)
        self.proc = None
        if self._log is not None:
            self._log.write(f"=== harness: exited with status {rc}\n".encode())
            self._log.close()
            self._log = None

    def shutdown_problems(self) -> list[str]:
        """Stop the server if it runs; list how the run was not clean (nonzero exit, Traceback in the log)."""
        problems: list[str] = []
        if self.failed_start:
            return problems
        if self.proc is not None:
            if self.proc.poll() is not None:
                problems.append(f"`pbx serve` had died during the test (status {self.proc.returncode})")
                self._closed(self.proc.returncode)
            else:
                try:
                    self.stop()
                except pytest.fail.Exception as exc:
                    problems.append(str(exc))
        bad = [rc for rc in self.exit_codes if rc != 0]
        if bad:
            problems.append(f"`pbx serve` exit statuses {self.exit_codes} (expected 0 on SIGTERM)")
        if "Traceback" in self.log_text():
            problems.append("the server log contains a Traceback")
        if problems:
            problems.append(self.log_tail(120))
        return problems

    # -- state as the CLI reports it -------------------------------------------------------------
    def reg_list(self) -> list[dict[str, Any]]:
        out = run_pbx("reg", "list", "--data-dir", str(self.data_dir), *self.db_args(), "--json").stdout
        try:
            rows = json.loads(out)
        except json.JSONDecodeError as exc:
            pytest.fail(f"`pbx reg list --json` printed no JSON ({exc}):\n{out}")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            pytest.fail(f"`pbx reg list --json` must print a list of objects, got:\n{out}")
        return rows

    def cdrs(self, count: int, timeout: float = 10.0, *, exact: bool = False) -> list[dict[str, Any]]:
        """The CDRs once there are ``count`` (the writer thread commits them behind the event loop); with
        ``exact``, more than ``count`` fails."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            out = run_pbx("cdr", "list", "--data-dir", str(self.data_dir), *self.db_args(), "--json").stdout
            rows = list(json.loads(out)) if out.strip() else []
            if len(rows) >= count:
                assert not exact or len(rows) == count, f"expected {count} CDRs, found {len(rows)}: {rows}"
                return rows
            time.sleep(0.2)
        pytest.fail(f"expected {count} CDRs within {timeout} s, found {rows}\n{self.log_tail()}")

    def wait_bindings(
        self, predicate: Callable[[list[dict[str, Any]]], bool], what: str, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Poll ``pbx reg list`` until ``predicate(rows)`` (the store is written behind the event loop)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.reg_list()
            if predicate(rows):
                return rows
            if time.monotonic() >= deadline:
                shown = json.dumps(rows[:20], indent=1)
                pytest.fail(
                    f"`pbx reg list` never showed {what} within {timeout} s; last ({len(rows)} rows):\n"
                    f"{shown}"
                )
            time.sleep(0.3)


def bindings_of(rows: list[dict[str, Any]], extension: str) -> list[dict[str, Any]]:
    return [r for r in rows if aor_user(str(r.get("aor", ""))) == extension]


class PeerProcess:
    """A test peer (tests/peers/*.py) in a subprocess: JSON events on stdout, commands on stdin."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        stderr_path: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        logs: Sequence[Path] = (),
    ) -> None:
        self.name = name
        self.logs = list(logs)
        self.argv = argv
        self.stderr_path = stderr_path
        self.events: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr = stderr_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                ev = {"ev": "stdout", "text": line}
            if not isinstance(ev, dict):
                ev = {"ev": "stdout", "text": line}
            self._queue.put(ev)
        self._queue.put(None)

    def describe(self) -> str:
        try:
            err = self.stderr_path.read_text(errors="replace").splitlines()[-40:]
        except FileNotFoundError:
            err = []
        events = "\n".join(json.dumps(e) for e in self.events[-40:])
        extra = ""
        for path in self.logs:
            try:
                tail = path.read_text(errors="replace").splitlines()[-25:]
            except FileNotFoundError:
                continue
            extra += f"\n--- tail of {path} ---\n" + "\n".join(tail)
        return (
            f"peer {self.name}: {' '.join(self.argv)}\nevents so far:\n{events}\n"
            f"--- stderr tail ({self.stderr_path}) ---\n" + "\n".join(err) + extra
        )

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pytest.fail(f"{self.name} is gone; cannot send {command!r}\n{self.describe()}")

    def expect(
        self,
        match: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 15.0,
        fail_on: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """The next event satisfying ``match``; fails on ``fail_on``, the peer's exit, or the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"{self.name}: no {what} within {timeout} s\n{self.describe()}")
            try:
                ev = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if ev is None:
                self._queue.put(None)
                self.proc.wait(5)
                pytest.fail(
                    f"{self.name} exited (status {self.proc.returncode}) before {what}\n{self.describe()}"
                )
            self.events.append(ev)
            if match(ev):
                return ev
            if fail_on is not None and fail_on(ev):
                pytest.fail(f"{self.name}: {json.dumps(ev)} while waiting for {what}\n{self.describe()}")

    def close(self, timeout: float = 15.0) -> int:
        """Ask the peer to quit (stdin 'quit' then EOF), wait, kill it after ``timeout``."""
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        elif self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.proc.stdin.close()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
        while True:
            try:
                ev = self._queue.get_nowait()
            except queue.Empty:
                break
            if ev is not None:
                self.events.append(ev)
        return int(self.proc.returncode)


def wait_http(url: str, timeout: float = 15.0) -> None:
    """Until ``url`` answers at all (``pbx serve`` binds HTTP after SIP, so OPTIONS can answer first)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError as exc:
            if time.monotonic() >= deadline:
                pytest.fail(f"{url} did not answer within {timeout} s: {exc}")
            time.sleep(0.1)
