"""Failover, flow programming and probe cost on the three-transport topology.

* Failover: a 100 pps ping stream whose ICMP is redirected to chain fw-only (two
  paths: cn1 or cn4), then to the bump-in-the-wire pair inspect-pair (fw1 in bw,
  fw2 in bw2); the node carrying it fails silently (an nftables drop inside it);
  figures: detection time (node death -> controller marks it down, from the
  controller's own timestamp of the change), beside the bound /liveness reports as
  ``detection_time_s`` at that moment, and gap (packets lost x interval, i.e. death
  -> first packet through the backup path or node), over N trials per transport, at
  100 ms x 3 probes.
* Flow programming: POST a drop instruction for the ping flow; time from the
  REST call to the last echo reply that got through.
* Probe cost: packet-ins per second spent on liveness for the nodes of the
  topology (from the controller's probe counters).
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Callable, NamedTuple

from benchmarks import common
from benchmarks.transports import three_transport_lab
from mininet_topos import lab

PING_INTERVAL = 0.01
ICMP_RULE = {"name": "icmp-fw", "priority": 150, "action": "redirect", "policy": "fw",
             "match": {"ip_proto": "icmp"}, "applied_to": ["uplink1", "uplink2"]}


def _ping(net, count: int) -> subprocess.Popen:
    return net["cli"].popen(["ping", "-n", "-D", "-i", str(PING_INTERVAL), "-c", str(count),
                             "-W", "1", "10.10.0.10"], stdout=subprocess.PIPE, text=True)


def _reply_times(out: str) -> list[float]:
    return [float(t) for t in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M)]


def _forward_data(line: str) -> int:
    """The forward data of a router record: SPI << 8 | SI, or a biw/L3 node's number."""
    return (int(re.search(r"labels=(0x[0-9a-f]+)", line).group(1), 16) >> 32) & 0xFFFFFFFF


def _ping_record() -> str:
    return next(c for c in lab.conntrack() if c.startswith("icmp") and "mark=" in c)


def _chain_node(ctl) -> str:
    """The node of the chain path the ping flow was committed to (ICMP id in conntrack)."""
    spi = _forward_data(_ping_record()) >> 8
    path = next(p for p in ctl.rest("GET", "service-paths")[1] if p["spi"] == spi)
    return path["hops"][0]


def _biw_node(ctl) -> str:
    num = _forward_data(_ping_record())
    return next(n["name"] for n in ctl.rest("GET", "service-nodes")[1] if n["num"] == num)


class Target(NamedTuple):
    """What the pings are redirected to, how to find the node carrying them, and the
    Mininet host to fail for that node."""
    label: str
    policy: str
    node_of: Callable[[object], str]
    host: dict[str, str]


TARGETS = (Target("chain fw-only (2 paths)", "fw", _chain_node, {"cn1": "cn1", "cn4": "cn4"}),
           Target("biw pair inspect-pair (2 nodes)", "inspect-pair", _biw_node,
                  {"fw1": "bw", "fw2": "bw2"}))


def _nft_node(net, node: str, verb: str) -> None:
    if verb == "fail":
        lab.edge.run(net[node], "nft", "insert", "rule", "bridge", lab.edge.NFT_TABLE, "count", "drop")
        return
    rules = lab.edge.run(net[node], "nft", "-a", "list", "chain", "bridge", lab.edge.NFT_TABLE,
                         "count")
    for handle in re.findall(r"drop # handle (\d+)", rules):
        lab.edge.run(net[node], "nft", "delete", "rule", "bridge", lab.edge.NFT_TABLE, "count",
                     "handle", handle)


