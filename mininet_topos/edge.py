"""The example edge: one OVS userspace bridge routing between an external ECMP
router, a server and a bump-in-the-wire service node.

    cli --- ext ==(up1, up2: ECMP)== [ edge ] --- down1 --- srv
                                       |   |
                                     bwa   bwb
                                       |   |
                                      bw (br0)

Command line:
    mn --custom mininet_topos/edge.py --topo edge \
       --switch ovs,datapath=user --controller remote,port=6653

From Python (tests, demo): ``start_edge()`` / ``stop_edge()``.

Every host configures itself in ``config()`` (IPv4 and IPv6 addresses, tx
offload off, ext's ECMP routing, bw's bridge and counters), and the topology names its
own switch class (userspace datapath, fail-secure, OpenFlow 1.3 whatever
``--switch`` says), so both ways give the same network.  The names and addresses are the ones the controller's default config
uses; change them together.

Dual stack: every address of the IPv4 plan has an IPv6 twin (SwitchPort.ip6,
router_ip6, CLI_LINK6).  IPv6 is on but quiet: no DAD, no router solicitation,
no RA, and the hosts' own MLD reports, router solicitations and redirects are
dropped on output (table ip6 quiet), so the only IPv6 a host sends unasked is
neighbour discovery for an address it talks to.

Neighbor entries: hosts get NO permanent entries for the router's addresses by
default.  The router answers ARP and IPv6 neighbour solicitations in the
datapath, and a permanent entry would hide a broken ARP or ND stage from the
integration tests; ``start_edge(static_neighbors=True)`` adds them (both
families) for debugging other stages.

This file is also exec'd on its own by ``mn --custom``: keep it self-contained
(no package-relative imports), and remember that mn copies every module-level
name into its own globals (never reuse mn's names: HOSTS, TOPOS, SWITCHES...).
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, NamedTuple

from mininet.net import Mininet
from mininet.node import Host, OVSSwitch, RemoteController
from mininet.topo import Topo

BRIDGE = "edge"
DPID = "0000000000000001"
SERVER_NET = "10.10.0.0/24"
SRV_IP = "10.10.0.10"
CLI_IP = "198.51.100.10"
SERVER_NET6 = "2001:db8:10::/64"
SRV_IP6 = "2001:db8:10::10"
CLI_IP6 = "2001:db8:5100::10"
HOST_NAMES = ("ext", "srv", "bw", "cli")
NFT_TABLE = "biw"  # bridge-family table in bw: counters "from_a" and "from_b"


class SwitchPort(NamedTuple):
    """One bridge port and the host interface at the other end of its veth."""
    port: str                # OVS port name (switch-side veth, root namespace)
    ofport: int              # requested OpenFlow port number
    host: str
    intf: str                # host-side interface name
    ip: str | None           # host-side address, CIDR
    mac: str                 # host-side MAC
    router_ip: str | None    # the router's address on this port (datapath only)
    router_mac: str          # the router's MAC on this port (datapath only)
    ip6: str | None = None         # host-side IPv6 address, CIDR
    router_ip6: str | None = None  # the router's IPv6 address on this port (datapath only)


PORTS = (
    SwitchPort("up1", 1, "ext", "ext-up1", "10.0.1.2/24", "02:00:00:00:01:02",
               "10.0.1.1", "02:00:00:00:01:01", "2001:db8:1::2/64", "2001:db8:1::1"),
    SwitchPort("up2", 2, "ext", "ext-up2", "10.0.2.2/24", "02:00:00:00:02:02",
               "10.0.2.1", "02:00:00:00:02:01", "2001:db8:2::2/64", "2001:db8:2::1"),
    SwitchPort("down1", 3, "srv", "srv-eth0", "10.10.0.10/24", "02:00:00:00:10:0a",
               "10.10.0.1", "02:00:00:00:10:01", "2001:db8:10::10/64", "2001:db8:10::1"),
    SwitchPort("bwa", 4, "bw", "bw-a", None, "02:00:00:00:a0:02",
               None, "02:00:00:00:a0:01"),
    SwitchPort("bwb", 5, "bw", "bw-b", None, "02:00:00:00:b0:02",
               None, "02:00:00:00:b0:01"),
)
PORT = {p.port: p for p in PORTS}
# ext's table that pins one connection to an uplink (see lab.move_connection); the
# same numbers in both families.
UPLINK_TABLE = {"up1": 101, "up2": 100}
# The cli <-> ext link is host to host and never touches the bridge.
CLI_LINK = (("cli", "cli-eth0", "198.51.100.10/24", "02:00:00:00:c0:0a"),
            ("ext", "ext-cli", "198.51.100.1/24", "02:00:00:00:c0:01"))
CLI_LINK6 = {"cli-eth0": "2001:db8:5100::10/64", "ext-cli": "2001:db8:5100::1/64"}


class Footprint(NamedTuple):
    """What a topology creates, so that a crashed run can be cleaned up
    without touching anything else on the machine."""
    hosts: tuple[str, ...]        # Mininet host names
    host_intfs: frozenset[str]    # interfaces inside the host namespaces
    bridges: tuple[str, ...]      # OVS bridges (a netdev bridge is also a tap)
    links: tuple[str, ...]        # root-namespace veths


EDGE_FOOTPRINT = Footprint(
    HOST_NAMES, frozenset([p.intf for p in PORTS] + [intf for _h, intf, _ip, _mac in CLI_LINK]),
    (BRIDGE,), tuple(p.port for p in PORTS))


def family(address: str) -> int:
    """4 or 6: the IP version of an address or prefix."""
    return ipaddress.ip_interface(address).version


def host_ip6(host: str) -> dict[str, str]:
    """The IPv6 addresses (interface -> CIDR) the edge plan gives ``host``."""
    addrs = {p.intf: p.ip6 for p in PORTS if p.host == host and p.ip6}
    links = {i: CLI_LINK6[i] for h, i, _ip, _mac in CLI_LINK if h == host}
    return {**addrs, **links}


def switch_side_mac(ofport: int, bridge: int = 0) -> str:
    """MAC of the switch-side veth: deliberately NOT the router MAC, so the root
    namespace kernel treats frames sent to the router as not-for-me.  Other
    bridges of a larger topology pass their own ``bridge`` number."""
    return "02:00:00:ee:%02x:%02x" % (bridge, ofport)


# ---------------------------------------------------------------- commands

def run(host: Host, *argv: str, stdin: str | None = None, check: bool = True) -> str:
    """Run argv in host's namespace and return stdout; unlike Host.cmd() it
    raises on failure, so a bad setup step cannot pass silently."""
    proc = host.popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(stdin, timeout=30)
    if check and proc.returncode:
        raise RuntimeError(f"{host.name}: {' '.join(argv)} -> rc {proc.returncode}: {err.strip()}")
    return out


def sh(*argv: str, check: bool = True) -> str:
    """Run argv in the root namespace; raise with stderr on failure."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} -> rc {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


