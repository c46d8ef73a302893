"""Liveness probes: a UDP packet per service node that can only come back through it.

biw: out side A, back in on side B.  l3: to the node's MAC out its VTI; the
node routes it back to the router.  chain: NSH on the node's one-hop probe
path through the service plane.  Every probe returns to the router as
*serviced* UDP to PROBE_DST, which the routing table sends to the controller.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ryu.lib.packet import ethernet, ipv4, packet, udp

from openflow_tables import layout as L
from openflow_tables.flow import EncapEthernet, EncapNsh, Output, SetField
from openflow_tables.stages.transport import PLANE_MAC
from ryu_si import model as m
from ryu_si.liveness import probe_payload
from ryu_si.service import Service


@dataclass(frozen=True)
class Probe:
    node_id: str
    dpid: int
    src_mac: str
    dst_mac: str
    actions: tuple

    def frame(self, seq: int) -> bytes:
        pkt = packet.Packet()
        pkt.add_protocol(ethernet.ethernet(dst=self.dst_mac, src=self.src_mac, ethertype=0x0800))
        pkt.add_protocol(ipv4.ipv4(src=L.PROBE_SRC, dst=L.PROBE_DST, proto=17, ttl=64))
        pkt.add_protocol(udp.udp(src_port=L.PROBE_PORT, dst_port=L.PROBE_PORT))
        pkt.add_protocol(probe_payload(self.node_id, seq))
        pkt.serialize()
        return bytes(pkt.data)


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
    spi = service.probe_spis.get(node.id)
    for router in service.model.all("routers"):
        rp = ports.get(router.dpid or -1, {})
        plane = ports.get(router.service_plane_dpid or -1, {})
        svc = next((i for i in service.model.interfaces_of(router.id) if i.service_plane), None)
        if spi and svc is not None and svc.port in rp and node.port in plane:
            return Probe(node.id, router.dpid, svc.mac, PLANE_MAC,
                         (EncapNsh(), SetField("nsh_spi", spi), SetField("nsh_si", L.NSH_FIRST_SI),
                          EncapEthernet(), SetField("eth_src", svc.mac),
                          SetField("eth_dst", PLANE_MAC), Output(rp[svc.port])))
    return None


_BUILDERS = {"biw": _biw, "l3": _l3, "chain": _chain}
