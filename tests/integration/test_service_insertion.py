"""Service insertion end to end: real OVS, conntrack, Mininet hosts, TCP traffic.

The controller runs the embedded example edge: port 80 is redirected through
the bump-in-the-wire node on both uplinks, port 8080 only on uplink1, port 23
is dropped, everything else takes the default rule (allow, no service).
"""
from __future__ import annotations

import re
import time

import pytest

from mininet_topos import lab as harness
from mininet_topos.lab import (conntrack, flow_packets, move_connection, pick_sport,
                                       run_transfer, unmove_all, wait_counters)

pytestmark = pytest.mark.integration
TAG = 0x80000000
RULE_BITS = 0xFFFFFF
CLI_IP = "198.51.100.10"


def biw(net) -> tuple[int, int]:
    return harness.edge.biw_counters(net)


def rule_num(ctl, name: str) -> int:
    status, body = ctl.rest("GET", f"rules/{name}")
    assert status == 200, body
    return body["rule_num"]


def classify_hits(rule: int) -> int:
    """Packets that hit the classify flows of one rule (cookie names the rule)."""
    cookie = f"cookie=0x5106{rule:06x}"
    return sum(int(re.search(r"n_packets=(\d+)", line).group(1))
               for line in harness.dump_flows(table="classify") if line.startswith(cookie))


def mark_of(sport: int) -> int:
    """Tag and rule of the ct_mark of the one conntrack entry of a client source port
    (the interface-class bits in between are left out)."""
    lines = [line for line in conntrack()
             if f"src={CLI_IP},dst=10.10.0.10,sport={sport}," in line]
    assert len(lines) == 1, f"expected one conntrack entry for sport {sport}: {lines}"
    m = re.search(r"mark=(\d+)", lines[0])
    return int(m.group(1)) & (TAG | RULE_BITS) if m else 0


@pytest.fixture(autouse=True)
def _no_pinning(edge_net):
    yield
    unmove_all(edge_net)


def transfer(net, sport: int, dport: int, **kw) -> dict:
    res = run_transfer(net, sport, dport, **kw).wait(60)
    assert res["result"] == "ok", res
    return res


def test_router_answers_arp_and_routes(controller, edge_net):
    assert harness.ping(edge_net, "cli", "10.10.0.10") == 3
    assert harness.ping(edge_net, "srv", "198.51.100.10") == 3


def test_redirected_connection_passes_biw_both_ways(controller, edge_net):
    f0, r0 = biw(edge_net)
    res = transfer(edge_net, pick_sport(edge_net, 80, "up1"), 80, chunks=10, interval=0.02)
    wait_counters()
    f1, r1 = biw(edge_net)
    assert f1 - f0 >= 10, (f0, f1)          # at least one packet per chunk, forward
    assert r1 - r0 >= 3, (r0, r1)           # SYN-ACK, ACKs and the reply stream, reverse
    assert res["bytes"] == 10 * 8192


def test_non_matching_connection_bypasses_the_node(controller, edge_net):
    before = biw(edge_net)
    transfer(edge_net, pick_sport(edge_net, 5001, "up1"), 5001, chunks=10, interval=0.02)
    wait_counters()
    assert biw(edge_net) == before


def test_drop_rule_stops_the_connection(controller, edge_net):
    res = run_transfer(edge_net, pick_sport(edge_net, 23, "up2"), 23, chunks=2,
                       interval=0.01).wait(30)
    assert res["result"] != "ok"


@pytest.mark.parametrize("uplink, classifications", [("up1", 1), ("up2", 2)])
def test_serviced_packets_are_classified_once_per_interface_class(controller, edge_net,
                                                                 uplink, classifications):
    """The SYN is classified where it enters.  Replies leave by uplink1: entered there
    too, the record is reused at once; entered at uplink2, the first reply is
    classified once more at uplink1, which carries a rule set uplink2 lacks (a rule
    of uplink1 could outrank web-inspect), then both directions reuse the record."""
    web = rule_num(controller, "web-inspect")
    before = classify_hits(web)
    transfer(edge_net, pick_sport(edge_net, 80, uplink), 80, chunks=20, interval=0.01)
    wait_counters()
    assert classify_hits(web) - before == classifications


