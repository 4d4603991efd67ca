#!/usr/bin/env python3
"""Markdown report of one bench/calls.sh run: reads OUT/steps.tsv, OUT/best.tsv, OUT/relay.jsonl, OUT/env.txt,
OUT/profile-top.md and prints the tables that go into bench/RESULTS.md.

usage: calls_report.py OUT_DIR
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

COLS = ["side", "part", "rate", "secs", "hold_ms", "calls", "ok", "failed", "retrans", "uas_failed", "uas_retrans",
        "achieved", "cpu", "us_per_call", "rt_avg", "p99", "max_conc", "pss_base", "pss_max", "box_cpu", "drops",
        "verdict", "dir"]
SIDES = ["engine", "engine-anchored", "kamailio", "sippy"]
NAMES = {
    "engine": "engine, media released",
    "engine-anchored": "engine, media anchored",
    "kamailio": "Kamailio 5.6 proxy",
    "sippy": "sippy 2.5 B2BUA",
}
GOAL_CPS = 600
RELAY_P99_MS = 20  # one-way latency through the relay that a phone's jitter buffer absorbs


def num(text: str, default: float = 0.0) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return default


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def gc_pause(row: dict[str, str]) -> str:
    """The longest pause of the engine's cyclic GC in that run, from gc.json (GCWATCH=1): "ms (generation)"."""
    path = Path(row["dir"]) / "gc.json"
    if not path.exists():
        return "-"
    try:
        d = json.loads(path.read_text())
    except ValueError:
        return "?"
    longest = d.get("longest") or []
    if not longest:
        return "< 5"
    _, gen, ms, _ = longest[0]
    return f"{ms:.0f} (gen {gen})"


