"""The edge topology plus what the three transports need: a service plane
with chain nodes, an L3 service node behind a VXLAN VTI, and a remote network
behind a second VTI (the names of ryu_si/examples/three_transports.yaml).

    cli --- ext ==(up1, up2)== [ edge ] --- down1 --- srv
                  bwa, bwb --- /  |  \\ --- vti1, vti2: VXLAN 100, 200 (userspace)
                     bw          svc        carried by ul, from 192.168.200.1
                                  |  patch
                                 rtr
    cn1..cn4 (cnNa, cnNb), cn5 --[ sp ]       [ ul ] --- l3n   192.168.200.2
                                                     --- rnet  192.168.200.3

* ``sp``: the service plane bridge (dpid 2, same controller as ``edge``).
  cn1..cn4 are NSH-unaware transparent nodes (edge.BiwNode: cnN-a <-> cnNa,
  cnN-b <-> cnNb); cn5 runs ``nsh_sf.py``, an NSH-aware service function.
* ``ul``: the underlay, a standalone learning bridge without a controller
  whose internal port has 192.168.200.1 in the root namespace: OVS's
  userspace tunnel code routes and ARPs through it (no kernel tunnel device).
* ``l3n``: an L3 service node that routes what comes out of its tunnel back
  into it (nftables counters per direction); ``rnet``: a network whose client
  address 203.0.113.10 sits behind the router's ``vti2``.
* Dual stack like edge.py: each VTI has an IPv6 /64 beside its IPv4 /30
  (Vti.ip6, router_ip6), l3n routes both families back, rnet's client has
  2001:db8:cb00::10 too.  The chain nodes and cn5 are L2 nodes without IPv6 of
  their own; the underlay stays IPv4.
* MTU: the tunnels' inner MTU is 1450, and so is srv's (every TCP connection
  that crosses a VTI ends at srv; its MSS keeps both directions in the tunnel).

Command line (hosts and switches configure themselves, as in edge.py):
    PYTHONPATH=. mn --custom mininet_topos/service_plane.py --topo service_plane \\
       --controller remote,port=6653

From Python: ``start_full()`` / ``stop_full()``.  OVS resolves a tunnel's
underlay neighbour only from an ARP reply it sees, so ``start_full()`` has the
root namespace ask for both tunnel hosts: the first packet through a VTI is
not lost to an ARP miss.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from mininet.net import Mininet
from mininet.node import OVSSwitch
from mininet.util import errRun

from mininet_topos import edge
from mininet_topos.edge import run, sh

SP_BRIDGE, SP_DPID = "sp", "0000000000000002"
UL_BRIDGE, UL_DPID = "ul", "00000000000000c8"   # no controller: the dpid is only a label
UL_IP = "192.168.200.1"
UL_PREFIX = 24
VXLAN_PORT = 4789
TUNNEL_MTU = 1450               # 1500 on the underlay minus VXLAN over IPv4 (50 bytes)
SVC, RTR = "svc", "rtr"         # patch pair: edge port svc <-> sp port rtr
CHAIN_NODES = ("cn1", "cn2", "cn3", "cn4")
SF_NODE = "cn5"
SF_DIR = Path(tempfile.gettempdir(), "ryu-si-cn5")   # nsh_sf's stats and log
SF_SCRIPT = Path(edge.__file__).with_name("nsh_sf.py")
_VENV_PYTHON = Path(edge.__file__).resolve().parents[1] / ".venv" / "bin" / "python"
SF_PYTHON = str(_VENV_PYTHON) if _VENV_PYTHON.exists() else sys.executable  # needs scapy
L3_TABLE = "l3n"                # ip and ip6 tables in l3n: counters to_servers, to_clients
CLIENT_NET = "198.51.100.0/24"
REMOTE_CLIENT_IP = "203.0.113.10"
CLIENT_NET6 = "2001:db8:5100::/64"
REMOTE_NET6 = "2001:db8:cb00::/64"
REMOTE_CLIENT_IP6 = "2001:db8:cb00::10"


class HostPort(NamedTuple):
    """A port of sp or ul and the host interface at the other end of its veth."""
    port: str                # OVS port name (switch-side veth, root namespace)
    ofport: int
    host: str
    intf: str                # host-side interface name
    mac: str                 # host-side MAC
    ip: str | None = None    # host-side address, CIDR

    @property
    def address(self) -> str:
        """The host-side address without its prefix length."""
        return str(self.ip).split("/")[0]


class Vti(NamedTuple):
    """A VXLAN port of the router and the Linux tunnel end (vxlan0) in a host."""
    port: str                # OVS port on edge
    ofport: int
    key: int                 # VNI
    host: str
    mac: str                 # vxlan0's MAC
    ip: str                  # vxlan0's address, CIDR
    router_ip: str           # the router's address on this VTI (datapath only)
    router_mac: str
    ip6: str                 # vxlan0's IPv6 address, CIDR
    router_ip6: str          # the router's IPv6 address on this VTI (datapath only)


def _chain_ports() -> tuple[HostPort, ...]:
    """cnNa/cnNb on sp ports 2N and 2N+1 (N = 1..4)."""
    return tuple(HostPort(f"{node}{side}", 2 * n + k, node, f"{node}-{side}",
                          f"02:00:00:5c:{n:02x}:0{side}")
                 for n, node in enumerate(CHAIN_NODES, start=1) for k, side in enumerate("ab"))


SF_PORT = HostPort(SF_NODE, 10, SF_NODE, "cn5-eth0", "02:00:00:5c:05:01")
# A second bump-in-the-wire node on the router bridge (the policy pair fw1 + fw2).
BIW2_NODE = "bw2"
BIW2_PORTS = (HostPort("bw2a", 9, BIW2_NODE, "bw2-a", "02:00:00:00:a2:02"),
              HostPort("bw2b", 10, BIW2_NODE, "bw2-b", "02:00:00:00:b2:02"))
SP_PORTS = (*_chain_ports(), SF_PORT)
UL_PORTS = (HostPort("ul-l3n", 1, "l3n", "l3n-eth0", "02:00:00:00:c8:02", "192.168.200.2/24"),
            HostPort("ul-rnet", 2, "rnet", "rnet-eth0", "02:00:00:00:c8:03", "192.168.200.3/24"))
UNDERLAY = {p.host: p for p in UL_PORTS}
VTIS = (Vti("vti1", 7, 100, "l3n", "02:00:00:00:d0:02", "169.254.10.2/30",
            "169.254.10.1", "02:00:00:00:d0:01", "2001:db8:d0::2/64", "2001:db8:d0::1"),
        Vti("vti2", 8, 200, "rnet", "02:00:00:00:d1:02", "169.254.20.2/30",
            "169.254.20.1", "02:00:00:00:d1:01", "2001:db8:d1::2/64", "2001:db8:d1::1"))
VTI = {v.port: v for v in VTIS}
VTI_OF_HOST = {v.host: v for v in VTIS}
SVC_OFPORT, RTR_OFPORT = 6, 1
# OpenFlow port numbers the controller and the tests rely on (checked at start).
OFPORTS = {
    edge.BRIDGE: {**{p.port: p.ofport for p in edge.PORTS}, SVC: SVC_OFPORT,
                  **{v.port: v.ofport for v in VTIS}, **{p.port: p.ofport for p in BIW2_PORTS}},
    SP_BRIDGE: {RTR: RTR_OFPORT, **{p.port: p.ofport for p in SP_PORTS}},
}
SP_HOSTS = (*CHAIN_NODES, SF_NODE, "l3n", "rnet", BIW2_NODE)
FOOTPRINT = edge.Footprint(
    edge.HOST_NAMES + SP_HOSTS,
    edge.EDGE_FOOTPRINT.host_intfs | {p.intf for p in SP_PORTS + UL_PORTS + BIW2_PORTS},
    (edge.BRIDGE, SP_BRIDGE, UL_BRIDGE),
    edge.EDGE_FOOTPRINT.links + tuple(p.port for p in SP_PORTS + UL_PORTS + BIW2_PORTS))


# ---------------------------------------------------------------- switches

class NonVethPort(NamedTuple):
    """A patch or tunnel port: no veth, so Mininet's links cannot make it."""
    name: str
    ofport: int
    type: str
    options: dict[str, str]

    def vsctl(self, bridge: str) -> str:
        opts = "".join(f" options:{k}={v}" for k, v in self.options.items())
        return (f" -- add-port {bridge} {self.name} -- set Interface {self.name}"
                f" type={self.type}{opts} ofport_request={self.ofport}")


