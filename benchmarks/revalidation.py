"""Generations per transport (FIG. 14): which open connections a liveness event
sends through revalidation.

N TCP connections are held open through chain fw-only (port 5202, the
three-transport example); then, one after another:

* a bump-in-the-wire liveness event (fw2 fails silently, is declared down, and comes
  back): the biw generation moves twice;
* a flow-programming bump (a REST ``none`` instruction for a connection that does not
  exist): the generation every transport checks.

After each, every held connection sends one byte and the benchmark counts the
packets that missed gen_check's fast path (table gen_check, priority 0: stale records
go through flow programming and revalidation), from the switch's own flow counters.
The biw events should revalidate none of the chain connections; the flow-programming
bump all of them.

    .venv/bin/python -m benchmarks.revalidation            # 10,000 connections
    SI_BENCH_SCALE=ci .venv/bin/python -m benchmarks.revalidation   # 1,000
"""
from __future__ import annotations

import re
import subprocess
import sys
import time

from benchmarks import common
from benchmarks.transports import three_transport_lab
from mininet_topos import lab
from openflow_tables import layout as L

PORT = 5202
HOLD_SERVER = f"""
import resource, socket
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {PORT})); s.listen(4096); held = []
print("listening", flush=True)
while True:
    c, _ = s.accept(); held.append(c)
"""
HOLD_CLIENT = f"""
import resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
held = []
for _ in range(int(sys.argv[1])):
    held.append(socket.create_connection(("10.10.0.10", {PORT}), timeout=10))
print("open", len(held), flush=True)
for line in sys.stdin:
    for c in held:
        c.send(b"x")
    print("poked", flush=True)
"""


def gen_check_misses() -> int:
    """Packets that missed every fast-path flow of gen_check on the router bridge."""
    return lab.flow_packets("edge", L.table_id("gen_check"), "priority=0")


def poke(client: subprocess.Popen) -> int:
    """Every held connection sends one byte; the gen_check misses that caused."""
    lab.wait_counters()
    before = gen_check_misses()
    client.stdin.write("poke\n")
    client.stdin.flush()
    assert client.stdout.readline().strip() == "poked"
    time.sleep(1.0)
    lab.wait_counters()
    return gen_check_misses() - before


def biw_event(net, ctl) -> None:
    """fw2 fails silently (its bridge drops everything) and recovers."""
    lab.edge.run(net["bw2"], "nft", "insert", "rule", "bridge", lab.edge.NFT_TABLE, "count",
                 "drop")
    _wait(lambda: "fw2" in ctl.rest("GET", "liveness")[1]["down_nodes"])
    out = lab.edge.run(net["bw2"], "nft", "-a", "list", "chain", "bridge", lab.edge.NFT_TABLE,
                       "count")
    for handle in re.findall(r"drop # handle (\d+)", out):
        lab.edge.run(net["bw2"], "nft", "delete", "rule", "bridge", lab.edge.NFT_TABLE,
                     "count", "handle", handle)
    _wait(lambda: "fw2" not in ctl.rest("GET", "liveness")[1]["down_nodes"])


def flow_program_event(ctl) -> None:
    status, body = ctl.rest("POST", "flow-programming", {
        "ip_proto": "udp", "ipv4_src": "192.0.2.1", "ipv4_dst": "192.0.2.2", "tp_src": 1,
        "tp_dst": 1, "action": "none"})
    assert status == 201, body


def _wait(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)


def main(argv: list[str]) -> None:
    n = 1000 if common.small() else 10000
    with three_transport_lab() as (net, ctl):
        server = net["srv"].popen(["python3", "-c", HOLD_SERVER], stdout=subprocess.PIPE,
                                  text=True)
        assert server.stdout.readline().strip() == "listening"
        t0 = time.monotonic()
        client = net["cli"].popen(["python3", "-c", HOLD_CLIENT, str(n)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert client.stdout.readline().strip() == f"open {n}"
            opened = time.monotonic() - t0
            gens0 = ctl.rest("GET", "liveness")[1]["generations"]
            warm = poke(client)
            biw_event(net, ctl)
            gens1 = ctl.rest("GET", "liveness")[1]["generations"]
            after_biw = poke(client)
            flow_program_event(ctl)
            after_fp = poke(client)
        finally:
            client.kill()
            server.kill()
        rows = [["no event (baseline)", n, warm],
                [f"biw liveness: fw2 down and up (bfd gen {gens0['bfd']} -> {gens1['bfd']})",
                 n, after_biw],
                ["flow-programming bump (every transport checks it)", n, after_fp]]
        print(common.table(f"Revalidation per transport generation, {n} chain connections "
                           f"(opened in {opened:.1f} s)",
                           ["event", "connections poked", "gen_check misses"], rows))


if __name__ == "__main__":
    common.run_main(lambda: main(sys.argv[1:]))
