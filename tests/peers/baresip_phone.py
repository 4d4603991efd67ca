#!/usr/bin/env python3
"""Debian's baresip, headless, as a test peer: writes its config into --workdir, starts it, and relays its
ctrl_tcp events (netstring-framed JSON) as JSON lines on stdout.

    python tests/peers/baresip_phone.py --user 1000 --password secret --registrar 127.0.0.1:5060 \
        --sip-port 5094 --ctrl-port 4444 --workdir /tmp/bs

stdin commands, one per line: ``unregister`` (ctrl ``uadel <aor>``: the UA unregisters and is gone),
``register`` (``uanew <account>``), ``quit`` (EOF = quit); anything else is passed to ctrl_tcp as is.
stdout events:

    {"ev": "ready", "sip_port": 5094, "ctrl_port": 4444, "aor": "sip:1000@127.0.0.1:5060"}
    {"ev": "registered", "via": "REGISTER_OK" | "reginfo", "param": "200 OK"}
    {"ev": "register_failed", "param": "403 Forbidden"}
    {"ev": "unregistering"}
    {"ev": "baresip", "type": "...", ...}                              (every ctrl_tcp event, as sent)
    {"ev": "response", "ok": true, "data": "...", "token": "1"}        (answers to our commands)
    {"ev": "exit", "status": 0}

baresip may register before ctrl_tcp accepts us, so the first command is ``reginfo`` and an "OK" line in its
answer counts as registered too.

Config essentials learned here (../shared/reference/README.md): ``net_interface 127.0.0.1`` (not ``lo``),
no stdio.so without a TTY, TLS takes the SIP port + 1 (choose --sip-port with a free port after it).
baresip's own output goes to <workdir>/baresip.log. baresip -t bounds its life to --max-seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODULE_PATH = "/usr/lib/baresip/modules"


def emit(ev: str, **fields: Any) -> None:
    print(json.dumps({"ev": ev, **fields}), flush=True)


def write_config(workdir: Path, args: argparse.Namespace) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    config = f"""\
poll_method		epoll
sip_listen		127.0.0.1:{args.sip_port}
call_local_timeout	120
call_max_calls		4
audio_player		aufile,/dev/null
audio_source		aufile,/dev/null
audio_alert		aufile,/dev/null
rtp_ports		{args.rtp_ports}
module_path		{MODULE_PATH}
module			g711.so
module			aufile.so
module_tmp		uuid.so
module_tmp		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:{args.ctrl_port}
net_interface		127.0.0.1
"""
    (workdir / "config").write_text(config)
    (workdir / "accounts").write_text(account_line(args) + "\n")
    (workdir / "contacts").write_text("")


def aor(args: argparse.Namespace) -> str:
    params = ";transport=tcp" if args.transport == "tcp" else ""
    return f"sip:{args.user}@{args.registrar}{params}"


def account_line(args: argparse.Namespace) -> str:
    return (
        f"<{aor(args)}>;auth_user={args.user};auth_pass={args.password};regint={args.regint};"
        "answermode=manual"
    )


def netstring(data: bytes) -> bytes:
    return str(len(data)).encode() + b":" + data + b","


class Control:
    """The ctrl_tcp connection: send commands, split netstrings off the received stream."""

    def __init__(self, port: int, deadline: float) -> None:
        last: OSError | None = None
        while time.monotonic() < deadline:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
                break
            except OSError as exc:
                last = exc
                time.sleep(0.1)
        else:
            raise SystemExit(f"ctrl_tcp on 127.0.0.1:{port} never accepted a connection: {last}")
        self.sock.setblocking(False)
        self.buf = b""
        self.token = 0

    def command(self, text: str) -> None:
        name, _, params = text.partition(" ")
        self.token += 1
        msg = {"command": name, "params": params, "token": str(self.token)}
        self.sock.setblocking(True)
        self.sock.sendall(netstring(json.dumps(msg).encode()))
        self.sock.setblocking(False)

    def messages(self) -> list[dict[str, Any]] | None:
        """Whatever whole messages arrived (None once baresip closed the connection)."""
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            chunk = b""
        else:
            if not chunk:
                return None
        self.buf += chunk
        out: list[dict[str, Any]] = []
        while b":" in self.buf:
            size, _, rest = self.buf.partition(b":")
            if not size.isdigit():
                raise SystemExit(f"bad netstring from ctrl_tcp: {self.buf[:80]!r}")
            n = int(size)
            if len(rest) < n + 1:
                break
            out.append(json.loads(rest[:n]))
            self.buf = rest[n + 1 :]
        return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--registrar", required=True, help="host:port of the PBX")
    p.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    p.add_argument(
        "--sip-port", type=int, required=True, help="baresip's SIP port (port + 1 is its TLS port)"
    )
    p.add_argument("--ctrl-port", type=int, required=True)
    p.add_argument("--rtp-ports", default="31000-31100")
    p.add_argument("--regint", type=int, default=300)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--max-seconds", type=int, default=60)
    args = p.parse_args()

    write_config(args.workdir, args)
    with (args.workdir / "baresip.log").open("wb") as log:
        proc = subprocess.Popen(
            ["baresip", "-f", str(args.workdir), "-t", str(args.max_seconds)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            return run(proc, args)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            emit("exit", status=proc.returncode)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def report(m: dict[str, Any]) -> None:
    """Relay one ctrl_tcp message, plus the normalised registration event it implies."""
    if m.get("event"):
        emit("baresip", **{k: v for k, v in m.items() if k != "event"})
        kind = m.get("type")
        if kind == "REGISTER_OK":
            emit("registered", via="REGISTER_OK", param=m.get("param"))
        elif kind == "REGISTER_FAIL":
            emit("register_failed", param=m.get("param"))
        elif kind == "UNREGISTERING":
            emit("unregistering")
    elif m.get("response"):
        data = ANSI.sub("", str(m.get("data") or ""))
        emit("response", ok=m.get("ok"), data=data, token=m.get("token"))
        if "User Agents" in data and re.search(r"^> \S+\s+OK\b", data, re.MULTILINE):
            emit("registered", via="reginfo", param=data.strip())
        elif "User Agents" in data and re.search(r"^> \S+\s+ERR\b", data, re.MULTILINE):
            emit("register_failed", via="reginfo", param=data.strip())


def run(proc: subprocess.Popen[bytes], args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.max_seconds
    ctrl = Control(args.ctrl_port, min(deadline, time.monotonic() + 10))
    emit("ready", sip_port=args.sip_port, ctrl_port=args.ctrl_port, aor=aor(args))
    ctrl.command("reginfo")
    stdin_buf, stdin_open, quitting = b"", True, False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return 0 if quitting else 1
        readable = [ctrl.sock] + ([0] if stdin_open else [])
        ready = select.select(readable, [], [], 0.1)[0]
        if ctrl.sock in ready:
            msgs = ctrl.messages()
            if msgs is None:
                proc.wait(5)
                return 0 if quitting else 1
            for m in msgs:
                report(m)
        if 0 in ready:
            chunk = os.read(0, 4096)
            if not chunk:
                stdin_open = False
                chunk = b"\nquit\n"
            stdin_buf += chunk
            while b"\n" in stdin_buf:
                line, stdin_buf = stdin_buf.split(b"\n", 1)
                cmd = line.decode().strip()
                if not cmd or quitting:
                    continue
                if cmd == "quit":
                    quitting = True
                    ctrl.command("quit")
                elif cmd == "unregister":
                    # baresip files the UA under the AOR without its ;transport parameter
                    ctrl.command(f"uadel {aor(args).split(';', 1)[0]}")
                elif cmd == "register":
                    ctrl.command(f"uanew {account_line(args)}")
                else:
                    ctrl.command(cmd)
    emit("timeout", seconds=args.max_seconds)
    return 1


if __name__ == "__main__":
    sys.exit(main())
