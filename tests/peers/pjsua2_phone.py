#!/usr/bin/env python3
"""A scriptable pjsua2 phone for the integration tests: one process, one account, driven over stdin.

    python tests/peers/pjsua2_phone.py --user 1000 --password secret --registrar 127.0.0.1:5060
    python tests/peers/pjsua2_phone.py --user bob --no-register --auto-answer 200 --ring-seconds 1
    python tests/peers/pjsua2_phone.py --user 201 --password secret --registrar 127.0.0.1:5060 --mwi-subscribe

With ``--registrar`` it registers with digest auth (pjsip answers the MD5 or SHA-256 challenge itself; the
same credentials answer a challenged INVITE); with ``--no-register`` it only listens and can be called
directly at the ``uri`` its ``ready`` event names. Message waiting (RFC 3842): pjsua accepts unsolicited
``message-summary`` NOTIFYs by default; ``--mwi-subscribe`` also SUBSCRIBEs to the account's mailbox (after
registering). Either way each NOTIFY becomes an ``mwi`` event. Commands, one per stdin line (EOF = quit):

    register | unregister | status | quit
    call <sip-uri>           outgoing INVITE (PCMU, then PCMA; RFC 2833 telephone-event)
    answer [code]            the oldest unanswered incoming call: 200 (default), 180/183, or a 3xx-6xx reject
    auto_answer <code> [s]   from now on answer incoming calls with code after s seconds of ringing (0 = off)
    hangup                   BYE, CANCEL, or 603 for an unanswered incoming call
    play <wav> | stop_play   stream a 16-bit PCM WAV into the call, looping
    record <wav> | stop_record   record what the call hears (a finished WAV once record_finished is out)
    dtmf <digits>            RFC 2833 / 4733
    hold | unhold            re-INVITE with a=sendonly / a=sendrecv
    xfer <sip-uri>           blind transfer: REFER with Refer-To <sip-uri> (NOTIFYs become xfer_status)
    xfer_replaces #<n>       attended transfer: REFER with Refer-To naming call #<n> with Replaces

Commands that act on a call take the newest call that has not ended; append ``#<n>`` (the ``call`` number of
the events) to pick another. ``play``/``record`` given before the media is up take effect when it is.

Every event is one JSON line on stdout:

    {"ev": "ready", "local": "127.0.0.1:40123", "transport": "udp", "uri": "sip:bob@127.0.0.1:40123"}
    {"ev": "reg_state", "code": 200, "reason": "OK", "active": true, "expires": 300}
    {"ev": "incoming_call", "call": 0, "call_id": "...", "from": "<sip:201@...>", "to": "...",
     "request_uri": "sip:bob@127.0.0.1:40123", "sdp_connection": "127.0.0.1", "from_tag": "...",
     "src": "127.0.0.1:5060"}
    {"ev": "call_state", "call": 0, "state": "CALLING|INCOMING|EARLY|CONNECTING|CONFIRMED|DISCONNECTED",
     "last_code": 180, "reason": "Ringing", "role": "caller|callee", "call_id": "...", "remote": "..."}
    {"ev": "media_state", "call": 0, "state": "active|hold|remote_hold|none|error", "dir": "sendrecv",
     "codec": "PCMU", "remote_rtp": "127.0.0.1:4002", "local_rtp": "127.0.0.1:4000"}
    {"ev": "dtmf", "call": 0, "digit": "5"}
    {"ev": "xfer_status", "call": 0, "code": 100, "reason": "Trying", "final": false}
    {"ev": "mwi", "state": "ACTIVE|TERMINATED|...", "waiting": true, "voice": "1/0",
     "body": "Messages-Waiting: yes\r\nMessage-Account: sip:201@pbx.test\r\nVoice-Message: 1/0 (0/0)\r\n"}
    {"ev": "playing" | "recording", "call": 0, "path": "..."}
    {"ev": "record_finished", "call": 0, "path": "...", "seconds": 3.02}
    {"ev": "status", "registered": true, ..., "calls": [{"call": 0, "state": "CONFIRMED", ...}]}
    {"ev": "error", "command": "...", "message": "..."}
    {"ev": "timeout", "seconds": 60}   {"ev": "exit"}

pjsip's own log goes to --log-file (never stdout). The process ends by itself after --max-seconds, hanging
up its calls and finishing its recordings first. pjsua2-python (GPL-2.0+) is test-only: nothing in engine/
imports it.

Pitfalls heeded (see ../shared/reference/README.md): threadCnt=0 + mainThreadOnly and polling
libHandleEvents(); the null audio device after libStart(); ``ci = call.getInfo()`` bound before iterating
``ci.media``; events pumped after deleting a recorder (pjsua writes the WAV header then); every pjsua2
object, Call objects included, released before libDestroy().
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import sys
import time
import wave
from typing import Any

import pjsua2 as pj  # type: ignore[import-untyped]

# pjlib writes its start-up lines to fd 1 before any log config applies: keep the real stdout for events
# only and point fd 1 at stderr.
EVENTS = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)

STATE_NAMES = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}
MEDIA_NAMES = {
    pj.PJSUA_CALL_MEDIA_NONE: "none",
    pj.PJSUA_CALL_MEDIA_ACTIVE: "active",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "hold",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "remote_hold",
    pj.PJSUA_CALL_MEDIA_ERROR: "error",
}
DIR_NAMES = {
    pj.PJMEDIA_DIR_NONE: "inactive",
    pj.PJMEDIA_DIR_ENCODING: "sendonly",
    pj.PJMEDIA_DIR_DECODING: "recvonly",
    pj.PJMEDIA_DIR_ENCODING_DECODING: "sendrecv",
}
SDP_CONNECTION = re.compile(rb"^c=IN IP[46] (\S+)", re.MULTILINE)
FROM_TAG = re.compile(rb"^(?:From|f):[^\r\n]*;\s*tag=([^;\s>]+)", re.MULTILINE | re.IGNORECASE)
EVSUB_NAMES = {
    pj.PJSIP_EVSUB_STATE_NULL: "NULL",
    pj.PJSIP_EVSUB_STATE_SENT: "SENT",
    pj.PJSIP_EVSUB_STATE_ACCEPTED: "ACCEPTED",
    pj.PJSIP_EVSUB_STATE_PENDING: "PENDING",
    pj.PJSIP_EVSUB_STATE_ACTIVE: "ACTIVE",
    pj.PJSIP_EVSUB_STATE_TERMINATED: "TERMINATED",
    pj.PJSIP_EVSUB_STATE_UNKNOWN: "UNKNOWN",
}
SUMMARY_LINE = re.compile(r"^([A-Za-z-]+)\s*:\s*(.*?)\s*$", re.MULTILINE)


def emit(ev: str, **fields: Any) -> None:
    print(json.dumps({"ev": ev, **fields}), file=EVENTS, flush=True)


class CommandError(Exception):
    """A command that cannot be carried out; reported as an ``error`` event."""


class Account(pj.Account):  # type: ignore[misc]
    def __init__(self, phone: Phone) -> None:
        super().__init__()
        self.phone = phone

    def onRegState(self, prm: Any) -> None:
        info = self.getInfo()
        emit(
            "reg_state",
            code=int(prm.code),
            reason=str(prm.reason),
            active=bool(info.regIsActive),
            expires=int(prm.expiration),
        )

    def onIncomingCall(self, prm: Any) -> None:
        self.phone.incoming(prm)

    def onMwiInfo(self, prm: Any) -> None:
        """A ``message-summary`` NOTIFY (unsolicited, or on our subscription): its body as received, plus
        the Messages-Waiting and Voice-Message values for convenience."""
        msg = str(prm.rdata.wholeMsg)
        _, _, body = msg.partition("\r\n\r\n") if "\r\n\r\n" in msg else msg.partition("\n\n")
        fields = {m.group(1).lower(): m.group(2) for m in SUMMARY_LINE.finditer(body)}
        emit(
            "mwi",
            state=EVSUB_NAMES.get(prm.state, str(prm.state)),
            waiting=fields.get("messages-waiting", "").lower() == "yes",
            voice=fields.get("voice-message", "").split("(", 1)[0].strip(),
            body=body,
            src=str(prm.rdata.srcAddress),
        )


class Call(pj.Call):  # type: ignore[misc]
    """One call and the media resources the phone attached to it."""

    def __init__(self, phone: Phone, number: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(phone.acc, number)
        self.phone = phone
        self.number = -1  # pjsua's call id, known once the call exists
        self.sip_call_id = ""
        self.role = "caller"
        self.state = "NULL"
        self.media = "none"
        self.answered = False  # an incoming call that got its final answer
        self.answer_at: float | None = None  # --auto-answer deadline
        self.ended = False
        self.play_path: str | None = None
        self.record_path: str | None = None
        self.player: Any = None
        self.recorder: Any = None

    def tag(self) -> dict[str, Any]:
        return {"call": self.number, "call_id": self.sip_call_id}

    def onCallState(self, prm: Any) -> None:
        ci = self.getInfo()
        self.number = int(ci.id)
        self.sip_call_id = str(ci.callIdString)
        self.state = STATE_NAMES.get(ci.state, str(ci.stateText))
        emit(
            "call_state",
            **self.tag(),
            state=self.state,
            last_code=int(ci.lastStatusCode),
            reason=str(ci.lastReason),
            role=self.role,
            remote=str(ci.remoteUri),
        )
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.ended = True  # resources are released by the main loop, outside this callback

    def onCallMediaState(self, prm: Any) -> None:
        ci = self.getInfo()  # bound first: iterating a temporary CallInfo reads freed memory
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            self.media = MEDIA_NAMES.get(mi.status, str(mi.status))
            fields: dict[str, Any] = {"dir": DIR_NAMES.get(mi.dir, str(mi.dir))}
            if mi.status != pj.PJSUA_CALL_MEDIA_NONE:
                try:
                    si = self.getStreamInfo(mi.index)
                    ti = self.getMedTransportInfo(mi.index)
                    fields.update(
                        codec=str(si.codecName),
                        remote_rtp=str(si.remoteRtpAddress),
                        local_rtp=str(ti.localRtpName),
                    )
                except pj.Error:
                    pass  # no stream (e.g. media being torn down): report the state alone
            emit("media_state", **self.tag(), state=self.media, **fields)
            if mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.connect_media()  # a re-INVITE may have rebuilt the stream: wire players again
            return

    def onDtmfDigit(self, prm: Any) -> None:
        emit("dtmf", **self.tag(), digit=str(prm.digit))

    def onCallTransferStatus(self, prm: Any) -> None:
        """A NOTIFY of our REFER's progress (RFC 3515): the sipfrag's status, and whether it was the last."""
        emit("xfer_status", **self.tag(), code=int(prm.statusCode), reason=str(prm.reason),
             final=bool(prm.finalNotify))

    def audio(self) -> Any:
        """The call's active AudioMedia, or None."""
        ci = self.getInfo()
        for mi in ci.media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                return self.getAudioMedia(mi.index)
        return None

    def connect_media(self) -> None:
        """Start whatever play/record was asked for, once the media is active."""
        am = self.audio()
        if am is None:
            return
        if self.play_path is not None and self.player is None:
            self.player = pj.AudioMediaPlayer()
            self.player.createPlayer(self.play_path, 0)  # 0 = loop at the end of the file
            emit("playing", **self.tag(), path=self.play_path)
        if self.player is not None:
            self.player.startTransmit(am)
        if self.record_path is not None and self.recorder is None:
            self.recorder = pj.AudioMediaRecorder()
            self.recorder.createRecorder(self.record_path)
            emit("recording", **self.tag(), path=self.record_path)
        if self.recorder is not None:
            am.startTransmit(self.recorder)

    def stop_play(self) -> None:
        self.play_path = None
        if self.player is not None:
            self.player = None  # destroying the player disconnects it from the bridge
            emit("play_stopped", **self.tag())

    def stop_record(self) -> None:
        """Close the recorder; pjsua finishes the WAV header on the next event poll."""
        path, self.record_path = self.record_path, None
        if self.recorder is None:
            if path is not None:
                emit("record_finished", **self.tag(), path=path, seconds=0.0, note="media never active")
            return
        self.recorder = None
        self.phone.pump(0.05)
        emit("record_finished", **self.tag(), path=path, seconds=wav_seconds(path))


