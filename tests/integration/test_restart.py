"""Controller restart: connections keep their service node, config comes back from the
store, and reconciliation leaves exactly one copy of every flow."""
from __future__ import annotations

import re
import time

import pytest

from mininet_topos import lab as harness
from mininet_topos.lab import pick_sport, run_transfer, wait_counters

pytestmark = pytest.mark.integration


def flow_set() -> list[str]:
    strip = re.compile(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*, ?")
    return sorted(strip.sub("", line) for line in harness.dump_flows())


def test_restart_keeps_connections_config_and_flows(controller, edge_net):
    status, extra = controller.rest("POST", "rules", {
        "name": "kept", "priority": 77, "action": "drop",
        "match": {"ip_proto": "udp", "tp_dst": 9}, "applied_to": ["uplink2"]})
    assert status == 201, extra
    config_before = controller.rest("GET", "config")[1]
    wait_counters()
    flows_before = flow_set()
    assert len(flows_before) == len(set(flows_before))

    sport = pick_sport(edge_net, 80, "up1")
    # long enough to outlast the restart (2.5-3 s here: stop with grace, start, connect)
    t = run_transfer(edge_net, sport, 80, chunks=200, interval=0.05)
    time.sleep(0.8)
    f_before = harness.edge.biw_counters(edge_net)[0]
    controller.restart()
    time.sleep(0.5)
    f_after_restart = harness.edge.biw_counters(edge_net)[0]
    res = t.wait(60)
    assert res["result"] == "ok", res
    wait_counters()
    assert harness.edge.biw_counters(edge_net)[0] - f_after_restart >= 5   # still serviced
    assert f_after_restart >= f_before

    assert controller.rest("GET", "config")[1] == config_before
    after = flow_set()
    assert after == flows_before            # reconciled: same flows, no duplicates, none stale
    status, health = controller.rest("GET", "health")
    sw = health["switches"][0]
    assert sw["flow_mods_last"] == 0, sw   # nothing had to be re-sent
