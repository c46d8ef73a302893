"""Flow programming over REST, on live connections; generation bumps cost O(1) flow-mods."""
from __future__ import annotations

import time

import pytest

from mininet_topos import lab as harness
from mininet_topos.lab import pick_sport, run_transfer, wait_counters
from openflow_tables.stages.conntrack import FALLBACKS, TRANSPORT_GENERATIONS

pytestmark = pytest.mark.integration
CLI, SRV = "198.51.100.10", "10.10.0.10"


def instruction(sport: int, dport: int, action: str) -> dict:
    return {"ip_proto": "tcp", "ipv4_src": CLI, "ipv4_dst": SRV, "tp_src": sport,
            "tp_dst": dport, "action": action}


def wait_executed(ctl, num: int, timeout: float = 5.0) -> dict:
    start = time.time()
    while time.time() - start < timeout:
        ins = next(i for i in ctl.rest("GET", "flow-programming")[1] if i["num"] == num)
        if ins["state"] == "executed":
            return ins
        time.sleep(0.05)
    raise AssertionError(f"instruction {num} still pending after {timeout}s")


def settled_biw(net, window: float = 0.3, timeout: float = 3.0) -> tuple[int, int]:
    """biw counters once they stop moving for a window (or the timeout)."""
    last = harness.edge.biw_counters(net)
    end = time.time() + timeout
    while time.time() < end:
        time.sleep(window)
        now = harness.edge.biw_counters(net)
        if now == last:
            return now
        last = now
    return last


def test_drop_stops_one_connection_only(controller, edge_net):
    victim = pick_sport(edge_net, 5001, "up1")
    t = run_transfer(edge_net, victim, 5001, chunks=40, interval=0.05)
    time.sleep(0.6)
    status, ins = controller.rest("POST", "flow-programming", instruction(victim, 5001, "drop"))
    assert status == 201 and ins["state"] == "pending", ins
    other = run_transfer(edge_net, pick_sport(edge_net, 5002, "up1"), 5002, chunks=10,
                         interval=0.02).wait(30)
    assert other["result"] == "ok", other           # the same hosts, another connection
    res = t.wait(15)
    assert res["result"] != "ok"                    # the programmed one stopped at the router
    assert wait_executed(controller, ins["num"])["executed"]


def test_accept_skips_the_service_for_the_rest_of_the_connection(controller, edge_net):
    sport = pick_sport(edge_net, 80, "up1")
    start = harness.edge.biw_counters(edge_net)
    t = run_transfer(edge_net, sport, 80, chunks=50, interval=0.05)
    time.sleep(0.8)
    status, ins = controller.rest("POST", "flow-programming", instruction(sport, 80, "accept"))
    assert status == 201, ins
    wait_executed(controller, ins["num"])
    f1 = settled_biw(edge_net)      # the datapath's cached flows are revalidated by then

    res = t.wait(60)
    assert res["result"] == "ok", res               # still flowing end to end
    wait_counters()
    f2 = harness.edge.biw_counters(edge_net)
    assert f1[0] - start[0] >= 5                    # it was being serviced
    assert f2[0] - f1[0] <= 1 and f2[1] - f1[1] <= 1    # both directions skip the node now


def test_bad_instruction_is_rejected(controller):
    status, body = controller.rest("POST", "flow-programming",
                                   {**instruction(1, 2, "reroute")})
    assert status == 400 and body["field"] == "spi"
    status, body = controller.rest("POST", "flow-programming", {**instruction(1, 2, "x")})
    assert status == 400 and body["field"] == "action"


def test_generation_bump_with_many_connections_sends_constant_flow_mods(controller, edge_net):
    """1,000 open connections; programming one flow bumps the flow-programming generation
    (the commit flow of each family is modified; every transport's gen_check flow checks
    it, and so do the two flows of redirects fallen back to their failure policy; a match
    change is add + delete) and adds 2 flow_program flows: 2 + 2 x (5 + 2) + 2 = 18
    flow-mods, whatever the number of connections."""
    holder = edge_net["srv"].popen(["python3", "-c", HOLD_SERVER], stdout=-1, text=True)
    client = edge_net["cli"].popen(["python3", "-c", HOLD_CLIENT], stdout=-1, text=True)
    try:
        assert client.stdout.readline().strip() == "open 1000"
        entries = [line for line in harness.conntrack() if "dport=6000)" in line]
        assert len(entries) >= 1000
        status, ins = controller.rest("POST", "flow-programming",
                                      instruction(40000, 6000, "none"))
        assert status == 201
        sw = controller.rest("GET", "health")[1]["switches"][0]
        families = 2
        assert sw["flow_mods_last"] == families + 2 * (len(TRANSPORT_GENERATIONS)
                                                       + len(FALLBACKS)) + 2, sw
    finally:
        client.kill()
        holder.kill()


HOLD_SERVER = """
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 6000)); s.listen(2048); held = []
while True:
    c, _ = s.accept(); held.append(c)
"""
HOLD_CLIENT = """
import socket, sys, time
held = []
for _ in range(50):          # the server may still be starting
    try:
        held.append(socket.create_connection(("10.10.0.10", 6000), timeout=5)); break
    except OSError:
        time.sleep(0.1)
for n in range(999):
    c = socket.create_connection(("10.10.0.10", 6000), timeout=5); held.append(c)
print("open", len(held), flush=True)
time.sleep(60)
"""
