"""Three transports on one router: NSH chains on a service plane, an L3 node behind a VTI,
and the bump-in-the-wire node; plus in-band flow programming and chain failover.

Config: ryu_si/examples/three_transports.yaml.  Ports: 5201 -> chain fw-ids-dpi
(3 hops), 5202 -> chain fw-only (2 paths: cn1 or cn4), 5203 -> L3 node, 80 -> biw,
5204 -> the biw pair fw1 + fw2 (tests/integration/test_api_promises.py).
"""
from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest

from mininet_topos import lab as harness
from mininet_topos import service_plane as sp
from mininet_topos.lab import move_connection, pick_sport, run_transfer, unmove_all, wait_counters
from tests.integration.full_topology import controller_config, edge_net  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _no_pinning(edge_net):
    yield
    unmove_all(edge_net)


def paths_of(ctl, chain: str) -> list[dict]:
    return [p for p in ctl.rest("GET", "service-paths")[1] if p["chain"] == chain]


def spi_of(sport: int, dport: int) -> int:
    """Forward SPI stored in the router's record of the connection (ct_label bits 40..63);
    the proxy zones of the nodes hold entries of their own, without a mark."""
    lines = [c for c in harness.conntrack()
             if f"src=198.51.100.10,dst=10.10.0.10,sport={sport},dport={dport})" in c
             and "mark=" in c]
    assert len(lines) == 1, lines
    label = int(re.search(r"labels=(0x[0-9a-f]+)", lines[0]).group(1), 16)
    return (label >> 40) & 0xFFFFFF


def hop_packets(spi: int, si: int) -> int:
    return harness.flow_packets("sp", "sp_forward", f"nsh_spi={spi:#x},nsh_si={si},")


def node_delta(before: dict, after: dict) -> dict[str, tuple[int, int]]:
    return {n: (after[n][0] - before[n][0], after[n][1] - before[n][1]) for n in before}


def transfer_ok(net, sport: int, dport: int, **kw) -> dict:
    res = run_transfer(net, sport, dport, **kw).wait(60)
    assert res["result"] == "ok", json.dumps(res)      # a string: shown whole, with its error
    return res


def test_three_hop_chain_in_order_both_ways(controller, edge_net):
    before = sp.chain_counters(edge_net)
    sport = pick_sport(edge_net, 5201, "up1")
    transfer_ok(edge_net, sport, 5201, chunks=20, interval=0.01)
    wait_counters()
    spi = spi_of(sport, 5201)
    path = next(p for p in paths_of(controller, "fw-ids-dpi") if p["spi"] == spi)
    hops = [hop_packets(spi, 255 - k) for k in range(4)]      # 3 nodes, then the router
    assert min(hops) >= 20 and max(hops) - min(hops) <= 2, hops   # every packet, every hop
    back = [hop_packets(path["reverse_spi"], 255 - k) for k in range(4)]
    assert min(back) >= 3, back                                  # replies: 3, 2, 1, router
    assert path["reverse_hops"] == list(reversed(path["hops"]))
    delta = node_delta(before, sp.chain_counters(edge_net))
    for name in (h for h in path["hops"] if h in delta):
        assert delta[name][0] >= 20 and delta[name][1] >= 3, (name, delta)


def test_two_paths_share_connections_and_keep_them(controller, edge_net):
    paths = paths_of(controller, "fw-only")
    assert len(paths) == 2
    server = edge_net["srv"].popen(["python3", "-c", MANY_SERVER % 5202], stdout=-1, text=True)
    client = edge_net["cli"].popen(["python3", "-c", MANY_CLIENT % (5202, 5202)], stdout=-1,
                                   text=True)
    try:
        out, _ = client.communicate(timeout=60)
        sports = [int(x) for x in out.split()]
        assert len(sports) == 100
        per_path = Counter(spi_of(s, 5202) for s in sports)
        assert set(per_path) == {p["spi"] for p in paths}
        assert min(per_path.values()) >= 25, per_path
    finally:
        server.kill()


