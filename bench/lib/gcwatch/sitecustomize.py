"""Diagnostic: log the cyclic garbage collector's pauses of a Python process, without touching its code.

Put this directory on PYTHONPATH and set GCWATCH_FILE=PATH: every collection's generation and duration is
timed with gc.callbacks, and at exit PATH gets one JSON object: per generation the number of collections,
total and longest pause in ms, plus the 20 longest pauses (time since start, generation, ms, objects
collected). bench/calls.sh sets it for the engine with GCWATCH=1.

Three more switches, for diagnosis only:
  GCWATCH_TYPES=1    gc.DEBUG_SAVEALL: what the collector frees is kept in gc.garbage instead, and the exit
                     summary counts it by type ("cycle_types"): the objects that only the cyclic GC can free
                     (reference cycles). Memory grows: use it on short, slow runs.
  GCWATCH_LIVE=1     on SIGUSR1, write the live GC-tracked objects counted by type to GCWATCH_FILE.live.json
                     (what the process holds at that moment, e.g. mid-run: kill -USR1 PID). Counting stalls
                     the process for about a second at a million objects: that run's figures are spoiled.
  GCWATCH_NOGC=1     automatic collection off (gc.set_threshold becomes set_threshold(0)): the process as if its
                     collector cost nothing, to separate GC pauses from the rest of the work. Memory grows by
                     whatever cyclic garbage the process makes.
"""

import atexit
import gc
import json
import os
import time

_path = os.environ.get("GCWATCH_FILE")
if _path:
    _t0 = time.perf_counter()
    _start = [0.0]
    _stats = {g: {"count": 0, "total_ms": 0.0, "max_ms": 0.0} for g in (0, 1, 2)}
    _long: list[tuple[float, int, float, int]] = []

    def _cb(phase: str, info: dict) -> None:
        if phase == "start":
            _start[0] = time.perf_counter()
            return
        now = time.perf_counter()
        ms = (now - _start[0]) * 1000.0
        s = _stats[info["generation"]]
        s["count"] += 1
        s["total_ms"] += ms
        if ms > s["max_ms"]:
            s["max_ms"] = ms
        if ms >= 5.0:
            _long.append((round(now - _t0, 2), info["generation"], round(ms, 1), info.get("collected", 0)))

    def _dump() -> None:
        out = {
            "pid": os.getpid(),
            "seconds": round(time.perf_counter() - _t0, 1),
            "threshold": gc.get_threshold(),
            "frozen": gc.get_freeze_count(),
            "per_generation": {str(g): {k: round(v, 1) for k, v in s.items()} for g, s in _stats.items()},
            "longest": sorted(_long, key=lambda x: -x[2])[:20],
            "pauses_over_5ms": len(_long),
        }
        if _types:
            out["cycle_types"] = _cycle_types()
            out["garbage_objects"] = len(gc.garbage)
        with open(_path, "w") as f:
            json.dump(out, f)
            f.write("\n")

    _types = os.environ.get("GCWATCH_TYPES") == "1"
    if _types:
        gc.set_debug(gc.DEBUG_SAVEALL)
    if os.environ.get("GCWATCH_NOGC") == "1":
        _orig_set_threshold = gc.set_threshold
        gc.set_threshold = lambda *args: _orig_set_threshold(0)  # type: ignore[assignment]
        _orig_set_threshold(0)

    def _cycle_types() -> dict[str, int]:
        from collections import Counter

        gc.collect()
        counts = Counter(type(o).__module__ + "." + type(o).__qualname__ for o in gc.garbage)
        return dict(counts.most_common(40))

    if os.environ.get("GCWATCH_LIVE") == "1":
        import signal

        def _live(signum: int, frame: object) -> None:
            from collections import Counter

            objs = gc.get_objects()
            counts = Counter(type(o).__module__ + "." + type(o).__qualname__ for o in objs)
            with open(_path + ".live.json", "w") as f:
                json.dump({"seconds": round(time.perf_counter() - _t0, 1), "objects": len(objs),
                           "types": dict(counts.most_common(50))}, f)
                f.write("\n")

        signal.signal(signal.SIGUSR1, _live)

    gc.callbacks.append(_cb)
    atexit.register(_dump)
