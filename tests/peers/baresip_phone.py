#!/usr/bin/env python3
"""Debian's baresip, headless, as a test peer: writes its config into --workdir, starts it, and relays its
ctrl_tcp events (netstring-framed JSON) as JSON lines on stdout.

    python tests/peers/baresip_phone.py --user 1000 --password secret --registrar 127.0.0.1:5060 \
        --sip-port 5094 --ctrl-port 4444 --workdir /tmp/bs
    python tests/peers/baresip_phone.py --user bob --no-register --auto-answer 200 \
        --sip-port 5094 --ctrl-port 4444 --workdir /tmp/bs

stdin commands, one per line (EOF = quit). The call commands are the ones tests/peers/pjsua2_phone.py
takes, so a test can drive either phone:

    register | unregister | status | quit
    call <sip-uri>          ctrl ``dial``
    answer [200|486|180]    ``accept`` | ``hangup`` (baresip 1.0 rejects with 486 only) | nothing (it rang)
    auto_answer <code> [s]  from now on answer incoming calls (200 or 486) after s seconds (0 = off)
    hangup                  ``hangup``
    play <wav> | stop_play  ``ausrc aufile,<copy>``: a looped copy of the WAV (8 kHz mono S16), long enough
                            for the process's life, because aufile ends the call at the end of its file.
                            Without a call it becomes the source of the next calls.
    record <wav> | stop_record   what the call hears, from the sndfile module's per-call decode dump
    dtmf <digits>           ``sndcode`` (RFC 4733)
    hold | unhold           ``hold`` | ``resume``

anything else is passed to ctrl_tcp as is. stdout events:

    {"ev": "ready", "sip_port": 5094, "ctrl_port": 4444, "aor": "sip:1000@127.0.0.1:5060",
     "uri": "sip:1000@127.0.0.1:5094"}
    {"ev": "registered", "via": "REGISTER_OK" | "reginfo", "param": "200 OK"}
    {"ev": "register_failed", "param": "403 Forbidden"}
    {"ev": "unregistering"}
    {"ev": "incoming_call", "call": "<Call-ID>", "call_id": "<Call-ID>", "from": "sip:...", "to": "sip:..."}
    {"ev": "call_state", "call": "<Call-ID>" | null, "call_id": ..., "state": "CALLING|INCOMING|EARLY|
     CONFIRMED|DISCONNECTED", "last_code": 486, "reason": "486 Busy Here", "role": "caller|callee"}
    {"ev": "media_state", "call": ..., "state": "active"}
    {"ev": "dtmf", "call": ..., "digit": "5"}
    {"ev": "playing", "path": ...}  {"ev": "recording", "path": ...}
    {"ev": "record_finished", "call": ..., "path": "...", "seconds": 3.0}
    {"ev": "baresip", "type": "...", ...}                              (every ctrl_tcp event, as sent)
    {"ev": "response", "ok": true, "data": "...", "token": "1"}        (answers to our commands)
    {"ev": "exit", "status": 0}

``last_code`` of DISCONNECTED is the status code baresip names in CALL_CLOSED ("486 Busy Here"), else 200
after an established call, 486 for an incoming call this phone turned down, 487 for one the caller
CANCELed, else 0. baresip may register before ctrl_tcp accepts us, so the first command is ``reginfo`` and
an "OK" line in its answer counts as registered too.

Config essentials learned here (../shared/reference/README.md): ``net_interface 127.0.0.1`` (not ``lo``),
no stdio.so without a TTY, TLS takes the SIP port + 1 (choose --sip-port with a free port after it); the
audio player is ALSA's ``null`` device (aufile in 1.0 is a source only, and a call needs a player);
sndfile names its dumps by the second, so two calls answered in the same second share one file, and its
decode dump stops growing at a hold (baresip 1.0): record a baresip call before any hold, not across one.
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
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODULE_PATH = "/usr/lib/baresip/modules"
RATE_HZ = 8000  # aufile insists the file's rate is the codec's (G.711)


def emit(ev: str, **fields: Any) -> None:
    print(json.dumps({"ev": ev, **fields}), flush=True)


def write_config(workdir: Path, args: argparse.Namespace) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "dumps").mkdir(exist_ok=True)
    write_silence(workdir / "silence.wav", args.max_seconds + 10)
    config = f"""\
poll_method		epoll
sip_listen		127.0.0.1:{args.sip_port}
call_local_timeout	120
call_max_calls		4
audio_player		alsa,null
audio_source		aufile,{workdir / "silence.wav"}
audio_alert		alsa,null
rtp_ports		{args.rtp_ports}
module_path		{MODULE_PATH}
module			g711.so
module			aufile.so
module			alsa.so
module			sndfile.so
snd_path		{workdir / "dumps"}
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


