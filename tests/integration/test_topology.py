"""The edge topology on its own, without the controller.

Temporary static flows (one cookie, removed after each test) make the bridge a
plain L3 hop between the uplinks and down1 and answer ARP for the router's
addresses.  The tests prove what the controller tests take for granted:
addresses, routing in ext, TCP through the userspace datapath, ECMP steering
by source port, moving one connection mid-stream, and the bump-in-the-wire
counters.
"""
from __future__ import annotations

import time

import pytest

from mininet_topos import lab as harness
from mininet_topos.lab import (BRIDGE, dump_flows, flow_packets, move_connection,
                                       ofctl, pick_sport, ping, predict_uplink,
                                       run_transfer, unmove_connection, wait_counters)

COOKIE = "0x7e57"
UPLINKS = ("up1", "up2")
CLI_NET = "198.51.100.0/24"


def port(name: str):
    return harness.edge.PORT[name]


def arp_reply_flow(name: str) -> str:
    """Answer ARP requests for the router address of port ``name``."""
    p = port(name)
    return (f"cookie={COOKIE},priority=300,arp,in_port={name},arp_op=1,arp_tpa={p.router_ip},"
            "actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],"
            f"set_field:{p.router_mac}->eth_src,set_field:2->arp_op,"
            "move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],"
            f"set_field:{p.router_mac}->arp_sha,set_field:{p.router_ip}->arp_spa,IN_PORT")


def hop_flow(in_port: str, dst: str, out_port: str, next_mac: str, priority: int = 200,
             route: bool = True, pre: str = "") -> str:
    """in_port + IPv4 destination -> rewrite MACs, (TTL), output.  With
    route=False the packet is only handed to a service port (no TTL change)."""
    ttl = "dec_ttl," if route else ""
    return (f"cookie={COOKIE},priority={priority},ip,in_port={in_port},nw_dst={dst},"
            f"actions={pre}set_field:{port(out_port).router_mac}->eth_src,"
            f"set_field:{next_mac}->eth_dst,{ttl}output:{out_port}")


def add_flows(*flows: str) -> None:
    for flow in flows:
        ofctl("add-flow", BRIDGE, flow)


def uplink_packets() -> dict[str, int]:
    """Packets routed from each uplink to down1 by the static hop flows."""
    return {u: flow_packets(BRIDGE, 0, f"priority=200,ip,in_port={u},") for u in UPLINKS}


@pytest.fixture
def static_router(edge_net):
    """The bridge as a static router; every flow this test added is removed."""
    srv_mac, ext_up1_mac = port("down1").mac, port("up1").mac
    add_flows(*(arp_reply_flow(p) for p in ("up1", "up2", "down1")),
              *(hop_flow(u, harness.edge.SERVER_NET, "down1", srv_mac) for u in UPLINKS),
              hop_flow("down1", CLI_NET, "up1", ext_up1_mac))
    try:
        yield edge_net
    finally:
        ofctl("del-flows", BRIDGE, f"cookie={COOKIE}/-1")
        assert not [f for f in dump_flows() if f"cookie={COOKIE}" in f]


def test_bridge_and_ports_match_the_contract(edge_net):
    get = lambda *a: harness.sh("ovs-vsctl", "get", *a).strip().strip('"')
    assert get("Bridge", BRIDGE, "datapath_type") == "netdev"
    assert get("Bridge", BRIDGE, "fail_mode") == "secure"
    assert get("Bridge", BRIDGE, "protocols") == "[OpenFlow13]"
    assert get("Bridge", BRIDGE, "other_config:datapath-id") == "0000000000000001"
    for p in harness.edge.PORTS:
        assert get("Interface", p.port, "ofport") == str(p.ofport)
    sysctl = lambda host, key: harness.edge.run(host, "sysctl", "-n", key).strip()
    for name in harness.edge.HOST_NAMES:
        host = edge_net[name]
        if name == "bw":       # an L2 node: IPv6 off, it only bridges
            assert sysctl(host, "net.ipv6.conf.all.disable_ipv6") == "1"
        else:                  # dual stack, quiet: no router solicitations, RAs or DAD
            for key in ("accept_ra", "router_solicitations", "accept_dad"):
                assert sysctl(host, f"net.ipv6.conf.all.{key}") == "0", (name, key)
        for intf in host.intfNames():
            if intf != "lo":
                features = harness.edge.run(host, "ethtool", "-k", intf)
                assert "tx-checksumming: off" in features, (name, intf)


def test_secure_bridge_forwards_nothing_without_flows(edge_net):
    assert dump_flows() == []
    assert ping(edge_net, "cli", harness.edge.SRV_IP, count=2, timeout=1) == 0


