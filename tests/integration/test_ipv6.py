"""IPv6 through the three-transport example, with the guarantees IPv4 has: every
transport both ways, a connection keeps its node across an ECMP move (claim 1), it is
classified again where its rule is not applied and a drop there holds for every packet
(claim 2, the classification fix), and egress classification.  No static IPv6
neighbour anywhere: the hosts find the router and the router finds them by neighbour
discovery.

Topology and config: ryu_si/examples/three_transports.yaml on mininet_topos.service_plane
(dual stack).  The module adds IPv6-only rules on ports of its own (6080...), so the
IPv4 rules of the example stay as they are.
"""
from __future__ import annotations

import json
import re
import time

import pytest

from mininet_topos import edge
from mininet_topos import lab as harness
from mininet_topos import service_plane as sp
from mininet_topos.lab import (count_received, move_connection, pick_sport, received_around,
                               run_transfer, unmove_all, wait_counters, wait_until)
from tests.integration.full_topology import controller_config, edge_net  # noqa: F401
from tests.integration.full_topology import split_rule

pytestmark = pytest.mark.integration
SRV, CLI = edge.SRV_IP6, edge.CLI_IP6
# IPv6 redirect rules of this module: port -> (rule, policy); applied at uplink1 only,
# with a drop for the same IPv6 traffic at uplink2.
SPLIT = {6080: ("v6-biw", "inspect"), 6201: ("v6-chain", "fw"), 6203: ("v6-l3", "l3-nat")}
EGRESS_PORT = 6204


def _rest(ctl, method: str, path: str, body=None):
    status, answer = ctl.rest(method, path, body)
    assert status in (200, 201, 204), (method, path, status, answer)
    return answer


@pytest.fixture(scope="module")
def v6_rules(controller):
    for port, (name, policy) in SPLIT.items():
        split_rule(controller, name, policy, {"eth_type": "ipv6", "ip_proto": "tcp",
                                              "tp_dst": port})
    split_rule(controller, "v6-egress", "inspect",
               {"ip_proto": "tcp", "ipv6_dst": sp.CLIENT_NET6, "tp_dst": EGRESS_PORT})
    return controller


@pytest.fixture(autouse=True)
def _no_pinning(edge_net):
    yield
    unmove_all(edge_net)


def node_packets(net, port: int) -> tuple[int, int]:
    """(forward, reverse) packets the service node(s) of ``port``'s policy saw."""
    if port in (80, 6080, EGRESS_PORT):
        return edge.biw_counters(net)
    if port in (5203, 6203):
        return sp.l3_counters(net)
    counts = sp.chain_counters(net).values()
    return sum(f for f, _ in counts), sum(r for _, r in counts)


def delta(after: tuple[int, int], before: tuple[int, int]) -> tuple[int, int]:
    return after[0] - before[0], after[1] - before[1]


def transfer_ok(net, sport: int, dport: int, **kw) -> dict:
    res = run_transfer(net, sport, dport, dst=kw.pop("dst", SRV), **kw).wait(60)
    assert res["result"] == "ok", json.dumps(res)
    return res


def spi_of6(sport: int, dport: int) -> int:
    """Forward SPI of the router's record of an IPv6 connection (ct_label bits 40..63)."""
    lines = [c for c in harness.conntrack()
             if f"src={CLI},dst={SRV},sport={sport},dport={dport})" in c and "mark=" in c]
    assert len(lines) == 1, lines
    return (int(re.search(r"labels=(0x[0-9a-f]+)", lines[0]).group(1), 16) >> 40) & 0xFFFFFF


@pytest.mark.parametrize("port", [80, 5201, 5203])
def test_each_transport_carries_ipv6_both_ways(controller, edge_net, port):
    """biw (web-inspect), a three-hop chain with proxied nodes (deep-5201), the L3 node
    behind its VTI (l3-5203): the example's family-less rules hold for IPv6, the node
    sees both directions, the transfer is intact, /stats counts IPv6 hits."""
    rule = {80: "web-inspect", 5201: "deep-5201", 5203: "l3-5203"}[port]
    before = node_packets(edge_net, port)
    sport = pick_sport(edge_net, port, "up1", dst=SRV)
    transfer_ok(edge_net, sport, port, chunks=20, interval=0.01)
    wait_counters()
    fwd, rev = delta(node_packets(edge_net, port), before)
    assert fwd >= 20 and rev >= 3, (fwd, rev)
    stats = next(r for r in _rest(controller, "GET", "stats")["rules"] if r["name"] == rule)
    assert stats["ipv6"]["packets"] >= 1, stats


