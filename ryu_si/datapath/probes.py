"""Liveness probes: a UDP packet per service node that can only come back through it.

biw: out side A, back in on side B.  l3: to the node's MAC out its VTI; the
node routes it back to the router.  chain: NSH on the node's one-hop probe
path through the service plane.  Every probe returns to the router as
*serviced* UDP to PROBE_DST, which the routing table sends to the controller.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator

from ryu.lib.packet import ethernet, ipv4, packet, udp

from openflow_tables import layout as L
from openflow_tables.flow import Output
from openflow_tables.stages.service_plane import proxy_macs
from si_model import model as m
from ryu_si.control.liveness import probe_payload
from ryu_si.control.service import Service


OFPP_TABLE = 0xFFFFFFF9
NSH_MD1 = struct.Struct("!BBBBI16x")   # base header (TTL 63, length 6 words, MD type 1,
NSH_BASE = (0x0F, 0xC6, 0x01, 0x03)    # next protocol Ethernet), SPI<<8|SI, 4 zero contexts


@dataclass(frozen=True)
class Probe:
    node_id: str
    dpid: int
    src_mac: str
    dst_mac: str
    actions: tuple
    in_port: int | None = None     # set: the probe enters the switch's pipeline from this port
    spi: int | None = None         # set: the frame is NSH on this path, starting at SI 255

    def frame(self, seq: int) -> bytes:
        pkt = packet.Packet()
        pkt.add_protocol(ethernet.ethernet(dst=self.dst_mac, src=self.src_mac, ethertype=L.ETH_IP))
        pkt.add_protocol(ipv4.ipv4(src=L.PROBE_SRC, dst=L.PROBE_DST, proto=17, ttl=64))
        pkt.add_protocol(udp.udp(src_port=L.PROBE_PORT, dst_port=L.PROBE_PORT))
        pkt.add_protocol(probe_payload(self.node_id, seq))
        pkt.serialize()
        if self.spi is None:
            return bytes(pkt.data)
        outer = _mac(self.dst_mac) + _mac(self.src_mac) + L.ETH_NSH.to_bytes(2, "big")
        nsh = NSH_MD1.pack(*NSH_BASE, L.path_header(self.spi, L.NSH_FIRST_SI))
        return outer + nsh + bytes(pkt.data)


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def probes(service: Service, ports: dict[int, dict[str, int]]) -> Iterator[Probe]:
    """The probe of every node whose router's switch and ports are known now."""
    model = service.model
    for node in model.all("service-nodes"):
        if node.admin_state != "up":
            continue
        probe = _BUILDERS[node.transport](service, node, ports)
        if probe is not None:
            yield probe


def _router_ports(model: m.Model, router_id: str, ports: dict[int, dict[str, int]]):
    router = model.get("routers", router_id)
    return router, ports.get(router.dpid or -1, {})


def _biw(service: Service, node: m.ServiceNode, ports) -> Probe | None:
    a = service.model.get("interfaces", node.interface_a)
    b = service.model.get("interfaces", node.interface_b)
    router, rp = _router_ports(service.model, a.router, ports)
    if a.port not in rp or b.port not in rp:
        return None
    return Probe(node.id, router.dpid, a.mac, b.mac, (Output(rp[a.port]),))


def _l3(service: Service, node: m.ServiceNode, ports) -> Probe | None:
    vti = service.model.get("interfaces", node.interface)
    router, rp = _router_ports(service.model, vti.router, ports)
    mac = _neighbor_mac(service, vti.id, node.next_hop)
    if vti.port not in rp or mac is None:
        return None
    return Probe(node.id, router.dpid, vti.mac, mac, (Output(rp[vti.port]),))


def _neighbor_mac(service: Service, iface_id: str, ip: str) -> str | None:
    static = next((n.mac for n in service.model.all("neighbors")
                   if n.interface == iface_id and n.ip == ip), None)
    return static or service.learned_neighbors.get((iface_id, ip))


def _chain(service: Service, node: m.ServiceNode, ports) -> Probe | None:
    """A probe on the node's one-hop probe path, put into the service plane as if it
    came from the router; the plane hands it back to the router, which traps it.

    An NSH-aware node gets the NSH frame.  A plain node gets the frame the proxy
    would send it (a packet-out that has to decapsulate does not make it through
    OVS), and the proxy takes it back like any other.
    """
    spi = service.probe_spis.get(node.id)
    for router in sorted(service.model.all("routers"), key=lambda r: r.num):
        plane = ports.get(router.service_plane_dpid or -1, {})
        svc = next((i for i in service.model.interfaces_of(router.id) if i.service_plane), None)
        rtr = plane.get(router.service_plane_port or "")
        if not (spi and svc is not None and rtr is not None and node.port in plane):
            continue
        if node.nsh_aware:
            return Probe(node.id, router.service_plane_dpid, svc.mac, L.PLANE_MAC,
                         (Output(OFPP_TABLE),), in_port=rtr, spi=spi)
        if node.port_b in plane:
            return Probe(node.id, router.service_plane_dpid, L.proxy_mac(spi),
                         proxy_macs(node)[1], (Output(plane[node.port]),))
    return None


_BUILDERS = {"biw": _biw, "l3": _l3, "chain": _chain}
