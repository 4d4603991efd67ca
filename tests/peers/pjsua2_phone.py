#!/usr/bin/env python3
"""A scriptable pjsua2 phone for the integration tests: one process, one account, driven over stdin.

    python tests/peers/pjsua2_phone.py --user 1000 --password secret --registrar 127.0.0.1:5060

It registers with digest auth (pjsip answers the MD5 or SHA-256 challenge itself) and then obeys one command
per stdin line: ``unregister``, ``register``, ``status``, ``quit`` (EOF = quit). Every event is one JSON
line on stdout:

    {"ev": "ready", "local": "127.0.0.1:40123", "transport": "udp"}
    {"ev": "reg_state", "code": 200, "reason": "OK", "active": true, "expires": 300}
    {"ev": "status", "active": true, "code": 200, "expires": 295, "uri": "sip:1000@..."}
    {"ev": "exit"}

pjsip's own log goes to --log-file (never stdout). The process ends by itself after --max-seconds.
pjsua2-python (GPL-2.0+) is test-only: nothing in engine/ imports it.

Pitfalls heeded (see ../shared/reference/README.md): threadCnt=0 + mainThreadOnly and polling
libHandleEvents(); the null audio device after libStart(); every pjsua2 object released before libDestroy().
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from typing import Any

import pjsua2 as pj

# pjlib writes its start-up lines to fd 1 before any log config applies: keep the real stdout for events
# only and point fd 1 at stderr.
EVENTS = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)


def emit(ev: str, **fields: Any) -> None:
    print(json.dumps({"ev": ev, **fields}), file=EVENTS, flush=True)


class Account(pj.Account):  # type: ignore[misc]
    def onRegState(self, prm: Any) -> None:
        info = self.getInfo()
        emit(
            "reg_state",
            code=int(prm.code),
            reason=str(prm.reason),
            active=bool(info.regIsActive),
            expires=int(prm.expiration),
        )


class StdinCommands:
    """Whole lines from stdin without blocking (os.read + own buffer: select() and readline() disagree)."""

    def __init__(self) -> None:
        self.buf = b""
        self.eof = False

    def poll(self) -> list[str]:
        lines: list[str] = []
        while not self.eof and select.select([0], [], [], 0)[0]:
            chunk = os.read(0, 4096)
            if not chunk:
                self.eof = True
                break
            self.buf += chunk
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if line.strip():
                lines.append(line.decode().strip())
        if self.eof and self.buf.strip():
            lines.append(self.buf.decode().strip())
            self.buf = b""
        return lines


class Phone:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.userAgent = "pbx-engine-tests pjsua2"
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.level = 5 if args.log_file else 0
        if args.log_file:
            cfg.logConfig.filename = args.log_file
        cfg.medConfig.noVad = True
        self.ep.libInit(cfg)

        tc = pj.TransportConfig()
        tc.port = args.port
        tc.boundAddress = args.bind
        tc.publicAddress = args.bind
        kind = pj.PJSIP_TRANSPORT_TCP if args.transport == "tcp" else pj.PJSIP_TRANSPORT_UDP
        self.tid = self.ep.transportCreate(kind, tc)
        self.ep.libStart()
        self.ep.audDevManager().setNullDev()
        info = self.ep.transportGetInfo(self.tid)
        emit("ready", local=str(info.localName), transport=args.transport)

        ac = pj.AccountConfig()
        ac.idUri = f"sip:{args.user}@{args.registrar}"
        suffix = ";transport=tcp" if args.transport == "tcp" else ""
        ac.regConfig.registrarUri = f"sip:{args.registrar}{suffix}"
        ac.regConfig.timeoutSec = args.expires
        ac.regConfig.retryIntervalSec = 0  # a failed registration is reported, not silently retried
        ac.sipConfig.authCreds.append(pj.AuthCredInfo("digest", args.realm, args.user, 0, args.password))
        ac.sipConfig.transportId = self.tid
        ac.natConfig.iceEnabled = False
        ac.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        ac.natConfig.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        ac.natConfig.contactRewriteUse = 0
        ac.natConfig.viaRewriteUse = 0
        self.acc = Account()
        self.acc.create(ac)  # registers right away

    def status(self) -> None:
        info = self.acc.getInfo()
        emit(
            "status",
            active=bool(info.regIsActive),
            code=int(info.regStatus),
            expires=int(info.regExpiresSec),
            uri=str(info.uri),
        )

    def command(self, cmd: str) -> None:
        if cmd == "unregister":
            self.acc.setRegistration(False)
        elif cmd == "register":
            self.acc.setRegistration(True)
        elif cmd == "status":
            self.status()
        else:
            emit("error", command=cmd, message="unknown command")

    def run(self) -> None:
        commands = StdinCommands()
        deadline = time.monotonic() + self.args.max_seconds
        while time.monotonic() < deadline:
            self.ep.libHandleEvents(10)
            for cmd in commands.poll():
                if cmd == "quit":
                    return
                try:
                    self.command(cmd)
                except pj.Error as exc:
                    emit("error", command=cmd, message=str(exc.info()))
            if commands.eof:
                return
        emit("timeout", seconds=self.args.max_seconds)

    def close(self) -> None:
        if self.acc.getInfo().regIsActive:
            self.acc.setRegistration(False)
            end = time.monotonic() + 2.0
            while time.monotonic() < end and self.acc.getInfo().regIsActive:
                self.ep.libHandleEvents(10)
        self.acc.shutdown()
        del self.acc
        self.ep.libDestroy()
        emit("exit")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--registrar", required=True, help="host:port of the PBX")
    p.add_argument("--realm", default="*", help="digest realm of the credentials (* = any)")
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="local SIP port (0 = any free)")
    p.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    p.add_argument("--expires", type=int, default=300)
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--log-file")
    args = p.parse_args()
    phone = Phone(args)
    try:
        phone.run()
    finally:
        phone.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