def main() -> int:
    out = Path(sys.argv[1])
    rows = []
    for line in (out / "steps.tsv").read_text().splitlines():
        if line.strip():
            rows.append(dict(zip(COLS, line.split("\t"), strict=False)))  # older rows have fewer columns
    best: dict[str, tuple[int, str]] = {}
    if (out / "best.tsv").exists():
        for line in (out / "best.tsv").read_text().splitlines():
            side, b, f = line.split("\t")
            best[side] = (int(b), f)
    env = (out / "env.txt").read_text() if (out / "env.txt").exists() else ""
    print(f"Run `{out.name}`:\n\n```\n{env.strip()}\n```\n")

    cps = [r for r in rows if r["part"] == "cps"]
    if cps:
        print("### Call rate steps (no hold; a fresh server per step)\n")
        print("| side | offered cps | verdict | calls ok/failed (UAC), failed at UAS | retrans UAC/UAS | achieved cps | server CPU % of a "
              "core | µs CPU/call | PDD avg / p99 ms | box CPU %/200 | server PSS peak MB | UDP drops | longest GC pause ms |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for side in SIDES:
            for r in (r for r in cps if r["side"] == side):
                print(f"| {NAMES[side]} | {r['rate']} | {r['verdict']} | {r['ok']}/{r['failed']}, {r['uas_failed']} | "
                      f"{r['retrans']}/{r['uas_retrans']} | {r['achieved']} | {r['cpu']} | {r['us_per_call']} | "
                      f"{r['rt_avg']} / {r['p99']} | {r['box_cpu']} | {num(r['pss_max']) / 1024:.0f} | {r['drops']} | "
                      f"{gc_pause(r)} |")
        print()

        def passed(side: str, rate: int) -> dict[str, str] | None:
            ok = [r for r in cps if r["side"] == side and int(r["rate"]) == rate and r["verdict"] == "PASS"]
            return ok[-1] if ok else None

        print("| side | highest clean cps | first failing cps | server CPU there | µs CPU per call there |")
        print("|---|---|---|---|---|")
        at_best: dict[str, dict[str, str]] = {}
        for side in SIDES:
            if side not in best:
                continue
            b, f = best[side]
            r = passed(side, b) if b else None
            if r is not None:
                at_best[side] = r
            print(f"| {NAMES[side]} | **{fmt_int(b)}** | {f} | {r['cpu'] + ' %' if r else '-'} | "
                  f"{r['us_per_call'] if r else '-'} |")
        print()
        e = best.get("engine", (0, ""))[0]
        for other in ("sippy", "kamailio"):
            o = best.get(other, (0, ""))[0]
            if e and o:
                extra = ""
                if "engine" in at_best and other in at_best:
                    eu, ou = num(at_best["engine"]["us_per_call"]), num(at_best[other]["us_per_call"])
                    if eu and ou:
                        extra = (f"; CPU per call, each at its highest clean rate: engine {eu:.0f} µs, "
                                 f"{NAMES[other]} {ou:.0f} µs (engine/{other}: {eu / ou:.2f}x)")
                print(f"- engine (media released) / {NAMES[other]}: **{e / o:.2f}x** the clean call rate{extra}")
        if "engine" in best:
            if e >= GOAL_CPS:
                verdict = "MET"
            elif best["engine"][1] == "none":
                verdict = "not shown (the ladder ended before the goal rate)"
            else:
                verdict = "NOT MET"
            print(f"- issue 3 goal, >= {GOAL_CPS} calls/s with 0 failed calls from one engine process with media "
                  f"anchoring off: **{verdict}** ({fmt_int(e)} calls/s in {out.name})")
        ea = best.get("engine-anchored", (0, ""))[0]
        if e and ea:
            common = [int(r["rate"]) for r in cps if r["side"] == "engine" and r["verdict"] == "PASS"
                      and passed("engine-anchored", int(r["rate"])) is not None]
            extra = ""
            if common:
                c = max(common)
                re_, ra = passed("engine", c), passed("engine-anchored", c)
                assert re_ is not None and ra is not None
                extra = (f"; at {c} cps (the highest rate both held) {num(re_['us_per_call']):.0f} µs per call "
                         f"released vs {num(ra['us_per_call']):.0f} µs anchored: the relay's session set-up and "
                         f"SDP rewrite cost {num(ra['us_per_call']) - num(re_['us_per_call']):.0f} µs per call")
            print(f"- media anchored / released: {ea / e:.2f}x the clean call rate{extra}")
        print()

    hold = [r for r in rows if r["part"] == "hold"]
    base = {r["side"]: r for r in rows if r["part"] == "base"}
    if hold:
        print("### Long calls held\n")
        print("| side | cps x s, hold | verdict | calls ok/failed (UAC), failed at UAS | retrans UAC/UAS | peak concurrent calls | "
              "server CPU % (whole run) | PSS idle -> peak MB | KB per held call | longest GC pause ms |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for side in SIDES:
            for r in (r for r in hold if r["side"] == side):
                idle = num(r["pss_base"], -1)
                if idle < 0 and side in base:
                    idle = num(base[side]["pss_max"], -1)
                peak, conc = num(r["pss_max"]), num(r["max_conc"])
                per = f"{(peak - idle) / conc:.1f}" if idle >= 0 and conc else "-"
                idle_txt = f"{idle / 1024:.0f}" if idle >= 0 else "?"
                print(f"| {NAMES[side]} | {r['rate']} x {r['secs']}, {num(r['hold_ms']) / 1000:.0f} s | {r['verdict']} "
                      f"| {r['ok']}/{r['failed']}, {r['uas_failed']} | {r['retrans']}/{r['uas_retrans']} | {fmt_int(conc)} | {r['cpu']} | "
                      f"{idle_txt} -> {peak / 1024:.0f} | {per} | {gc_pause(r)} |")
        print("\n(The anchors' idle PSS is the peak of a 5-call run; Kamailio's shared memory is preallocated "
              "(-m 1024) and counts as its pages are touched.)\n")

    relay = []
    if (out / "relay.jsonl").exists():
        for line in (out / "relay.jsonl").read_text().splitlines():
            if line.strip():
                relay.append(json.loads(line))
    steps = [r for r in relay if "sent" in r]
    if steps:
        idle = [r for r in relay if r.get("idle")]
        info = [r for r in relay if "calls_available" in r]
        print("### RTP relay inside the engine (anchored calls held, bench/lib/rtpgen.py)\n")
        if info:
            print(f"{info[-1]['calls_available']} anchored calls open ({info[-1]['relay_rtp_ports']} relay RTP ports); "
                  f"engine CPU with the calls idle: {idle[-1]['engine_cpu_pct'] if idle else '?'} %.\n")
        print("| calls | target pkt/s | offered pkt/s | relayed pkt/s | lost | kernel drops relay / generator | "
              "latency p50 / p99 / max ms | KB queued in relay / generator sockets | engine CPU % of a core | engine µs CPU per packet | generator CPU % |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in steps:
            print(f"| {r['calls']} | {fmt_int(r['target_pps'])} | {fmt_int(r['offered_pps'])} | "
                  f"{fmt_int(r['relayed_pps'])} | {r['lost']} | {r['drops_relay_sockets']} / "
                  f"{r['drops_generator_sockets']} | {r.get('latency_ms_p50')} / {r.get('latency_ms_p99')} / "
                  f"{r.get('latency_ms_max')} | {r.get('queued_kb_relay_sockets')} / "
                  f"{r.get('queued_kb_generator_sockets')} | {r['engine_cpu_pct']} | {r['engine_us_per_pkt']} | "
                  f"{r['generator_cpu_pct']} |")
        short = [r for r in steps if r["offered_pps"] < 0.97 * r["target_pps"]]
        clean = [r for r in steps if r["lost"] == 0 and r not in short]
        us = [r["engine_us_per_pkt"] for r in steps if r["engine_us_per_pkt"]]
        print()
        usable = [r for r in clean if (r.get("latency_ms_p99") or 1e9) <= RELAY_P99_MS]
        if usable:
            top = max(usable, key=lambda r: r["relayed_pps"])
            print(f"- highest step relayed with 0 loss and p99 latency <= {RELAY_P99_MS} ms: "
                  f"**{fmt_int(top['relayed_pps'])} packets/s** ({top['calls']} calls) at {top['engine_cpu_pct']} % "
                  f"of a core, {top['engine_us_per_pkt']} µs per packet, p99 {top.get('latency_ms_p99')} ms")
        if clean:
            top = max(clean, key=lambda r: r["relayed_pps"])
            print(f"- highest step relayed with 0 loss at any latency: {fmt_int(top['relayed_pps'])} packets/s "
                  f"({top['calls']} calls) at {top['engine_cpu_pct']} % of a core, {top['engine_us_per_pkt']} µs "
                  f"per packet, p99 {top.get('latency_ms_p99')} ms")
        if short:
            r = short[0]
            print(f"- from {r['calls']} calls on the generator could not offer the target rate ({fmt_int(r['offered_pps'])} "
                  f"of {fmt_int(r['target_pps'])} packets/s, generator at {r['generator_cpu_pct']} % and engine at "
                  f"{r['engine_cpu_pct']} % of a core): both cores are then nearly full, and the steps from there measure "
                  f"the box rather than the relay alone (lost in those steps: {', '.join(str(x['lost']) for x in short)})")
        if us:
            med = statistics.median(us)
            print(f"- engine CPU per relayed packet: median {med:.2f} µs over the steps (min {min(us):.2f}); one "
                  f"core at that cost is ~{fmt_int(1e6 / med)} packets/s = ~{fmt_int(1e6 / med / 100)} calls")
        print()

    prof = out / "profile-top.md"
    if prof.exists():
        prof_rows = [r for r in rows if r["part"] == "profile"]
        if prof_rows:
            r = prof_rows[-1]
            print(f"### Profile of the engine at {r['rate']} cps (media released; py-spy --nonblocking 100 Hz; "
                  f"that step: {r['verdict']}, {r['cpu']} % CPU). Self time of `Runner.run` is the time spent in "
                  f"uvloop's C code below it (libuv, the socket receive syscalls, callbacks' C parts): py-spy "
                  f"samples Python frames only, and a garbage-collector pause is charged to the line whose allocation "
                  f"started it (see the GC column above).\n")
        print(prof.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
