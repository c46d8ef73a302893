"""A provider router (t0) and two tenants' routers (t1) on one bridge, joined by links
(ryu_si/examples/tenants.yaml, mininet_topos/tenants.py): real OVS, conntrack, TCP.

Web traffic to tenant A's server goes through the t0's IDS (bw, at the uplinks) and then
tenant A's own firewall (tfw, at tenant A's uplink); tenant B drops telnet at its uplink.
Each router keeps its record in its own conntrack zone.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from importlib import resources
from pathlib import Path

import pytest

from mininet_topos import edge
from mininet_topos import lab as harness
from mininet_topos import tenants
from mininet_topos.lab import move_connection, pick_sport, run_transfer, unmove_all

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def controller_config() -> Path:
    return Path(str(resources.files("ryu_si").joinpath("examples/tenants.yaml")))


@pytest.fixture(scope="module")
def edge_net(of_port: int):
    harness.flush_conntrack()
    net = tenants.start_tenants(controller_port=of_port)
    try:
        yield net
    finally:
        tenants.stop_tenants(net)


@pytest.fixture(autouse=True)
def _no_pinning(edge_net):
    yield
    unmove_all(edge_net)


def zone(ctl, router: str) -> int:
    status, body = ctl.rest("GET", f"routers/{router}")
    assert status == 200, body
    return body["ct_zone"]


def records(sport: int, dport: int, zone_: int) -> list[str]:
    return [line for line in harness.conntrack(zone=zone_)
            if re.search(rf"sport={sport},dport={dport}\)", line)]


def both_ways(net, node: str) -> tuple[int, int]:
    return edge.biw_counters(net, node)


def test_outside_to_a_tenant_is_classified_at_each_tier(controller, edge_net):
    """FIG. 24: the t0's IDS and tenant A's firewall both see both directions; the t0 and
    tenant A each keep one record of the connection, in their own zones."""
    ids0, fw0 = both_ways(edge_net, "bw"), both_ways(edge_net, tenants.TENANT_FW)
    sport = pick_sport(edge_net, 80, "up1", tenants.SERVER_A)
    res = run_transfer(edge_net, sport, 80, chunks=40, interval=0.02, server="tsa",
                       dst=tenants.SERVER_A).wait(60)
    assert res["result"] == "ok", res
    ids1, fw1 = both_ways(edge_net, "bw"), both_ways(edge_net, tenants.TENANT_FW)
    for before, after in ((ids0, ids1), (fw0, fw1)):
        assert after[0] - before[0] >= 40 and after[1] - before[1] >= 20, (before, after)
    for router in ("t0", "tenant-a"):
        assert len(records(sport, 80, zone(controller, router))) == 1, router
    assert not records(sport, 80, zone(controller, "tenant-b"))


def test_an_ecmp_move_at_the_t0_keeps_both_decisions(controller, edge_net):
    """Mid-transfer the client's packets move to uplink2: the t0 reuses its record there
    (claim 1), tenant A's record is untouched, both nodes keep seeing the connection."""
    sport = pick_sport(edge_net, 80, "up1", tenants.SERVER_A)
    t = run_transfer(edge_net, sport, 80, chunks=200, interval=0.01, server="tsa",
                     dst=tenants.SERVER_A)
    time.sleep(0.6)
    tenant_zone = zone(controller, "tenant-a")
    before = records(sport, 80, tenant_zone)
    move_connection(edge_net, sport, "up2")
    ids0, fw0 = both_ways(edge_net, "bw"), both_ways(edge_net, tenants.TENANT_FW)
    time.sleep(0.6)
    ids1, fw1 = both_ways(edge_net, "bw"), both_ways(edge_net, tenants.TENANT_FW)
    res = t.wait(60)
    assert res["result"] == "ok", res
    assert ids1[0] - ids0[0] >= 10 and fw1[0] - fw0[0] >= 10, (ids0, ids1, fw0, fw1)
    mark = re.compile(r"mark=(\d+),labels=(\S+?),")
    assert [mark.search(r).groups() for r in records(sport, 80, tenant_zone)] == [
        mark.search(r).groups() for r in before]