def test_an_nsh_aware_node_serves_ipv6(controller, edge_net):
    """Only the paths through cn5 (NSH-aware) up: it reads the IPv6 packet under NSH."""
    paths = [p for p in _rest(controller, "GET", "service-paths") if p["chain"] == "fw-ids-dpi"]
    others = [p for p in paths if "cn5" not in p["hops"]]
    assert others and len(others) < len(paths), paths
    for p in others:
        _rest(controller, "PATCH", f"service-paths/{p['spi']}", {"admin_state": "down"})
    try:
        seen = lambda: sum(sum(v.values()) for v in sp.sf_stats(edge_net).get("paths", {}).values())
        before = seen()
        sport = pick_sport(edge_net, 5201, "up2", dst=SRV)
        transfer_ok(edge_net, sport, 5201, chunks=10, interval=0.01)
        assert seen() - before >= 10
    finally:
        for p in others:
            controller.rest("PATCH", f"service-paths/{p['spi']}", {"admin_state": "up"})


def test_an_ipv6_connection_keeps_its_path_across_an_ecmp_move(controller, edge_net):
    """Claim 1: fw-5202 applies at both uplinks; moved mid-stream, the connection keeps
    the service path its record holds."""
    sport = pick_sport(edge_net, 5202, "up1", dst=SRV)
    t = run_transfer(edge_net, sport, 5202, chunks=40, interval=0.05, dst=SRV)
    time.sleep(0.8)
    spi = spi_of6(sport, 5202)
    move_connection(edge_net, sport, "up2")
    before = harness.flow_packets("sp", "sp_forward", f"nsh_spi={spi:#x},nsh_si=255,")
    res = t.wait(60)
    assert res["result"] == "ok", res
    wait_counters()
    assert spi_of6(sport, 5202) == spi
    assert harness.flow_packets("sp", "sp_forward", f"nsh_spi={spi:#x},nsh_si=255,") - before >= 10


@pytest.mark.parametrize("port", list(SPLIT))
def test_moved_onto_a_drop_interface_the_server_receives_nothing(v6_rules, edge_net, port):
    """Claim 2 and the classification fix, for IPv6: a stream redirected at uplink1 is
    moved to uplink2, where its rule is not applied and a drop is; the server's replies
    still leave by uplink1.  Not one client packet reaches the server after the move."""
    sport = pick_sport(edge_net, port, "up1", dst=SRV)
    counter = count_received(edge_net["srv"], sport, port, family=6)
    node0 = node_packets(edge_net, port)
    t = run_transfer(edge_net, sport, port, chunks=400, interval=0.005, dst=SRV)
    try:
        serviced, at_move, after = received_around(
            edge_net["srv"], counter, lambda: sum(delta(node_packets(edge_net, port), node0)),
            lambda: move_connection(edge_net, sport, "up2"), family=6)
    finally:
        res = t.wait(3)
    assert serviced >= 10 and at_move >= 10, (serviced, at_move)
    assert after == 0, f"{after} packets reached the server through the drop at uplink2"
    assert res["result"] != "ok", res


def test_ipv6_egress_classification(v6_rules, edge_net):
    """Initiated by the server toward the clients: classified at uplink1, the interface
    it leaves by (redirected through the biw node), both ways; moved to uplink2 (a drop
    there) it stops at once."""
    # The replies enter by whichever uplink ext hashes them to: a port whose replies come
    # back by uplink1, where the connection was classified (at uplink2 the drop holds).
    sport = next(p for p in range(47601, 47801)
                 if harness.predict_uplink(edge_net, EGRESS_PORT, p, dst=SRV) == "up1")
    counter = count_received(edge_net["cli"], sport, EGRESS_PORT, family=6)
    # The first packet toward an unresolved next hop asks the controller to solicit it
    # and is lost (as with ARP): resolve the next hops first.
    assert harness.ping(edge_net, "srv", CLI, count=3) >= 1
    node0 = edge.biw_counters(edge_net)
    t = run_transfer(edge_net, sport, EGRESS_PORT, chunks=400, interval=0.005,
                     client="srv", server="cli", dst=CLI)
    try:
        (fwd, rev), at_move, after = received_around(
            edge_net["cli"], counter, lambda: delta(edge.biw_counters(edge_net), node0),
            lambda: _rest(v6_rules, "PATCH", "routes/clients6",
                          {"next_hop": "2001:db8:2::2", "interface": "uplink2"}), family=6)
    finally:
        res = t.wait(3)
        _rest(v6_rules, "PATCH", "routes/clients6",
              {"next_hop": "2001:db8:1::2", "interface": "uplink1"})
    assert fwd >= 10 and rev >= 3 and at_move >= 10, (fwd, rev, at_move)
    assert after == 0, f"{after} packets reached the client through the drop at uplink2"
    assert res["result"] != "ok", res


