"""What the API accepts, proven by traffic (real OVS, conntrack, Mininet, TCP).

Config: ryu_si/examples/three_transports.yaml.  Port 5204 -> policy inspect-pair (biw
nodes fw1 in bw, fw2 in bw2); 5202 -> chain fw-only (cn1 on h1 or cn4 on h2); 5201 ->
chain fw-ids-dpi (one path goes through cn5, an NSH-aware node); 5203 -> L3 node;
80 -> biw fw1.  A connection's decision is read from its record in the router's zone:
ct_label bits 32-63 hold the forward data (a biw/L3 node's number, or SPI << 8 | SI).
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter

import pytest

from mininet_topos import edge
from mininet_topos import lab as harness
from mininet_topos import service_plane as sp
from mininet_topos.lab import (decisions, pick_sport, run_transfer, unmove_all, wait_counters,
                               wait_until)
from tests.integration.full_topology import controller_config, edge_net  # noqa: F401

pytestmark = pytest.mark.integration
CLIENT, SERVER = edge.CLI_IP, edge.SRV_IP
BIW_HOST = {"fw1": "bw", "fw2": sp.BIW2_NODE}


@pytest.fixture(autouse=True)
def _no_pinning(edge_net):
    yield
    unmove_all(edge_net)


def rest(ctl, method: str, path: str, body=None, status: int = 200):
    got, answer = ctl.rest(method, path, body)
    assert got == status, (method, path, body, got, answer)
    return answer


def burst(net, dport: int, count: int, first_sport: int) -> dict[int, int]:
    """``count`` short connections from consecutive source ports: their decisions."""
    server = net["srv"].popen([harness.HOST_PYTHON, str(harness.TRAFFIC), "server",
                               "--port", str(dport)], stdout=subprocess.PIPE, text=True)
    try:
        assert '"listening"' in server.stdout.readline()
        out = net["cli"].cmd(harness.HOST_PYTHON, str(harness.TRAFFIC), "burst", "--dst", SERVER,
                             "--port", str(dport), "--count", str(count),
                             "--first-sport", str(first_sport))
    finally:
        server.kill()
        server.wait()
    result = json.loads(out.strip().splitlines()[-1])
    assert result["ok"] == count, result
    got = decisions(dport)
    return {s: got[s] for s in range(first_sport, first_sport + count) if s in got}


def node(ctl, name: str) -> dict:
    return rest(ctl, "GET", f"service-nodes/{name}")


def node_up(ctl, name: str) -> bool:
    return rest(ctl, "GET", "liveness")["nodes"][name]["up"]


def fail_biw(net, host: str) -> None:
    """Drop everything in the node's bridge, probes included: a silent failure."""
    edge.run(net[host], "nft", "insert", "rule", "bridge", edge.NFT_TABLE, "count", "drop")


def heal_biw(net, host: str) -> None:
    out = edge.run(net[host], "nft", "-a", "list", "chain", "bridge", edge.NFT_TABLE, "count")
    for handle in re.findall(r"drop # handle (\d+)", out):
        edge.run(net[host], "nft", "delete", "rule", "bridge", edge.NFT_TABLE, "count",
                 "handle", handle)


def paths_of(ctl, chain: str) -> list[dict]:
    return [p for p in rest(ctl, "GET", "service-paths") if p["chain"] == chain]


# --- policy weights and the biw pair -------------------------------------------------

