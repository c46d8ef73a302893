"""Prometheus metrics (``GET /metrics``, text format), read from the app's own views.

The traffic, state and switch figures an operator graphs are the ones /stats, /health
and /liveness answer: a collector turns those views into metric families when
Prometheus scrapes, so no second set of counters can drift from them.  What no view
holds (REST latencies, probe round trips, generation bumps) is observed as it happens,
into the same registry.  The registry is the app's own, not prometheus_client's global
one: two apps in one process, or tests, never share series.  ``FAMILIES`` is the
catalogue: every family exported, with its type, labels and help.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, NamedTuple, Protocol

from prometheus_client import (CollectorRegistry, Counter, Histogram, ProcessCollector,
                               disable_created_metrics)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (CounterMetricFamily, GaugeMetricFamily,
                                            Metric)

from openflow_tables.context import Generations
from ryu_si.api import openapi
from ryu_si.logs import dpid_str

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# No *_created series: in the text format each is one more gauge per series, which a
# dashboard never reads (process-wide: the controller is the only user in its process).
disable_created_metrics()
GENERATION_BITS = 8            # the transport generations wrap; classify counts on
REST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0)
RTT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class Family(NamedTuple):
    type: str
    labels: tuple[str, ...]
    help: str


FAMILIES: dict[str, Family] = {
    # /stats: OpenFlow flow counters of our cookies, summed over switches
    "ryu_si_rule_hits": Family("counter", ("rule", "rule_num"),
                               "Packets classified by the rule (its classify flows)"),
    "ryu_si_path_packets": Family("counter", ("spi",),
                                  "Packets returned from the service plane on the path"),
    "ryu_si_path_bytes": Family("counter", ("spi",),
                                "Bytes returned from the service plane on the path"),
    "ryu_si_node_packets": Family("counter", ("node", "direction"),
                                  "Data packets handed to the service node (each once)"),
    "ryu_si_node_bytes": Family("counter", ("node", "direction"),
                                "Data bytes handed to the service node (each packet once)"),
    # state
    "ryu_si_node_up": Family("gauge", ("node", "transport"),
                             "1 while the service node is up, 0 while it is down"),
    "ryu_si_path_up": Family("gauge", ("chain", "spi"),
                             "1 for a service path in use, 0 for a failed or admin-down one"),
    "ryu_si_node_state_changes": Family("counter", ("node",),
                                        "Up/down changes of the node seen by liveness"),
    "ryu_si_objects": Family("gauge", ("kind",), "Configured objects of each kind"),
    # liveness
    "ryu_si_probes_sent": Family("counter", ("node",), "Liveness probes sent to the node"),
    "ryu_si_probe_replies": Family("counter", ("node",),
                                   "Liveness probes that came back through the node"),
    "ryu_si_probe_rtt_seconds": Family("histogram", ("node",),
                                       "Round trip of a liveness probe through the node"),
    "ryu_si_liveness_detection_time_seconds": Family(
        "gauge", (), "Longest a silent node failure can take to be declared (measured)"),
    "ryu_si_liveness_probe_interval_seconds": Family("gauge", (), "Seconds between probes"),
    "ryu_si_liveness_probe_multiplier": Family("gauge", (),
                                               "Missed probes before a node is down"),
    # switches
    "ryu_si_switch_connected": Family("gauge", ("dpid",),
                                      "1 while the switch is connected (every switch a "
                                      "router names, and any other connected one)"),
    "ryu_si_switch_flows": Family("gauge", ("dpid",), "Flows of ours on the switch"),
    "ryu_si_switch_groups": Family("gauge", ("dpid",), "Groups on the switch"),
    "ryu_si_flow_mods": Family("counter", ("dpid",),
                               "Flow-mods sent on this connection to the switch"),
    "ryu_si_group_mods": Family("counter", ("dpid",),
                                "Group-mods sent on this connection to the switch"),
    "ryu_si_openflow_errors": Family("counter", ("dpid",),
                                     "OpenFlow errors the switch answered on this connection"),
    "ryu_si_switch_last_resync_timestamp_seconds": Family(
        "gauge", ("dpid",), "When the switch was last reconciled (Unix time)"),
    # the controller
    "ryu_si_rest_request_duration_seconds": Family(
        "histogram", ("method", "path", "code"),
        "REST requests by method, documented path and status code"),
    "ryu_si_generation": Family("gauge", ("generation",),
                                "Current value of each state generation"),
    "ryu_si_generation_bumps": Family("counter", ("generation",),
                                      "Bumps of each state generation since start"),
}
# Families prometheus_client's process collector adds (Linux).
PROCESS_FAMILIES = ("process_cpu_seconds", "process_start_time_seconds",
                    "process_resident_memory_bytes", "process_virtual_memory_bytes",
                    "process_open_fds", "process_max_fds")
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def sample_names() -> set[str]:
    """Every sample name /metrics can hold (what a dashboard query may name)."""
    process = {f"{n}_total" if n == "process_cpu_seconds" else n for n in PROCESS_FAMILIES}
    return process | {n + s for n, f in FAMILIES.items() for s in SUFFIXES[f.type]}


class AppViews(Protocol):
    """What the collector reads from the app (its REST views, and the model)."""

    service: Any

    def stats(self) -> dict: ...

    def health(self) -> dict: ...

    def liveness_view(self) -> dict: ...


class Metrics:
    """The app's registry: the views collector, the observed histograms, the bump counter."""

    def __init__(self, app: AppViews) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(ViewsCollector(app))
        ProcessCollector(registry=self.registry)
        self.rest = self._histogram("ryu_si_rest_request_duration_seconds", REST_BUCKETS)
        self.probe_rtt = self._histogram("ryu_si_probe_rtt_seconds", RTT_BUCKETS)
        self.bumps = Counter("ryu_si_generation_bumps", FAMILIES["ryu_si_generation_bumps"].help,
                             FAMILIES["ryu_si_generation_bumps"].labels, registry=self.registry)
        self._generations = app.service.generations
        for kind in dataclasses.asdict(self._generations):
            self.bumps.labels(kind)            # every series from the start, at 0

    def _histogram(self, name: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(name, FAMILIES[name].help, FAMILIES[name].labels,
                         registry=self.registry, buckets=buckets)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def observe_request(self, method: str, path: str, code: int, seconds: float) -> None:
        """Label by the documented path template, so ids do not make new series."""
        self.rest.labels(method.upper(), openapi.template_of(path) or "other",
                         str(code)).observe(seconds)

    def observe_generations(self, now: Generations) -> None:
        """Count the bumps since the last call (the app calls this after every change;
        an 8-bit generation that wrapped still counts its bump)."""
        for kind, value in dataclasses.asdict(now).items():
            old = getattr(self._generations, kind)
            if value != old:
                self.bumps.labels(kind).inc((value - old) % (1 << GENERATION_BITS)
                                            if kind != "classify" else value - old)
        self._generations = now


class ViewsCollector:
    """Metric families built from the app's views at each scrape."""

    def __init__(self, app: AppViews) -> None:
        self.app = app

    def describe(self) -> Iterator[Metric]:
        """No families up front: building them reads the switches."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        out = {n: _family(n) for n, f in FAMILIES.items() if f.type != "histogram"
               and n != "ryu_si_generation_bumps"}
        _traffic(out, self.app.stats())
        health, live = self.app.health(), self.app.liveness_view()
        self._switches(out, health)
        self._nodes(out, live)
        self._paths(out)
        _controller(out, health, live)
        return iter(out.values())

    def _switches(self, out: dict[str, Metric], health: dict) -> None:
        """Every switch a router names is listed, connected or not (an alert can fire)."""
        connected = {s["dpid"]: s for s in health["switches"]}
        named = {r.dpid for r in self.app.service.model.all("routers") if r.dpid}
        for dpid in sorted(named | connected.keys()):
            out["ryu_si_switch_connected"].add_metric([dpid_str(dpid)], int(dpid in connected))
        for dpid, s in connected.items():
            label = [dpid_str(dpid)]
            for name, key in SWITCH_COUNTERS.items():
                out[name].add_metric(label, s[key])
            if s["last_resync"] is not None:
                out["ryu_si_switch_last_resync_timestamp_seconds"].add_metric(label,
                                                                            s["last_resync"])

    def _nodes(self, out: dict[str, Metric], live: dict) -> None:
        down = set(live["down_nodes"])
        for node in self.app.service.model.all("service-nodes"):
            out["ryu_si_node_up"].add_metric([node.name, node.transport],
                                             int(node.name not in down))
        for name, st in live["nodes"].items():
            out["ryu_si_probes_sent"].add_metric([name], st["sent"])
            out["ryu_si_probe_replies"].add_metric([name], st["replies"])
            out["ryu_si_node_state_changes"].add_metric([name], st["changes"])

    def _paths(self, out: dict[str, Metric]) -> None:
        """The paths /service-paths lists (admin-down ones at 0), and the failed ones."""
        service = self.app.service
        listed = {p.spi: (p, p.state == "up") for ps in service.paths.values() for p in ps}
        failed = {spi: (p, False) for spi, p in service.failed_paths.items()}
        for spi, (path, up) in (failed | listed).items():
            chain = service.model.get("chains", path.chain)
            out["ryu_si_path_up"].add_metric([chain.name if chain else path.chain, str(spi)],
                                             int(up))


SWITCH_COUNTERS = {"ryu_si_switch_flows": "flows", "ryu_si_switch_groups": "groups",
                   "ryu_si_flow_mods": "flow_mods_total",
                   "ryu_si_group_mods": "group_mods_total",
                   "ryu_si_openflow_errors": "errors_total"}


def _traffic(out: dict[str, Metric], stats: dict) -> None:
    """/stats as counters; a node's two directions are two series (each packet once)."""
    for r in stats["rules"]:
        out["ryu_si_rule_hits"].add_metric([r["name"], str(r["rule_num"])], r["packets"])
    for p in stats["paths"]:
        out["ryu_si_path_packets"].add_metric([str(p["spi"])], p["packets"])
        out["ryu_si_path_bytes"].add_metric([str(p["spi"])], p["bytes"])
    for n in stats["nodes"]:
        for way in ("forward", "reverse"):
            out["ryu_si_node_packets"].add_metric([n["name"], way], n[way]["packets"])
            out["ryu_si_node_bytes"].add_metric([n["name"], way], n[way]["bytes"])


def _controller(out: dict[str, Metric], health: dict, live: dict) -> None:
    for kind, count in health["objects"].items():
        out["ryu_si_objects"].add_metric([kind], count)
    for kind, value in health["generations"].items():
        out["ryu_si_generation"].add_metric([kind], value)
    out["ryu_si_liveness_detection_time_seconds"].add_metric([], live["detection_time_s"])
    out["ryu_si_liveness_probe_interval_seconds"].add_metric([], live["interval_s"])
    out["ryu_si_liveness_probe_multiplier"].add_metric([], live["multiplier"])


def _family(name: str) -> Metric:
    f = FAMILIES[name]
    cls = CounterMetricFamily if f.type == "counter" else GaugeMetricFamily
    return cls(name, f.help, labels=f.labels)