def write_silence(path: Path, seconds: float) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE_HZ)
        w.writeframes(bytes(2 * int(seconds * RATE_HZ)))


def looped_copy(src: str, dst: Path, seconds: float) -> None:
    """``src`` repeated to at least ``seconds`` (aufile hangs the call up at the end of its file)."""
    with wave.open(src) as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, RATE_HZ):
            raise ValueError(f"{src}: baresip's aufile needs 8000 Hz mono 16-bit PCM")
        frames = w.readframes(w.getnframes())
    if not frames:
        raise ValueError(f"{src} holds no audio")
    need = 2 * int(seconds * RATE_HZ)
    with wave.open(str(dst), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE_HZ)
        out.writeframes(frames * (need // len(frames) + 1))


def dump_pcm(path: Path) -> tuple[bytes, int]:
    """The samples in a sndfile dump and their rate, read past the header (the data size in it is only
    written at the end of the call)."""
    data = path.read_bytes()
    at = data.find(b"data", 12)
    fmt = data.find(b"fmt ", 12)
    if at < 0 or fmt < 0:
        return b"", RATE_HZ
    rate = int.from_bytes(data[fmt + 12 : fmt + 16], "little")
    pcm = data[at + 8 :]
    return pcm[: len(pcm) // 2 * 2], rate


def aor(args: argparse.Namespace) -> str:
    params = "" if args.transport == "udp" else f";transport={args.transport}"
    host = args.registrar or f"127.0.0.1:{args.sip_port}"
    return f"sip:{args.user}@{host}{params}"


def account_line(args: argparse.Namespace) -> str:
    if not args.registrar:
        return f"<{aor(args)}>;regint=0;answermode=manual"
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

    def command(self, text: str) -> str:
        name, _, params = text.partition(" ")
        self.token += 1
        msg = {"command": name, "params": params, "token": str(self.token)}
        self.sock.setblocking(True)
        self.sock.sendall(netstring(json.dumps(msg).encode()))
        self.sock.setblocking(False)
        return str(self.token)

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


ANSI = re.compile(r"\x1b\[[0-9;]*m")
STATUS = re.compile(r"^([3-6]\d\d)\b")


@dataclass
class CallInfo:
    call_id: str
    role: str
    established: bool = False
    answer_at: float | None = None
    rejected: bool = False  # we turned it down (CALL_CLOSED then only says "Connection reset by user")


@dataclass
class Recording:
    path: str
    dump: Path | None = None  # the sndfile decode dump of the call, once there is one
    offset: int = 0  # bytes of the dump's PCM that were there before ``record``
    calls: set[str] = field(default_factory=set)


class Phone:
    """Turns stdin commands into ctrl_tcp commands and ctrl_tcp events into the common call events."""

    def __init__(self, args: argparse.Namespace, ctrl: Control) -> None:
        self.args = args
        self.ctrl = ctrl
        self.dumps = args.workdir / "dumps"
        self.calls: dict[str, CallInfo] = {}
        self.recording: Recording | None = None
        self.plays = 0
        self.pending: dict[str, str] = {}  # token -> our command, for error reports

    # -- events from baresip -------------------------------------------------------------------
    def report(self, m: dict[str, Any]) -> None:
        """Relay one ctrl_tcp message, plus the normalised events it implies."""
        if m.get("event"):
            emit("baresip", **{k: v for k, v in m.items() if k != "event"})
            self.on_event(m)
        elif m.get("response"):
            data = ANSI.sub("", str(m.get("data") or ""))
            emit("response", ok=m.get("ok"), data=data, token=m.get("token"))
            command = self.pending.pop(str(m.get("token")), None)
            if command is not None and not m.get("ok"):
                emit("error", command=command, message=data.strip() or "failed")
            if "User Agents" in data and re.search(r"^> \S+\s+OK\b", data, re.MULTILINE):
                emit("registered", via="reginfo", param=data.strip())
            elif "User Agents" in data and re.search(r"^> \S+\s+ERR\b", data, re.MULTILINE):
                emit("register_failed", via="reginfo", param=data.strip())

    def on_event(self, m: dict[str, Any]) -> None:
        kind = m.get("type")
        param = str(m.get("param") or "")
        cid = str(m.get("id") or "") or None
        if kind == "REGISTER_OK":
            emit("registered", via="REGISTER_OK", param=param)
        elif kind == "REGISTER_FAIL":
            emit("register_failed", param=param)
        elif kind == "UNREGISTERING":
            emit("unregistering")
        elif kind == "CALL_INCOMING" and cid:
            self.calls[cid] = info = CallInfo(cid, "callee")
            emit("incoming_call", call=cid, call_id=cid, **{"from": m.get("peeruri")}, to=m.get("accountaor"))
            self.call_state(info, "INCOMING", 0, param)
            code = self.args.auto_answer
            if code:
                info.answer_at = time.monotonic() + (self.args.ring_seconds if code >= 200 else 0.0)
        elif kind in ("CALL_RINGING", "CALL_PROGRESS") and cid:
            self.call_state(self.call(cid), "EARLY", 180 if kind == "CALL_RINGING" else 183, param)
        elif kind == "CALL_ESTABLISHED" and cid:
            info = self.call(cid)
            info.established = True
            info.answer_at = None
            self.call_state(info, "CONFIRMED", 200, param)
            emit("media_state", call=cid, call_id=cid, state="active")
            if self.recording is not None:
                self.recording.calls.add(cid)
        elif kind == "CALL_CLOSED" and cid:
            info = self.calls.pop(cid, CallInfo(cid, "caller"))
            found = STATUS.match(param)
            code = int(found.group(1)) if found else self.closed_code(info)
            self.call_state(info, "DISCONNECTED", code, param)
            if self.recording is not None and (cid in self.recording.calls or not self.calls):
                self.finish_recording(cid)
        elif kind == "CALL_DTMF_START" and cid:
            emit("dtmf", call=cid, call_id=cid, digit=param)

    @staticmethod
    def closed_code(info: CallInfo) -> int:
        """What pjsua2 would report as last_code where baresip's CALL_CLOSED names no status."""
        if info.established:
            return 200
        if info.role == "callee":
            return 486 if info.rejected else 487  # turned down here, or CANCELed by the caller
        return 0

    def call(self, cid: str) -> CallInfo:
        if cid not in self.calls:
            self.calls[cid] = CallInfo(cid, "caller")  # an outgoing call: its id shows up first here
        return self.calls[cid]

    def call_state(self, info: CallInfo, state: str, code: int, reason: str) -> None:
        emit(
            "call_state",
            call=info.call_id,
            call_id=info.call_id,
            state=state,
            last_code=code,
            reason=reason,
            role=info.role,
        )

    def tick(self) -> None:
        now = time.monotonic()
        for info in list(self.calls.values()):
            if info.answer_at is not None and now >= info.answer_at:
                info.answer_at = None
                self.answer(self.args.auto_answer, f"auto-answer {self.args.auto_answer}")

    # -- recording ----------------------------------------------------------------------------
    def newest_dump(self) -> Path | None:
        dumps = sorted(self.dumps.glob("*-dec.wav"), key=lambda p: p.stat().st_mtime)
        return dumps[-1] if dumps else None

    def start_recording(self, path: str) -> None:
        self.recording = rec = Recording(path)
        live = [c for c in self.calls.values() if c.established]
        if live:
            rec.calls = {c.call_id for c in live}
            rec.dump = self.newest_dump()
            if rec.dump is not None:
                rec.offset = len(dump_pcm(rec.dump)[0])
        emit("recording", path=path, call=live[-1].call_id if live else None)

    def finish_recording(self, cid: str | None) -> None:
        rec, self.recording = self.recording, None
        if rec is None:
            return
        time.sleep(0.1)  # let sndfile write out the last frames of a call that just closed
        dump = rec.dump or self.newest_dump()
        pcm, rate = dump_pcm(dump) if dump is not None else (b"", RATE_HZ)
        pcm = pcm[rec.offset :]
        with wave.open(rec.path, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm)
        emit(
            "record_finished",
            call=cid,
            call_id=cid,
            path=rec.path,
            seconds=round(len(pcm) / 2 / rate, 3),
            dump=str(dump),
        )

    # -- commands -----------------------------------------------------------------------------
    def send(self, text: str, command: str) -> None:
        self.pending[self.ctrl.command(text)] = command

    def answer(self, code: int, command: str) -> None:
        if code == 200:
            self.send("accept", command)
        elif code == 486:
            self.send("hangup", command)  # baresip 1.0 turns down a ringing call with 486
            ringing = [c for c in self.calls.values() if c.role == "callee" and not c.established]
            if ringing:
                ringing[-1].rejected = True
        elif code not in (180, 183):
            emit("error", command=command, message="baresip 1.0 answers only 200 or rejects with 486")

    def command(self, cmd: str) -> None:
        name, _, rest = cmd.partition(" ")
        rest = rest.strip()
        if name == "unregister":
            # baresip files the UA under the AOR without its ;transport parameter
            self.send(f"uadel {aor(self.args).split(';', 1)[0]}", cmd)
        elif name == "register":
            self.send(f"uanew {account_line(self.args)}", cmd)
        elif name == "auto_answer" and rest:
            try:
                words = [float(w) for w in rest.split()]
                self.args.auto_answer = int(words[0])
                self.args.ring_seconds = words[1] if len(words) > 1 else self.args.ring_seconds
            except ValueError:
                emit("error", command=cmd, message="auto_answer <code> [ring-seconds]")
        elif name == "call" and rest:
            self.send(f"dial {rest}", cmd)
            emit(
                "call_state", call=None, call_id=None, state="CALLING", last_code=0, reason="", role="caller"
            )
        elif name == "answer":
            try:
                code = int(rest or "200")
            except ValueError:
                emit("error", command=cmd, message="answer takes a status code")
                return
            self.answer(code, cmd)
        elif name == "hangup":
            self.send("hangup", cmd)
        elif name == "play" and rest:
            self.plays += 1
            copy = self.args.workdir / f"play-{self.plays}.wav"
            try:
                looped_copy(rest, copy, self.args.max_seconds + 10)
            except (OSError, EOFError, ValueError, wave.Error) as exc:
                emit("error", command=cmd, message=str(exc))
                return
            self.send(f"ausrc aufile,{copy}", cmd)
            emit("playing", path=rest)
        elif name == "stop_play":
            self.send(f"ausrc aufile,{self.args.workdir / 'silence.wav'}", cmd)
            emit("play_stopped")
        elif name == "record" and rest:
            self.start_recording(rest)
        elif name == "stop_record":
            live = [c.call_id for c in self.calls.values() if c.established]
            self.finish_recording(live[-1] if live else None)
        elif name == "dtmf" and rest:
            self.send(f"sndcode {rest}", cmd)
        elif name == "hold":
            self.send("hold", cmd)
        elif name == "unhold":
            self.send("resume", cmd)
        elif name == "status":
            calls = [
                {"call": c.call_id, "role": c.role, "established": c.established} for c in self.calls.values()
            ]
            emit("status", calls=calls, recording=self.recording is not None)
            self.send("listcalls", cmd)
        else:
            self.send(cmd, cmd)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--user", required=True)
    p.add_argument("--password", default="")
    p.add_argument("--registrar", help="host:port of the PBX")
    p.add_argument("--no-register", action="store_true", help="no registrar: be callable at --sip-port")
    p.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    p.add_argument(
        "--sip-port", type=int, required=True, help="baresip's SIP port (port + 1 is its TLS port)"
    )
    p.add_argument("--ctrl-port", type=int, required=True)
    p.add_argument("--rtp-ports", default="31000-31100")
    p.add_argument("--regint", type=int, default=300)
    p.add_argument("--auto-answer", type=int, default=0, metavar="CODE", help="200, or 486 to reject")
    p.add_argument("--ring-seconds", type=float, default=0.0, help="ring this long before CODE")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--max-seconds", type=int, default=60)
    args = p.parse_args()
    if bool(args.registrar) == bool(args.no_register):
        p.error("give exactly one of --registrar and --no-register")
    args.workdir = args.workdir.resolve()

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


def run(proc: subprocess.Popen[bytes], args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.max_seconds
    ctrl = Control(args.ctrl_port, min(deadline, time.monotonic() + 10))
    phone = Phone(args, ctrl)
    emit(
        "ready",
        sip_port=args.sip_port,
        ctrl_port=args.ctrl_port,
        aor=aor(args),
        uri=f"sip:{args.user}@127.0.0.1:{args.sip_port}",
    )
    ctrl.command("reginfo")
    stdin_buf, stdin_open, quitting = b"", True, False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return 0 if quitting else 1
        readable = [ctrl.sock] + ([0] if stdin_open else [])
        ready = select.select(readable, [], [], 0.05)[0]
        if ctrl.sock in ready:
            msgs = ctrl.messages()
            if msgs is None:
                proc.wait(5)
                return 0 if quitting else 1
            for m in msgs:
                phone.report(m)
        phone.tick()
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
                    if phone.recording is not None:
                        phone.finish_recording(None)
                    ctrl.command("quit")
                else:
                    phone.command(cmd)
    emit("timeout", seconds=args.max_seconds)
    return 1


if __name__ == "__main__":
    sys.exit(main())