ROUTER_EXTRA_PORTS = (
    NonVethPort(SVC, SVC_OFPORT, "patch", {"peer": RTR}),
    *(NonVethPort(v.port, v.ofport, "vxlan",
                  {"remote_ip": UNDERLAY[v.host].address, "key": str(v.key)})
      for v in VTIS))
SP_EXTRA_PORTS = (NonVethPort(RTR, RTR_OFPORT, "patch", {"peer": SVC}),)


class PlaneSwitch(edge.EdgeSwitch):
    """An EdgeSwitch with patch/tunnel ports, created in the same ovs-vsctl
    transaction as the bridge: the controller's first view of the switch
    (features reply) already has them."""

    def __init__(self, name: str, extra_ports: tuple[NonVethPort, ...] = (), **params) -> None:
        super().__init__(name, **params)
        self.extra_ports = extra_ports

    def bridgeOpts(self) -> str:
        return super().bridgeOpts() + "".join(p.vsctl(self.name) for p in self.extra_ports)


class UnderlaySwitch(OVSSwitch):
    """A plain learning bridge (standalone, NORMAL, no controller) whose
    internal port holds the tunnel source address in the root namespace."""

    def __init__(self, name: str, **params) -> None:
        super().__init__(name, datapath="user", failMode="standalone", **params)

    def start(self, controllers) -> None:
        edge.harden_switch_ports([i for i in self.intfNames() if i != "lo"])
        super().start([])

    @classmethod
    def batchStartup(cls, switches, run=errRun):
        """Mininet creates the bridges here (start() only queues the command):
        only now does the internal port exist to get the address."""
        started = super().batchStartup(switches, run)
        for switch in started:
            Path(f"/proc/sys/net/ipv6/conf/{switch.name}/disable_ipv6").write_text("1")
            sh("ip", "addr", "replace", f"{UL_IP}/{UL_PREFIX}", "dev", switch.name)
            sh("ip", "link", "set", switch.name, "up")
        return started