def test_ping_both_ways(static_router):
    net = static_router
    assert ping(net, "cli", harness.edge.SRV_IP) == 3
    assert ping(net, "srv", harness.edge.CLI_IP) == 3


def test_tcp_transfer_arrives_intact(static_router):
    net = static_router
    sport = pick_sport(net, 5001, "up1")
    result = run_transfer(net, sport, 5001, chunks=20, interval=0.02).wait()
    assert result["result"] == "ok", result
    assert result["returncode"] == 0
    assert result["bytes"] == 20 * 8192
    assert result["reply_bytes"] > 0
    assert result["server"][-1]["event"] == "done"


@pytest.mark.parametrize("uplink", UPLINKS)
def test_pick_sport_steers_to_the_wanted_uplink(static_router, uplink):
    net = static_router
    sport = pick_sport(net, 5002, uplink)
    assert predict_uplink(net, sport, 5002) == uplink
    result = run_transfer(net, sport, 5002, chunks=10, interval=0.02).wait()
    assert result["result"] == "ok", result
    wait_counters()
    got = uplink_packets()
    other = "up2" if uplink == "up1" else "up1"
    assert got[uplink] >= 10 and got[other] == 0, got


def test_move_connection_mid_stream(static_router):
    net = static_router
    sport = pick_sport(net, 5003, "up1")
    transfer = run_transfer(net, sport, 5003, chunks=40, interval=0.05)
    try:
        time.sleep(0.8)
        move_connection(net, sport, "up2")
        assert predict_uplink(net, sport, 5003) == "up2"
        result = transfer.wait()
    finally:
        transfer.kill()
        unmove_connection(net, sport)
    assert predict_uplink(net, sport, 5003) == "up1"
    assert result["result"] == "ok", result
    wait_counters()
    got = uplink_packets()
    assert got["up1"] > 5 and got["up2"] > 5, got


def test_route_helpers_move_and_restore_flows(edge_net):
    net = edge_net
    sport = pick_sport(net, 5005, "up1")
    try:
        harness.set_uplinks(net, "up2")
        assert predict_uplink(net, sport, 5005) == "up2"
        harness.set_uplinks(net, "up1", "up2")
        assert predict_uplink(net, sport, 5005) == "up1"
        move_connection(net, sport, "up2")
        move_connection(net, sport + 1, "up1")
        assert predict_uplink(net, sport, 5005) == "up2"
        harness.unmove_all(net)
        assert predict_uplink(net, sport, 5005) == "up1"
    finally:
        harness.set_uplinks(net, "up1", "up2")
        harness.unmove_all(net)
    assert harness.edge.run(net["ext"], "ip", "rule", "show", "priority", "100") == ""


def test_conntrack_helper_sees_a_committed_connection(static_router):
    net, zone = static_router, 9
    srv_mac = port("down1").mac
    add_flows(*(hop_flow(u, harness.edge.SERVER_NET, "down1", srv_mac, priority=250,
                         pre=f"ct(commit,zone={zone}),") for u in UPLINKS))
    sport = pick_sport(net, 5004, "up2")
    try:
        result = run_transfer(net, sport, 5004, chunks=5, interval=0.02).wait()
        assert result["result"] == "ok", result
        entries = [e for e in harness.conntrack(zone=zone) if f"sport={sport}," in e]
        assert len(entries) == 1 and "dport=5004" in entries[0], entries
    finally:
        harness.flush_conntrack(zone)
    assert not [e for e in harness.conntrack(zone=zone) if f"sport={sport}," in e]


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_biw_node_counts_each_direction(static_router, direction):
    """Forward (cli->srv) leaves the router on bwa and comes back on bwb;
    reverse (srv->cli) leaves on bwb and comes back on bwa."""
    net = static_router
    a, b = port("bwa").router_mac, port("bwb").router_mac
    if direction == "forward":
        add_flows(*(hop_flow(u, harness.edge.SERVER_NET, "bwa", b, 250, route=False)
                    for u in UPLINKS),
                  hop_flow("bwb", harness.edge.SERVER_NET, "down1", port("down1").mac, 250))
    else:
        add_flows(hop_flow("down1", CLI_NET, "bwb", a, 250, route=False),
                  hop_flow("bwa", CLI_NET, "up1", port("up1").mac, 250))
    fwd0, rev0 = harness.edge.biw_counters(net)
    assert ping(net, "cli", harness.edge.SRV_IP, count=3) == 3
    fwd, rev = harness.edge.biw_counters(net)
    expected = (3, 0) if direction == "forward" else (0, 3)
    assert (fwd - fwd0, rev - rev0) == expected
    wait_counters()
    back_in = "bwb" if direction == "forward" else "bwa"
    assert flow_packets(BRIDGE, 0, f"priority=250,ip,in_port={back_in},") == 3