def test_ecmp_move_keeps_the_service_node(controller, edge_net):
    """Claim 1: the rule is applied at both uplinks, so the record is reused at uplink2."""
    web = rule_num(controller, "web-inspect")
    sport = pick_sport(edge_net, 80, "up1")
    hits0, up2_0 = classify_hits(web), flow_packets("edge", "ingress", "in_port=up2")
    t = run_transfer(edge_net, sport, 80, chunks=40, interval=0.05)
    time.sleep(0.8)
    assert mark_of(sport) == TAG | web
    move_connection(edge_net, sport, "up2")
    f_moved = biw(edge_net)[0]
    res = t.wait(60)
    assert res["result"] == "ok", res
    wait_counters()
    assert flow_packets("edge", "ingress", "in_port=up2") - up2_0 >= 10   # it really moved
    assert biw(edge_net)[0] - f_moved >= 10      # and still went through the node
    assert mark_of(sport) == TAG | web           # same record, same rule
    assert classify_hits(web) - hits0 == 1       # never classified again


def test_reclassified_where_the_rule_is_not_applied(controller, edge_net):
    """Claim 2: port 8080 is redirected only at uplink1; at uplink2 the default rule wins."""
    alt = rule_num(controller, "alt-web-uplink1")
    sport = pick_sport(edge_net, 8080, "up1")
    f_start = biw(edge_net)[0]
    t = run_transfer(edge_net, sport, 8080, chunks=40, interval=0.05)
    time.sleep(0.8)
    assert mark_of(sport) == TAG | alt
    move_connection(edge_net, sport, "up2")
    time.sleep(0.6)
    f_after_move = biw(edge_net)[0]
    res = t.wait(60)
    assert res["result"] == "ok", res
    assert f_after_move - f_start >= 5                 # it was being serviced at uplink1
    assert biw(edge_net)[0] - f_after_move <= 2        # and stopped once re-classified


def test_record_follows_the_latest_classification(controller, edge_net):
    """One conntrack entry per connection: re-classification re-commits it.

    Rule A (8080, prio 90) applies at uplink1; rule B (8080, allow, prio 80) at both
    uplinks.  Uplink1 -> A.  Uplink2: A is not applied there -> re-classified -> B,
    and the client's packets bypass the node.  Back at uplink1: B is applied there
    too, but A outranks it at uplink1, so the connection is A's again (uplink2 lacks
    a set uplink1 carries: the record is not reused there).  Replies leave by
    uplink1 all along, where A is the rule, so they go through the node throughout.
    """
    status, rule_b = controller.rest("POST", "rules", {
        "name": "alt-web-anywhere", "priority": 80, "action": "allow",
        "match": {"ip_proto": "tcp", "tp_dst": 8080}, "applied_to": ["uplink1", "uplink2"]})
    assert status == 201, rule_b
    try:
        a, b = rule_num(controller, "alt-web-uplink1"), rule_b["rule_num"]
        sport = pick_sport(edge_net, 8080, "up1")
        t = run_transfer(edge_net, sport, 8080, chunks=60, interval=0.05)
        time.sleep(0.7)
        assert mark_of(sport) == TAG | a
        hits_b = classify_hits(b)
        move_connection(edge_net, sport, "up2")
        time.sleep(0.3)
        fwd_at_up2 = biw(edge_net)[0]
        time.sleep(0.7)
        fwd_at_up2 = biw(edge_net)[0] - fwd_at_up2
        move_connection(edge_net, sport, "up1")
        time.sleep(0.3)
        fwd_back = biw(edge_net)[0]
        time.sleep(0.7)
        fwd_back = biw(edge_net)[0] - fwd_back
        assert mark_of(sport) == TAG | a
        assert t.wait(60)["result"] == "ok"
        assert classify_hits(b) > hits_b      # B decided at uplink2
        assert fwd_at_up2 == 0                # so the client's packets bypassed the node
        assert fwd_back >= 5                  # and A took them back to it at uplink1
    finally:
        assert controller.rest("DELETE", "rules/alt-web-anywhere")[0] == 204