# ------------------------------------------------------------------- hosts

class TunnelHost(edge.EdgeHost):
    """The Linux end of one VTI: vxlan0 over the host's underlay interface."""

    @property
    def vti(self) -> Vti:
        return VTI_OF_HOST[self.name]

    def config(self, **params):
        result = super().config(**params)
        vti = self.vti
        run(self, "ip", "link", "add", "vxlan0", "address", vti.mac, "mtu", str(TUNNEL_MTU),
            "type", "vxlan", "id", str(vti.key), "remote", UL_IP,
            "local", UNDERLAY[self.name].address, "dstport", str(VXLAN_PORT))
        run(self, "ip", "addr", "add", vti.ip, "dev", "vxlan0")
        run(self, "ip", "link", "set", "vxlan0", "up")
        run(self, "ethtool", "-K", "vxlan0", "tx", "off")
        self.add_ip6("vxlan0", vti.ip6)
        return result


def l3_ruleset(table_family: str, servers: str, clients: str) -> str:
    """l3n's counters for one IP version, in the forward hook (what it routes)."""
    return f"""
table {table_family} {L3_TABLE} {{
    counter to_servers {{ }}
    counter to_clients {{ }}
    chain count {{
        type filter hook forward priority filter; policy accept;
        {table_family} daddr {servers} counter name "to_servers"
        {table_family} daddr {clients} counter name "to_clients"
    }}
}}
"""