# ------------------------------------------------------------------ nodes

# Source ports tests choose themselves (to steer ECMP), kept out of the hosts' ephemeral
# range: a closed connection from an ephemeral port sits in TIME_WAIT without
# SO_REUSEADDR, and binding that port again fails at once (EADDRINUSE).
TEST_SPORTS = range(40000, 42000)


# What a quiet IPv6 host never sends unasked: MLD reports (nothing here snoops
# multicast), router solicitations and redirects.  Neighbour discovery stays (the
# router answers it in the datapath).  MLD carries a hop-by-hop header; nftables
# finds the ICMPv6 header behind it.
QUIET_IP6 = """
table ip6 quiet {
    chain out {
        type filter hook output priority filter; policy accept;
        icmpv6 type { mld-listener-report, mld-listener-done, mld2-listener-report,
                      nd-router-solicit, nd-redirect } counter drop
    }
}
"""
# Per-interface IPv6 settings of a quiet host: static addresses only, no DAD delay.
QUIET_IP6_CONF = {"disable_ipv6": 0, "accept_dad": 0, "dad_transmits": 0, "accept_ra": 0,
                  "autoconf": 0, "router_solicitations": 0}


class EdgeHost(Host):
    """A namespace host fit for a userspace OVS datapath: IPv6 quiet before any
    interface exists (QUIET_IP6), tx checksum offload off on every interface
    (else TCP through a netdev bridge carries bad checksums), and the test source
    ports reserved.

    Parameters beside Mininet's: ``ip6`` {interface: IPv6 CIDR}, ``route6`` the
    IPv6 default gateway, ``mtu`` for every interface.  A class with ``ipv6 =
    False`` (a transparent node) keeps IPv6 off on all its interfaces instead."""

    ipv6 = True

    def __init__(self, name: str, **params) -> None:
        super().__init__(name, **params)
        self.ip6: dict[str, str] = {}
        # Interfaces created later inherit "default"; "all" covers lo.
        conf = QUIET_IP6_CONF if self.ipv6 else {"disable_ipv6": 1}
        run(self, "sysctl", "-qw", *(f"net.ipv6.conf.{scope}.{key}={value}"
                                     for scope in ("all", "default")
                                     for key, value in conf.items()))
        if self.ipv6:
            run(self, "nft", "-f", "-", stdin=QUIET_IP6)

    def config(self, mtu: int | None = None, ip6: dict[str, str] | None = None,
               route6: str | None = None, **params):
        """``mtu``: for every interface (room for a tunnel header on a path
        that crosses one)."""
        result = super().config(**params)
        run(self, "sysctl", "-qw",
            f"net.ipv4.ip_local_reserved_ports={TEST_SPORTS.start}-{TEST_SPORTS.stop - 1}")
        for intf in self.intfNames():
            if intf != "lo":
                run(self, "ethtool", "-K", intf, "tx", "off")
                if mtu:
                    run(self, "ip", "link", "set", intf, "mtu", str(mtu))
        for intf, cidr in (ip6 or {}).items():
            self.add_ip6(intf, cidr)
        if route6:
            run(self, "ip", "-6", "route", "replace", "default", "via", route6)
        return result

    def add_ip6(self, intf: str, cidr: str) -> None:
        """A static IPv6 address, usable at once (no DAD)."""
        run(self, "ip", "-6", "addr", "add", cidr, "dev", intf, "nodad")
        self.ip6[intf] = cidr


