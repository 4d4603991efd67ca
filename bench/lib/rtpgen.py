#!/usr/bin/env python3
"""RTP through a running engine's relay: a small generator for the anchored calls SIPp holds open.

usage: rtpgen.py --pid ENGINE_PID --calls 250,500,1000 [--seconds 5] [--ports 20000-29999] [--host 127.0.0.1]
                 [--generator auto|c|py]

The send/receive loop runs in C (rtpblast.c, compiled on first use into bench/out/, recvmmsg batches) when a
C compiler is there: a Python loop costs about as much CPU per packet as the relay itself, so on a 2-core box
it would share the limit with the relay and add its own receive lag to the latency. ``--generator py`` keeps
the pure-Python loop of this file (same traffic, same figures).

Used by bench/calls.sh while the engine holds anchored calls (SIPp UAC -> engine -> SIPp UAS, no media
release). The engine's relay sockets are found with ``ss -Hlunp`` (UDP sockets of ENGINE_PID bound in the
RTP port range; even ports are RTP, odd ones RTCP and unused here). The relay allocates its even ports first
in, first out from the bottom of the range, so on a fresh engine whose calls have not ended call k holds
side a = first + 4k and side b = first + 4k + 2: the sorted RTP ports pair up two by two. A step with N calls
uses the first N pairs.

Per step, each call gets two "phones" (one per relay side), each sending a 172-byte RTP packet (12-byte
header + 20 ms of G.711) every 20 ms, spread evenly over the 20 ms as unsynchronised phones are: 100
packets/s through the relay per call, 50 each way. Phones share sockets (64 flows per socket). The relay
latches each side on the first packet it gets from it (symmetric RTP), so two warm-up rounds go first (the
first round's packets on side a go to side b's SDP address, SIPp's media port, before b has latched);
then the paced run, then draining (0.5 s, and on until nothing arrived for 0.2 s, at most 3 s).

Per step it prints one JSON line: packets sent and received, lost (sent - received; 0 is the pass mark),
the kernel's receive-buffer drops on the relay's and on the generator's sockets (/proc/net/udp), the
engine's CPU over the step (utime+stime from /proc/ENGINE_PID/stat: the whole process, i.e. the relay
plus whatever else the engine does meanwhile, measured idle beforehand in the "idle" line) and per relayed
packet, this generator's own CPU, and the one-way latency through the relay (send time stamped in bytes 12-19
of each packet, taken on receipt per batch read; 0.1 ms bins): p50, p99, max. A relay that keeps up shows
sub-millisecond p50; queueing in its sockets shows as tens of ms. To tell whose lag a latency is, the
bytes waiting in the receive queues of the relay's sockets and of the generator's are sampled three times
per step (the largest sample is reported).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import time

PACKET = bytes([0x80, 0x00, 0x00, 0x01]) + b"\x00" * 8 + b"\xff" * 160  # 172 bytes, PCMU 20 ms
HEADER, PAYLOAD = PACKET[:12], PACKET[20:]  # bytes 12-19 carry the send time (a double) for the latency
STAMP = struct.Struct("d")
LAT_BINS = 20000  # 0.1 ms bins up to 2 s
PTIME_S = 0.020
TICK_S = 0.001
TICKS_PER_PTIME = round(PTIME_S / TICK_S)
FLOWS_PER_SOCKET = 64
DRAIN_AFTER_S = 0.5
CLK_TCK = os.sysconf("SC_CLK_TCK")


def engine_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of stat)


def relay_ports(pid: int, first: int, last: int, host: str) -> list[int]:
    out = subprocess.run(["ss", "-Hlunp"], capture_output=True, text=True, check=True).stdout
    ports = set()
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        m = re.search(r"\s(\S+):(\d+)\s", line)
        if m is None or m.group(1) != host:
            continue
        port = int(m.group(2))
        if first <= port <= last and port % 2 == 0:
            ports.add(port)
    return sorted(ports)


def udp_drops(ports: set[int], host: str) -> int:
    """Sum of the drops column of /proc/net/udp for sockets bound to host:port for the given ports."""
    hexhost = "".join(f"{int(o):02X}" for o in reversed(host.split(".")))
    total = 0
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            p = line.split()
            h, port = p[1].split(":")
            if h == hexhost and int(port, 16) in ports:
                total += int(p[-1])
    return total


def open_sockets(max_calls: int, host: str) -> list[socket.socket]:
    """The phones' sockets, shared by all steps: a relay side stays latched on the socket it first heard from
    (packets from another source are dropped), so call c always sends from the same two sockets."""
    socks = []
    for _ in range(max(2, 2 * -(-max_calls // FLOWS_PER_SOCKET))):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.bind((host, 0))
        s.setblocking(False)
        socks.append(s)
    return socks


def udp_queued(ports: set[int], host: str) -> int:
    """Bytes waiting in the receive queues of the sockets bound to host:port (rx_queue of /proc/net/udp: the
    kernel's accounting, about 1 KB per small datagram)."""
    hexhost = "".join(f"{int(o):02X}" for o in reversed(host.split(".")))
    total = 0
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            p = line.split()
            h, port = p[1].split(":")
            if h == hexhost and int(port, 16) in ports:
                total += int(p[4].split(":")[1], 16)
    return total


def step(pid: int, socks: list[socket.socket], pairs: list[tuple[int, int]], seconds: float,
         host: str) -> dict[str, object]:
    calls = len(pairs)
    n_socks = len(socks)
    flows = []
    for c, (a, b) in enumerate(pairs):
        flows.append((socks[(2 * c) % n_socks], (host, a)))
        flows.append((socks[(2 * c + 1) % n_socks], (host, b)))
    groups = [flows[i::TICKS_PER_PTIME] for i in range(TICKS_PER_PTIME)]
    poller = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    buf = bytearray(2048)
    hist = [0] * LAT_BINS  # one-way send -> receive time through the relay, 0.1 ms bins
    unpack = STAMP.unpack_from
    measuring = [False]

    def drain(timeout: float) -> int:
        got = 0
        for fd, _ in poller.poll(timeout):
            s = by_fd[fd]
            now = time.perf_counter()
            while True:
                try:
                    s.recv_into(buf)
                except BlockingIOError:
                    break
                got += 1
                if measuring[0]:
                    i = int((now - unpack(buf, 12)[0]) * 10000)
                    hist[i if 0 <= i < LAT_BINS else LAT_BINS - 1] += 1
        return got

    # warm-up: latch both sides of every call on our sockets, then forget what came back
    warm_sent = 0
    for _ in range(2):
        for s, dest in flows:
            s.sendto(PACKET, dest)
            warm_sent += 1
        end = time.perf_counter() + 0.2
        while time.perf_counter() < end:
            drain(0.05)
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        drain(0.05)

    relay_set = {p for pair in pairs for p in pair}
    gen_set = {s.getsockname()[1] for s in socks}
    drops_relay0, drops_gen0 = udp_drops(relay_set, host), udp_drops(gen_set, host)
    sent = received = send_errors = 0
    total_ticks = round(seconds / TICK_S)
    e0, c0 = engine_ticks(pid), time.process_time()
    measuring[0] = True
    start = time.perf_counter()
    tick = 0
    # where packets wait, sampled at 1/4, 1/2 and 3/4 of the step: in the relay's sockets or in ours
    probes = {round(total_ticks * f) for f in (0.25, 0.5, 0.75)}
    queued_relay = queued_gen = 0
    while tick < total_ticks:
        if tick in probes:
            probes.discard(tick)
            queued_relay = max(queued_relay, udp_queued(relay_set, host))
            queued_gen = max(queued_gen, udp_queued(gen_set, host))
        due = min(int((time.perf_counter() - start) / TICK_S) + 1, total_ticks)
        while tick < due:
            packet = HEADER + STAMP.pack(time.perf_counter()) + PAYLOAD
            for s, dest in groups[tick % TICKS_PER_PTIME]:
                try:
                    s.sendto(packet, dest)
                    sent += 1
                except BlockingIOError:
                    send_errors += 1
            tick += 1
        received += drain(max(0.0, start + tick * TICK_S - time.perf_counter()))
    elapsed = time.perf_counter() - start
    # drain: at least DRAIN_AFTER_S, then until nothing arrived for 0.2 s (at most 3 s: what is still queued
    # in a socket when a slow generator falls behind is late, not lost)
    quiet_since = last = time.perf_counter()
    end = last + DRAIN_AFTER_S
    while True:
        got = drain(0.05)
        received += got
        now = time.perf_counter()
        if got:
            quiet_since = now
        if now >= end and (now - quiet_since >= 0.2 or now - last >= 3.0):
            break
    window = time.perf_counter() - start
    e1, c1 = engine_ticks(pid), time.process_time()
    drops_relay, drops_gen = udp_drops(relay_set, host) - drops_relay0, udp_drops(gen_set, host) - drops_gen0
    poller.close()
    engine_cpu_s = (e1 - e0) / CLK_TCK

    def percentile(q: float) -> float | None:
        n = sum(hist)
        if not n:
            return None
        rank, acc = q * n, 0
        for i, c in enumerate(hist):
            acc += c
            if acc >= rank:
                return round((i + 1) / 10, 1)
        return None

    top = max((i for i, c in enumerate(hist) if c), default=-1)
    return {
        "calls": calls,
        "target_pps": calls * 2 / PTIME_S,
        "sent": sent,
        "received": received,
        "lost": sent - received,
        "send_errors": send_errors,
        "offered_pps": round(sent / elapsed),
        "relayed_pps": round(received / elapsed),
        "drops_relay_sockets": drops_relay,
        "drops_generator_sockets": drops_gen,
        "engine_cpu_pct": round(100 * engine_cpu_s / window, 1),
        "engine_us_per_pkt": round(1e6 * engine_cpu_s / received, 2) if received else None,
        "generator_cpu_pct": round(100 * (c1 - c0) / window, 1),
        "latency_ms_p50": percentile(0.50),
        "latency_ms_p99": percentile(0.99),
        "latency_ms_max": round((top + 1) / 10, 1) if top >= 0 else None,
        "queued_kb_relay_sockets": round(queued_relay / 1024),
        "queued_kb_generator_sockets": round(queued_gen / 1024),
        "seconds": round(window, 2),
        "warmup_packets": warm_sent,
        "generator": "py",
    }


class Blaster:
    """The C loop (rtpblast.c) as a child process that keeps its sockets across steps."""

    def __init__(self, binary: str, pairs: list[tuple[int, int]], max_calls: int, host: str) -> None:
        self.host = host
        n_socks = max(2, 2 * -(-max_calls // FLOWS_PER_SOCKET))
        self.proc = subprocess.Popen([binary, host, str(n_socks)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        flows = [p for pair in pairs[:max_calls] for p in pair]  # flow 2c: side a of call c, 2c+1: side b
        self._send("flows " + " ".join(map(str, flows)))
        self.gen_ports = {int(x) for x in self._expect("ready").split(",")}

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _expect(self, word: str) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(word):
            raise RuntimeError(f"rtpblast said {line!r}, expected {word!r}")
        return line[len(word):].strip()

    def step(self, pid: int, pairs: list[tuple[int, int]], seconds: float) -> dict[str, object]:
        host = self.host
        relay_set = {p for pair in pairs for p in pair}
        drops_relay0, drops_gen0 = udp_drops(relay_set, host), udp_drops(self.gen_ports, host)
        self._send(f"step {2 * len(pairs)} {seconds}")
        self._expect("go")
        e0, t0 = engine_ticks(pid), time.perf_counter()
        queued_relay = queued_gen = 0
        for f in (0.25, 0.5, 0.75):  # where packets wait: in the relay's sockets or in ours
            time.sleep(max(0.0, t0 + f * seconds - time.perf_counter()))
            queued_relay = max(queued_relay, udp_queued(relay_set, host))
            queued_gen = max(queued_gen, udp_queued(self.gen_ports, host))
        fields = self._expect("result").split()
        e1, t1 = engine_ticks(pid), time.perf_counter()
        sent, received, errors = (int(x) for x in fields[:3])
        elapsed, _window, p50, p99, top, gen_cpu = (float(x) for x in fields[3:])
        drops_relay = udp_drops(relay_set, host) - drops_relay0
        drops_gen = udp_drops(self.gen_ports, host) - drops_gen0
        engine_cpu_s = (e1 - e0) / CLK_TCK
        return {
            "calls": len(pairs),
            "target_pps": len(pairs) * 2 / PTIME_S,
            "sent": sent,
            "received": received,
            "lost": sent - received,
            "send_errors": errors,
            "offered_pps": round(sent / elapsed),
            "relayed_pps": round(received / elapsed),
            "drops_relay_sockets": drops_relay,
            "drops_generator_sockets": drops_gen,
            "engine_cpu_pct": round(100 * engine_cpu_s / (t1 - t0), 1),
            "engine_us_per_pkt": round(1e6 * engine_cpu_s / received, 2) if received else None,
            "generator_cpu_pct": round(100 * gen_cpu / (t1 - t0), 1),
            "latency_ms_p50": p50 if p50 >= 0 else None,
            "latency_ms_p99": p99 if p99 >= 0 else None,
            "latency_ms_max": top if top >= 0 else None,
            "queued_kb_relay_sockets": round(queued_relay / 1024),
            "queued_kb_generator_sockets": round(queued_gen / 1024),
            "seconds": round(t1 - t0, 2),
            "generator": "c",
        }

    def close(self) -> None:
        try:
            self._send("quit")
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()


def build_blaster(out: str) -> str | None:
    """Compile rtpblast.c to ``out`` (when missing or older than the source); None without a C compiler."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rtpblast.c")
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(src):
        return out
    for cc in ("cc", "gcc", "clang"):
        try:
            subprocess.run([cc, "-O2", "-o", out, src], check=True, capture_output=True)
            return out
        except (OSError, subprocess.CalledProcessError):
            continue
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pid", type=int, required=True, help="the engine process")
    ap.add_argument("--calls", default="250,500,750,1000", help="calls per step (100 packets/s each)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--ports", default="20000-29999", help="the engine's RTP port range")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--idle", type=float, default=2.0, help="seconds of engine CPU measured before the steps")
    ap.add_argument("--keep-going", action="store_true", help="do not stop at the first lossy step")
    ap.add_argument("--generator", choices=("auto", "c", "py"), default="auto",
                    help="the send/receive loop: c = rtpblast.c (compiled on first use), py = this script; "
                         "auto: c when a C compiler is there")
    ap.add_argument("--blast-bin", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "out",
                                                        "rtpblast"), help="where the compiled rtpblast goes")
    args = ap.parse_args()
    first, last = (int(x) for x in args.ports.split("-"))
    ports = relay_ports(args.pid, first, last, args.host)
    pairs = [(ports[i], ports[i + 1]) for i in range(0, len(ports) - 1, 2)]
    odd = sum(1 for a, b in pairs if b != a + 2)
    print(json.dumps({"relay_rtp_ports": len(ports), "calls_available": len(pairs), "pairs_not_adjacent": odd}),
          flush=True)
    if args.idle > 0:
        e0, t0 = engine_ticks(args.pid), time.perf_counter()
        time.sleep(args.idle)
        e1, t1 = engine_ticks(args.pid), time.perf_counter()
        print(json.dumps({"idle": True, "engine_cpu_pct": round(100 * (e1 - e0) / CLK_TCK / (t1 - t0), 1)}),
              flush=True)
    steps = [int(x) for x in args.calls.split(",")]
    max_calls = min(max(steps), len(pairs))
    blaster = None
    if args.generator != "py":
        os.makedirs(os.path.dirname(os.path.abspath(args.blast_bin)), exist_ok=True)
        binary = build_blaster(os.path.abspath(args.blast_bin))
        if binary is None and args.generator == "c":
            sys.exit("no C compiler for rtpblast.c")
        if binary is not None:
            blaster = Blaster(binary, pairs, max_calls, args.host)
    socks = open_sockets(max_calls, args.host) if blaster is None else []
    try:
        for n in steps:
            if n > len(pairs):
                print(json.dumps({"calls": n, "skipped": f"only {len(pairs)} anchored calls open"}), flush=True)
                break
            if blaster is not None:
                r = blaster.step(args.pid, pairs[:n], args.seconds)
            else:
                r = step(args.pid, socks, pairs[:n], args.seconds, args.host)
            print(json.dumps(r), flush=True)
            if r["lost"] and not args.keep_going:
                break
    finally:
        if blaster is not None:
            blaster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
