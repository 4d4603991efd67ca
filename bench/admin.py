"""Administration latency on a company with 1,000 users: from an admin API call to the new config live.

usage: python3 bench/admin.py [--users 1000] [--runs 20] [--db URL] [--no-uvloop]

Seeds a data directory (or the PostgreSQL database given by --db) with N users, each with a line, then
starts the admin API (uvicorn in an asyncio loop of its own thread, as `pbx serve --http` runs it) and
times, per run, over HTTP with a bearer token:

  api          the API call itself (request sent -> response read), one change each:
               PATCH a user's groups, PATCH a line's dial permissions, PUT a number's route, POST a user
  visible      request sent -> the new config_version readable from another connection (what the
               engine's poll reads)
  rebuild      what the engine then does: read the routing inputs (AdminStore.snapshot) and compile them
               (engine.dialplan.compiler.compile_config, when present)

"New config live" in `pbx serve` is visible + up to the poll interval (CONFIG_POLL_S, 1 s) + rebuild.
Medians and p95 over --runs; 2 vCPU machine: run it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.api.app import ApiHandle, create_app, serve_api
from engine.api.validation import dialplan_validator
from engine.store import Store
from engine.store.admin import AdminStore


def seed(store: Store, users: int) -> tuple[str, list[int], list[int]]:
    """N users with lines (bulk, through the same model rules), a dial plan and an owned number."""
    admin = AdminStore(store)
    _, token = admin.bootstrap_admin("bench@example.com")
    doc: dict[str, Any] = {
        "company": {"name": "Bench Inc", "sip_realm": "bench.example", "first_extension": 1000},
        "users": [
            {
                "first_name": f"U{i}",
                "last_name": "Bench",
                "extension": str(1000 + i),
                "sip_password": f"pw-{i}",
            }
            for i in range(users)
        ],
        "numbers": [{"number": "+12125550100", "route": {"kind": "dial_plan", "target": "main"}}],
        "dial_plans": [{"name": "main", "graph": {"start": "bye", "nodes": {"bye": {"type": "hangup"}}}}],
    }
    store.import_company(doc)  # replaces users: bootstrap the admin again afterwards
    _, token = admin.bootstrap_admin("bench@example.com")
    records = admin.users()
    user_ids = [u.id for u in records if u.lines]
    line_ids = [u.lines[0].id for u in records if u.lines]
    return token, user_ids, line_ids


class Server:
    def __init__(self, app: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.handle: ApiHandle = asyncio.run_coroutine_threadsafe(
            serve_api(app, "127.0.0.1", 0), self.loop
        ).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.handle.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def stats(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"median {statistics.median(ms):8.2f} ms   p95 {p95:8.2f} ms   (n={len(ms)})"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--db", default=None, help="a PostgreSQL URL (default: SQLite in a temp data dir)")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    if not args.no_uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    data_dir = Path(tempfile.mkdtemp(prefix="bench-admin-"))
    store = Store.open(data_dir, args.db)
    started = time.perf_counter()
    token, user_ids, line_ids = seed(store, args.users)
    kind = "PostgreSQL" if args.db else "SQLite"
    print(f"seeded {len(user_ids)} users in {time.perf_counter() - started:.1f} s ({kind})")
    observer = Store.open(data_dir, args.db)  # another connection pool, as the engine's poll
    server = Server(create_app(store))
    base = f"http://127.0.0.1:{server.handle.port}"
    admin = AdminStore(observer)
    validate = dialplan_validator()
    results: dict[str, dict[str, list[float]]] = {}
    changes: dict[str, Callable[[httpx.Client, int], httpx.Response]] = {
        "PATCH user groups": lambda c, i: c.patch(
            f"/api/users/{user_ids[i % len(user_ids)]}", json={"groups": [f"g{i}"]}
        ),
        "PATCH line dial permissions": lambda c, i: c.patch(
            f"/api/lines/{line_ids[i % len(line_ids)]}",
            json={"dial_permissions": ["internal", "local"] if i % 2 else ["internal"]},
        ),
        "PUT number route": lambda c, i: c.put(
            "/api/numbers/+12125550100/route",
            json={"kind": "extension", "target": str(1000 + i % len(user_ids))}
            if i % 2
            else {"kind": "dial_plan", "target": "main"},
        ),
        "POST user (next free extension)": lambda c, i: c.post(
            "/api/users", json={"first_name": f"N{i}", "last_name": "New"}
        ),
    }
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            for name, change in changes.items():
                api_times: list[float] = []
                visible_times: list[float] = []
                for i in range(args.runs + 2):
                    before = observer.config_version()
                    t0 = time.perf_counter()
                    response = change(client, i)
                    t1 = time.perf_counter()
                    if response.status_code >= 300:
                        raise SystemExit(f"{name}: {response.status_code} {response.text}")
                    while observer.config_version() == before:
                        time.sleep(0.0002)
                    t2 = time.perf_counter()
                    if i >= 2:  # warm-up
                        api_times.append(t1 - t0)
                        visible_times.append(t2 - t0)
                results[name] = {"api": api_times, "visible": visible_times}
        rebuild: list[float] = []
        read: list[float] = []
        for _ in range(max(3, args.runs // 4)):
            t0 = time.perf_counter()
            with observer.engine.connect() as conn, conn.begin():
                snapshot = admin.snapshot(conn)
            t1 = time.perf_counter()
            if validate is not None:
                validate(snapshot)
            t2 = time.perf_counter()
            read.append(t1 - t0)
            rebuild.append(t2 - t0)
    finally:
        server.stop()
        observer.close()
        store.close()
    for name, r in results.items():
        print(f"{name:32s} api     {stats(r['api'])}")
        print(f"{'':32s} visible {stats(r['visible'])}")
    print(f"{'rebuild: read snapshot':32s}         {stats(read)}")
    label = "read + compile_config" if validate is not None else "read (no compiler in this build)"
    print(f"{'rebuild: ' + label:32s}         {stats(rebuild)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