# ext's probe port for IPv6 (lab.predict_uplinks).  `ip -6 route get` has no packet to
# hash, and the kernel's policy-3 hash of a flow without a packet is not the one of its
# packets (measured: the next hops disagree for half the ports; IPv4's `ip route get`
# builds a packet and agrees).  So ext routes crafted first packets that enter
# PROBE_RX like real ones, records (uplink interface, source port) in the set "seen"
# of table ip6 PROBE_TABLE, and drops them before they leave.
PROBE_TX, PROBE_RX, PROBE_RX_MAC = "probe-tx", "probe-rx", "02:00:00:00:ee:fe"
PROBE_TABLE = "probe"


class ExtRouter(EdgeHost):
    """The external router: ECMP over both uplinks with a deterministic L4
    hash, plus one table per uplink to pin a single connection to it.  The
    same for IPv6, with a probe port, when the topology gives ext IPv6 addresses
    (the tenants' topology does not)."""

    # Hash on addresses, protocol and ports: 0x37 leaves out only the IPv6 flow label,
    # which a socket changes when it re-rolls its hash (a connection would move).
    HASH = ("fib_multipath_hash_policy=3", "fib_multipath_hash_fields=0x37")

    def config(self, **params):
        result = super().config(**params)
        run(self, "sysctl", "-qw", "net.ipv4.ip_forward=1",
            *(f"net.ipv4.{h}" for h in self.HASH),
            *(f"net.ipv4.conf.{i}.rp_filter=0"
              for i in ("all", "default", *self.intfNames())))
        self.uplink_routes(SERVER_NET)
        if self.ip6:
            # Forwarding on also keeps neighbour reachability out of the IPv6 ECMP
            # choice (a host that does not forward avoids a next hop it cannot resolve).
            run(self, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1",
                *(f"net.ipv6.{h}" for h in self.HASH))
            self.uplink_routes(SERVER_NET6)
            self.add_probe_port()
        return result

    def add_probe_port(self) -> None:
        """The veth pair PROBE_TX -> PROBE_RX and the table that records and drops
        what PROBE_RX receives (PROBE_TX only sends raw frames: no IPv6 of its own)."""
        run(self, "ip", "link", "add", PROBE_TX, "type", "veth", "peer", "name", PROBE_RX,
            "address", PROBE_RX_MAC)
        run(self, "sysctl", "-qw", f"net.ipv6.conf.{PROBE_TX}.disable_ipv6=1")
        for intf in (PROBE_TX, PROBE_RX):
            run(self, "ip", "link", "set", intf, "up")
        run(self, "nft", "-f", "-", stdin=f"""
table ip6 {PROBE_TABLE} {{
    set seen {{ type ifname . inet_service; flags dynamic; }}
    chain probe {{
        type filter hook forward priority filter; policy accept;
        iifname "{PROBE_RX}" add @seen {{ oifname . th sport }} drop
    }}
}}
""")

    def uplink_routes(self, prefix: str) -> None:
        """``prefix`` over both uplinks (ECMP), and over each one in its UPLINK_TABLE."""
        version = family(prefix)
        run(self, "ip", "route", "replace", prefix, *uplink_nexthops(("up1", "up2"), version))
        for name, table in UPLINK_TABLE.items():
            run(self, "ip", "route", "replace", prefix, *uplink_nexthops((name,), version),
                "table", str(table))