def _wait(pred, timeout: float = 10.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if pred():
            return time.monotonic()
        time.sleep(0.005)
    raise TimeoutError("condition not met")


class Trial(NamedTuple):
    detection: float     # node death (start of the nft command) -> declared down
    nft: float           # how long the nft command took (the death is in that span)
    seen: float          # node death -> a 5 ms REST poll saw it down
    bound: float         # detection_time_s that /liveness reported then
    gap: float           # longest silence in the echo replies


def failover_trial(net, ctl, target: Target) -> Trial:
    """One silent failure of the node carrying the pings.  The controller and this
    process share the host's clock, so the node's ``last_change`` (when the probe loop
    declared it down) is compared with the wall time of the failure."""
    lab.flush_conntrack()
    ping = _ping(net, 300)
    time.sleep(0.8)
    node = target.node_of(ctl)
    t_kill, wall_kill = time.monotonic(), time.time()
    _nft_node(net, target.host[node], "fail")
    nft = time.time() - wall_kill
    t_down = _wait(lambda: node in ctl.rest("GET", "liveness")[1]["down_nodes"])
    view = ctl.rest("GET", "liveness")[1]
    out, _ = ping.communicate(timeout=30)
    _nft_node(net, target.host[node], "heal")
    _wait(lambda: node not in ctl.rest("GET", "liveness")[1]["down_nodes"])
    times = _reply_times(out)
    gap = max(b - a for a, b in zip(times, times[1:]))
    return Trial(view["nodes"][node]["last_change"] - wall_kill, nft, t_down - t_kill,
                 view["detection_time_s"], gap)


def flow_programming_latency(net, ctl) -> float:
    """REST drop instruction for a live TCP flow -> the controller hears (a zero-byte
    packet-in) that the flow's next packet carried it out; read back over REST."""
    sport = lab.pick_sport(net, 5001, "up1")
    t = lab.run_transfer(net, sport, 5001, chunks=300, interval=0.01)
    time.sleep(0.8)
    t_post = time.monotonic()
    status, ins = ctl.rest("POST", "flow-programming", {
        "ip_proto": "tcp", "ipv4_src": "198.51.100.10", "ipv4_dst": "10.10.0.10",
        "tp_src": sport, "tp_dst": 5001, "action": "drop"})
    done = _wait(lambda: any(i["num"] == ins["num"] and i["state"] == "executed"
                             for i in ctl.rest("GET", "flow-programming")[1]))
    t.kill()
    return done - t_post if status == 201 else float("nan")


def probe_cost(ctl, window: float = 2.0) -> tuple[int, float]:
    def sent() -> int:
        return sum(n["sent"] for n in ctl.rest("GET", "liveness")[1]["nodes"].values())
    nodes = len(ctl.rest("GET", "liveness")[1]["nodes"])
    s0 = sent()
    time.sleep(window)
    return nodes, (sent() - s0) / window


def main(argv: list[str]) -> None:
    trials = 5 if common.small() else 20
    with three_transport_lab() as (net, ctl):
        assert ctl.rest("POST", "rules", ICMP_RULE)[0] == 201
        for target in TARGETS:
            assert ctl.rest("PATCH", "rules/icmp-fw", {"policy": target.policy})[0] == 200
            report(target, [failover_trial(net, ctl, target) for _ in range(trials)])
        fp = flow_programming_latency(net, ctl)
        print(f"flow programming (REST drop -> executed by the flow's next packet, "
              f"as REST reports it): {fp * 1000:.0f} ms")
        nodes, pps = probe_cost(ctl)
        print(f"probe cost: {nodes} nodes -> {pps:.0f} probe packet-ins/s "
              f"({pps / max(1, nodes):.1f} per node)")


def report(target: Target, results: list[Trial]) -> None:
    rows = [[label, *_mmm([getattr(t, f) * 1000 for t in results])] for label, f in (
        ("detection: death -> declared down (ms)", "detection"),
        ("bound reported, detection_time_s (ms)", "bound"),
        ("nft command (death is within it) (ms)", "nft"),
        ("death -> seen down by a 5 ms REST poll (ms)", "seen"),
        ("gap: death -> backup path or node (ms)", "gap"))]
    print(common.table(f"Failover, {target.label}, {len(results)} trials, probes 100 ms x 3",
                       ["figure", "min", "median", "max"], rows))
    print("detection per trial (ms), measured / reported bound: " + ", ".join(
        f"{t.detection * 1000:.0f}/{t.bound * 1000:.0f}" for t in results))
    within = sum(t.detection <= t.bound for t in results)
    print(f"declared within the reported bound: {within} of {len(results)} trials")


def _mmm(values: list[float]) -> list[str]:
    return [f"{min(values):.0f}", f"{common.median(values):.0f}", f"{max(values):.0f}"]


if __name__ == "__main__":
    common.run_main(lambda: main(sys.argv[1:]))