def test_a_connection_keeps_its_path_across_an_ecmp_move(controller, edge_net):
    sport = pick_sport(edge_net, 5202, "up1")
    t = run_transfer(edge_net, sport, 5202, chunks=40, interval=0.05)
    time.sleep(0.8)
    spi = spi_of(sport, 5202)
    move_connection(edge_net, sport, "up2")
    before = hop_packets(spi, 255)
    res = t.wait(60)
    assert res["result"] == "ok", res
    wait_counters()
    assert spi_of(sport, 5202) == spi
    assert hop_packets(spi, 255) - before >= 10          # still on its path after the move


def sf_packets(stats: dict, spi: int) -> int:
    """Packets the NSH-aware node saw on one SPI (any SI, any direction)."""
    return sum(sum(v.values()) for k, v in stats.get("paths", {}).items()
               if int(k.split(":")[0]) == spi)


def test_nsh_aware_and_unaware_nodes_in_one_chain(controller, edge_net):
    """Only the paths through cn5 (NSH-aware) stay up; the other hops are proxied."""
    paths = paths_of(controller, "fw-ids-dpi")
    chosen = [p for p in paths if "cn5" in p["hops"]]
    others = [p for p in paths if "cn5" not in p["hops"]]
    assert chosen and others, paths
    for p in others:
        status, _ = controller.rest("PATCH", f"service-paths/{p['spi']}", {"admin_state": "down"})
        assert status == 200
    try:
        before = sp.chain_counters(edge_net)
        sport = pick_sport(edge_net, 5201, "up2")
        transfer_ok(edge_net, sport, 5201, chunks=10, interval=0.01)
        wait_counters()
        spi = spi_of(sport, 5201)
        path = next(p for p in chosen if p["spi"] == spi)
        assert sf_packets(sp.sf_stats(edge_net), spi) >= 10
        delta = node_delta(before, sp.chain_counters(edge_net))
        proxied = [h for h in path["hops"] if h in delta]
        assert proxied and all(delta[h][0] >= 10 for h in proxied), delta
    finally:
        for p in others:
            controller.rest("PATCH", f"service-paths/{p['spi']}", {"admin_state": "up"})


def test_l3_node_services_both_directions(controller, edge_net):
    before = sp.l3_counters(edge_net)
    transfer_ok(edge_net, pick_sport(edge_net, 5203, "up1"), 5203, chunks=20, interval=0.01)
    to_servers, to_clients = (a - b for a, b in zip(sp.l3_counters(edge_net), before))
    assert to_servers >= 20 and to_clients >= 3


def test_vti_toward_a_remote_network_classifies(controller, edge_net):
    before = harness.edge.biw_counters(edge_net)
    res = run_transfer(edge_net, 41000, 80, chunks=10, interval=0.01, client="rnet").wait(60)
    assert res["result"] == "ok", res
    wait_counters()
    assert harness.edge.biw_counters(edge_net)[0] - before[0] >= 10   # web-inspect at vti-remote


def test_three_transports_at_once(controller, edge_net):
    biw0, chain0, l30 = (harness.edge.biw_counters(edge_net), sp.chain_counters(edge_net),
                         sp.l3_counters(edge_net))
    runs = [run_transfer(edge_net, pick_sport(edge_net, d, "up1"), d, chunks=20, interval=0.02)
            for d in (80, 5202, 5203)]
    results = [r.wait(60) for r in runs]
    assert all(r["result"] == "ok" for r in results), json.dumps(results)
    wait_counters()
    assert harness.edge.biw_counters(edge_net)[0] - biw0[0] >= 20
    assert sum(v[0] for v in node_delta(chain0, sp.chain_counters(edge_net)).values()) >= 20
    assert sp.l3_counters(edge_net)[0] - l30[0] >= 20


MANY_SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", %d)); s.listen(256); held = []
while True:
    c, _ = s.accept(); c.sendall(b"x"); held.append(c)