def uplink_nexthops(uplinks: tuple[str, ...], version: int = 4) -> list[str]:
    """The next-hop words of an ``ip route`` over these uplinks (ECMP when more than
    one), toward the router's address of that IP version."""
    hops = [(PORT[u].router_ip if version == 4 else PORT[u].router_ip6, PORT[u].intf)
            for u in uplinks]
    if len(hops) == 1:
        return ["via", hops[0][0], "dev", hops[0][1]]
    return [word for ip, dev in hops for word in ("nexthop", "via", ip, "dev", dev)]


class BiwNode(EdgeHost):
    """A transparent bump-in-the-wire: a Linux bridge between <name>-a and
    <name>-b (bw-a and bw-b for bw), passing both IP versions,
    with nftables counters telling the two directions apart.  Data traffic only:
    every IPv4 packet but the controller's liveness probes (UDP to 169.254.255.1),
    and IPv6 TCP, UDP and echo (not the neighbour discovery and MLD around them).
    The node itself has no address and keeps IPv6 off: it sends nothing."""

    ipv6 = False

    def ruleset(self) -> str:
        return f"""
table bridge {NFT_TABLE} {{
    counter from_a {{ }}
    counter from_b {{ }}
    chain count {{
        type filter hook prerouting priority filter; policy accept;
        ip daddr 169.254.255.1 udp dport 47474 accept
        ether type ip jump data
        ether type ip6 meta l4proto {{ tcp, udp }} jump data
        ether type ip6 icmpv6 type {{ echo-request, echo-reply }} jump data
    }}
    chain data {{
        iifname "{self.name}-a" counter name "from_a"
        iifname "{self.name}-b" counter name "from_b"
    }}
}}
"""

    def config(self, **params):
        result = super().config(**params)
        run(self, "ip", "link", "add", "br0", "type", "bridge", "stp_state", "0",
            "forward_delay", "0", "mcast_snooping", "0")
        for intf in (f"{self.name}-a", f"{self.name}-b"):
            run(self, "ip", "link", "set", intf, "master", "br0", "up")
        run(self, "ip", "link", "set", "br0", "up")
        run(self, "ethtool", "-K", "br0", "tx", "off")
        # A bridged packet must not go through this namespace's iptables.
        for family in ("iptables", "ip6tables", "arptables"):
            run(self, "sysctl", "-qw", f"net.bridge.bridge-nf-call-{family}=0", check=False)
        run(self, "nft", "-f", "-", stdin=self.ruleset())
        return result

    NAT_NEIGHBOR_MAC = "02:00:00:00:99:99"

    def start_nat(self, rules: str, hook: str, restored: tuple[str, ...]) -> None:
        """Make the bridge a NAT: bridged IPv4 goes through nftables (br_netfilter),
        ``rules`` in a nat chain at ``hook`` (table ip si_nat).  A packet whose
        destination the NAT changes is bridged toward a neighbour the bridge resolves: a
        static one for each address in ``restored`` (the router ignores the destination
        MAC of what a node returns), on a route through the bridge."""
        priority = {"prerouting": "dstnat", "postrouting": "srcnat"}[hook]
        for key, value in (("net.bridge.bridge-nf-call-iptables", 1),
                           ("net.ipv4.ip_forward", 1), ("net.ipv4.conf.all.rp_filter", 0),
                           ("net.ipv4.conf.br0.rp_filter", 0)):
            run(self, "sysctl", "-qw", f"{key}={value}")
        for ip in restored:
            run(self, "ip", "route", "replace", f"{ip}/32", "dev", "br0")
            run(self, "ip", "neigh", "replace", ip, "lladdr", self.NAT_NEIGHBOR_MAC,
                "dev", "br0", "nud", "permanent")
        run(self, "nft", "-f", "-", stdin=f"""
table ip si_nat {{
    chain nat {{
        type nat hook {hook} priority {priority}; policy accept;
        {rules}
    }}
}}
""")

    def stop_nat(self, restored: tuple[str, ...]) -> None:
        run(self, "nft", "delete", "table", "ip", "si_nat", check=False)
        for ip in restored:
            run(self, "ip", "route", "del", f"{ip}/32", "dev", "br0", check=False)
            run(self, "ip", "neigh", "del", ip, "dev", "br0", check=False)
        run(self, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0")

    def nat_first_packets(self) -> int:
        """Packets the NAT rules counted: each connection's first (nat chains see no
        other)."""
        out = run(self, "nft", "list", "table", "ip", "si_nat")
        return sum(int(n) for n in re.findall(r"counter packets (\d+)", out))


class EdgeSwitch(OVSSwitch):
    """The router bridge: userspace datapath, no forwarding without the
    controller, OpenFlow 1.3 only."""

    def __init__(self, name: str, datapath: str = "user", failMode: str = "secure",
                 protocols: str = "OpenFlow13", **params) -> None:
        super().__init__(name, datapath=datapath, failMode=failMode,
                         protocols=protocols, **params)

    def start(self, controllers) -> None:
        harden_switch_ports([i for i in self.intfNames() if i != "lo"])
        super().start(controllers)


def harden_switch_ports(names: list[str]) -> None:
    """The switch-side veths live in the root namespace, whose kernel also
    sees every frame: make it silent (no IPv6, no ARP replies) and make sure
    it never routes a packet that only the datapath should handle."""
    for name in names:
        sh("ethtool", "-K", name, "tx", "off")
        for path, value in ((f"ipv6/conf/{name}/disable_ipv6", "1"),
                            (f"ipv4/conf/{name}/forwarding", "0"),
                            (f"ipv4/conf/{name}/arp_ignore", "8")):
            Path("/proc/sys/net", path).write_text(value)


class EdgeTopo(Topo):
    """Bridge ``edge`` with ports up1, up2 (to ext), down1 (to srv), bwa, bwb
    (to bw), OpenFlow port numbers 1..5 in that order; cli hangs off ext."""

    def build(self, **_opts) -> None:
        self.addSwitch(BRIDGE, cls=EdgeSwitch, dpid=DPID)
        self.addHost("ext", cls=ExtRouter, ip=None, mac=None, ip6=host_ip6("ext"))
        self.addHost("srv", cls=EdgeHost, ip=None, mac=None, defaultRoute="via 10.10.0.1",
                     ip6=host_ip6("srv"), route6=PORT["down1"].router_ip6)
        self.addHost("bw", cls=BiwNode, ip=None, mac=None)
        self.addHost("cli", cls=EdgeHost, ip=None, mac=None, defaultRoute="via 198.51.100.1",
                     ip6=host_ip6("cli"), route6=CLI_LINK6["ext-cli"].split("/")[0])
        for p in PORTS:
            self.addLink(BRIDGE, p.host, port1=p.ofport, intfName1=p.port, intfName2=p.intf,
                         addr1=switch_side_mac(p.ofport), addr2=p.mac,
                         params2={"ip": p.ip} if p.ip else {})
        (h1, i1, ip1, mac1), (h2, i2, ip2, mac2) = CLI_LINK
        self.addLink(h1, h2, intfName1=i1, intfName2=i2, addr1=mac1, addr2=mac2,
                     params1={"ip": ip1}, params2={"ip": ip2})


topos = {"edge": EdgeTopo}


# -------------------------------------------------------------- lifecycle

def start_edge(controller_port: int = 6653, controller_ip: str = "127.0.0.1",
               static_neighbors: bool = False) -> Mininet:
    """Build and start the edge network, check the port numbering the
    controller relies on, and return the running net."""
    def ready(net: Mininet) -> None:
        check_ofports({p.port: p.ofport for p in PORTS})
        if static_neighbors:
            add_static_neighbors(net)
    return start_net(EdgeTopo(), EDGE_FOOTPRINT, ready, controller_port, controller_ip)


def stop_edge(net: Mininet) -> None:
    """Stop the edge net and remove what it left."""
    stop_net(net, EDGE_FOOTPRINT)


def start_net(topo: Topo, footprint: Footprint, ready: Callable[[Mininet], None],
              controller_port: int, controller_ip: str) -> Mininet:
    """Clean what a crashed run left, build and start ``topo`` with one
    remote controller, then run ``ready`` (checks, extra setup); a failure
    anywhere stops the net again.  Shared by the edge and larger topologies."""
    if os.geteuid() != 0:
        raise PermissionError("the edge network needs root (namespaces, veths, OVS)")
    cleanup_leftovers(footprint)
    # Skip Mininet's fixLimits(): a few hosts need no raised host-wide
    # sysctls, and the machine's own settings stay untouched.
    Mininet.inited = True
    net = Mininet(topo=topo, controller=None, build=False, autoSetMacs=False)
    net.addController("c0", controller=RemoteController, ip=controller_ip,
                      port=controller_port)
    try:
        net.build()
        net.start()
        ready(net)
    except BaseException:
        stop_net(net, footprint)
        raise
    return net


def stop_net(net: Mininet, footprint: Footprint) -> None:
    """Stop the net, first killing what tests started inside the hosts (a
    leftover process would keep its namespace and veths alive)."""
    for host in net.hosts:
        if host.shell is not None:
            kill_pids([pid for pid in netns_pids(host.pid) if pid != host.pid])
    try:
        net.stop()
    finally:
        cleanup_leftovers(footprint)


def check_ofports(expected: dict[str, int]) -> None:
    """Each port (name -> ofport) got the number the controller's config and the tests
    rely on (up1..bwb are 1..5 here)."""
    for port, ofport in expected.items():
        got = sh("ovs-vsctl", "get", "Interface", port, "ofport").strip()
        if got != str(ofport):
            raise RuntimeError(f"port {port} got ofport {got}, expected {ofport}")


def add_static_neighbors(net: Mininet) -> None:
    """Permanent neighbor entries for the router's addresses, both families (debug aid)."""
    for p in PORTS:
        for router_ip in (p.router_ip, p.router_ip6):
            if router_ip:
                run(net[p.host], "ip", "neigh", "replace", router_ip, "lladdr",
                    p.router_mac, "dev", p.intf, "nud", "permanent")


def biw_counters(net: Mininet, node: str = "bw") -> tuple[int, int]:
    """Data packets (IPv4 and IPv6, see BiwNode) that entered a BiwNode on its -a
    side (forward) and on its -b side (reverse)."""
    counters = nft_counters(net[node], "bridge", NFT_TABLE)
    return counters["from_a"], counters["from_b"]


def nft_counters(host: Host, family: str, table: str) -> dict[str, int]:
    """Packets of each named counter of one nftables table in host."""
    data = json.loads(run(host, "nft", "-j", "list", "table", family, table))
    return {item["counter"]["name"]: item["counter"]["packets"]
            for item in data["nftables"] if "counter" in item}


# --------------------------------------------------------------- cleanup

def netns_pids(pid: int) -> list[int]:
    """Every process sharing pid's network namespace."""
    try:
        target = os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "net") == target:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def kill_pids(pids: list[int], grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL whatever is still there after grace seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
            time.sleep(0.05)
        if not pids:
            return


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def host_shells(hosts: tuple[str, ...] = HOST_NAMES) -> dict[int, int]:
    """Mininet shells of these hosts: {pid: parent pid}."""
    names = {f"mininet:{h}" for h in hosts}
    shells = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if argv[0].endswith(b"bash") and argv[-2:-1] and argv[-2].decode() in names:
            shells[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return shells


def _is_python(pid: int) -> bool:
    try:
        return "python" in os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False


def cleanup_leftovers(footprint: Footprint = EDGE_FOOTPRINT) -> None:
    """Remove what a crashed run of a topology left (processes in its host
    namespaces, its bridges, its veths).  Unlike ``mn -c`` it leaves other
    bridges, Mininet nets and controllers on the machine alone, and it
    refuses to touch a net whose Python process is still running."""
    live = sorted(pid for pid, parent in host_shells(footprint.hosts).items()
                  if parent != os.getpid() and _is_python(parent))
    if live:
        raise RuntimeError(f"an edge topology is running (host shells {live}); stop it first")
    kill_pids(topology_netns_pids(footprint.host_intfs), grace=1.0)
    for bridge in footprint.bridges:
        sh("ovs-vsctl", "--timeout=10", "--if-exists", "del-br", bridge)
    for name in footprint.links + footprint.bridges:
        if _link_kind(name) in ("veth", "tun"):
            sh("ip", "link", "del", name, check=False)


def topology_netns_pids(ours: frozenset[str] = EDGE_FOOTPRINT.host_intfs) -> list[int]:
    """Processes in a network namespace holding one of these host
    interfaces (an orphaned server keeps such a namespace alive)."""
    here = os.readlink("/proc/self/ns/net")
    by_ns: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ns = os.readlink(entry / "ns" / "net")
            except OSError:
                continue
            if ns != here:
                by_ns.setdefault(ns, []).append(int(entry.name))
    found = []
    for pids in by_ns.values():
        try:
            lines = Path(f"/proc/{pids[0]}/net/dev").read_text().splitlines()[2:]
        except OSError:
            continue
        if ours & {line.split(":", 1)[0].strip() for line in lines}:
            found += pids
    return found


def _link_kind(name: str) -> str | None:
    """Kind of a root-namespace link (veth, tun...) or None if absent."""
    proc = subprocess.run(["ip", "-d", "-j", "link", "show", "dev", name],
                          capture_output=True, text=True)
    if proc.returncode:
        return None
    info = json.loads(proc.stdout)[0].get("linkinfo", {})
    return info.get("info_kind")