def test_policy_weights_split_300_new_connections(controller, edge_net):
    """weights {fw1: 3, fw2: 1}: 300 new connections split 75/25 within ±10 % of the weight."""
    rest(controller, "PATCH", "policies/inspect-pair", {"weights": {"fw1": 3, "fw2": 1}})
    before = {n: edge.biw_counters(edge_net, BIW_HOST[n]) for n in BIW_HOST}
    try:
        got = Counter(burst(edge_net, 5204, 300, 41000).values())
    finally:
        rest(controller, "PATCH", "policies/inspect-pair", {"weights": None})
    fw1, fw2 = node(controller, "fw1")["num"], node(controller, "fw2")["num"]
    assert sum(got.values()) == 300 and set(got) == {fw1, fw2}, got
    assert abs(got[fw1] / 300 - 0.75) <= 0.075, got
    sent = {n: edge.biw_counters(edge_net, BIW_HOST[n])[0] - before[n][0] for n in BIW_HOST}
    assert abs(sent["fw1"] / (sent["fw1"] + sent["fw2"]) - 0.75) <= 0.075, sent


def test_equal_weights_split_evenly(controller, edge_net):
    got = Counter(burst(edge_net, 5204, 300, 41300).values())
    assert sum(got.values()) == 300 and len(got) == 2
    assert all(abs(c / 300 - 0.5) <= 0.05 for c in got.values()), got


def test_a_silent_biw_failure_moves_its_connections_to_the_other_node(controller, edge_net):
    sport = pick_sport(edge_net, 5204, "up1")
    t = run_transfer(edge_net, sport, 5204, chunks=60, interval=0.05)
    num = wait_until(lambda: decisions(5204).get(sport))
    nums = {n: node(controller, n)["num"] for n in BIW_HOST}
    failed = next(n for n, v in nums.items() if v == num)
    other = next(n for n in BIW_HOST if n != failed)
    fail_biw(edge_net, BIW_HOST[failed])
    try:
        wait_until(lambda: not node_up(controller, failed))
        before = edge.biw_counters(edge_net, BIW_HOST[other])
        res = t.wait(60)
        assert res["result"] == "ok", res                      # the transfer survived
        assert decisions(5204)[sport] == nums[other]           # its record names the other
        after = edge.biw_counters(edge_net, BIW_HOST[other])
        assert after[0] - before[0] >= 10 and after[1] - before[1] >= 10, (before, after)
    finally:
        heal_biw(edge_net, BIW_HOST[failed])
        wait_until(lambda: node_up(controller, failed))


def test_a_rest_reroute_moves_a_biw_connection_to_another_node(controller, edge_net):
    """FIG. 13's "change next hop" for a bump-in-the-wire connection."""
    sport = pick_sport(edge_net, 5204, "up2")
    t = run_transfer(edge_net, sport, 5204, chunks=60, interval=0.05)
    num = wait_until(lambda: decisions(5204).get(sport))
    nums = {n: node(controller, n)["num"] for n in BIW_HOST}
    target = next(n for n, v in nums.items() if v != num)
    ins = rest(controller, "POST", "flow-programming", {
        "ip_proto": "tcp", "ipv4_src": CLIENT, "ipv4_dst": SERVER, "tp_src": sport,
        "tp_dst": 5204, "action": "reroute", "node": target}, status=201)
    wait_until(lambda: next(i for i in rest(controller, "GET", "flow-programming")
                            if i["num"] == ins["num"])["state"] == "executed")
    before = edge.biw_counters(edge_net, BIW_HOST[target])
    res = t.wait(60)
    assert res["result"] == "ok", res
    assert decisions(5204)[sport] == nums[target]
    after = edge.biw_counters(edge_net, BIW_HOST[target])
    assert after[0] - before[0] >= 10 and after[1] - before[1] >= 10, (before, after)


# --- chains: local strategy, backups ---------------------------------------------------

