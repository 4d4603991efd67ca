#!/usr/bin/env python3
"""CPU cost per RTP packet of the engine's own media endpoint (engine/media/io.py MediaSession), and of the
relay for comparison (bench/relay.py, run as is), as concurrent 20 ms media streams per core.

usage: python3 bench/media.py [--runs 3] [--seconds 4] [--sessions 200,500] [--no-uvloop] [--relay]

This process is the engine: N MediaSessions on one shared MediaClock (one 20 ms tick for all), each
negotiated PCMU towards a sink. Two modes per step:
  play    every session plays a 15 s prompt (vm-message-menu) in a loop: 50 packets/s out per session;
  record  every session records (no silence or max stop) while a load process (this script, --role load, no
          threads) sends it 50 packets/s of 20 ms PCMU from 64 sessions per socket, paced by absolute 1 ms
          deadlines and spread over the 20 ms period; the session meanwhile sends its comfort silence, so
          a recording stream is 50 packets/s in + 50 out.
CPU is this process's ``time.process_time`` over the measured window (event loop overhead included) divided
by the packets the sessions sent plus received; "streams per core" is N / (CPU seconds / wall seconds) for
one direction of 50 packets/s (play) or the pair (record). Late ticks: how often the media clock had to skip
ahead (more than 5 ticks behind): zero means pacing held. Medians over --runs.
With --relay it also runs ``bench/relay.py --runs 3 --seconds 4 --calls 500`` and prints its summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.media.clock import MediaClock
from engine.media.prompts import PromptLibrary
from engine.media.relay import PortAllocator
from engine.media.session import MediaSession
from engine.script import Play, Record, Sound

HOST = "127.0.0.1"
PTIME_S = 0.020
PER_SOCKET = 64
PORT_FIRST, PORT_LAST = 20000, 29999
WARMUP_S = 1.0


# --- load process: the phones that talk ----------------------------------------------------------------


def load(seconds: float) -> None:
    ports: list[int] = json.loads(sys.stdin.readline())
    socks = []
    for _ in range(-(-len(ports) // PER_SOCKET)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST, 0))
        s.setblocking(False)
        socks.append(s)
    payload = b"\x7f\xff" * 80  # quiet, but not digital silence
    seqs = [0] * len(ports)
    slots = 20
    start = time.monotonic()
    tick = 0
    sent = 0
    while True:
        deadline = start + tick * 0.001
        now = time.monotonic()
        if now - start >= seconds:
            break
        if deadline > now:
            time.sleep(deadline - now)
        slot = tick % slots
        for i in range(slot, len(ports), slots):
            seq = seqs[i]
            header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, i)
            try:
                socks[i // PER_SOCKET].sendto(header + payload, (HOST, ports[i]))
                sent += 1
            except BlockingIOError:
                pass
            seqs[i] = seq + 1
        tick += 1
    print(json.dumps({"sent": sent}), flush=True)


# --- the engine side -------------------------------------------------------------------------------------


async def loop_play(session: MediaSession) -> None:
    while not session.hung_up:
        await session.run(Play((Sound("vm-message-menu"),), barge_in=False))


async def step(mode: str, n: int, seconds: float, prompts: PromptLibrary) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    clock = MediaClock(loop)
    allocator = PortAllocator(PORT_FIRST, PORT_LAST)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((HOST, 0))
    sink_port = sink.getsockname()[1]
    sessions = [MediaSession.open(HOST, allocator, loop=loop, clock=clock, prompts=prompts) for _ in range(n)]
    for s in sessions:
        s.negotiate(HOST, sink_port)
    proc = None
    tasks: list[asyncio.Future[Any]] = []
    tmp = Path("/tmp/bench-media-rec")
    tmp.mkdir(exist_ok=True)
    if mode == "play":
        tasks = [asyncio.ensure_future(loop_play(s)) for s in sessions]
    else:
        tasks = [
            asyncio.ensure_future(s.run(Record(str(tmp / f"{i}.wav"), max_s=3600, silence_s=0, beep=False)))
            for i, s in enumerate(sessions)
        ]
        proc = subprocess.Popen(
            [sys.executable, __file__, "--role", "load", "--seconds", str(seconds + WARMUP_S + 0.5)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps([s.local_port for s in sessions]) + "\n")
        proc.stdin.flush()
    await asyncio.sleep(WARMUP_S)
    sent0 = sum(s.packets_sent for s in sessions)
    recv0 = sum(s.packets_received for s in sessions)
    skips0 = clock.late_skips
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    sent = sum(s.packets_sent for s in sessions) - sent0
    received = sum(s.packets_received for s in sessions) - recv0
    skips = clock.late_skips - skips0
    for s in sessions:
        s.hangup()
    await asyncio.gather(*tasks, return_exceptions=True)
    for s in sessions:
        s.close()
    sink.close()
    if proc is not None:
        proc.communicate(timeout=30)
    for f in tmp.glob("*.wav"):
        f.unlink()
    packets = sent + received
    share = cpu / wall
    return {
        "mode": mode,
        "sessions": n,
        "sent_pps": sent / wall,
        "received_pps": received / wall,
        "us_per_pkt": cpu / packets * 1e6 if packets else float("nan"),
        "cpu_share": share,
        "streams_per_core": n / share if share else float("nan"),
        "late_skips": skips,
    }


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    prompts = PromptLibrary()
    prompts.get("en", "vm-message-menu")
    results = []
    for run in range(args.runs):
        for mode in ("play", "record"):
            for n in (int(x) for x in args.sessions.split(",")):
                r = await step(mode, n, args.seconds, prompts)
                r["run"] = run
                results.append(r)
                print(
                    f"run {run} {mode:6} {n:5} sessions: out {r['sent_pps']:8.0f} pkt/s, "
                    f"in {r['received_pps']:8.0f} pkt/s, {r['us_per_pkt']:6.2f} us/pkt, "
                    f"CPU {r['cpu_share']:5.1%}, "
                    f"{r['streams_per_core']:6.0f} streams/core, late skips {r['late_skips']}",
                    flush=True,
                )
    return results


def summarise(results: list[dict[str, Any]], loop_name: str) -> None:
    print(
        "\n| loop | mode | sessions | pkt/s out | pkt/s in | median us/pkt | median CPU | streams per core "
        "| late skips |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["mode"], r["sessions"]) for r in results}, key=lambda k: (k[0] != "play", k[1]))
    for mode, n in keys:
        rs = [r for r in results if r["mode"] == mode and r["sessions"] == n]

        def med(k: str, rs: list[dict[str, Any]] = rs) -> float:
            return statistics.median(r[k] for r in rs)

        print(
            f"| {loop_name} | {mode} | {n} | {med('sent_pps'):,.0f} | {med('received_pps'):,.0f} | "
            f"{med('us_per_pkt'):.2f} | {med('cpu_share'):.0%} | {med('streams_per_core'):,.0f} | "
            f"{', '.join(str(r['late_skips']) for r in rs)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["engine", "load"], default="engine")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--sessions", default="200,500")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--relay", action="store_true", help="also run bench/relay.py (--calls 500)")
    args = parser.parse_args()
    if args.role == "load":
        load(args.seconds)
        return
    loop_name = "asyncio"
    if not args.no_uvloop:
        import uvloop

        loop_name = "uvloop"
        results = uvloop.run(bench(args))
    else:
        results = asyncio.run(bench(args))
    summarise(results, loop_name)
    if args.relay:
        relay = [
            sys.executable,
            str(Path(__file__).with_name("relay.py")),
            "--runs",
            "3",
            "--seconds",
            "4",
            "--calls",
            "500",
        ]
        if args.no_uvloop:
            relay.append("--no-uvloop")
        print("\n$ " + " ".join(relay[1:]), flush=True)
        subprocess.run(relay, check=True)


if __name__ == "__main__":
    main()
