"""Throughput and new-connection rate through each transport, side by side in one run.

On the three-transport topology: iperf3 (TCP, established flow) to srv through plain
routing (port 5001: default rule), the biw node (80), a 1-hop chain (5202), a 3-hop
chain (5201) and the L3 node (5203), each as a ratio to plain routing; new TCP
connections per second through the 1-hop chain vs plain routing; and the packet-ins
that data traffic caused during the run (must be 0: only probes reach the controller).
"""
from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from importlib import resources
from pathlib import Path

from benchmarks import common
from mininet_topos import lab
from mininet_topos import service_plane as sp

PATHS = (("plain routing", 5001), ("biw", 80), ("1-hop chain", 5202), ("3-hop chain", 5201),
         ("L3 node", 5203))
CONNECT = """
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
start = time.monotonic()
for _ in range(n):
    socket.create_connection(("10.10.0.10", port), timeout=5).close()
print(n / (time.monotonic() - start))
"""
ACCEPT = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(512)
while True:
    s.accept()[0].close()
"""
# Flows whose packets go to the controller for data: ARP learning and misses, signals.
DATA_TO_CONTROLLER = (("arp", "arp_op=2"), ("neighbor", "CONTROLLER"), ("ingress", "CONTROLLER"))


@contextlib.contextmanager
def three_transport_lab():
    """The controller with the three-transport example and its Mininet topology."""
    config = Path(str(resources.files("ryu_si").joinpath("examples/three_transports.yaml")))
    lab.flush_conntrack()
    with lab.Controller(of_port=lab.free_port(), wsapi_port=lab.free_port(),
                        config=config) as ctl:
        net = sp.start_full(controller_port=ctl.of_port)
        try:
            ctl.wait_ready()
            time.sleep(1.5)
            yield net, ctl
        finally:
            sp.stop_full(net)


def data_packet_ins() -> int:
    total = 0
    for table, text in DATA_TO_CONTROLLER:
        for line in lab.dump_flows("edge", table):
            if text in line and "CONTROLLER" in line:
                total += int(re.search(r"n_packets=(\d+)", line).group(1))
    return total


def iperf(net, port: int, seconds: int) -> float:
    server = net["srv"].popen(["iperf3", "-s", "-1", "-p", str(port)])
    time.sleep(0.5)
    out = lab.edge.run(net["cli"], "iperf3", "-c", "10.10.0.10", "-p", str(port), "-t",
                       str(seconds), "-J")
    server.wait(timeout=10)
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


def connection_rate(net, port: int, n: int) -> float:
    server = net["srv"].popen(["python3", "-c", ACCEPT, str(port)])
    time.sleep(0.3)
    try:
        return float(lab.edge.run(net["cli"], "python3", "-c", CONNECT, str(port), str(n)))
    finally:
        server.kill()


def main(argv: list[str]) -> None:
    seconds, conns = (2, 200) if common.small() else (5, 1000)
    with three_transport_lab() as (net, ctl):
        # cn5 is a scapy service function (a few thousand packets/s): keep the
        # throughput figures about the datapath by using the paths of plain nodes.
        for path in ctl.rest("GET", "service-paths")[1]:
            if "cn5" in path["hops"]:
                ctl.rest("PATCH", f"service-paths/{path['spi']}", {"admin_state": "down"})
        before = data_packet_ins()
        gbps = {name: iperf(net, port, seconds) for name, port in PATHS}
        plain = gbps["plain routing"]
        print(common.table(f"iperf3 TCP, {seconds} s each, through the edge router",
                           ["path", "Gbit/s", "ratio to plain routing"],
                           [[n, f"{g:.3f}", f"{g / plain:.2f}"] for n, g in gbps.items()]))
        rates = {p: connection_rate(net, p, conns) for p in (5001, 5202)}
        print(f"new TCP connections/s: plain routing {rates[5001]:.0f}, 1-hop chain "
              f"{rates[5202]:.0f} (ratio {rates[5202] / rates[5001]:.2f})")
        lab.wait_counters()
        print(f"packet-ins caused by data traffic during the run: "
              f"{data_packet_ins() - before}")


if __name__ == "__main__":
    common.run_main(lambda: main(sys.argv[1:]))