def test_local_strategy_prefers_paths_on_the_routers_host_then_falls_back(controller,
                                                                           edge_net):
    rest(controller, "PATCH", "routers/edge", {"host": "h1"})
    rest(controller, "PATCH", "chains/fw-only", {"strategy": "local"})
    try:
        paths = {p["hops"][0]: p for p in paths_of(controller, "fw-only")}
        assert paths["cn1"]["local"] and not paths["cn4"]["local"], paths
        on = Counter(d >> 8 for d in burst(edge_net, 5202, 40, 41600).values())
        assert on == {paths["cn1"]["spi"]: 40}, on             # all local
        edge.run(edge_net["cn1"], "ip", "link", "set", "cn1-a", "down")
        try:
            wait_until(lambda: "cn1" in rest(controller, "GET", "liveness")["down_nodes"])
            on = Counter(d >> 8 for d in burst(edge_net, 5202, 40, 41640).values())
            assert on == {paths["cn4"]["spi"]: 40}, on         # no local path: remote
        finally:
            edge.run(edge_net["cn1"], "ip", "link", "set", "cn1-a", "up")
            wait_until(lambda: "cn1" not in rest(controller, "GET", "liveness")["down_nodes"])
    finally:
        rest(controller, "PATCH", "chains/fw-only", {"strategy": "hash"})
        rest(controller, "PATCH", "routers/edge", {"host": None})


def test_a_failed_path_moves_its_connections_to_its_backup(controller, edge_net):
    """Three hops, four paths: the open connection lands on the backup /liveness names."""
    sport = pick_sport(edge_net, 5201, "up1")
    t = run_transfer(edge_net, sport, 5201, chunks=60, interval=0.05)
    spi = wait_until(lambda: decisions(5201).get(sport)) >> 8
    path = next(p for p in paths_of(controller, "fw-ids-dpi") if p["spi"] == spi)
    victim = next(h for h in path["hops"] if h in sp.CHAIN_NODES)
    edge.run(edge_net[victim], "ip", "link", "set", f"{victim}-a", "down")
    try:
        failed = wait_until(lambda: next((f for f in rest(controller, "GET", "liveness")
                                          ["failed_paths"] if f["spi"] == spi), None))
        assert failed["backup"] in path["backups"], (failed, path)
        res = t.wait(60)
        assert res["result"] == "ok", res
        assert decisions(5201)[sport] >> 8 == failed["backup"]
    finally:
        edge.run(edge_net[victim], "ip", "link", "set", f"{victim}-a", "up")
        wait_until(lambda: victim not in rest(controller, "GET", "liveness")["down_nodes"])


# --- in-band flow programming from the NSH-aware node -----------------------------------

@pytest.fixture
def through_cn5(controller, edge_net):
    """Only the fw-ids-dpi paths through cn5 stay up; yields (those paths, the others)."""
    paths = paths_of(controller, "fw-ids-dpi")
    mine = [p for p in paths if "cn5" in p["hops"]]
    others = [p for p in paths if "cn5" not in p["hops"]]
    assert mine and others
    for p in others:
        rest(controller, "PATCH", f"service-paths/{p['spi']}", {"admin_state": "down"})
    try:
        yield mine, others
    finally:
        edge_net["cn5"].program_sf({})
        for p in others:
            rest(controller, "PATCH", f"service-paths/{p['spi']}", {"admin_state": "up"})


def program_cn5(net, programs: dict[int, str]) -> None:
    net["cn5"].program_sf(programs)
    wait_until(lambda: set(sp.sf_stats(net)["programs"]) == {str(s) for s in programs})


def in_band(ctl, sport: int) -> list[dict]:
    return [i for i in rest(ctl, "GET", "flow-programming")
            if i["source"] == "in-band" and i["tp_src"] == sport]


def test_in_band_drop_message_drops_those_packets_only(controller, edge_net, through_cn5):
    mine, _ = through_cn5
    sport = pick_sport(edge_net, 5201, "up1")
    t = run_transfer(edge_net, sport, 5201, chunks=60, interval=0.05)
    wait_until(lambda: decisions(5201).get(sport))
    gens = rest(controller, "GET", "liveness")["generations"]
    dropped = sp.sf_stats(edge_net)["programmed"]
    program_cn5(edge_net, {p["spi"]: "drop_message" for p in mine})
    time.sleep(0.5)
    program_cn5(edge_net, {})
    assert sp.sf_stats(edge_net)["programmed"] > dropped          # signals were sent
    res = t.wait(60)
    assert res["result"] == "ok", res                   # TCP resent what was dropped
    assert in_band(controller, sport) == []             # nothing recorded
    assert rest(controller, "GET", "liveness")["generations"] == gens   # nothing bumped