def test_a_tenant_rule_holds_at_its_own_uplink(controller, edge_net):
    """Telnet: tenant B drops it at its uplink; tenant A, without such a rule, serves it."""
    ok = run_transfer(edge_net, pick_sport(edge_net, 23, "up1", tenants.SERVER_A), 23,
                      chunks=5, interval=0.02, server="tsa", dst=tenants.SERVER_A).wait(30)
    assert ok["result"] == "ok", ok
    dropped = run_transfer(edge_net, pick_sport(edge_net, 23, "up1", tenants.SERVER_B), 23,
                           chunks=5, interval=0.02, server="tsb",
                           dst=tenants.SERVER_B).wait(30)
    assert dropped["result"] != "ok" and dropped["bytes"] == 0, dropped


def test_tenants_reach_each_other_through_the_t0(controller, edge_net):
    """Tenant A's server to tenant B's, by both links and the t0: a TCP transfer works,
    classified at each tenant's uplink (a record in each tenant's zone; the t0's ends of
    its links are routed first, like downlinks)."""
    sport = 41900
    res = run_transfer(edge_net, sport, 8081, chunks=20, interval=0.02, client="tsa",
                       server="tsb", dst=tenants.SERVER_B).wait(60)
    assert res["result"] == "ok", res
    assert records(sport, 8081, zone(controller, "tenant-b"))
    assert records(sport, 8081, zone(controller, "tenant-a"))


@pytest.mark.parametrize("client, sport", [("cli", None), ("tsa", 41901)])
def test_tenant_b_uses_the_t0s_ids_from_outside_and_from_tenant_a(controller, edge_net,
                                                                   client, sport):
    """FIG. 31 (from outside) and FIG. 30 (from tenant A): tenant B's rule sends port
    8080 through the t0's IDS; the IDS sees both directions and tenant B gets the
    packets back (the transfer completes; tenant B keeps the one record)."""
    if sport is None:
        sport = pick_sport(edge_net, 8080, "up1", tenants.SERVER_B)
    ids0 = both_ways(edge_net, "bw")
    res = run_transfer(edge_net, sport, 8080, chunks=30, interval=0.02, client=client,
                       server="tsb", dst=tenants.SERVER_B).wait(60)
    assert res["result"] == "ok", res
    ids1 = both_ways(edge_net, "bw")
    assert ids1[0] - ids0[0] >= 30 and ids1[1] - ids0[1] >= 15, (ids0, ids1)
    assert len(records(sport, 8080, zone(controller, "tenant-b"))) == 1


LB_RULE = (f"ip daddr {tenants.VIP} tcp dport {tenants.VIP_PORT} counter dnat to numgen inc "
           f"mod 2 map {{ 0 : {tenants.SERVER_A}, 1 : {tenants.SERVER_A2} }}")
POOL = (tenants.SERVER_A, tenants.SERVER_A2)


@pytest.fixture
def load_balancer(edge_net):
    lb = edge_net[tenants.LB]
    lb.start_nat(LB_RULE, "prerouting", POOL)
    servers = {h: edge_net[h].popen([harness.HOST_PYTHON, str(harness.TRAFFIC), "server",
                                     "--port", str(tenants.VIP_PORT)],
                                    stdout=subprocess.PIPE, text=True)
               for h in ("tsa", "tsa2")}
    try:
        for proc in servers.values():
            assert '"listening"' in proc.stdout.readline()
        yield lb, servers
    finally:
        for proc in servers.values():
            proc.kill()
            proc.wait()
        lb.stop_nat(POOL)


def burst(net, count: int, first_sport: int) -> dict:
    out = net["cli"].cmd(harness.HOST_PYTHON, str(harness.TRAFFIC), "burst", "--dst",
                         tenants.VIP, "--port", str(tenants.VIP_PORT), "--count", str(count),
                         "--first-sport", str(first_sport))
    return json.loads(out.strip().splitlines()[-1])


def lb_up(ctl) -> bool:
    return ctl.rest("GET", "liveness")[1]["nodes"][tenants.LB]["up"]


def wait_until(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.1)


def test_a_load_balancer_holds_the_vip_and_gets_the_servers_replies_back(
        controller, edge_net, load_balancer):
    """FIG. 32: 20 connections to the VIP spread over the two servers; each server sees
    the client's own address, and the client completes every connection with the VIP
    (a reply from a server's own address would be reset by its TCP)."""
    lb, servers = load_balancer
    result = burst(edge_net, 20, 41500)
    assert result["ok"] == 20, result
    assert lb.nat_first_packets() == 20
    time.sleep(3.0)              # a server prints "done" once it sees its client close
    for proc in servers.values():
        proc.kill()
    peers = {h: [json.loads(line)["peer"][0] for line in proc.stdout
                 if '"done"' in line] for h, proc in servers.items()}
    assert {h: len(p) for h, p in peers.items()} == {"tsa": 10, "tsa2": 10}, peers
    assert {p for ps in peers.values() for p in ps} == {edge.CLI_IP}


