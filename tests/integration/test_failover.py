"""Liveness and failover of the bump-in-the-wire node, on real traffic.

The node fails silently (an nftables drop inside it, so only missed probes tell),
or loudly (its link goes down).  Detection is 100 ms x 3 by default.
"""
from __future__ import annotations

import re
import time

import pytest

from mininet_topos import lab as harness
from mininet_topos.lab import pick_sport, run_transfer, wait_counters

pytestmark = pytest.mark.integration
DETECTION_S = 0.4   # 100 ms x 3 missed probes, plus the round in flight


def biw(net) -> tuple[int, int]:
    return harness.edge.biw_counters(net)


def fail_node(net) -> None:
    """Drop everything in the node's bridge, probes included: a silent failure."""
    harness.edge.run(net["bw"], "nft", "insert", "rule", "bridge", "biw", "count", "drop")


def heal_node(net) -> None:
    out = harness.edge.run(net["bw"], "nft", "-a", "list", "chain", "bridge", "biw", "count")
    for handle in re.findall(r"drop # handle (\d+)", out):
        harness.edge.run(net["bw"], "nft", "delete", "rule", "bridge", "biw", "count",
                         "handle", handle)


def node_up(ctl, name: str) -> bool:
    return ctl.rest("GET", "liveness")[1]["nodes"][name]["up"]


def wait_state(ctl, name: str, up: bool, timeout: float = 5.0) -> float:
    start = time.time()
    while time.time() - start < timeout:
        if node_up(ctl, name) == up:
            return time.time() - start
        time.sleep(0.02)
    raise AssertionError(f"{name} not {'up' if up else 'down'} after {timeout}s")


@pytest.fixture
def icmp_rule(controller):
    status, body = controller.rest("POST", "rules", {
        "name": "icmp-inspect", "priority": 120, "action": "redirect", "policy": "inspect",
        "match": {"ip_proto": "icmp"}, "applied_to": ["uplink1", "uplink2"]})
    assert status == 201, body
    yield body
    controller.rest("DELETE", "rules/icmp-inspect")


def ping_stream(net, count: int, interval: float):
    return net["cli"].popen(["ping", "-n", "-q", "-c", str(count), "-i", str(interval),
                             "-W", "1", "10.10.0.10"], stdout=-1, stderr=-1, text=True)


def received(proc) -> int:
    out, _ = proc.communicate(timeout=60)
    return int(re.search(r"(\d+) received", out).group(1))


def test_liveness_reports_the_node_up_without_flapping_at_start(controller):
    time.sleep(1.0)
    body = controller.rest("GET", "liveness")[1]
    fw1 = body["nodes"]["fw1"]
    assert fw1["up"] and fw1["replies"] >= 5 and fw1["changes"] == 0, fw1
    # (multiplier + 1) x interval, plus the probe loop's measured lateness
    assert DETECTION_S <= body["detection_time_s"] < 2 * DETECTION_S, body["detection_time_s"]
    assert body["generations"]["bfd"] == 0


def test_silent_failure_pass_policy_routes_unserviced_within_detection_time(
        controller, edge_net, icmp_rule):
    gen = controller.rest("GET", "liveness")[1]["generations"]["bfd"]
    interval, count = 0.01, 300
    ping = ping_stream(edge_net, count, interval)
    sport = pick_sport(edge_net, 80, "up1")
    t = run_transfer(edge_net, sport, 80, chunks=40, interval=0.05)
    time.sleep(1.0)
    fail_node(edge_net)
    detected = wait_state(controller, "fw1", up=False)
    try:
        got = received(ping)
        res = t.wait(60)
        assert res["result"] == "ok", res             # the TCP transfer survived the failure
        lost = count - got
        gap = lost * interval
        assert gap <= DETECTION_S + 0.25, (lost, gap)  # traffic resumed within detection time
        assert detected <= DETECTION_S + 0.3
        assert controller.rest("GET", "liveness")[1]["generations"]["bfd"] == (gen + 1) % 256
    finally:
        heal_node(edge_net)
    wait_state(controller, "fw1", up=True)
    before = biw(edge_net)[0]
    harness.run_transfer(edge_net, pick_sport(edge_net, 80, "up2"), 80, chunks=5,
                         interval=0.01).wait(30)
    wait_counters()
    assert biw(edge_net)[0] - before >= 5             # recovered: new connections serviced again


def test_a_connection_routed_unserviced_while_down_returns_to_the_node_when_it_is_back(
        controller, edge_net):
    """failure_policy pass: a transfer falls back to unserviced while fw1 is down; the
    same connection goes through fw1 again once fw1 is back (not only new ones)."""
    t = run_transfer(edge_net, pick_sport(edge_net, 80, "up1"), 80, chunks=120,
                     interval=0.05)
    time.sleep(0.8)
    fail_node(edge_net)
    wait_state(controller, "fw1", up=False)
    time.sleep(0.8)                                   # its packets now go unserviced
    heal_node(edge_net)
    wait_state(controller, "fw1", up=True)
    time.sleep(0.3)
    wait_counters()
    before = biw(edge_net)
    time.sleep(1.5)
    wait_counters()
    after = biw(edge_net)
    res = t.wait(60)
    assert res["result"] == "ok", res
    assert after[0] - before[0] >= 10 and after[1] - before[1] >= 10, (before, after)


def test_fail_policy_drops_when_no_node_is_live(controller, edge_net):
    assert controller.rest("PATCH", "policies/inspect", {"failure_policy": "fail"})[0] == 200
    try:
        fail_node(edge_net)
        wait_state(controller, "fw1", up=False)
        ok = run_transfer(edge_net, pick_sport(edge_net, 5001, "up1"), 5001, chunks=3,
                          interval=0.01).wait(20)
        assert ok["result"] == "ok", ok               # other traffic is not affected
        res = run_transfer(edge_net, pick_sport(edge_net, 80, "up1"), 80, chunks=3,
                           interval=0.01).wait(10)
        assert res["result"] != "ok"                  # redirected traffic is dropped
    finally:
        heal_node(edge_net)
        controller.rest("PATCH", "policies/inspect", {"failure_policy": "pass"})
    wait_state(controller, "fw1", up=True)


def test_link_down_is_detected_at_once(controller, edge_net):
    harness.edge.run(edge_net["bw"], "ip", "link", "set", "bw-a", "down")
    try:
        assert wait_state(controller, "fw1", up=False) < DETECTION_S
    finally:
        harness.edge.run(edge_net["bw"], "ip", "link", "set", "bw-a", "up")
    wait_state(controller, "fw1", up=True)