class L3Node(TunnelHost):
    """An L3 service node: routes everything from the tunnel back into it
    (default routes via the router's VTI addresses), counting per direction
    in the forward hook, in one table per IP version (``ip l3n``, ``ip6 l3n``;
    IPv6's clients are cli's net and rnet's, IPv4's cli's net only, as before)."""

    RULESET = (l3_ruleset("ip", edge.SERVER_NET, CLIENT_NET)
               + l3_ruleset("ip6", edge.SERVER_NET6, f"{{ {CLIENT_NET6}, {REMOTE_NET6} }}"))

    def config(self, **params):
        result = super().config(**params)
        run(self, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
            *(f"net.ipv4.conf.{i}.rp_filter=0" for i in ("all", "default", "vxlan0")))
        for router_ip in (self.vti.router_ip, self.vti.router_ip6):
            run(self, "ip", f"-{edge.family(router_ip)}", "route", "replace", "default",
                "via", router_ip, "dev", "vxlan0")
        run(self, "nft", "-f", "-", stdin=self.RULESET)
        return result


class RemoteNet(TunnelHost):
    """A remote network: its client addresses on lo, the servers via vti2."""

    def config(self, **params):
        result = super().config(**params)
        run(self, "ip", "addr", "add", f"{REMOTE_CLIENT_IP}/32", "dev", "lo")
        run(self, "ip", "-6", "addr", "add", f"{REMOTE_CLIENT_IP6}/128", "dev", "lo")
        for servers, router_ip, src in (
                (edge.SERVER_NET, self.vti.router_ip, REMOTE_CLIENT_IP),
                (edge.SERVER_NET6, self.vti.router_ip6, REMOTE_CLIENT_IP6)):
            run(self, "ip", "route", "replace", servers, "via", router_ip, "dev", "vxlan0",
                "src", src)
        return result


class NshNode(edge.EdgeHost):
    """Runs nsh_sf.py on its interface; started from config(), so a net
    built by ``mn --custom`` has it too.  An L2 node: no IPv6 of its own."""

    ipv6 = False

    sf: subprocess.Popen | None = None
    stats_path = SF_DIR / "stats.json"
    programs_path = SF_DIR / "programs.json"

    def config(self, **params):
        result = super().config(**params)
        self.start_sf()
        return result

    def start_sf(self, programs: dict[int, str] | None = None, timeout: float = 15.0) -> None:
        """(Re)start the service function, optionally programming C1 per SPI
        ({spi: "action[:arg]"}); return once it has opened its socket."""
        self.stop_sf()
        SF_DIR.mkdir(exist_ok=True)
        self.stats_path.unlink(missing_ok=True)
        self.program_sf(programs or {})
        argv = [SF_PYTHON, str(SF_SCRIPT), "--iface", SF_PORT.intf,
                "--stats", str(self.stats_path), "--programs-file", str(self.programs_path)]
        with open(SF_DIR / "nsh_sf.log", "ab") as log:
            self.sf = self.popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self.stats_path.exists():
            if self.sf.poll() is not None or time.monotonic() > deadline:
                log_tail = (SF_DIR / "nsh_sf.log").read_text(errors="replace")[-2000:]
                self.stop_sf()
                raise RuntimeError(f"nsh_sf did not start in {self.name}:\n{log_tail}")
            time.sleep(0.05)

    def program_sf(self, programs: dict[int, str]) -> None:
        """Reprogram the running service function ({spi: "action[:arg]"}) without a
        restart; it takes the file within 0.1 s (wait for it in sf_stats' programs)."""
        tmp = self.programs_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({str(k): v for k, v in programs.items()}))
        os.replace(tmp, self.programs_path)

    def stop_sf(self) -> None:
        """Kill the service function by pid (SIGTERM, then SIGKILL)."""
        if self.sf is not None:
            edge.kill_pids([self.sf.pid])
            self.sf.wait()
            self.sf = None

    def terminate(self) -> None:
        self.stop_sf()
        shutil.rmtree(SF_DIR, ignore_errors=True)
        super().terminate()


# ---------------------------------------------------------------- topology