def test_in_band_drop_stops_the_connection_at_the_router(controller, edge_net, through_cn5):
    mine, _ = through_cn5
    sport = pick_sport(edge_net, 5201, "up1")
    t = run_transfer(edge_net, sport, 5201, chunks=80, interval=0.05)
    wait_until(lambda: decisions(5201).get(sport))
    program_cn5(edge_net, {p["spi"]: "drop" for p in mine})
    ins = wait_until(lambda: [i for i in in_band(controller, sport) if i["state"] == "executed"])
    assert ins[0]["action"] == "drop"
    program_cn5(edge_net, {})
    time.sleep(0.3)
    seen = _sf_packets(edge_net, {p["spi"] for p in mine})
    time.sleep(1.0)
    assert _sf_packets(edge_net, {p["spi"] for p in mine}) == seen   # dropped at the router
    assert t.wait(60)["result"] != "ok"
    t.kill()


def test_in_band_reroute_moves_the_connection_to_the_named_path(controller, edge_net,
                                                                 through_cn5):
    mine, others = through_cn5
    sport = pick_sport(edge_net, 5201, "up1")
    t = run_transfer(edge_net, sport, 5201, chunks=60, interval=0.05)
    assert wait_until(lambda: decisions(5201).get(sport)) >> 8 in {p["spi"] for p in mine}
    target = others[0]
    rest(controller, "PATCH", f"service-paths/{target['spi']}", {"admin_state": "up"})
    program_cn5(edge_net, {p["spi"]: f"reroute:{target['spi']}" for p in mine})
    ins = wait_until(lambda: [i for i in in_band(controller, sport) if i["state"] == "executed"])
    program_cn5(edge_net, {})
    assert ins[0]["action"] == "reroute" and ins[0]["spi"] == target["spi"]
    res = t.wait(60)
    assert res["result"] == "ok", res
    assert decisions(5201)[sport] >> 8 == target["spi"]


# --- /stats against the nodes' own counters ----------------------------------------------

def _sf_packets(net, spis: set[int]) -> int:
    """Frames cn5 received on these SPIs, by its own count (probes have SPIs of their own)."""
    return sum(sum(ways.values()) for key, ways in sp.sf_stats(net)["paths"].items()
               if int(key.split(":")[0]) in spis)


def _node_counters(net, ctl) -> dict[str, tuple[int, int]]:
    """(forward, reverse) data packets each node saw, by its own counters."""
    paths = rest(ctl, "GET", "service-paths")
    return {"fw1": edge.biw_counters(net, "bw"), "fw2": edge.biw_counters(net, sp.BIW2_NODE),
            **sp.chain_counters(net), "l3n": sp.l3_counters(net),
            "cn5": (_sf_packets(net, {p["spi"] for p in paths}),
                    _sf_packets(net, {p["reverse_spi"] for p in paths}))}


def _stats_counters(ctl) -> dict[str, tuple[int, int]]:
    return {n["name"]: (n["forward"]["packets"], n["reverse"]["packets"])
            for n in rest(ctl, "GET", "stats")["nodes"]}


def test_stats_count_each_packet_once_per_node_and_direction(controller, edge_net):
    wait_counters()
    nodes0, stats0 = _node_counters(edge_net, controller), _stats_counters(controller)
    for dport, uplink in ((80, "up1"), (5201, "up2"), (5202, "up1"), (5203, "up2"),
                          (5204, "up1")):
        res = run_transfer(edge_net, pick_sport(edge_net, dport, uplink), dport,
                           chunks=20, interval=0.01).wait(60)
        assert res["result"] == "ok", res
    wait_counters()
    nodes1, stats1 = _node_counters(edge_net, controller), _stats_counters(controller)
    seen = {n: tuple(b - a for a, b in zip(nodes0[n], nodes1[n])) for n in nodes0}
    counted = {n: tuple(b - a for a, b in zip(stats0[n], stats1[n])) for n in nodes0}
    assert sum(f + r for f, r in seen.values()) > 100, seen
    assert counted == seen



