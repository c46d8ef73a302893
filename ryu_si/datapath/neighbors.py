"""Neighbours: ARP replies learned, and ARP requests for next hops the datapath missed.

The datapath answers ARP for the router's own addresses itself; only two kinds of ARP
reach the controller: replies addressed to the router (learned here) and routed packets
whose next hop has no MAC yet (an ARP request is sent for it, at most once a second per
interface and address).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from ryu.lib.packet import arp, ethernet, packet

from openflow_tables.compile import Pipeline
from openflow_tables.flow import Output
from openflow_tables.layout import ETH_ARP
from ryu_si.control.service import Service
from ryu_si.datapath import next_hop
from ryu_si.datapath.switch import Switch
from ryu_si.logs import event
from si_model import model as m

LOG = logging.getLogger("ryu_si.app")
ARP_RETRY_S = 1.0


class Neighbors:
    """ARP on behalf of the routers: learn replies, resolve missed next hops."""

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
        """An ARP reply addressed to the router: remember the sender on that interface."""
        a = packet.Packet(msg.data).get_protocol(arp.arp)
        iface = self.interface_at(dpid, msg.match["in_port"])
        if a is not None and iface is not None:
            if self.service.learn_neighbor(iface.id, a.src_ip, a.src_mac):
                event(LOG, logging.INFO, "neighbor_learned", ip=a.src_ip, mac=a.src_mac,
                      interface=iface.name)

    def resolve(self, sw: Switch, msg) -> None:
        """Ask for the next hop of a routed packet whose neighbour is unknown, on the
        interface the compiled routing chose for it."""
        hop = self._next_hop(sw.datapath.id, msg)
        if hop is None:
            return
        iface, target = hop
        if time.time() - self._asked.get((iface.id, target), 0.0) < ARP_RETRY_S:
            return
        self._asked[(iface.id, target)] = time.time()
        self._request(sw, iface, target)

    def _next_hop(self, dpid: int, msg) -> tuple[m.Interface, str] | None:
        """(egress interface, next hop) from the registers the packet-in carries, else
        from the interpreter's run of the packet on the switch's pipeline."""
        regs = next_hop.packet_in_registers(msg.match)
        if regs is None:
            headers = next_hop.frame_headers(bytes(msg.data))
            if headers is None:
                return None
            regs = next_hop.replay(self.pipeline_of(dpid), msg.match["in_port"], headers)
        return next_hop.from_registers(self.service.model, regs) if regs else None

    def _request(self, sw: Switch, iface: m.Interface, target: str) -> None:
        port = self.ports.get(sw.datapath.id, {}).get(iface.port)
        if port is None or iface.ip is None:
            return
        pkt = packet.Packet()
        pkt.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=iface.mac,
                                           ethertype=ETH_ARP))
        pkt.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac=iface.mac,
                                 src_ip=iface.ip.split("/")[0], dst_mac="00:00:00:00:00:00",
                                 dst_ip=target))
        pkt.serialize()
        sw.packet_out(pkt.data, (Output(port),))
