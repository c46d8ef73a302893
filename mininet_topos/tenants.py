"""A provider router and two tenants' routers on one bridge (ryu_si/examples/tenants.yaml).

    cli --- ext ==(up1, up2: ECMP)== [ edge: t0 ]---link---[ tenant-a ] --- ta1 --- tsa
                                       |    |        \\          | |  | |   \\-- ta2 --- tsa2
                                      bwa  bwb        link     fwa fwb lba lbb
                                       |    |          \\        | |   | |
                                      bw (the t0's IDS) |      tfw     lb (tenant A's
                                                        |   (firewall)   load balancer)
                                                   [ tenant-b ] --- tb1 --- tsb
      [ edge ] svc ==patch== rtr [ sp ] --- pna, pnb --- pn (the t0's DPI: plane provider)
                                        --- sna, snb --- sn (scrubber: shared-a, plane-b)

The three routers share the bridge ``edge``: the links between them have no port (the
datapath crosses them).  tsa and tsa2 are tenant A's servers (10.20.0.10, 10.21.0.10: the
load balancer's pool behind the VIP 10.20.0.100), tsb tenant B's (10.30.0.10); ext
routes the tenants' prefixes over the two uplinks (ECMP, with the per-uplink tables that
pin one connection, as in edge.py).  lb is a transparent bridge that can NAT
(edge.BiwNode.start_nat).  ``sp`` is the service plane bridge (dpid 2): the tenants reach
it by the t0's service interface, each plane's paths tagged by their SPIs.

Command line (hosts and switches configure themselves, as in edge.py):
    PYTHONPATH=. mn --custom mininet_topos/tenants.py --topo tenants \\
       --controller remote,port=6653

From Python: ``start_tenants()`` / ``stop_tenants()``.
"""
from __future__ import annotations

from mininet.net import Mininet
from mininet.topo import Topo

from mininet_topos import edge
from mininet_topos.edge import SwitchPort, run
from mininet_topos.service_plane import HostPort, NonVethPort, PlaneSwitch

TENANT_NETS = {"tsa": "10.20.0.0/24", "tsa2": "10.21.0.0/24", "tsb": "10.30.0.0/24"}
SERVER_A, SERVER_A2, SERVER_B = "10.20.0.10", "10.21.0.10", "10.30.0.10"
VIP, VIP_PORT = "10.20.0.100", 8443
TENANT_FW, LB = "tfw", "lb"
PORTS = (
    edge.PORT["up1"], edge.PORT["up2"],
    SwitchPort("ta1", 3, "tsa", "tsa-eth0", f"{SERVER_A}/24", "02:00:00:00:20:0a",
               "10.20.0.1", "02:00:00:00:20:01"),
    edge.PORT["bwa"], edge.PORT["bwb"],
    SwitchPort("tb1", 6, "tsb", "tsb-eth0", f"{SERVER_B}/24", "02:00:00:00:30:0a",
               "10.30.0.1", "02:00:00:00:30:01"),
    SwitchPort("fwa", 7, TENANT_FW, f"{TENANT_FW}-a", None, "02:00:00:00:a1:02",
               None, "02:00:00:00:a1:01"),
    SwitchPort("fwb", 8, TENANT_FW, f"{TENANT_FW}-b", None, "02:00:00:00:b1:02",
               None, "02:00:00:00:b1:01"),
    SwitchPort("lba", 9, LB, f"{LB}-a", None, "02:00:00:00:a3:02", None, "02:00:00:00:a3:01"),
    SwitchPort("lbb", 10, LB, f"{LB}-b", None, "02:00:00:00:b3:02", None, "02:00:00:00:b3:01"),
    SwitchPort("ta2", 11, "tsa2", "tsa2-eth0", f"{SERVER_A2}/24", "02:00:00:00:21:0a",
               "10.21.0.1", "02:00:00:00:21:01"),
)
# The service plane bridge behind the t0's service interface (patch svc <-> rtr): pn,
# the t0's DPI node (plane provider), and sn, the scrubber serving planes shared-a and
# plane-b; both NSH-unaware transparent nodes (edge.BiwNode), proxied by the plane bridge.
SP_BRIDGE, SP_DPID = "sp", "0000000000000002"
SVC, RTR, SVC_OFPORT = "svc", "rtr", 12
PLANE_NODES = ("pn", "sn")
SP_PORTS = tuple(HostPort(f"{node}{side}", 2 * n + k, node, f"{node}-{side}",
                          f"02:00:00:5d:{n:02x}:0{side}")
                 for n, node in enumerate(PLANE_NODES, start=1) for k, side in enumerate("ab"))