def _patch_applied_to(ctl, rule: str, applied_to: list[str]) -> None:
    status, body = ctl.rest("PATCH", f"rules/{rule}", {"applied_to": applied_to})
    assert status == 200, body


def _node_packets_during(net, seconds: float, settle: float = 0.3) -> tuple[int, int]:
    """Packets the node saw (forward, reverse) in ``seconds`` after letting in-flight
    packets of the previous phase drain for ``settle``."""
    time.sleep(settle)
    f0, r0 = biw(net)
    time.sleep(seconds)
    f1, r1 = biw(net)
    return f1 - f0, r1 - r0


def test_editing_applied_to_changes_existing_connections_both_ways(controller, edge_net):
    """Removing uplink1 takes the open connection off the node at once; adding it back
    brings the same connection back to the node (not only new connections)."""
    sport = pick_sport(edge_net, 80, "up1")
    t = run_transfer(edge_net, sport, 80, chunks=80, interval=0.04)
    try:
        time.sleep(0.5)
        on = _node_packets_during(edge_net, 0.6)
        _patch_applied_to(controller, "web-inspect", ["uplink2"])
        off = _node_packets_during(edge_net, 0.8)
        assert mark_of(sport) == TAG | 0
        _patch_applied_to(controller, "web-inspect", ["uplink1", "uplink2"])
        back = _node_packets_during(edge_net, 0.8)
        res = t.wait(60)
        assert res["result"] == "ok", res
    finally:
        _patch_applied_to(controller, "web-inspect", ["uplink1", "uplink2"])
    assert on[0] >= 5 and on[1] >= 5, on
    assert off == (0, 0), off
    assert back[0] >= 5 and back[1] >= 5, back
    assert mark_of(sport) == TAG | rule_num(controller, "web-inspect")


def test_priority_prefix_and_allow(controller, edge_net):
    """A higher-priority allow for the client's /32 beats the redirect; a prefix that
    does not cover the client changes nothing."""
    sport = pick_sport(edge_net, 80, "up1")
    for prefix, serviced in (("198.51.100.128/25", True), ("198.51.100.0/24", False)):
        status, body = controller.rest("POST", "rules", {
            "name": "trusted", "priority": 150, "action": "allow",
            "match": {"ip_proto": "tcp", "tp_dst": 80, "ipv4_src": [prefix, "192.0.2.0/24"]},
            "applied_to": ["uplink1", "uplink2"]})
        assert status == 201, body
        try:
            before = biw(edge_net)[0]
            transfer(edge_net, sport, 80, chunks=5, interval=0.01)
            wait_counters()
            assert (biw(edge_net)[0] - before >= 5) is serviced, prefix
        finally:
            assert controller.rest("DELETE", "rules/trusted")[0] == 204
        sport = pick_sport(edge_net, 80, "up1")


def test_a_wrapped_classification_generation_flushes_the_router_zone(controller, edge_net):
    """Records carry 8 bits of the classification generation.  Within 256 edits the
    stamp wraps: the controller then empties the router's conntrack zone, so an idle
    record (here: a ping's) cannot pass for current; a running stream carries on."""
    assert harness.ping(edge_net, "cli", "10.10.0.10", count=1) == 1
    icmp = [c for c in conntrack() if c.startswith("icmp") and f"src={CLI_IP}" in c]
    assert icmp, conntrack()
    t = run_transfer(edge_net, pick_sport(edge_net, 80, "up1"), 80, chunks=600,
                     interval=0.03)
    for n in range(256):
        status, body = controller.rest("PATCH", "rules/no-telnet", {"priority": 201 + n % 2})
        assert status == 200, body
    res = t.wait(60)
    assert res["result"] == "ok", res
    assert not [c for c in conntrack() if c in icmp]          # the idle record is gone
    flushed = [line for line in controller.log_tail(2000).splitlines()
               if "conntrack_flushed" in line]
    assert len(flushed) == 1 and "zones=[1]" in flushed[0], flushed
