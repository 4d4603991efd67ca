#!/usr/bin/env python3
"""CPU per call of the call layer in one process, without sockets: what a B2BUA call costs in Python.

usage: python3 bench/calls_inproc.py [--calls 2000] [--runs 5]

Runs calls through the in-memory network of the unit tests (tests/sip/harness.py): a caller phone, the
engine's SipEndpoint + CallManager, a callee phone; INVITE/100/180/200/ACK, BYE/200 after a second, media
released, every transaction left to finish (its 32 s timers run on the simulated clock). The phones are
endpoints too, so the figure is the whole exchange's CPU (caller + engine + callee) in CPU seconds of this
process divided by the calls: use it for same-run ratios between two checkouts (run this script with
PYTHONPATH set to each), not as the engine's absolute cost (bench/calls.sh measures that over UDP).
Prints the minimum over --runs and all runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if "--here" in sys.argv:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.call.test_b2bua import PBX_URI, Rig


def run(calls: int) -> float:
    """CPU seconds of ``calls`` sequential calls on one rig."""
    rig = Rig()
    alice, bob = rig.alice, rig.bobs[0]
    nodes = [alice.node, bob.node, rig.pbx]
    ended = 0
    start = time.process_time()
    t = 0.0
    for _ in range(calls):
        alice.dialog = bob.dialog = None
        alice.call(PBX_URI, rig.pbx)
        rig.at(t + 2.0, alice.bye)
        t += 40.0
        rig.net.run(until=t)
        # The harness logs every datagram and event for the tests' assertions: not kept here, so that the
        # collector walks what the engine keeps, not a growing log.
        ended += sum(1 for c in rig.cdrs if c.hangup_cause == "caller hung up")
        for log in (rig.net.sent, rig.cdrs, alice.requests, alice.statuses, alice.bodies, bob.requests,
                    bob.statuses, bob.bodies, *(n.events for n in nodes)):
            log.clear()
    spent = time.process_time() - start
    assert ended == calls, f"{calls - ended} calls failed"
    rig.assert_clean()
    return spent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--here", action="store_true", help="import this checkout (else PYTHONPATH decides)")
    args = ap.parse_args()
    import engine

    runs = [run(args.calls) * 1e6 / args.calls for _ in range(args.runs)]
    print(f"engine from {Path(engine.__file__).parent}")
    print(f"µs CPU per call (caller + engine + callee, in-memory network): min {min(runs):.0f}, "
          f"runs {', '.join(f'{r:.0f}' for r in runs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
