"""Prometheus ``/metrics`` on the HTTP port (issue 17): what one engine process is doing.

The hot path only bumps plain ints and dicts that the owning objects keep anyway (the transport's
``received``/``sent`` tables, ``engine.net.traffic``; the call manager's ``stats``; the endpoint's
transaction tables; the relay's sessions) or that ``CallOutcomes`` keeps per finished call. A custom
collector reads them when Prometheus scrapes, so no prometheus-client call runs per message (a library
counter's ``inc()`` takes a lock and walks labels; at tens of thousands of messages a second that is
real CPU). Each server has a registry of its own: nothing is process-global, and tests may run several.

Reading the objects from the HTTP handler is safe: it runs on the engine's event loop (the admin API is
served in the same loop), and reads of ints and a ``dict(...)`` copy are consistent there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.call.b2bua import CallManager
from engine.media.io import RtpRelay
from engine.model import CallRecord
from engine.net.overload import OverloadMonitor
from engine.net.traffic import RESPONSE_PREFIX
from engine.net.transport import SipTransport
from engine.sip.endpoint import SipEndpoint
from engine.sip.registrar import Location

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class CallOutcomes:
    """Finished calls by disposition, counted as their CDRs go to the writer."""

    counts: dict[str, int] = field(default_factory=dict)

    def counting(self, sink: Callable[[CallRecord], None]) -> Callable[[CallRecord], None]:
        """``sink`` (the CDR writer's ``write``), counting each record's disposition first."""
        counts = self.counts

        def write(record: CallRecord) -> None:
            key = str(record.disposition)
            counts[key] = counts.get(key, 0) + 1
            sink(record)

        return write


@dataclass
class EngineParts:
    """The live objects the collector reads."""

    location: Location
    calls: CallManager
    endpoint: SipEndpoint
    transport: SipTransport
    relay: RtpRelay
    outcomes: CallOutcomes
    parked: Callable[[], int] = lambda: 0  # calls on a park orbit (engine.call.park)
    overload: OverloadMonitor | None = None


class EngineCollector(Collector):
    """Turns the engine's counters into metric families at scrape time."""

    def __init__(self, parts: EngineParts) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        p = self.parts
        yield GaugeMetricFamily("pbx_registrations", "registered contacts (bindings)", value=len(p.location))
        yield GaugeMetricFamily("pbx_registered_aors", "lines with at least one binding",
                                value=p.location.aor_count())
        yield GaugeMetricFamily("pbx_active_calls", "calls in progress", value=len(p.calls.calls))
        yield GaugeMetricFamily("pbx_call_dialogs", "dialogs of answered call legs",
                                value=len(p.calls.dialogs))
        yield GaugeMetricFamily("pbx_call_branches", "outbound legs ringing (INVITE transactions)",
                                value=len(p.calls.legs))
        yield GaugeMetricFamily("pbx_parked_calls", "calls waiting on a park orbit", value=p.parked())
        yield CounterMetricFamily("pbx_call_attempts", "calls started (INVITEs that began a call)",
                                  value=p.calls.stats["calls"])
        outcomes = CounterMetricFamily("pbx_calls_finished", "finished calls by disposition (their CDRs)",
                                       labels=["disposition"])
        for disposition, n in sorted(p.outcomes.counts.items()):
            outcomes.add_metric([disposition], n)
        yield outcomes
        yield from _sip_families("received", dict(p.transport.received))
        yield from _sip_families("sent", dict(p.transport.sent))
        yield GaugeMetricFamily("pbx_sip_transactions", "SIP transactions alive",
                                value=p.endpoint.transaction_count)
        yield GaugeMetricFamily("pbx_relay_sessions", "RTP relay sessions open", value=p.relay.session_count)
        stats = p.relay.stats
        yield CounterMetricFamily("pbx_relay_packets", "RTP packets relayed", value=stats.packets)
        yield CounterMetricFamily("pbx_relay_dropped", "RTP packets the relay dropped", value=stats.dropped)
        guard = p.endpoint.guard
        if guard is not None:
            dropped = CounterMetricFamily("pbx_sip_guard_dropped",
                                          "SIP datagrams the flood guard dropped unparsed", labels=["reason"])
            dropped.add_metric(["rate"], guard.stats["rate_dropped"])
            dropped.add_metric(["banned"], guard.stats["banned_dropped"])
            yield dropped
            yield CounterMetricFamily("pbx_sip_bans", "sources banned (rate or scanner)",
                                      value=guard.stats["bans"])
            yield CounterMetricFamily("pbx_sip_scanner_requests", "requests with a scanner's User-Agent",
                                      value=guard.stats["scanners"])
            yield GaugeMetricFamily("pbx_sip_banned_sources", "sources in the ban table", value=guard.banned)
        yield from _load_families(p)


def _load_families(p: EngineParts) -> Iterator[Metric]:
    """Load shedding and the caps on what peers can grow (issue 18 part 3)."""
    endpoint, transport = p.endpoint, p.transport
    stats = endpoint.stats
    shed = CounterMetricFamily("pbx_sip_shed", "new requests answered 503 Retry-After for load",
                               labels=["reason"])
    shed.add_metric(["overload"], stats["shed_overload"])
    shed.add_metric(["calls"], stats["shed_calls"])
    shed.add_metric(["transactions"], stats["refused_table_full"])
    yield shed
    yield GaugeMetricFamily("pbx_sip_overloaded", "1 while new INVITEs and REGISTERs are shed",
                            value=1 if endpoint.overloaded else 0)
    if p.overload is not None:
        yield GaugeMetricFamily("pbx_process_load", "CPU use of the last window, in cores",
                                value=p.overload.state.load)
        yield CounterMetricFamily("pbx_sip_overload_episodes", "times shedding started",
                                  value=p.overload.state.episodes)
    connections = GaugeMetricFamily("pbx_sip_connections", "open stream connections", labels=["transport"])
    for name, table in sorted(transport.streams.items()):
        connections.add_metric([name], len(table))
    yield connections
    yield CounterMetricFamily("pbx_sip_connections_refused", "stream connections refused at a cap",
                              value=transport.refused_connections)
    limits = GaugeMetricFamily("pbx_limit", "configured caps", labels=["table"])
    limits.add_metric(["transactions"], endpoint.limits.max_transactions)
    limits.add_metric(["calls"], endpoint.limits.max_calls)
    limits.add_metric(["connections"], transport.max_connections)
    limits.add_metric(["connections_per_source"], transport.max_per_source)
    ports = p.relay.allocator
    limits.add_metric(["relay_sessions"], (ports.last - ports.first + 1) // 4)  # two even/odd pairs each
    yield limits


def _sip_families(direction: str, counts: dict[bytes, int]) -> Iterator[Metric]:
    requests = CounterMetricFamily(f"pbx_sip_requests_{direction}", f"SIP requests {direction}, by method",
                                   labels=["method"])
    responses = CounterMetricFamily(f"pbx_sip_responses_{direction}",
                                    f"SIP responses {direction}, by class", labels=["class"])
    for key, n in sorted(counts.items()):
        if key.startswith(RESPONSE_PREFIX):
            responses.add_metric([key[len(RESPONSE_PREFIX):].decode("ascii", "replace") + "xx"], n)
        else:
            requests.add_metric([key.decode("ascii", "replace")], n)
    return iter((requests, responses))


def metrics_route(parts: EngineParts) -> Any:
    """``GET /metrics`` (no token, as Prometheus scrapes; the HTTP port is 127.0.0.1 by default). Litestar
    and the API are imported here, as ``engine.server.start_http`` does: ``--http off`` loads neither."""
    from litestar import get

    from engine.api.routes import PUBLIC

    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(parts))

    @get("/metrics", opt={"permission": PUBLIC}, include_in_schema=False, sync_to_thread=False,
         media_type=CONTENT_TYPE)
    def metrics() -> bytes:  # runs on the event loop (sync_to_thread=False): see the module docstring
        return generate_latest(registry)

    return metrics
