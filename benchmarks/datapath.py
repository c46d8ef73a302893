"""Classification in the datapath: new connections and throughput through the
pipeline with 10,000 rules installed, against simpler forwarding on the same bridge.

Two namespaces (bn-cli, bn-srv) hang off a userspace bridge by veths (tx
checksum offload off on both ends).  The client's port is uplink0 of a
generated router (16 uplinks by default, the others internal ports); the rules are the
scale benchmark's mix plus one low-priority allow rule for the benchmark's
own traffic, so a SYN is classified past every generated rule.  Three modes,
measured one after the other in one run:

* ``pipeline``: the controller's pipeline (classify + ct commit + routing);
* ``ct``:       two flows by ovs-ofctl, controller stopped: ``ct(commit)`` + output;
* ``normal``:   one ``NORMAL`` flow (the hosts' gateway entries point at each other).

New connections: a client in bn-cli opens short TCP connections (connect, then
close with RST: no TIME_WAIT to run out of ports) from several threads to a
Python accept loop in bn-srv.  *Warm*: all from the client's one address, so
after the first one the datapath's megaflow cache answers and the OpenFlow
classifier is not on the path.  *Cold*: each from a new source address in
100.64.0.0/10 (bn-cli treats the whole block as local), where the generated
rules' source prefixes are dense: OVS must un-wildcard many source bits, so
SYNs miss the megaflow cache and are classified in the slow path (upcalls).

Throughput: iperf3, one TCP stream.  Packet-ins: the packet counters of every
flow that outputs to the controller (the pipeline has no implicit table-miss),
before and after the traffic.  Upcalls: misses of the userspace datapath
(``dpctl/show``) per connection.

``--family`` picks the rule base (workload.py) and the traffic: ``ipv4`` as above;
``ipv6``: IPv6 rules, IPv6 traffic, cold sources in 2001:db8:6400::/40 (the IPv6
rules' source block); ``dual``: R IPv4 + R IPv6 rules, every mode measured with
IPv4 traffic and then with IPv6 traffic.  With IPv6 the hosts get IPv6 addresses
too (no DAD, no router solicitations), the router's uplink0 and downlink IPv6
prefixes, static IPv6 neighbours for both hosts and an IPv6 route back to the
cold block; the ct baseline commits IPv6 as it does IPv4.

    python -m benchmarks.datapath [--connections 100000] [--cold 20000] [--seconds 10]
                                  [--rules 10000] [--ifaces 16] [--family dual]
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from benchmarks import common
from benchmarks.workload import FAMILIES, V6, Edge, document, ipv6_prefix
from mininet_topos.lab import COUNTER_LAG, REPO, ofctl, sh
from openflow_tables import layout as L

BRIDGE, DPID = "bench2", 0xB2
CONN_PORT, IPERF_PORT = 5001, 5002
COLD_NET = "100.64.0.0/10"   # the generated rules' source prefixes live here (workload.py)
COLD_NET6 = str(V6.src)      # the same for the IPv6 rules
BASELINE_ZONE = 9
WORKERS = 4
PORTS = Edge("b2", 1, DPID)   # port names: b2u0 (the client's uplink), b2d (the server's)


@dataclass(frozen=True)
class Host:
    """A namespace with one veth into the bridge; ``gw`` and ``gw6`` are its router's
    addresses (IPv6 ones are used when the run carries IPv6)."""

    ns: str
    port: str          # the bridge-side veth (an OVS port the config names)
    ip: str
    mac: str
    gw: str
    router_mac: str    # the router interface's MAC (config) the gateway resolves to
    ip6: str
    gw6: str

    @property
    def dev(self) -> str:
        return f"{self.ns}-e"

    def run(self, *argv: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], cwd=REPO, **kw)

    def set_gateway_mac(self, mac: str, six: bool = False) -> None:
        for gw in (self.gw, self.gw6) if six else (self.gw,):
            sh("ip", "-n", self.ns, "neigh", "replace", gw, "lladdr", mac, "dev", self.dev,
               "nud", "permanent")


def _host6(prefix: str) -> tuple[str, str]:
    """(host address, router address) on a router interface's IPv6 prefix."""
    router = ipaddress.IPv6Interface(prefix)
    return str(router.ip + 1), str(router.ip)


CLI = Host("bn-cli", PORTS.uplink_ports()[0], "10.99.0.2", "02:bb:00:00:00:01", "10.99.0.1",
           "02:b0:00:00:00:00", *_host6(ipv6_prefix(0)))
SRV = Host("bn-srv", PORTS.downlink_port(), "10.98.0.2", "02:bb:00:00:00:02", "10.98.0.1",
           "02:b0:00:01:00:01", *_host6(ipv6_prefix(0, downlink=True)))