# --- skip one node, keep the rest of the chain ----------------------------------------------

def _chain_node_packets(net) -> dict[str, int]:
    return {n: sum(c) for n, c in sp.chain_counters(net).items()}


def test_a_rest_skip_takes_one_node_off_the_connection_and_keeps_the_others(controller,
                                                                              edge_net):
    sport = pick_sport(edge_net, 5201, "up1")
    t = run_transfer(edge_net, sport, 5201, chunks=60, interval=0.05)
    spi = wait_until(lambda: decisions(5201).get(sport)) >> 8
    path = next(p for p in paths_of(controller, "fw-ids-dpi") if p["spi"] == spi)
    skipped = path["hops"][-1]                                  # the dpi node, cn3
    kept = [h for h in path["hops"][:-1] if h in sp.CHAIN_NODES]
    ins = rest(controller, "POST", "flow-programming", {
        "ip_proto": "tcp", "ipv4_src": CLIENT, "ipv4_dst": SERVER, "tp_src": sport,
        "tp_dst": 5201, "action": "skip", "node": skipped}, status=201)
    wait_until(lambda: next(i for i in rest(controller, "GET", "flow-programming")
                            if i["num"] == ins["num"])["state"] == "executed")
    time.sleep(0.3)
    before = _chain_node_packets(edge_net)
    res = t.wait(60)
    assert res["result"] == "ok", res
    after = _chain_node_packets(edge_net)
    assert after[skipped] == before[skipped], (before, after)           # off the connection
    assert all(after[n] - before[n] >= 10 for n in kept), (before, after)   # the rest stays
    assert decisions(5201)[sport] >> 8 not in {p["spi"] for p in paths_of(controller,
                                                                          "fw-ids-dpi")}


def test_an_in_band_skip_from_cn5_keeps_the_other_hops(controller, edge_net, through_cn5):
    mine, _ = through_cn5
    sport = pick_sport(edge_net, 5201, "up1")
    t = run_transfer(edge_net, sport, 5201, chunks=60, interval=0.05)
    spi = wait_until(lambda: decisions(5201).get(sport)) >> 8
    path = next(p for p in mine if p["spi"] == spi)
    program_cn5(edge_net, {p["spi"]: "skip" for p in mine})
    ins = wait_until(lambda: [i for i in in_band(controller, sport) if i["state"] == "executed"])
    program_cn5(edge_net, {})
    assert ins[0]["action"] == "skip" and ins[0]["node"] == node(controller, "cn5")["id"]
    time.sleep(0.3)
    kept = [h for h in path["hops"] if h in sp.CHAIN_NODES]
    sf0, before = _sf_packets(edge_net, {spi, path["reverse_spi"]}), _chain_node_packets(edge_net)
    res = t.wait(60)
    assert res["result"] == "ok", res
    after = _chain_node_packets(edge_net)
    assert _sf_packets(edge_net, {spi, path["reverse_spi"]}) == sf0     # cn5 sees no more
    assert all(after[n] - before[n] >= 10 for n in kept), (before, after)


# --- L2 match fields -------------------------------------------------------------------------

EXT_UP1_MAC, EXT_UP2_MAC = edge.PORT["up1"].mac, edge.PORT["up2"].mac


@pytest.fixture
def l2_rule(controller):
    made = []

    def make(**rule):
        made.append(rest(controller, "POST", "rules", rule, status=201)["name"])
    yield make
    for name in made:
        rest(controller, "DELETE", f"rules/{name}", status=204)


