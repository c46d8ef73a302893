"""Neighbours: ARP replies and IPv6 Neighbor Advertisements learned, and requests for
next hops the datapath missed.

The datapath answers ARP and neighbour solicitations for the router's own addresses
itself; only two kinds of packet reach the controller here: replies and advertisements
addressed to the router (learned, one store for both families), and routed packets
whose next hop has no MAC yet (an ARP request, or a Neighbor Solicitation to the
next hop's solicited-node multicast address, is sent for it, at most once a second per
interface and address).
"""
from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Mapping

from ryu.lib.packet import arp, ethernet, icmpv6, ipv6, packet

from openflow_tables.compile import Pipeline
from openflow_tables.flow import Output
from openflow_tables.layout import ETH_ARP, ETH_IP6, IPPROTO_ICMPV6, ND_NA, ND_NS
from ryu_si.control.service import Service
from ryu_si.datapath import next_hop
from ryu_si.datapath.switch import Switch
from ryu_si.logs import event
from si_model import model as m

LOG = logging.getLogger("ryu_si.app")
ARP_RETRY_S = 1.0
ND_HOP_LIMIT = 255


def own_addresses(iface: m.Interface) -> tuple[str, ...]:
    """The router's addresses on ``iface``, both families."""
    ipv4 = (iface.ip.split("/")[0],) if iface.ip else ()
    return ipv4 + m.ipv6_addresses(iface)


def advertised(pkt: packet.Packet) -> tuple[str, str] | None:
    """(address, MAC) a Neighbor Advertisement tells: its target, and its target
    link-layer address option (the frame's source when it has none)."""
    icmp = pkt.get_protocol(icmpv6.icmpv6)
    if icmp is None or icmp.type_ != ND_NA or not isinstance(icmp.data, icmpv6.nd_neighbor):
        return None
    option = icmp.data.option
    if isinstance(option, icmpv6.nd_option_tla):
        mac = option.hw_src
    else:
        mac = pkt.get_protocol(ethernet.ethernet).src
    return str(ipaddress.IPv6Address(icmp.data.dst)), mac


def solicited_node(target: str) -> tuple[str, str]:
    """The solicited-node multicast address of ``target`` and its MAC (RFC 4291, 2464)."""
    low = int(ipaddress.IPv6Address(target)) & 0xFFFFFF
    group = ipaddress.IPv6Address(int(ipaddress.IPv6Address("ff02::1:ff00:0")) | low)
    mac = "33:33:" + ":".join(f"{b:02x}" for b in group.packed[-4:])
    return str(group), mac


def solicitation(iface: m.Interface, target: str) -> bytes:
    """A Neighbor Solicitation for ``target`` from ``iface``: from its link-local address
    for a link-local target, else from its global one, with its MAC as the source
    link-layer address."""
    if ipaddress.IPv6Address(target).is_link_local:
        src = m.link_local(iface.mac)
    else:
        src = str(ipaddress.IPv6Interface(iface.ipv6).ip)
    group, group_mac = solicited_node(target)
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=group_mac, src=iface.mac, ethertype=ETH_IP6))
    pkt.add_protocol(ipv6.ipv6(src=src, dst=group, nxt=IPPROTO_ICMPV6, hop_limit=ND_HOP_LIMIT))
    pkt.add_protocol(icmpv6.icmpv6(type_=ND_NS, data=icmpv6.nd_neighbor(
        dst=target, option=icmpv6.nd_option_sla(hw_src=iface.mac))))
    pkt.serialize()
    return bytes(pkt.data)


def arp_request(iface: m.Interface, target: str) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=iface.mac,
                                       ethertype=ETH_ARP))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac=iface.mac,
                             src_ip=iface.ip.split("/")[0], dst_mac="00:00:00:00:00:00",
                             dst_ip=target))
    pkt.serialize()
    return bytes(pkt.data)


class Neighbors:
    """ARP and neighbour discovery on behalf of the routers: learn replies and
    advertisements, resolve missed next hops."""

    def __init__(self, service: Service, ports: Mapping[int, dict[str, int]],
                 pipeline_of: Callable[[int], Pipeline]) -> None:
        self.service = service
        self.ports = ports                  # dpid -> port name -> OpenFlow port (live)
        self.pipeline_of = pipeline_of      # a connected switch's current pipeline
        self._asked: dict[tuple[str, str], float] = {}

    def interface_at(self, dpid: int, port_no: int) -> m.Interface | None:
        names = {no: name for name, no in self.ports.get(dpid, {}).items()}
        return next((i for i in self.service.model.all("interfaces")
                     if i.port == names.get(port_no)), None)

    def learn(self, dpid: int, msg) -> None:
        """An ARP reply or a Neighbor Advertisement addressed to the router: remember the
        sender on that interface."""
        pkt = packet.Packet(msg.data)
        a = pkt.get_protocol(arp.arp)
        told = (a.src_ip, a.src_mac) if a is not None else advertised(pkt)
        iface = self.interface_at(dpid, msg.match["in_port"])
        if told is not None and iface is not None:
            ip, mac = told
            if self.service.learn_neighbor(iface.id, ip, mac):
                event(LOG, logging.INFO, "neighbor_learned", ip=ip, mac=mac,
                      interface=iface.name)

    def resolve(self, sw: Switch, msg) -> None:
        """Ask for the next hop of a routed packet whose neighbour is unknown, on the
        interface the compiled routing chose for it."""
        hop = self._next_hop(sw.datapath.id, msg)
        if hop is None:
            return
        iface, target = hop
        if target in own_addresses(iface):
            return                  # routed to the router's own address: nobody answers
        if time.time() - self._asked.get((iface.id, target), 0.0) < ARP_RETRY_S:
            return
        self._asked[(iface.id, target)] = time.time()
        self._request(sw, iface, target)

    def _next_hop(self, dpid: int, msg) -> tuple[m.Interface, str] | None:
        """(egress interface, next hop) from the registers the packet-in carries, else
        from the interpreter's run of the packet on the switch's pipeline."""
        headers = next_hop.frame_headers(bytes(msg.data))
        regs = next_hop.packet_in_registers(msg.match)
        if regs is None:
            if headers is None:
                return None
            regs = next_hop.replay(self.pipeline_of(dpid), msg.match["in_port"], headers)
        ipv6_dst = headers.get("ipv6_dst") if headers else None
        return next_hop.from_registers(self.service.model, regs, ipv6_dst) if regs else None

    def _request(self, sw: Switch, iface: m.Interface, target: str) -> None:
        """An ARP request or a Neighbor Solicitation for ``target``, out of ``iface``."""
        port = self.ports.get(sw.datapath.id, {}).get(iface.port)
        ipv6_target = ":" in target
        if port is None or (iface.ipv6 if ipv6_target else iface.ip) is None:
            return
        data = solicitation(iface, target) if ipv6_target else arp_request(iface, target)
        sw.packet_out(data, (Output(port),))