def test_the_load_balancers_failure_follows_its_policy(controller, edge_net, load_balancer):
    """failure_policy fail: with lb silently dropping (its probes too), the router marks
    it down and new connections to the VIP are dropped; back up, they work again."""
    lb, _servers = load_balancer
    edge.run(lb, "nft", "insert", "rule", "bridge", edge.NFT_TABLE, "count", "drop")
    try:
        wait_until(lambda: not lb_up(controller))
        assert burst(edge_net, 3, 41530)["failed"] == 3
    finally:
        out = edge.run(lb, "nft", "-a", "list", "chain", "bridge", edge.NFT_TABLE, "count")
        for handle in re.findall(r"drop # handle (\d+)", out):
            edge.run(lb, "nft", "delete", "rule", "bridge", edge.NFT_TABLE, "count",
                     "handle", handle)
    wait_until(lambda: lb_up(controller))
    assert burst(edge_net, 3, 41540)["ok"] == 3


# --- service planes (FIG. 26-27) ----------------------------------------------------------
TENANT_NETS = {"a": "10.20.0.0/15", "b": "10.30.0.0/24"}   # tenant A's two subnets, B's


def plane_tags(ctl) -> dict[str, int]:
    status, body = ctl.rest("GET", "service-planes")
    assert status == 200, body
    return {p["name"]: p["num"] for p in body}


@pytest.fixture
def plane_counters(controller, edge_net):
    """nftables counters in the plane nodes pn and sn: frames with a tenant's address,
    all of them and by the plane number in their source MAC (the proxy's 02:TAG:...)."""
    tags = plane_tags(controller)
    names = [f"{what}_{net}" for net in TENANT_NETS
             for what in ("all", *(f"p{t}" for t in tags.values()))]
    rules = "\n".join(
        f'{cond} {field} {prefix} counter name "{what}_{net}"'
        for net, prefix in TENANT_NETS.items() for field in ("ip saddr", "ip daddr")
        for what, cond in [("all", "")] + [
            (f"p{t}", f"ether saddr and ff:ff:00:00:00:00 == 02:{t:02x}:00:00:00:00")
            for t in tags.values()])
    ruleset = ("table bridge si_planes {\n" + "".join(f"counter {n} {{ }}\n" for n in names)
               + "chain count {\ntype filter hook prerouting priority filter; "
               "policy accept;\n" + rules + "\n}\n}\n")
    for node in tenants.PLANE_NODES:
        edge.run(edge_net[node], "nft", "-f", "-", stdin=ruleset)
    try:
        yield tags, lambda node: edge.nft_counters(edge_net[node], "bridge", "si_planes")
    finally:
        for node in tenants.PLANE_NODES:
            edge.run(edge_net[node], "nft", "delete", "table", "bridge", "si_planes",
                     check=False)


def test_each_tenants_traffic_stays_on_its_own_plane_through_a_shared_node(
        controller, edge_net, plane_counters):
    """sn serves tenant A's plane (shared with the t0) and tenant B's; pn the t0's own.
    Every frame of tenant A's connection that sn sees carries shared-a's number, every
    one of tenant B's plane-b's; pn sees only the t0's connection, on provider."""
    tags, count = plane_counters
    wait_until(lambda: all(controller.rest("GET", "liveness")[1]["nodes"][n]["up"]
                           for n in tenants.PLANE_NODES), timeout=30)
    for dport, server, dst in ((9001, "tsa", tenants.SERVER_A), (9002, "tsb", tenants.SERVER_B),
                               (9000, "tsa2", tenants.SERVER_A2)):
        res = run_transfer(edge_net, pick_sport(edge_net, dport, "up1", dst), dport, chunks=10,
                           interval=0.02, server=server, dst=dst).wait(60)
        assert res["result"] == "ok", (dport, res)
    sn, pn = count("sn"), count("pn")
    shared, b, provider = (f"p{tags[p]}" for p in ("shared-a", "plane-b", "provider"))
    assert sn["all_a"] >= 20 and sn["all_a"] == sn[f"{shared}_a"], sn
    assert sn["all_b"] >= 20 and sn["all_b"] == sn[f"{b}_b"], sn
    assert pn["all_a"] >= 20 and pn["all_a"] == pn[f"{provider}_a"] and pn["all_b"] == 0, pn
