"""A decision made at an interface holds there for every packet of a connection,
whatever path its packets or its replies take, on every transport.

Topology and config: the three-transport example (bump-in-the-wire, NSH chain, L3 node).
The module makes each redirect rule apply at uplink1 only and adds a drop rule for the
same port at uplink2; the route back to the clients leaves by uplink1, so while a
client's packets are moved to uplink2 the server's replies still leave by uplink1 (and
are classified there: in the connection's original direction, never on their own
swapped headers).
"""
from __future__ import annotations

import json
import time

import pytest

from mininet_topos import edge
from mininet_topos import service_plane as sp
from mininet_topos.lab import (count_received, move_connection, pick_sport, received_around,
                               run_transfer, unmove_all)
from tests.integration.full_topology import controller_config, edge_net  # noqa: F401
from tests.integration.full_topology import split_rule

pytestmark = pytest.mark.integration
RULES = {"web-inspect": 80, "deep-5201": 5201, "l3-5203": 5203}     # biw, chain, l3
EGRESS_PORT = 5204
DRAIN = 0.4              # packets already past the router when a phase starts


@pytest.fixture(scope="module")
def split_rules(controller):
    """Each redirect at uplink1 only; a drop for the same traffic at uplink2; egress
    traffic from the server to the clients' port 5204 redirected at uplink1 and
    dropped at uplink2."""
    for name, port in RULES.items():
        _rest(controller, "PATCH", f"rules/{name}", {"applied_to": ["uplink1"]})
        _rest(controller, "POST", "rules", {
            "name": f"drop-{port}-up2", "priority": 110, "action": "drop",
            "match": {"ip_proto": "tcp", "tp_dst": port}, "applied_to": ["uplink2"]})
    split_rule(controller, "egress-inspect", "inspect",
               {"ip_proto": "tcp", "ipv4_dst": "198.51.100.0/24", "tp_dst": EGRESS_PORT})
    return controller


@pytest.fixture(autouse=True)
def _no_pinning(edge_net):
    yield
    unmove_all(edge_net)


def _rest(ctl, method: str, path: str, body=None) -> dict:
    status, answer = ctl.rest(method, path, body)
    assert status in (200, 201, 204), (method, path, status, answer)
    return answer


def _node_packets(net, port: int) -> int:
    """Packets the policy's service node(s) of ``port`` saw, both directions."""
    if port == 80:
        return sum(edge.biw_counters(net))
    if port == 5203:
        return sum(sp.l3_counters(net))
    return sum(f + r for f, r in sp.chain_counters(net).values())


@pytest.mark.parametrize("rule", RULES)
def test_moved_onto_a_drop_interface_the_server_receives_nothing(split_rules, edge_net, rule):
    """A pipelined stream is moved from uplink1 (redirect) to uplink2 (drop) while
    the server's replies still leave by uplink1: not one client packet may reach the
    server after the move (the reply classified at uplink1 must not reopen it)."""
    port = RULES[rule]
    sport = pick_sport(edge_net, port, "up1")
    counter = count_received(edge_net["srv"], sport, port)
    node0 = _node_packets(edge_net, port)
    t = run_transfer(edge_net, sport, port, chunks=400, interval=0.005)
    try:
        serviced, at_move, after = received_around(
            edge_net["srv"], counter, lambda: _node_packets(edge_net, port) - node0,
            lambda: move_connection(edge_net, sport, "up2"))
    finally:
        res = t.wait(3)
    assert serviced >= 10, serviced          # redirected at uplink1 before the move
    assert at_move >= 10, at_move            # the stream was flowing
    assert after == 0, f"{after} packets reached the server through the drop at uplink2"
    assert res["result"] != "ok", res


@pytest.mark.parametrize("rule", ["web-inspect", "deep-5201", "l3-5203"])
def test_readding_an_interface_brings_the_open_connection_back(split_rules, edge_net, rule):
    """Off the node and back onto it, the same open connection, on every transport (the
    chain's proxy keeps no per-connection state that could find the resumed stream out
    of its TCP window)."""
    port = RULES[rule]
    sport = pick_sport(edge_net, port, "up1")
    t = run_transfer(edge_net, sport, port, chunks=120, interval=0.025)
    phases = []
    try:
        for applied_to in (["uplink1"], ["uplink2"], ["uplink1"]):
            _rest(split_rules, "PATCH", f"rules/{rule}", {"applied_to": applied_to})
            time.sleep(DRAIN)
            before = _node_packets(edge_net, port)
            time.sleep(0.6)
            phases.append(_node_packets(edge_net, port) - before)
        res = t.wait(60)
    finally:
        _rest(split_rules, "PATCH", f"rules/{rule}", {"applied_to": ["uplink1"]})
    assert res["result"] == "ok", (phases, json.dumps(res))
    on, off, back = phases
    assert on >= 10 and off == 0 and back >= 10, phases


def test_egress_classified_connection_moved_onto_a_drop_interface(split_rules, edge_net):
    """Initiated by the server: classified at the uplink it leaves by.  Moving the
    route to uplink2 (drop there) stops it at once; the client receives nothing more."""
    sport = 47001
    counter = count_received(edge_net["cli"], sport, EGRESS_PORT)
    node0 = sum(edge.biw_counters(edge_net))
    t = run_transfer(edge_net, sport, EGRESS_PORT, chunks=400, interval=0.005,
                     client="srv", server="cli", dst=edge.CLI_IP)
    try:
        serviced, at_move, after = received_around(
            edge_net["cli"], counter, lambda: sum(edge.biw_counters(edge_net)) - node0,
            lambda: _rest(split_rules, "PATCH", "routes/clients",
                          {"next_hop": "10.0.2.2", "interface": "uplink2"}))
    finally:
        res = t.wait(3)
        _rest(split_rules, "PATCH", "routes/clients",
              {"next_hop": "10.0.1.2", "interface": "uplink1"})
    assert serviced >= 10 and at_move >= 10, (serviced, at_move)
    assert after == 0, f"{after} packets reached the client through the drop at uplink2"
    assert res["result"] != "ok", res
