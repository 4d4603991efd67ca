#!/usr/bin/env python3
"""RTP relay capacity and CPU cost per packet (engine/media/io.py), on 127.0.0.1.

usage: python3 bench/relay.py [--runs 3] [--seconds 5] [--calls 100,400,700,1000,1300] [--no-uvloop]

This process is the relay: an ``RtpRelay`` on the event loop, nothing else. For each step it opens one
``RelaySession`` per call and starts a load process (this script with ``--role load``, no threads) whose
"phones" are UDP sockets: each call has a phone on side a and one on side b, each sending 172-byte RTP
packets (12-byte header + 20 ms of G.711) every 20 ms, paced by absolute 1 ms deadlines and spread evenly over
the 20 ms period, as unsynchronised phones are. So a call is 100 packets/s through the relay (50 each way).
The phones send from the sockets they receive on (symmetric RTP), 64 calls' phones sharing one socket.
After --seconds, the load process drains for 0.5 s more and reports what it sent and received.

Per step it prints the packets/s targeted, offered and relayed, packets lost end to end (sent - received)
and in the relay (sent - relayed), and the relay process's CPU time per relayed packet (``time.process_time``
over the step: the event loop's own overhead included, which is the real cost). A step passes with zero loss
at an offered rate of at least 98 % of its target; below that the load process, not the relay, was the
limit (on a 2-vCPU machine it needs about as much CPU as the relay: a loopback send costs the sender the
kernel's delivery too). Each run walks the ladder of call counts; the summary gives medians over runs per
step, the highest step each run passed, and the relay's CPU per packet at the top step as packets/s per core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import select
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.media import io as relay_io
from engine.media.io import RtpRelay

HOST = "127.0.0.1"
PACKET = bytes([0x80, 0x00, 0x00, 0x01]) + b"\x00" * 8 + b"\xff" * 160  # 172 bytes
PTIME_S = 0.020
TICK_S = 0.001
TICKS_PER_PTIME = round(PTIME_S / TICK_S)
CALLS_PER_SOCKET = 64
DRAIN_AFTER_S = 0.5
KEPT_UP = 0.98  # a step counts only if the load process offered at least this share of its target
PORT_FIRST, PORT_LAST = 10000, 19999


# --- load process: the phones --------------------------------------------------------------------------


def load(calls: int, seconds: float) -> None:
    """Bind the phone sockets, print their ports, read the relay ports, send and count; print the result."""
    n_socks = max(2, 2 * -(-calls // CALLS_PER_SOCKET))
    socks = []
    for _ in range(n_socks):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.bind((HOST, 0))
        sock.setblocking(False)
        socks.append(sock)
    print(json.dumps([s.getsockname()[1] for s in socks]), flush=True)
    relay_ports: list[list[int]] = json.loads(sys.stdin.readline())  # [[a_port, b_port], ...] per call
    # Flow list: (socket, destination) per direction of each call; phone i of the call uses socket (2c+i) % n.
    flows = []
    for call, (a_port, b_port) in enumerate(relay_ports):
        flows.append((socks[(2 * call) % n_socks], (HOST, a_port)))
        flows.append((socks[(2 * call + 1) % n_socks], (HOST, b_port)))
    groups = [flows[i::TICKS_PER_PTIME] for i in range(TICKS_PER_PTIME)]
    poller = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    buf = bytearray(2048)
    sent = received = 0
    send_errors = 0

    def drain(timeout: float) -> int:
        got = 0
        for fd, _ in poller.poll(timeout):
            sock = by_fd[fd]
            while True:
                try:
                    sock.recv_into(buf)
                except BlockingIOError:
                    break
                got += 1
        return got

    total_ticks = round(seconds / TICK_S)
    start = time.perf_counter()
    tick = 0
    while tick < total_ticks:
        due = min(int((time.perf_counter() - start) / TICK_S) + 1, total_ticks)
        while tick < due:
            for sock, dest in groups[tick % TICKS_PER_PTIME]:
                try:
                    sock.sendto(PACKET, dest)
                    sent += 1
                except BlockingIOError:
                    send_errors += 1
            tick += 1
        received += drain(max(0.0, start + tick * TICK_S - time.perf_counter()))
    elapsed = time.perf_counter() - start
    end = time.perf_counter() + DRAIN_AFTER_S
    while time.perf_counter() < end:
        received += drain(0.05)
    print(json.dumps({"sent": sent, "received": received, "send_errors": send_errors, "elapsed": elapsed}),
          flush=True)


# --- relay process -------------------------------------------------------------------------------------


async def step(relay: RtpRelay, calls: int, seconds: float) -> dict[str, Any]:
    sessions = [relay.open_session() for _ in range(calls)]
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--role", "load", "--calls", str(calls), "--seconds", str(seconds),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None
        phone_ports = json.loads(await proc.stdout.readline())
        n = len(phone_ports)
        for i, session in enumerate(sessions):
            session.a.set_remote(HOST, phone_ports[(2 * i) % n])
            session.b.set_remote(HOST, phone_ports[(2 * i + 1) % n])
        before = relay.stats
        cpu0 = time.process_time()
        sys0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        proc.stdin.write((json.dumps([[s.a.port, s.b.port] for s in sessions]) + "\n").encode())
        await proc.stdin.drain()
        result = json.loads(await proc.stdout.readline())
        cpu = time.process_time() - cpu0
        kernel = resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys0
        await proc.wait()
        after = relay.stats
    finally:
        for session in sessions:
            session.close()
    relayed = after.packets - before.packets
    return {
        "calls": calls,
        "offered_pps": result["sent"] / result["elapsed"],
        "relayed_pps": relayed / result["elapsed"],
        "lost": result["sent"] - result["received"],
        "lost_in_relay": result["sent"] - relayed,
        "relay_dropped": after.dropped - before.dropped,
        "cpu_us_per_packet": cpu / relayed * 1e6 if relayed else float("nan"),
        "sys_share": kernel / cpu if cpu else float("nan"),
        "cpu_share": cpu / (result["elapsed"] + DRAIN_AFTER_S),
    }


async def bench(args: argparse.Namespace) -> list[list[dict[str, Any]]]:
    relay = RtpRelay(HOST, PORT_FIRST, PORT_LAST)
    runs = []
    for run in range(args.runs):
        results = []
        for calls in args.calls:
            r = await step(relay, calls, args.seconds)
            results.append(r)
            print(
                f"run {run + 1} calls {calls:5d}: target {calls * 100:6d} offered {r['offered_pps']:8.0f} "
                f"pkt/s  relayed {r['relayed_pps']:8.0f} pkt/s  lost {r['lost']:6d} "
                f"(in the relay: {r['lost_in_relay']})  "
                f"relay CPU {r['cpu_us_per_packet']:5.2f} us/pkt ({r['sys_share']:.0%} in the kernel; "
                f"{r['cpu_share']:.0%} of a core)",
                flush=True,
            )
            if r["lost"] > 0 and args.stop_on_loss:
                break
        runs.append(results)
    relay.close_all()
    return runs


def summarise(runs: list[list[dict[str, Any]]], loop_name: str) -> None:
    print("\n| loop | calls | median offered pkt/s | median relayed pkt/s | lost per run (in the relay) | "
          "median relay CPU µs/pkt | of which kernel | median relay CPU share |")
    print("|---|---|---|---|---|---|---|---|")
    by_calls: dict[int, list[dict[str, Any]]] = {}
    for results in runs:
        for r in results:
            by_calls.setdefault(r["calls"], []).append(r)
    for calls, rs in sorted(by_calls.items()):
        lost = [f"{r['lost']} ({r['lost_in_relay']})" for r in rs]
        print(
            f"| {loop_name} | {calls} | {statistics.median(r['offered_pps'] for r in rs):,.0f} | "
            f"{statistics.median(r['relayed_pps'] for r in rs):,.0f} | "
            f"{', '.join(lost)} | "
            f"{statistics.median(r['cpu_us_per_packet'] for r in rs):.2f} | "
            f"{statistics.median(r['sys_share'] for r in rs):.0%} | "
            f"{statistics.median(r['cpu_share'] for r in rs):.0%} |"
        )
    best = []
    for results in runs:
        passed = [r for r in results if passes(r)]
        best.append(max((r["relayed_pps"] for r in passed), default=0.0))
    print(f"\nhighest step passed per run (zero loss, load at >= {KEPT_UP:.0%} of target), pkt/s relayed: "
          f"{', '.join(f'{b:,.0f}' for b in best)}; median {statistics.median(best):,.0f}")
    top = [r for results in runs for r in results if r["calls"] == max(by_calls)]
    per_packet = statistics.median(r["cpu_us_per_packet"] for r in top)
    print(f"relay CPU at the top step: median {per_packet:.2f} us/pkt, i.e. one core would relay about "
          f"{1e6 / per_packet:,.0f} pkt/s ({1e6 / per_packet / 100:,.0f} G.711 calls at 100 pkt/s each)")


def passes(r: dict[str, Any]) -> bool:
    """Zero loss end to end, at a load the load process really offered (else the step measured the
    load process, not the relay)."""
    return bool(r["lost"] == 0 and r["offered_pps"] >= KEPT_UP * r["calls"] * 100)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["relay", "load"], default="relay")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--calls", default="100,400,700,1000,1300")
    parser.add_argument("--no-uvloop", action="store_true", help="the default asyncio loop instead of uvloop")
    parser.add_argument("--drain-max", type=int, default=None,
                        help="override engine.media.io.DRAIN_MAX (1: one read per wake-up, no EAGAIN)")
    parser.add_argument("--stop-on-loss", action="store_true", help="end a run at its first lossy step")
    args = parser.parse_args()
    if args.role == "load":
        load(int(args.calls), args.seconds)
        return
    args.calls = [int(c) for c in args.calls.split(",")]
    if args.drain_max is not None:
        relay_io.DRAIN_MAX = args.drain_max  # type: ignore[misc]
    if args.no_uvloop:
        loop_name = "asyncio"
        runs = asyncio.run(bench(args))
    else:
        import uvloop

        loop_name = "uvloop"
        runs = uvloop.run(bench(args))
    summarise(runs, loop_name)


if __name__ == "__main__":
    main()