def config(edge: Edge, n_rules: int, family: str = "ipv4") -> dict:
    """The generated router, static neighbors for both hosts, a route back to the
    cold clients' addresses, and the benchmark's allow rule; each of them for IPv6
    too unless the family is ipv4."""
    doc = document(edge, n_rules, family=family)
    doc["neighbors"] = [{"name": "cli", "ip": CLI.ip, "mac": CLI.mac, "interface": "uplink0"},
                        {"name": "srv", "ip": SRV.ip, "mac": SRV.mac, "interface": "downlink"}]
    doc["routes"] = [{"name": "cold-clients", "router": "bench", "prefix": COLD_NET,
                      "next_hop": CLI.ip, "interface": "uplink0"}]
    doc["rules"].append({"name": "bench-allow", "priority": 1, "action": "allow",
                         "applied_to": ["uplink0"],
                         "match": {"ip_proto": "tcp", "ipv4_dst": "10.98.0.0/24"}})
    if family != "ipv4":
        doc["neighbors"] += [
            {"name": "cli6", "ip": CLI.ip6, "mac": CLI.mac, "interface": "uplink0"},
            {"name": "srv6", "ip": SRV.ip6, "mac": SRV.mac, "interface": "downlink"}]
        doc["routes"].append({"name": "cold-clients6", "router": "bench", "prefix": COLD_NET6,
                              "next_hop": CLI.ip6, "interface": "uplink0"})
        doc["rules"].append({"name": "bench-allow6", "priority": 1, "action": "allow",
                             "applied_to": ["uplink0"],
                             "match": {"ip_proto": "tcp",
                                       "ipv6_dst": str(ipaddress.IPv6Interface(
                                           ipv6_prefix(0, downlink=True)).network)}})
    return doc