def test_the_router_learned_its_ipv6_neighbours(controller, edge_net):
    """No static IPv6 neighbour is configured: after the traffic above, the router's
    IPv6 next hops were resolved by neighbour discovery (their flows are in the
    neighbor table) and each host holds the router's link-layer address."""
    flows = harness.dump_flows(table="neighbor")
    for ip6, port in ((SRV, "down1"), ("2001:db8:1::2", "up1")):
        learned = f"set_field:{edge.PORT[port].mac}->eth_dst"
        assert any(f"ipv6_dst={ip6}" in f and learned in f for f in flows), (ip6, flows)
    neigh = edge.run(edge_net["srv"], "ip", "-6", "neigh", "show", "2001:db8:10::1")
    assert edge.PORT["down1"].router_mac in neigh, neigh


# --- flow programming by IPv6 5-tuple ---------------------------------------------------
BIW_HOST = {"fw1": "bw", "fw2": sp.BIW2_NODE}


def decisions6(dport: int) -> dict[int, int]:
    return harness.decisions(dport, CLI, SRV)


def test_a_rest_reroute_moves_an_ipv6_connection_to_another_node(controller, edge_net):
    """An instruction naming an IPv6 5-tuple moves that connection (pair-5204, biw nodes
    fw1 and fw2) to the other node, both directions, mid-stream."""
    sport = pick_sport(edge_net, 5204, "up2", dst=SRV)
    t = run_transfer(edge_net, sport, 5204, chunks=60, interval=0.05, dst=SRV)
    num = wait_until(lambda: decisions6(5204).get(sport))
    nums = {n: _rest(controller, "GET", f"service-nodes/{n}")["num"] for n in BIW_HOST}
    target = next(n for n, v in nums.items() if v != num)
    ins = _rest(controller, "POST", "flow-programming", {
        "ip_proto": "tcp", "ipv6_src": CLI, "ipv6_dst": SRV, "tp_src": sport,
        "tp_dst": 5204, "action": "reroute", "node": target})
    wait_until(lambda: next(i for i in _rest(controller, "GET", "flow-programming")
                            if i["num"] == ins["num"])["state"] == "executed")
    before = edge.biw_counters(edge_net, BIW_HOST[target])
    res = t.wait(60)
    assert res["result"] == "ok", res
    assert decisions6(5204)[sport] == nums[target]
    after = edge.biw_counters(edge_net, BIW_HOST[target])
    assert after[0] - before[0] >= 10 and after[1] - before[1] >= 10, (before, after)


def test_an_nsh_aware_node_programs_an_ipv6_flow_in_band(controller, edge_net):
    """cn5 (NSH-aware) tells the router, in band, to drop the IPv6 connection it sees:
    the router reads the IPv6 5-tuple from the signal, programs it and the stream stops."""
    paths = [p for p in _rest(controller, "GET", "service-paths") if p["chain"] == "fw-ids-dpi"]
    mine = [p for p in paths if "cn5" in p["hops"]]
    others = [p for p in paths if "cn5" not in p["hops"]]
    for p in others:
        _rest(controller, "PATCH", f"service-paths/{p['spi']}", {"admin_state": "down"})
    try:
        sport = pick_sport(edge_net, 5201, "up1", dst=SRV)
        t = run_transfer(edge_net, sport, 5201, chunks=60, interval=0.05, dst=SRV)
        wait_until(lambda: decisions6(5201).get(sport))
        edge_net["cn5"].program_sf({p["spi"]: "drop" for p in mine})
        ins = wait_until(lambda: [i for i in _rest(controller, "GET", "flow-programming")
                                  if i["source"] == "in-band" and i["tp_src"] == sport
                                  and i["state"] == "executed"], timeout=10)
        res = t.wait(10)
    finally:
        edge_net["cn5"].program_sf({})
        for p in others:
            controller.rest("PATCH", f"service-paths/{p['spi']}", {"admin_state": "up"})
    assert ins[0]["action"] == "drop" and ins[0].get("ipv6_src") == CLI, ins
    assert res["result"] != "ok", res