def test_an_eth_src_rule_drops_what_comes_from_that_neighbor_only(controller, edge_net,
                                                                  l2_rule):
    """A rule with only an L2 field: connections that enter from ext's up2 side are
    dropped at both uplinks where it applies; those from its up1 side pass."""
    l2_rule(name="from-up2-drop", priority=300, action="drop",
            match={"eth_src": EXT_UP2_MAC}, applied_to=["uplink1", "uplink2"])
    ok = run_transfer(edge_net, pick_sport(edge_net, 5001, "up1"), 5001, chunks=5,
                      interval=0.02).wait(60)
    assert ok["result"] == "ok", ok
    t = run_transfer(edge_net, pick_sport(edge_net, 5001, "up2"), 5001, chunks=5,
                     interval=0.02)
    res = t.wait(30)
    t.kill()
    assert res["result"] != "ok", res
    assert not [s for s in res["server"] if s.get("event") == "done"], res


def test_an_eth_dst_rule_classifies_at_egress_by_the_frame_it_leaves_with(controller, edge_net,
                                                                          l2_rule):
    """eth_dst of ext's up1 side, applied at uplink1: a connection the server opens toward
    the clients leaves by uplink1 with that destination MAC, so it is serviced by fw1
    both ways; a client's connection entering uplink1 (to the router's MAC) is not."""
    l2_rule(name="to-up1-inspect", priority=300, action="redirect", policy="inspect",
            match={"eth_dst": EXT_UP1_MAC}, applied_to=["uplink1"])
    port = 7000                       # the client listens; its replies must enter uplink1
    sport = next(s for s in edge.TEST_SPORTS[1000:]
                 if harness.predict_uplink(edge_net, port, s) == "up1")
    before = edge.biw_counters(edge_net, "bw")
    res = run_transfer(edge_net, sport, port, client="srv", server="cli", dst=CLIENT,
                       chunks=20, interval=0.02).wait(60)
    assert res["result"] == "ok", res
    mid = edge.biw_counters(edge_net, "bw")
    assert mid[0] - before[0] >= 20 and mid[1] - before[1] >= 10, (before, mid)
    res = run_transfer(edge_net, pick_sport(edge_net, 5001, "up1"), 5001, chunks=20,
                       interval=0.02).wait(60)
    assert res["result"] == "ok", res
    assert edge.biw_counters(edge_net, "bw") == mid


# --- an L3 node that source-NATs -------------------------------------------------------------

def test_an_l3_node_that_snats_services_both_directions(controller, edge_net):
    """l3n rewrites the client's address to its own tunnel address (nat: true): the server
    sees the node's address, its answers reach the node by the VTI's connected prefix, the
    node restores the client's address and the router returns them to the client."""
    l3n = edge_net["l3n"]
    node_ip = sp.VTI_OF_HOST["l3n"].ip.split("/")[0]
    rest(controller, "PATCH", "service-nodes/l3n", {"nat": True})
    edge.run(l3n, "nft", "-f", "-", stdin=f"""
table ip si_nat {{
    chain post {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {sp.CLIENT_NET} ip daddr {edge.SERVER_NET} tcp dport 5203 snat to {node_ip}
    }}
}}
""")
    try:
        before = sp.l3_counters(edge_net)
        res = run_transfer(edge_net, pick_sport(edge_net, 5203, "up1"), 5203,
                           chunks=60, interval=0.02).wait(60)
        assert res["result"] == "ok", res
        assert [s["peer"][0] for s in res["server"] if s.get("event") == "done"] == [node_ip]
        after = sp.l3_counters(edge_net)
        assert after[0] - before[0] >= 60, (before, after)       # client -> server, NATed
    finally:
        edge.run(l3n, "nft", "delete", "table", "ip", "si_nat")
        rest(controller, "PATCH", "service-nodes/l3n", {"nat": False})