class ServicePlaneTopo(edge.EdgeTopo):
    """EdgeTopo + svc/vti1/vti2 on edge, sp with the chain nodes, ul with the
    tunnel hosts.  Port numbers: OFPORTS."""

    def build(self, **opts) -> None:
        super().build(**opts)
        self.setNodeInfo(edge.BRIDGE, {**self.nodeInfo(edge.BRIDGE), "cls": PlaneSwitch,
                                       "extra_ports": ROUTER_EXTRA_PORTS})
        self.setNodeInfo("srv", {**self.nodeInfo("srv"), "mtu": TUNNEL_MTU})
        self.addSwitch(SP_BRIDGE, cls=PlaneSwitch, dpid=SP_DPID, extra_ports=SP_EXTRA_PORTS)
        self.addSwitch(UL_BRIDGE, cls=UnderlaySwitch, dpid=UL_DPID)
        for node in (*CHAIN_NODES, BIW2_NODE):
            self.addHost(node, cls=edge.BiwNode, ip=None, mac=None)
        self.addHost(SF_NODE, cls=NshNode, ip=None, mac=None)
        self.addHost("l3n", cls=L3Node, ip=None, mac=None)
        self.addHost("rnet", cls=RemoteNet, ip=None, mac=None)
        for bridge, number, ports in ((SP_BRIDGE, 2, SP_PORTS), (UL_BRIDGE, 3, UL_PORTS),
                                      (edge.BRIDGE, 0, BIW2_PORTS)):
            for p in ports:
                self.addLink(bridge, p.host, port1=p.ofport, intfName1=p.port,
                             intfName2=p.intf, addr1=edge.switch_side_mac(p.ofport, number),
                             addr2=p.mac, params2={"ip": p.ip} if p.ip else {})


topos = {"service_plane": ServicePlaneTopo}


# --------------------------------------------------------------- lifecycle

def start_full(controller_port: int = 6653, controller_ip: str = "127.0.0.1") -> Mininet:
    """Build and start the whole network (edge and sp on the same remote
    controller), check the port numbering, warm the underlay; return the net."""
    return edge.start_net(ServicePlaneTopo(), FOOTPRINT, _ready, controller_port,
                          controller_ip)


def stop_full(net: Mininet) -> None:
    """Stop nsh_sf, the net, and remove the bridges, namespaces and veths."""
    node = net.nameToNode.get(SF_NODE)
    if isinstance(node, NshNode):
        node.stop_sf()
    edge.stop_net(net, FOOTPRINT)


def _ready(net: Mininet) -> None:
    for ports in OFPORTS.values():
        edge.check_ofports(ports)
    learn_underlay()


def learn_underlay(timeout: float = 5.0) -> None:
    """OVS learns a tunnel neighbour only from an ARP reply that reaches the
    underlay bridge's own port, so the root namespace (which owns UL_IP)
    asks for each tunnel host: the first packet sent to a VTI is not lost."""
    sh("ip", "neigh", "flush", "dev", UL_BRIDGE)
    hosts = [p.address for p in UL_PORTS]
    for ip in hosts:
        sh("ping", "-n", "-c", "1", "-W", "2", ip)
    deadline = time.monotonic() + timeout
    while True:
        known = sh("ovs-appctl", "tnl/neigh/show")
        missing = [ip for ip in hosts if f"{ip} " not in known]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"OVS did not learn the underlay neighbours {missing}:\n{known}")
        time.sleep(0.1)


# ---------------------------------------------------------------- counters

def chain_counters(net: Mininet) -> dict[str, tuple[int, int]]:
    """Data packets (edge.BiwNode) that entered each chain node on its -a side
    (forward) and on its -b side (reverse)."""
    return {node: edge.biw_counters(net, node) for node in CHAIN_NODES}


def sf_stats(net: Mininet) -> dict:
    """cn5's nsh_sf statistics (see nsh_sf.py for the document)."""
    return json.loads(net[SF_NODE].stats_path.read_text())


def l3_counters(net: Mininet) -> tuple[int, int]:
    """Packets l3n forwarded toward the servers and toward the clients, both IP
    versions together."""
    tables = [edge.nft_counters(net["l3n"], f, L3_TABLE) for f in ("ip", "ip6")]
    return (sum(t["to_servers"] for t in tables), sum(t["to_clients"] for t in tables))