OFPORTS = {edge.BRIDGE: {**{p.port: p.ofport for p in PORTS}, SVC: SVC_OFPORT},
           SP_BRIDGE: {RTR: 1, **{p.port: p.ofport for p in SP_PORTS}}}
HOSTS = ("ext", "cli", "tsa", "tsa2", "tsb", "bw", TENANT_FW, LB, *PLANE_NODES)
FOOTPRINT = edge.Footprint(
    HOSTS, frozenset([p.intf for p in PORTS + SP_PORTS]
                     + [i for _h, i, _ip, _mac in edge.CLI_LINK]),
    (edge.BRIDGE, SP_BRIDGE), tuple(p.port for p in PORTS + SP_PORTS))


class TenantsExt(edge.ExtRouter):
    """The external router, with the tenants' prefixes over both uplinks too."""

    def config(self, **params):
        result = super().config(**params)
        up1, up2 = edge.PORT["up1"], edge.PORT["up2"]
        for net in TENANT_NETS.values():
            run(self, "ip", "route", "replace", net,
                "nexthop", "via", up1.router_ip, "dev", up1.intf,
                "nexthop", "via", up2.router_ip, "dev", up2.intf)
            for name, table in edge.UPLINK_TABLE.items():
                port = edge.PORT[name]
                run(self, "ip", "route", "replace", net, "via", port.router_ip,
                    "dev", port.intf, "table", str(table))
        return result


class TenantsTopo(Topo):
    """Bridge ``edge`` with ports up1, up2 (ext), ta1 (tsa), bwa, bwb (bw), tb1 (tsb), fwa,
    fwb (tfw), lba, lbb (lb), ta2 (tsa2), svc: OpenFlow ports 1..12 in that order; cli
    hangs off ext; bridge ``sp`` with rtr, pna, pnb, sna, snb (1..5)."""

    def build(self, **_opts) -> None:
        self.addSwitch(edge.BRIDGE, cls=PlaneSwitch, dpid=edge.DPID, extra_ports=(
            NonVethPort(SVC, SVC_OFPORT, "patch", {"peer": RTR}),))
        self.addSwitch(SP_BRIDGE, cls=PlaneSwitch, dpid=SP_DPID, extra_ports=(
            NonVethPort(RTR, 1, "patch", {"peer": SVC}),))
        for node in PLANE_NODES:
            self.addHost(node, cls=edge.BiwNode, ip=None, mac=None)
        for p in SP_PORTS:
            self.addLink(SP_BRIDGE, p.host, port1=p.ofport, intfName1=p.port, intfName2=p.intf,
                         addr1=edge.switch_side_mac(p.ofport, 2), addr2=p.mac)
        self.addHost("ext", cls=TenantsExt, ip=None, mac=None)
        for host, port in (("tsa", "ta1"), ("tsa2", "ta2"), ("tsb", "tb1")):
            gw = next(p.router_ip for p in PORTS if p.port == port)
            self.addHost(host, cls=edge.EdgeHost, ip=None, mac=None, defaultRoute=f"via {gw}")
        for node in ("bw", TENANT_FW, LB):
            self.addHost(node, cls=edge.BiwNode, ip=None, mac=None)
        self.addHost("cli", cls=edge.EdgeHost, ip=None, mac=None,
                     defaultRoute="via 198.51.100.1")
        for p in PORTS:
            self.addLink(edge.BRIDGE, p.host, port1=p.ofport, intfName1=p.port,
                         intfName2=p.intf, addr1=edge.switch_side_mac(p.ofport), addr2=p.mac,
                         params2={"ip": p.ip} if p.ip else {})
        (h1, i1, ip1, mac1), (h2, i2, ip2, mac2) = edge.CLI_LINK
        self.addLink(h1, h2, intfName1=i1, intfName2=i2, addr1=mac1, addr2=mac2,
                     params1={"ip": ip1}, params2={"ip": ip2})


topos = {"tenants": TenantsTopo}


def start_tenants(controller_port: int = 6653, controller_ip: str = "127.0.0.1") -> Mininet:
    """Build and start the network, check its port numbers; return the running net."""
    def ready(_net: Mininet) -> None:
        for ports in OFPORTS.values():
            edge.check_ofports(ports)

    return edge.start_net(TenantsTopo(), FOOTPRINT, ready, controller_port, controller_ip)


def stop_tenants(net: Mininet) -> None:
    """Stop the net and remove its bridges, namespaces and veths."""
    edge.stop_net(net, FOOTPRINT)