def wav_seconds(path: str | None) -> float | None:
    if path is None:
        return None
    try:
        with wave.open(path) as w:
            return round(float(w.getnframes()) / float(w.getframerate()), 3)
    except (OSError, EOFError, wave.Error):
        return None


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
        self.calls: list[Call] = []
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 8
        cfg.uaConfig.userAgent = "pbx-engine-tests pjsua2"
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.level = 5 if args.log_file else 0
        if args.log_file:
            cfg.logConfig.filename = args.log_file
        cfg.medConfig.noVad = True
        cfg.medConfig.clockRate = args.clock_rate  # the bridge rate = the recordings' sample rate
        cfg.medConfig.sndClockRate = args.clock_rate
        cfg.medConfig.ecTailLen = 0  # no echo canceller: recordings hold exactly what arrived
        self.ep.libInit(cfg)

        tc = pj.TransportConfig()
        tc.port = args.port
        tc.boundAddress = args.bind
        tc.publicAddress = args.bind
        kinds = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP, "tls": pj.PJSIP_TRANSPORT_TLS}
        if args.transport == "tls":
            tc.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
            tc.tlsConfig.verifyServer = False  # the engine's self-signed test certificate
        self.tid = self.ep.transportCreate(kinds[args.transport], tc)
        self.ep.libStart()
        self.ep.audDevManager().setNullDev()
        self.set_codecs(args.codecs.split(","))
        local = str(self.ep.transportGetInfo(self.tid).localName)
        suffix = "" if args.transport == "udp" else f";transport={args.transport}"

        ac = pj.AccountConfig()
        if args.registrar:
            ac.idUri = f"sip:{args.user}@{args.registrar}"
            ac.regConfig.registrarUri = f"sip:{args.registrar}{suffix}"
            ac.regConfig.timeoutSec = args.expires
            ac.regConfig.retryIntervalSec = 0  # a failed registration is reported, not silently retried
        else:
            ac.idUri = f"sip:{args.user}@{local}{suffix}"
            ac.regConfig.registerOnAdd = False
        if args.password:
            ac.sipConfig.authCreds.append(pj.AuthCredInfo("digest", args.realm, args.user, 0, args.password))
        ac.sipConfig.transportId = self.tid
        if args.mwi_subscribe:
            ac.mwiConfig.enabled = True
            ac.mwiConfig.expirationSec = args.expires
        ac.natConfig.iceEnabled = False
        ac.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        ac.natConfig.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        ac.natConfig.contactRewriteUse = 0
        ac.natConfig.viaRewriteUse = 0
        ac.natConfig.sdpNatRewriteUse = 0
        ac.mediaConfig.transportConfig.boundAddress = args.bind
        ac.mediaConfig.transportConfig.publicAddress = args.bind
        ac.mediaConfig.transportConfig.port = args.rtp_port  # 0: any free port pair the OS gives
        ac.mediaConfig.transportConfig.portRange = args.rtp_port_range if args.rtp_port else 0
        if args.srtp:
            # SDES (RFC 4568) only, required, and only over TLS signalling (srtpSecureSignaling 1).
            ac.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_MANDATORY
            ac.mediaConfig.srtpSecureSignaling = 1
            ac.mediaConfig.srtpOpt.keyings.clear()
            ac.mediaConfig.srtpOpt.keyings.append(pj.PJMEDIA_SRTP_KEYING_SDES)
        self.acc = Account(self)
        self.acc.create(ac)  # registers right away when a registrar is set
        emit("ready", local=local, transport=args.transport, uri=f"sip:{args.user}@{local}{suffix}")

    def set_codecs(self, wanted: list[str]) -> None:
        """Only the listed codecs, in that order (pjsua would offer speex, iLBC, GSM, G.722 ... too)."""
        for info in self.ep.codecEnum2():
            self.ep.codecSetPriority(str(info.codecId), 0)
        for i, name in enumerate(wanted):
            self.ep.codecSetPriority(name.strip(), 255 - i)

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.ep.libHandleEvents(10)
            if time.monotonic() >= end:
                return

    # -- calls -----------------------------------------------------------------------------------
    def incoming(self, prm: Any) -> None:
        call = Call(self, prm.callId)
        call.role = "callee"
        self.calls.append(call)
        ci = call.getInfo()
        call.number = int(ci.id)
        call.sip_call_id = str(ci.callIdString)
        msg = bytes(str(prm.rdata.wholeMsg), "utf-8", "replace")
        request_line = msg.split(b"\r\n", 1)[0].split(b" ")
        conn = SDP_CONNECTION.search(msg)
        from_tag = FROM_TAG.search(msg)
        emit(
            "incoming_call",
            **call.tag(),
            **{"from": str(ci.remoteUri)},
            to=str(ci.localUri),
            contact=str(ci.remoteContact),
            request_uri=request_line[1].decode(errors="replace") if len(request_line) > 1 else "",
            sdp_connection=conn.group(1).decode() if conn else None,
            from_tag=from_tag.group(1).decode() if from_tag else None,
            src=str(prm.rdata.srcAddress),
        )
        op = pj.CallOpParam()
        op.statusCode = 180
        call.answer(op)
        code = self.args.auto_answer
        if code:
            call.answer_at = time.monotonic() + (self.args.ring_seconds if code >= 200 else 0.0)

    def answer(self, call: Call, code: int) -> None:
        op = pj.CallOpParam(True)
        op.statusCode = code
        call.answer(op)
        if code >= 200:
            call.answered = True
            call.answer_at = None

    def find(self, selector: str | None, *, unanswered: bool = False) -> Call:
        live = [c for c in self.calls if not c.ended]
        if selector is not None:
            for c in live:
                if f"#{c.number}" == selector:
                    return c
            raise CommandError(f"no live call {selector}")
        if unanswered:
            waiting = [c for c in live if c.role == "callee" and not c.answered]
            if not waiting:
                raise CommandError("no unanswered incoming call")
            return waiting[0]
        if not live:
            raise CommandError("no call")
        return live[-1]

    def make_call(self, uri: str) -> None:
        call = Call(self)
        self.calls.append(call)
        try:
            call.makeCall(uri, pj.CallOpParam(True))
        except pj.Error:
            call.ended = True
            raise
        ci = call.getInfo()
        call.number = int(ci.id)
        call.sip_call_id = str(ci.callIdString)
        emit("calling", **call.tag(), uri=uri)

    def reap(self) -> None:
        """Release the media of ended calls, then forget their Call objects."""
        for call in [c for c in self.calls if c.ended]:
            call.stop_play()
            call.stop_record()
            self.calls.remove(call)

    def tick(self) -> None:
        now = time.monotonic()
        for call in self.calls:
            if call.answer_at is not None and now >= call.answer_at and not call.ended:
                self.answer(call, self.args.auto_answer)
        self.reap()

    # -- commands --------------------------------------------------------------------------------
    def status(self) -> None:
        fields: dict[str, Any] = {}
        if self.args.registrar:
            info = self.acc.getInfo()
            fields = {
                "active": bool(info.regIsActive),
                "code": int(info.regStatus),
                "expires": int(info.regExpiresSec),
                "uri": str(info.uri),
            }
        calls = [
            {
                **c.tag(),
                "state": c.state,
                "role": c.role,
                "media": c.media,
                "playing": c.player is not None,
                "recording": c.recorder is not None,
            }
            for c in self.calls
        ]
        emit("status", **fields, calls=calls)

    def command(self, line: str) -> None:
        words = line.split()
        # "#<n>" picks a call; "dtmf #" sends the key (it used to be taken for a call selector)
        selector = words.pop() if len(words) > 1 and re.fullmatch(r"#\d+", words[-1]) else None
        name, params = words[0], words[1:]
        if name == "unregister":
            self.acc.setRegistration(False)
        elif name == "register":
            self.acc.setRegistration(True)
        elif name == "status":
            self.status()
        elif name == "auto_answer" and 1 <= len(params) <= 2:
            self.args.auto_answer = int(params[0])
            if len(params) == 2:
                self.args.ring_seconds = float(params[1])
        elif name == "call" and len(params) == 1:
            self.make_call(params[0])
        elif name == "answer" and len(params) <= 1:
            code = int(params[0]) if params else 200
            self.answer(self.find(selector, unanswered=True), code)
        elif name == "hangup" and not params:
            call = self.find(selector)
            call.stop_play()
            call.stop_record()
            call.hangup(pj.CallOpParam(True))
        elif name == "play" and len(params) == 1:
            call = self.find(selector)
            call.stop_play()
            with wave.open(params[0]):  # a clear error now rather than a pjmedia status later
                pass
            call.play_path = params[0]
            call.connect_media()
        elif name == "stop_play" and not params:
            self.find(selector).stop_play()
        elif name == "record" and len(params) == 1:
            call = self.find(selector)
            call.stop_record()
            call.record_path = params[0]
            call.connect_media()
        elif name == "stop_record" and not params:
            self.find(selector).stop_record()
        elif name == "dtmf" and len(params) == 1:
            d = pj.CallSendDtmfParam()
            d.method = pj.PJSUA_DTMF_METHOD_RFC2833
            d.digits = params[0]
            d.duration = 160
            self.find(selector).sendDtmf(d)
        elif name == "hold" and not params:
            self.find(selector).setHold(pj.CallOpParam(True))
        elif name == "xfer" and len(params) == 1:
            self.find(selector).xfer(params[0], pj.CallOpParam(True))
        elif name == "xfer_replaces" and len(params) == 1:
            self.find(selector).xferReplaces(self.find(params[0]), pj.CallOpParam(True))
        elif name == "unhold" and not params:
            op = pj.CallOpParam(True)
            op.opt.flag = pj.PJSUA_CALL_UNHOLD
            self.find(selector).reinvite(op)
        else:
            raise CommandError("unknown command or wrong arguments")

    def run(self) -> None:
        commands = StdinCommands()
        deadline = time.monotonic() + self.args.max_seconds
        while time.monotonic() < deadline:
            self.ep.libHandleEvents(10)
            self.tick()
            for cmd in commands.poll():
                if cmd == "quit":
                    return
                try:
                    self.command(cmd)
                except pj.Error as exc:
                    emit("error", command=cmd, message=str(exc.info()))
                except (CommandError, ValueError, OSError, EOFError, wave.Error) as exc:
                    emit("error", command=cmd, message=str(exc))
            if commands.eof:
                return
        emit("timeout", seconds=self.args.max_seconds)

    def release_media(self) -> None:
        # a method of its own: a loop variable left in close() would keep a Call alive past libDestroy()
        for call in self.calls:
            call.stop_play()
            call.stop_record()

    def close(self) -> None:
        self.release_media()
        if any(not c.ended for c in self.calls):
            self.ep.hangupAllCalls()
            end = time.monotonic() + 3.0
            while time.monotonic() < end and any(not c.ended for c in self.calls):
                self.ep.libHandleEvents(10)
        self.reap()
        self.calls.clear()  # every Python Call object must be gone before libDestroy()
        self.pump(0.1)
        if self.args.registrar and self.acc.getInfo().regIsActive:
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
    p.add_argument("--password", default="")
    p.add_argument("--registrar", help="host:port of the PBX")
    p.add_argument("--no-register", action="store_true", help="no registrar: be callable at the local port")
    p.add_argument("--realm", default="*", help="digest realm of the credentials (* = any)")
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="local SIP port (0 = any free)")
    p.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    p.add_argument("--srtp", action="store_true", help="require SRTP (SDES keys; needs --transport tls)")
    p.add_argument("--expires", type=int, default=300)
    p.add_argument("--mwi-subscribe", action="store_true", help="SUBSCRIBE to message-summary (RFC 3842)")
    p.add_argument("--rtp-port", type=int, default=0, help="first RTP port (0 = any free pair)")
    p.add_argument("--rtp-port-range", type=int, default=100, help="ports tried from --rtp-port on")
    p.add_argument("--codecs", default="PCMU/8000,PCMA/8000", help="enabled codecs, first preferred")
    p.add_argument("--clock-rate", type=int, default=8000, help="conference bridge and recording rate")
    p.add_argument(
        "--auto-answer", type=int, default=0, metavar="CODE", help="answer incoming calls with CODE"
    )
    p.add_argument("--ring-seconds", type=float, default=0.0, help="180 Ringing this long before CODE")
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--log-file")
    args = p.parse_args()
    if bool(args.registrar) == bool(args.no_register):
        p.error("give exactly one of --registrar and --no-register")
    phone = Phone(args)
    try:
        phone.run()
    finally:
        phone.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