"""
MANY_CLIENT = """
import socket, time
for _ in range(50):
    try:
        socket.create_connection(("10.10.0.10", %d), timeout=2).close(); break
    except OSError:
        time.sleep(0.1)
held = []
for n in range(100):
    c = socket.create_connection(("10.10.0.10", %d), timeout=5); c.recv(1); held.append(c)
print(" ".join(str(c.getsockname()[1]) for c in held), flush=True)
"""


def wait_until(check, timeout: float = 5.0, step: float = 0.05):
    start = time.time()
    while time.time() - start < timeout:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met after {timeout}s")


def test_in_band_accept_from_an_nsh_aware_node(controller, edge_net):
    """cn5 answers C1=accept: later packets skip the whole chain but still arrive."""
    paths = paths_of(controller, "fw-ids-dpi")
    others = [p for p in paths if "cn5" not in p["hops"]]
    for p in others:
        controller.rest("PATCH", f"service-paths/{p['spi']}", {"admin_state": "down"})
    edge_net["cn5"].start_sf({p["spi"]: "accept" for p in paths if "cn5" in p["hops"]})
    try:
        wait_until(lambda: controller.rest("GET", "liveness")[1]["nodes"]["cn5"]["up"])
        wait_until(lambda: all(p["state"] == "up" for p in paths_of(controller, "fw-ids-dpi")
                               if "cn5" in p["hops"]))
        sport = pick_sport(edge_net, 5201, "up1")
        t = run_transfer(edge_net, sport, 5201, chunks=40, interval=0.05)
        ins = wait_until(lambda: next((i for i in controller.rest("GET", "flow-programming")[1]
                                       if i["source"] == "in-band" and i["tp_src"] == sport
                                       and i["state"] == "executed"), None))
        assert ins["action"] == "accept"
        time.sleep(0.3)
        before = sp.chain_counters(edge_net)
        res = t.wait(60)
        assert res["result"] == "ok", res                  # the connection goes on
        after = node_delta(before, sp.chain_counters(edge_net))
        assert all(f <= 1 and r <= 1 for f, r in after.values()), after   # without the chain
    finally:
        edge_net["cn5"].start_sf()
        wait_until(lambda: controller.rest("GET", "liveness")[1]["nodes"]["cn5"]["up"])
        for p in others:
            controller.rest("PATCH", f"service-paths/{p['spi']}", {"admin_state": "up"})


def test_chain_node_failure_moves_connections_to_the_other_path(controller, edge_net):
    sport = pick_sport(edge_net, 5202, "up1")
    t = run_transfer(edge_net, sport, 5202, chunks=60, interval=0.05)
    time.sleep(0.8)
    spi = spi_of(sport, 5202)
    node = next(p for p in paths_of(controller, "fw-only") if p["spi"] == spi)["hops"][0]
    harness.edge.run(edge_net[node], "ip", "link", "set", f"{node}-a", "down")
    try:
        wait_until(lambda: node in controller.rest("GET", "liveness")[1]["down_nodes"])
        res = t.wait(60)
        assert res["result"] == "ok", res                  # the transfer survived
        new_spi = spi_of(sport, 5202)
        failed = {f["spi"]: f["backup"] for f in controller.rest("GET", "liveness")[1]["failed_paths"]}
        assert new_spi != spi and failed.get(spi) == new_spi     # moved to its backup
    finally:
        harness.edge.run(edge_net[node], "ip", "link", "set", f"{node}-a", "up")
    wait_until(lambda: node not in controller.rest("GET", "liveness")[1]["down_nodes"])


def test_l3_node_failure_routes_unserviced_then_recovers(controller, edge_net):
    l3 = edge_net["l3n"]
    sport = pick_sport(edge_net, 5203, "up1")
    t = run_transfer(edge_net, sport, 5203, chunks=60, interval=0.05)
    time.sleep(0.8)
    harness.edge.run(l3, "nft", "insert", "rule", "ip", sp.L3_TABLE, "count", "drop")  # silent
    try:
        wait_until(lambda: "l3n" in controller.rest("GET", "liveness")[1]["down_nodes"])
        before = sp.l3_counters(edge_net)
        res = t.wait(60)
        assert res["result"] == "ok", res
        assert sp.l3_counters(edge_net) == before          # pass policy: routed unserviced
    finally:
        rules = harness.edge.run(l3, "nft", "-a", "list", "chain", "ip", sp.L3_TABLE, "count")
        for handle in re.findall(r"drop # handle (\d+)", rules):
            harness.edge.run(l3, "nft", "delete", "rule", "ip", sp.L3_TABLE, "count",
                             "handle", handle)
    wait_until(lambda: "l3n" not in controller.rest("GET", "liveness")[1]["down_nodes"])
    before = sp.l3_counters(edge_net)
    transfer_ok(edge_net, pick_sport(edge_net, 5203, "up2"), 5203, chunks=10, interval=0.01)
    assert sp.l3_counters(edge_net)[0] - before[0] >= 10   # serviced again


def test_reroute_moves_one_connection_to_another_path(controller, edge_net):
    """REST reroute of one connection from its fw-only path to the other one: its
    packets stop at the old node and go through the new one; others are untouched."""
    sport = pick_sport(edge_net, 5202, "up1")
    t = run_transfer(edge_net, sport, 5202, chunks=60, interval=0.05)
    time.sleep(0.8)
    old_spi = spi_of(sport, 5202)
    paths = {p["spi"]: p["hops"][0] for p in paths_of(controller, "fw-only")}
    new_spi = next(s for s in paths if s != old_spi)
    status, ins = controller.rest("POST", "flow-programming", {
        "ip_proto": "tcp", "ipv4_src": "198.51.100.10", "ipv4_dst": "10.10.0.10",
        "tp_src": sport, "tp_dst": 5202, "action": "reroute", "spi": new_spi})
    assert status == 201, ins
    wait_until(lambda: executed(controller, ins["num"]))
    assert spi_of(sport, 5202) == new_spi                # executed: the record carries it
    time.sleep(0.2)
    before = sp.chain_counters(edge_net)
    res = t.wait(60)
    assert res["result"] == "ok", res
    delta = node_delta(before, sp.chain_counters(edge_net))
    assert spi_of(sport, 5202) == new_spi
    assert delta[paths[old_spi]][0] <= 1, delta          # the old node is skipped
    assert delta[paths[new_spi]][0] >= 10, delta         # the new path carries it


def executed(ctl, num: int) -> bool:
    return any(i["num"] == num and i["state"] == "executed"
               for i in ctl.rest("GET", "flow-programming")[1])


def test_an_executed_reroute_is_in_the_record_every_time(controller, edge_net):
    """The "executed" state comes from the datapath running the instruction for a real
    packet, so it is never reported before the record holds the new path (flow counters
    were: OVS credits a changed flow table's flows with packets cached flows carried)."""
    paths = [p["spi"] for p in paths_of(controller, "fw-only")]
    missed = []
    for _ in range(10):
        sport = pick_sport(edge_net, 5202, "up1")
        t = run_transfer(edge_net, sport, 5202, chunks=16, interval=0.05)
        time.sleep(0.4)
        new_spi = next(s for s in paths if s != spi_of(sport, 5202))
        status, ins = controller.rest("POST", "flow-programming", {
            "ip_proto": "tcp", "ipv4_src": "198.51.100.10", "ipv4_dst": "10.10.0.10",
            "tp_src": sport, "tp_dst": 5202, "action": "reroute", "spi": new_spi})
        assert status == 201, ins
        wait_until(lambda: executed(controller, ins["num"]))
        if spi_of(sport, 5202) != new_spi:
            missed.append(sport)
        assert t.wait(60)["result"] == "ok"
    assert not missed, missed