def _ipv6_setup(host: Host, six: bool) -> list[list[str]]:
    """Commands giving the host its IPv6 address and default route without chatter (no
    DAD, no router solicitations or advertisements taken), or turning IPv6 off."""
    if not six:
        return [["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]]
    conf = f"net.ipv6.conf.{host.dev}"
    return [["sysctl", "-qw", f"{conf}.accept_dad=0", f"{conf}.dad_transmits=0",
             f"{conf}.router_solicitations=0", f"{conf}.accept_ra=0",
             "net.ipv6.ip_nonlocal_bind=1"],
            ["ip", "-6", "addr", "add", f"{host.ip6}/64", "dev", host.dev, "nodad"],
            ["ip", "-6", "route", "add", "default", "via", host.gw6]]


@contextmanager
def attached(host: Host, bridge: str = BRIDGE, six: bool = False) -> Iterator[Host]:
    """The namespace, its veth on the bridge, no IPv6 chatter (``six``: IPv6 addresses
    without DAD or solicitations, else none), tx offload off; removed on exit (and
    first removed if a killed earlier run left them)."""
    sh("ip", "netns", "del", host.ns, check=False)
    sh("ip", "link", "del", host.port, check=False)
    sh("ip", "netns", "add", host.ns)
    try:
        sh("ip", "link", "add", host.port, "type", "veth", "peer", "name", host.dev,
           "netns", host.ns)
        ipv6 = _ipv6_setup(host, six)
        for cmd in (*ipv6[:1],
                    ["ip", "link", "set", host.dev, "address", host.mac],
                    ["ip", "addr", "add", f"{host.ip}/24", "dev", host.dev],
                    ["ip", "link", "set", host.dev, "up"], ["ip", "link", "set", "lo", "up"],
                    ["ip", "route", "add", "default", "via", host.gw],
                    *ipv6[1:],
                    ["ethtool", "-K", host.dev, "tx", "off"]):
            sh("ip", "netns", "exec", host.ns, *cmd)
        sh("sysctl", "-qw", f"net.ipv6.conf.{host.port}.disable_ipv6=1")
        sh("ethtool", "-K", host.port, "tx", "off")
        sh("ip", "link", "set", host.port, "up")
        sh("ovs-vsctl", "add-port", bridge, host.port)
        yield host
    finally:
        sh("ovs-vsctl", "--if-exists", "del-port", bridge, host.port, check=False)
        sh("ip", "netns", "del", host.ns, check=False)


@contextmanager
def serving(host: Host, *argv: str) -> Iterator[subprocess.Popen]:
    """A server process in the namespace, killed (by pid) on exit."""
    proc = host.run(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


# ----------------------------------------------------------- traffic (in namespaces)

def accept_loop(port: int, six: bool = False) -> None:
    """Accept and close, forever (bn-srv); ``six``: IPv6 and IPv4 on one socket."""
    if six:
        srv = socket.create_server(("::", port), family=socket.AF_INET6, backlog=4096,
                                   dualstack_ipv6=True)
    else:
        srv = socket.create_server(("0.0.0.0", port), backlog=4096)
    while True:
        conn, _ = srv.accept()
        conn.close()


def cold_sources(count: int, block: str = COLD_NET) -> list[str]:
    """Distinct client addresses spread over the block (seeded: the same in every mode)."""
    net = ipaddress.ip_network(block)
    rnd = random.Random(3)
    picks: dict[int, None] = {}
    while len(picks) < count:
        picks.setdefault(rnd.randrange(1, net.num_addresses - 1))
    return [str(net.network_address + k) for k in picks]


def connect_loop(dst: str, port: int, count: int, workers: int, cold: bool) -> dict:
    """Open ``count`` connections from ``workers`` threads; each closes with RST (bn-cli).

    ``cold``: each connection from its own source address in COLD_NET (COLD_NET6 to an
    IPv6 ``dst``), where the rules' source prefixes are dense, so each SYN misses the
    datapath's flow cache.
    """
    done = {"ok": 0, "failed": 0}
    lock = threading.Lock()
    linger = struct.pack("ii", 1, 0)
    six = ipaddress.ip_address(dst).version == 6
    sources = iter(cold_sources(count, COLD_NET6 if six else COLD_NET) if cold
                   else [None] * count)

    def worker() -> None:
        while True:
            with lock:
                src = next(sources, "end")
            if src == "end":
                return
            s = socket.socket(socket.AF_INET6 if six else socket.AF_INET)
            s.settimeout(3.0)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            try:
                if src:
                    s.bind((src, 0))
                s.connect((dst, port))
                outcome = "ok"
            except OSError:
                outcome = "failed"
            finally:
                s.close()
            with lock:
                done[outcome] += 1

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {**done, "seconds": time.monotonic() - t0}


def python(call: str) -> list[str]:
    """argv running ``call`` (an expression over this module's names) in a namespace."""
    return [sys.executable, "-c", f"import json; from benchmarks.datapath import *; {call}"]


def connection_rate(n: int, cold: bool, six: bool = False) -> dict:
    """Connections per second from bn-cli to bn-srv, with upcalls per connection."""
    _, miss0 = common.datapath_lookups()
    dst = SRV.ip6 if six else SRV.ip
    proc = CLI.run(*python(f"print(json.dumps(connect_loop({dst!r}, {CONN_PORT}, {n}, "
                           f"{WORKERS}, {cold})))"), stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=600)
    finally:   # a benchmark stopped (SIGTERM) must not leave the client running
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = json.loads(out)
    _, miss1 = common.datapath_lookups()
    return {**result, "rate": result["ok"] / result["seconds"],
            "upcalls_per_conn": (miss1 - miss0) / max(1, result["ok"])}


def throughput(seconds: int, six: bool = False) -> float:
    """iperf3, one TCP stream bn-cli -> bn-srv, received Gbit/s."""
    with serving(SRV, "iperf3", "-s", "-1", "-p", str(IPERF_PORT)):
        out = sh("ip", "netns", "exec", CLI.ns, "iperf3", "-J", "-c", SRV.ip6 if six else SRV.ip,
                 "-p", str(IPERF_PORT), "-t", str(seconds), timeout=seconds + 60)
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


# ---------------------------------------------------------------- the three modes

def peer_gateways(on: bool, six: bool = False) -> None:
    """normal/ct: each host's gateway is the other host; pipeline: the router."""
    CLI.set_gateway_mac(SRV.mac if on else CLI.router_mac, six)
    SRV.set_gateway_mac(CLI.mac if on else SRV.router_mac, six)


def _ofports() -> tuple[str, str]:
    return tuple(sh("ovs-vsctl", "get", "Interface", h.port, "ofport").strip()
                 for h in (CLI, SRV))


def install_baseline(mode: str) -> None:
    """Replace every flow with the baseline's: ct(commit) + output, or NORMAL."""
    ofctl("del-flows", BRIDGE)
    cli, srv = _ofports()
    if mode == "normal":
        ofctl("add-flow", BRIDGE, "priority=0,actions=NORMAL")
        return
    for src, dst in ((cli, srv), (srv, cli)):
        for eth in ("ip", "ipv6"):
            ofctl("add-flow", BRIDGE, f"priority=10,{eth},in_port={src},"
                  f"actions=ct(commit,zone={BASELINE_ZONE}),output:{dst}")


def measure(mode: str, args, six: bool = False) -> dict:
    """Connections, throughput and packet-ins of the mode whose flows are installed now,
    with IPv4 traffic or (``six``) IPv6 traffic."""
    pins0 = common.controller_packets(BRIDGE)
    with serving(SRV, *python(f"accept_loop({CONN_PORT}, {six})")):
        warm = connection_rate(args.connections, cold=False, six=six)
        cold = connection_rate(args.cold, cold=True, six=six)
    gbps = throughput(args.seconds, six)
    time.sleep(COUNTER_LAG)
    return {"mode": mode, "traffic": "IPv6" if six else "IPv4", "warm": warm, "cold": cold,
            "gbps": gbps, "packet_ins": common.controller_packets(BRIDGE) - pins0}


def classified(rule_num: int) -> int:
    """Packets the benchmark's allow rule classified (one per new connection)."""
    time.sleep(COUNTER_LAG)
    table = f"table={L.table_id('classify')}"
    return common.packets(BRIDGE, f"{table},{common.rule_filter(rule_num)}")


HEADER = ["mode", "traffic", "warm conn/s", "vs ct", "upcalls/conn", "cold conn/s", "vs ct",
          "upcalls/conn", "failed", "Gbit/s", "vs normal", "packet-ins"]


def rows(results: dict[tuple[str, bool], dict]) -> list[list]:
    """One row per mode and traffic family, each against the baselines of its family."""
    out = []
    for (_, six), r in results.items():
        ct, normal = results["ct", six], results["normal", six]
        out.append([r["mode"], r["traffic"],
                    *(x for k in ("warm", "cold") for x in (
                        r[k]["rate"], r[k]["rate"] / ct[k]["rate"], r[k]["upcalls_per_conn"])),
                    r["warm"]["failed"] + r["cold"]["failed"], r["gbps"],
                    r["gbps"] / normal["gbps"], r["packet_ins"]])
    return out


TRAFFIC = {"ipv4": (False,), "ipv6": (True,), "dual": (False, True)}   # six, per family
ALLOW_RULES = {False: "bench-allow", True: "bench-allow6"}


def rule_base(args) -> str:
    """The rule base in words, for the report's title."""
    n = f"{args.rules:,}"
    return {"ipv4": f"{n} rules", "ipv6": f"{n} IPv6 rules",
            "dual": f"{n} IPv4 + {n} IPv6 rules"}[args.family]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=10_000 if common.small() else 100_000)
    ap.add_argument("--cold", type=int, default=2_000 if common.small() else 20_000,
                    help="connections, each from a new source address")
    ap.add_argument("--seconds", type=int, default=3 if common.small() else 10)
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--ifaces", type=int, default=16)
    ap.add_argument("--family", choices=FAMILIES, default="ipv4",
                    help="rule base and traffic: dual is R IPv4 + R IPv6 rules, both traffics")
    args = ap.parse_args(argv)
    edge = Edge(PORTS.prefix, args.ifaces, DPID)
    internal = [p for p in edge.all_ports() if p not in (CLI.port, SRV.port)]
    traffic = TRAFFIC[args.family]
    six_hosts = args.family != "ipv4"
    common.wait_until_quiet()
    results: dict[tuple[str, bool], dict] = {}
    syns: dict[bool, int] = {}
    with ExitStack() as stack:
        stack.enter_context(common.bridge(BRIDGE, DPID, internal))
        for host in (CLI, SRV):
            stack.enter_context(attached(host, six=six_hosts))
        sh("ip", "-n", CLI.ns, "route", "add", "local", COLD_NET, "dev", "lo")
        if six_hosts:
            sh("ip", "-n", CLI.ns, "-6", "route", "add", "local", COLD_NET6, "dev", "lo")
        ctl = stack.enter_context(common.controller(config(edge, args.rules, args.family)))
        common.start_installed(ctl, BRIDGE)
        flows = common.flow_count(BRIDGE)
        rule_nums = {six: ctl.rest("GET", f"rules/{ALLOW_RULES[six]}")[1]["rule_num"]
                     for six in traffic}
        peer_gateways(False, six_hosts)
        for six in traffic:
            results["pipeline", six] = measure("pipeline", args, six)
            syns[six] = classified(rule_nums[six])
        common.connect(BRIDGE, None)
        ctl.stop()
        peer_gateways(True, six_hosts)
        for mode in ("ct", "normal"):
            install_baseline(mode)
            for six in traffic:
                results[mode, six] = measure(mode, args, six)
    print(common.table(f"datapath, {rule_base(args)} x {args.ifaces} interfaces ({flows:,} "
                       f"flows), {args.connections:,} warm + {args.cold:,} cold connections, "
                       f"iperf3 {args.seconds} s ({common.scale_name()})",
                       HEADER, rows(results)))
    for six in traffic:
        made = sum(results["pipeline", six][k]["ok"] for k in ("warm", "cold"))
        print(f"SYNs classified by {ALLOW_RULES[six]}: {syns[six]:,} for {made:,} "
              f"{'IPv6' if six else 'IPv4'} connections + 2 of iperf3 (control, data)")


if __name__ == "__main__":
    common.run_main(main)