def test_a_path_taken_down_by_the_operator_drains_its_open_connection(controller, edge_net):
    """admin_state down takes the path's flows out of the service plane: its open
    connections move to its backup on their next packet instead of being lost there."""
    sport = pick_sport(edge_net, 5202, "up1")
    t = run_transfer(edge_net, sport, 5202, chunks=60, interval=0.05)
    spi = wait_until(lambda: decisions(5202).get(sport)) >> 8
    time.sleep(0.5)
    rest(controller, "PATCH", f"service-paths/{spi}", {"admin_state": "down"})
    try:
        failed = wait_until(lambda: next((f for f in rest(controller, "GET", "liveness")
                                          ["failed_paths"] if f["spi"] == spi), None))
        res = t.wait(60)
        assert res["result"] == "ok", res
        assert decisions(5202)[sport] >> 8 == failed["backup"] != spi
    finally:
        rest(controller, "PATCH", f"service-paths/{spi}", {"admin_state": "up"})
    assert not [f for f in rest(controller, "GET", "liveness")["failed_paths"]
                if f["spi"] == spi]


# --- a chain node that NATs ----------------------------------------------------------
NAT_ADDR = "198.51.100.200"     # in the clients' prefix: the router routes it out uplink1
VIP = "10.10.0.99"              # an address in the servers' prefix that no host owns


@pytest.fixture
def cn3_nat(controller, edge_net):
    """cn3 (dpi: on every path of fw-ids-dpi, port 5201) marked nat."""
    rest(controller, "PATCH", "service-nodes/cn3", {"nat": True})
    yield edge_net["cn3"]
    rest(controller, "PATCH", "service-nodes/cn3", {"nat": False})


def _nat_records(addr: str) -> list[str]:
    return [line for line in harness.conntrack() if f"src={addr}" in line
            or f"dst={addr}" in line]


def _through_nat_node(net, node, rule: str, hook: str, restored: str,
                      dst: str = SERVER) -> str:
    """A transfer to port 5201 (chain fw-ids-dpi, through cn3) with ``rule`` in cn3's
    nftables ``hook``: the transfer completes and cn3's NAT rule saw its first packet.
    The server's view of the client's address."""
    node.start_nat(rule, hook, (restored,))
    try:
        res = run_transfer(net, pick_sport(net, 5201, "up1"), 5201, chunks=60,
                           interval=0.02, dst=dst).wait(60)
        assert res["result"] == "ok", res
        assert node.nat_first_packets() == 1
        (peer,) = [s["peer"][0] for s in res["server"] if s.get("event") == "done"]
        return peer
    finally:
        node.stop_nat((restored,))


def test_a_chain_node_that_snats_services_both_directions(controller, edge_net, cn3_nat):
    """cn3 rewrites the client's address: the proxy finds each returning frame's hop by
    its source MAC, the router records the rewritten connection, and the server's
    answers to the NAT address go back through cn3, which restores the client's."""
    rule = f"ip saddr {CLIENT} ip daddr {SERVER} tcp dport 5201 counter snat to {NAT_ADDR}"
    assert _through_nat_node(edge_net, cn3_nat, rule, "postrouting", CLIENT) == NAT_ADDR
    assert _nat_records(NAT_ADDR), "the router records the connection cn3 sent on"


def test_a_chain_node_that_dnats_services_both_directions(controller, edge_net, cn3_nat):
    """cn3 rewrites the destination (a VIP no host owns) to the server: the server's
    answers are sent back into the chain by the rewritten connection's record, and cn3
    gives them the VIP back before the client sees them."""
    rule = f"ip daddr {VIP} tcp dport 5201 counter dnat to {SERVER}"
    assert _through_nat_node(edge_net, cn3_nat, rule, "prerouting", SERVER, VIP) == CLIENT
    assert _nat_records(VIP), "the router keeps the client's record, to the VIP"
