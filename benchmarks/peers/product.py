"""The product on the same rule base: ``ryu-manager ryu_si.app`` started with the
datapath benchmark's document (the generated rules, the hosts' neighbours, one
low-priority allow rule for its own traffic).

Start: from the controller's start until its first full reconcile is on the bridge
(a cold start).  Apply: the controller holding the same document without the
generated rules, ``PUT /config`` of the whole document, until the call returns (the
switch has committed the bundle by then), as OVN's apply is one NB transaction on
running daemons.  Rule tables: classify and applied_to; subtables: the
classify table's shapes.  One rule: ``benchmarks.incremental``'s add, from the REST
call until OVS reports the rule's flows to a flow monitor (one bundle commits them all
at once), each deleted again.
"""
from __future__ import annotations

import time

from benchmarks import common, datapath, scale
from benchmarks.incremental import Bench, Monitor
from benchmarks.peers import measure
from benchmarks.workload import Edge
from openflow_tables import layout as L

BRIDGE, DPID = datapath.BRIDGE, datapath.DPID


def run(n_rules: int, n_ifaces: int, adds: int, cold: int) -> measure.Result:
    edge = Edge(datapath.PORTS.prefix, n_ifaces, DPID)
    internal = [p for p in edge.all_ports() if p not in (datapath.CLI.port, datapath.SRV.port)]
    result = measure.Result("ryu-si")
    with common.bridge(BRIDGE, DPID, internal), measure.hosts(BRIDGE), \
            common.controller(datapath.config(edge, n_rules)) as ctl:
        t0 = time.monotonic()
        common.start_installed(ctl, BRIDGE)
        result.start_s = time.monotonic() - t0
        classify = measure.dump(BRIDGE, f"table={L.table_id('classify')}")
        result.flows = common.flow_count(BRIDGE)
        result.rule_flows = len(classify) + common.flow_count(
            BRIDGE, f"table={L.table_id('applied_to')}")
        result.subtables = measure.subtables(classify)
        result.rss_mib = common.rss_mib(ctl.proc.pid)
        datapath.peer_gateways(False)
        result.cold_rate, result.cold_failed = measure.cold_connections(cold)
        monitor = Monitor(BRIDGE)
        try:
            bench = Bench(ctl, edge, seed=measure.ADD_SEED, monitor=monitor, bridge=BRIDGE)
            for n in range(adds):
                bench.delete(bench.add(n))
        finally:
            monitor.stop()
        result.one_rule_s = [on_switch for _, _, on_switch, _ in bench.samples["add"]]
        result.apply_s = warm_apply(ctl, edge, n_rules)
    return result


def warm_apply(ctl, edge: Edge, n_rules: int) -> float:
    """Seconds from ``PUT /config`` of the whole rule base, sent to a controller holding
    the topology without the generated rules, until the switch holds it: the call
    returns once the switch has committed the change's bundle, unless the switch
    reconnected meanwhile; then until the reconcile that follows is done (and it says so)."""
    status, body = ctl.rest("PUT", "config", datapath.config(edge, 0), timeout=600.0)
    if status >= 300:
        raise RuntimeError(f"PUT /config without rules -> {status}: {body}")
    connects, t0 = scale.connects(ctl), time.monotonic()
    status, body = ctl.rest("PUT", "config", datapath.config(edge, n_rules), timeout=600.0)
    if status >= 300:
        raise RuntimeError(f"PUT /config -> {status}: {body}")
    if scale.connects(ctl) != connects:
        since = time.time() - (time.monotonic() - t0)
        common.wait_for(lambda: (common.health(ctl)["switches"] or [{}])[0].get(
            "last_resync", 0) > since, 600.0, "the reconcile after a reconnect")
        print("-- ryu-si: the switch reconnected during the apply")
    return time.monotonic() - t0
