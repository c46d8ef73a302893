"""/metrics on a live controller (real OVS, Mininet, TCP through every transport): its
figures, scraped during and after traffic and parsed with prometheus_client's parser,
are the nodes' own counters, /stats, /health and /liveness.  Config:
ryu_si/examples/three_transports.yaml (see test_api_promises.py)."""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mininet_topos import edge
from mininet_topos.lab import pick_sport, run_transfer, wait_counters
from ryu_si.api.openapi import METRICS_PATH
from tests.integration.full_topology import controller_config, edge_net  # noqa: F401
from tests.integration.test_api_promises import (_node_counters, fail_biw, heal_biw, rest,
                                                  wait_until)

pytestmark = pytest.mark.integration
TRANSFERS = ((80, "up1"), (5201, "up2"), (5202, "up1"), (5203, "up2"), (5204, "up1"))
Samples = dict[str, dict[tuple, float]]


def scrape(ctl) -> Samples:
    """Sample name -> sorted label items -> value."""
    status, text = ctl.rest("GET", METRICS_PATH)
    assert status == 200, text
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def one(samples: Samples, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def grown(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a series grew (a series born in between started at 0)."""
    key = tuple(sorted(labels.items()))
    return after[name][key] - before.get(name, {}).get(key, 0)


def node_ways(samples: Samples) -> dict[str, tuple[int, int]]:
    """(forward, reverse) packets per node, as the metrics count them."""
    got = {dict(k)["node"] for k in samples["ryu_si_node_packets_total"]}
    return {n: tuple(int(one(samples, "ryu_si_node_packets_total", node=n, direction=d))
                     for d in ("forward", "reverse")) for n in got}


def test_traffic_metrics_are_the_nodes_own_counters_and_the_stats(controller, edge_net):
    wait_counters()
    nodes0, before = _node_counters(edge_net, controller), scrape(controller)
    transfers = [run_transfer(edge_net, pick_sport(edge_net, dport, uplink), dport,
                              chunks=40, interval=0.02) for dport, uplink in TRANSFERS]
    during = scrape(controller)                       # a scrape while the traffic flows
    for t in transfers:
        res = t.wait(60)
        assert res["result"] == "ok", res
    wait_counters()
    nodes1, after = _node_counters(edge_net, controller), scrape(controller)
    stats = rest(controller, "GET", "stats")

    seen = {n: tuple(b - a for a, b in zip(nodes0[n], nodes1[n])) for n in nodes0}
    m0, m1, mid = node_ways(before), node_ways(after), node_ways(during)
    counted = {n: tuple(b - a for a, b in zip(m0[n], m1[n])) for n in nodes0}
    assert sum(f + r for f, r in seen.values()) > 100, seen
    assert counted == seen
    assert all(m0[n][k] <= mid[n][k] <= m1[n][k] for n in m0 for k in (0, 1)), (m0, mid, m1)

    for node in stats["nodes"]:                       # the same figures as /stats
        assert m1[node["name"]] == (node["forward"]["packets"], node["reverse"]["packets"])
        assert sum(one(after, "ryu_si_node_bytes_total", node=node["name"], direction=d)
                   for d in ("forward", "reverse")) == node["bytes"]
    hits = {dict(k)["rule"]: v for k, v in after["ryu_si_rule_hits_total"].items()}
    assert hits == {r["name"]: r["packets"] for r in stats["rules"]}
    assert sum(hits.values()) - sum(before["ryu_si_rule_hits_total"].values()) >= len(TRANSFERS)
    data_spis = {s for p in rest(controller, "GET", "service-paths")
                 for s in (p["spi"], p["reverse_spi"])}
    paths = {p["spi"]: (p["packets"], p["bytes"]) for p in stats["paths"]
             if p["spi"] in data_spis}
    assert paths and any(pk for pk, _ in paths.values())
    assert paths == {s: (one(after, "ryu_si_path_packets_total", spi=str(s)),
                         one(after, "ryu_si_path_bytes_total", spi=str(s))) for s in paths}


def test_switch_generation_and_rest_metrics_are_the_health_figures(controller, edge_net):
    first = scrape(controller)
    health = rest(controller, "GET", "health")
    health_calls = 1
    for sw in health["switches"]:
        dpid = f"{sw['dpid']:016x}"
        assert one(first, "ryu_si_switch_connected", dpid=dpid) == 1
        assert one(first, "ryu_si_switch_flows", dpid=dpid) == sw["flows"]
        assert one(first, "ryu_si_openflow_errors_total", dpid=dpid) == sw["errors_total"]
    assert {dict(k)["generation"]: v for k, v in first["ryu_si_generation"].items()} == \
        health["generations"]

    rest(controller, "POST", "flow-programming",            # bumps flow_program
         {"ip_proto": "tcp", "ipv4_src": edge.CLI_IP, "ipv4_dst": edge.SRV_IP,
          "tp_src": 45000, "tp_dst": 80, "action": "none"}, status=201)
    health2 = rest(controller, "GET", "health")
    health_calls += 1
    second = scrape(controller)

    def bumps(s: Samples) -> float:
        return one(s, "ryu_si_generation_bumps_total", generation="flow_program")

    assert bumps(second) - bumps(first) == 1
    assert one(second, "ryu_si_generation", generation="flow_program") == \
        health2["generations"]["flow_program"] == (health["generations"]["flow_program"] + 1) % 256
    sent = {f"{sw['dpid']:016x}": sw2["flow_mods_total"] - sw["flow_mods_total"]
            for sw, sw2 in zip(health["switches"], health2["switches"])}
    assert sum(sent.values()) > 0, sent           # the router's switch got the bump
    assert sent == {dpid: one(second, "ryu_si_flow_mods_total", dpid=dpid) -
                    one(first, "ryu_si_flow_mods_total", dpid=dpid) for dpid in sent}

    count = "ryu_si_rest_request_duration_seconds_count"
    assert grown(first, second, count, method="GET", path="/si/v1/health",
                 code="200") == health_calls
    assert grown(first, second, count, method="POST", path="/si/v1/flow-programming",
                 code="201") == 1
    assert grown(first, second, "ryu_si_rest_request_duration_seconds_sum", method="POST",
                 path="/si/v1/flow-programming", code="201") > 0


def test_liveness_metrics_follow_a_node_failure_and_time_the_probes(controller, edge_net):
    live = rest(controller, "GET", "liveness")
    before = scrape(controller)
    assert one(before, "ryu_si_liveness_probe_interval_seconds") == live["interval_s"]
    assert one(before, "ryu_si_liveness_probe_multiplier") == live["multiplier"]
    floor = (live["multiplier"] + 1) * live["interval_s"]
    assert floor <= one(before, "ryu_si_liveness_detection_time_seconds") < 10 * floor
    up = {dict(k)["node"]: v for k, v in before["ryu_si_node_up"].items()}
    assert up == {n: float(st["up"]) for n, st in live["nodes"].items()}
    assert set(up.values()) == {1}

    fail_biw(edge_net, "bw")                          # fw1 stops answering its probes
    try:
        wait_until(lambda: not rest(controller, "GET", "liveness")["nodes"]["fw1"]["up"])
        down = scrape(controller)
    finally:
        heal_biw(edge_net, "bw")
    wait_until(lambda: rest(controller, "GET", "liveness")["nodes"]["fw1"]["up"])
    healed = scrape(controller)

    assert one(down, "ryu_si_node_up", node="fw1", transport="biw") == 0
    assert one(down, "ryu_si_node_up", node="fw2", transport="biw") == 1
    assert one(healed, "ryu_si_node_up", node="fw1", transport="biw") == 1
    changes = [one(s, "ryu_si_node_state_changes_total", node="fw1")
               for s in (before, down, healed)]
    assert changes[1] - changes[0] == 1 and changes[2] - changes[1] == 1
    bfd = [one(s, "ryu_si_generation_bumps_total", generation="bfd") for s in (before, healed)]
    assert bfd[1] - bfd[0] == 2                       # down, then up again

    def probes(s: Samples, name: str, node: str = "fw2") -> float:
        return one(s, name, node=node)

    replied = probes(healed, "ryu_si_probe_replies_total") - probes(before,
                                                                    "ryu_si_probe_replies_total")
    timed = probes(healed, "ryu_si_probe_rtt_seconds_count") - probes(
        before, "ryu_si_probe_rtt_seconds_count")
    assert 0 < timed <= replied <= probes(healed, "ryu_si_probes_sent_total") - probes(
        before, "ryu_si_probes_sent_total")
    mean = (probes(healed, "ryu_si_probe_rtt_seconds_sum") -
            probes(before, "ryu_si_probe_rtt_seconds_sum")) / timed
    assert 0 < mean < live["interval_s"], mean
    lost = probes(healed, "ryu_si_probes_sent_total", "fw1") - probes(
        healed, "ryu_si_probe_replies_total", "fw1")
    assert lost - (probes(before, "ryu_si_probes_sent_total", "fw1") -
                   probes(before, "ryu_si_probe_replies_total", "fw1")) >= live["multiplier"]
