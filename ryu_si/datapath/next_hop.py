"""Which neighbor to resolve when the datapath misses one, as the compiled routing says.

The neighbor table's miss flow sends the packet to the controller after routing (or
an L3 redirect) chose the egress interface and the next hop.  An OpenFlow 1.3
packet-in from Open vSwitch carries the pipeline fields in its match: the router
number in metadata, the egress interface and the next hop in their registers.  That
is the datapath's own answer, for the router the packet is on.  A packet-in without
them is run through the interpreter on the switch's compiled pipeline from the port
it came in on, and the registers of its packet-in there are read the same way.
Nothing here matches prefixes itself.

An IPv6 next hop does not fit in its register: IPv6 routing loads a number there
(layout.NEXT_HOP_V6_DIRECT: the packet's destination is the neighbour; from 2: the
route next hop ``si_model.model.ipv6_next_hops`` numbers so), read back here.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Mapping

from ryu.lib.packet import ethernet, icmp, icmpv6, ipv4, ipv6, packet, tcp, udp

from openflow_tables import layout as L
from openflow_tables.interpret import Bridge, Conntrack
from si_model import model as m

ROUTING_REGISTERS = ("metadata", L.EGRESS_IFACE.register, L.NEXT_HOP.register)
ARP_MISS = L.cookie("pipeline", L.PIPELINE_ARP_MISS)


def _field(registers: Mapping[str, int], f: L.Field) -> int:
    return (registers.get(f.register, 0) >> f.ofs) & ((1 << f.nbits) - 1)


def from_registers(model: m.Model, registers: Mapping[str, int], ipv6_dst: str | None = None
                   ) -> tuple[m.Interface, str] | None:
    """(egress interface, next hop) of the router the registers name; None when they
    name none (a next hop of 0.0.0.0 is never chosen by routing).  ``ipv6_dst``: the
    missed packet's destination, the next hop when routing says it is the neighbour."""
    router = next((r for r in model.all("routers") if r.num == _field(registers, L.ROUTER)),
                  None)
    hop = address(model, _field(registers, L.NEXT_HOP), ipv6_dst)
    if router is None or hop is None:
        return None
    num = _field(registers, L.EGRESS_IFACE)
    iface = next((i for i in model.interfaces_of(router.id) if i.num == num), None)
    return (iface, hop) if iface else None


def address(model: m.Model, hop: int, ipv6_dst: str | None) -> str | None:
    """The address a next-hop register value stands for (None: none)."""
    if hop >= L.NEXT_HOP_V6_LIMIT:
        return str(ipaddress.IPv4Address(hop))
    if hop == L.NEXT_HOP_V6_DIRECT:
        return ipv6_dst
    return next((a for a, n in m.ipv6_next_hops(model).items() if n == hop), None)


def packet_in_registers(match: Any) -> dict[str, int] | None:
    """The routing registers of a packet-in's match (a Ryu ``OFPMatch`` or a dict);
    None unless it carries the next hop."""
    regs = {name: match.get(name) for name in ROUTING_REGISTERS}
    if not isinstance(regs[L.NEXT_HOP.register], int):
        return None
    return {k: v for k, v in regs.items() if isinstance(v, int)}


def frame_headers(data: bytes) -> dict[str, Any] | None:
    """An IPv4 or IPv6 frame's headers, as the interpreter takes them; None for anything
    else."""
    pkt = packet.Packet(data)
    eth = pkt.get_protocol(ethernet.ethernet)
    ip4, ip6 = pkt.get_protocol(ipv4.ipv4), pkt.get_protocol(ipv6.ipv6)
    if eth is None or (ip4 is None and ip6 is None):
        return None
    h: dict[str, Any] = {"eth_src": eth.src, "eth_dst": eth.dst, "eth_type": eth.ethertype}
    if ip4 is not None:
        h.update({"ip_proto": ip4.proto, "nw_ttl": ip4.ttl, "ipv4_src": ip4.src,
                  "ipv4_dst": ip4.dst})
    else:
        h.update({"ip_proto": ip6.nxt, "nw_ttl": ip6.hop_limit, "ipv6_src": ip6.src,
                  "ipv6_dst": ip6.dst})
    for proto, cls in (("tcp", tcp.tcp), ("udp", udp.udp)):
        seg = pkt.get_protocol(cls)
        if seg is not None:
            h.update({f"{proto}_src": seg.src_port, f"{proto}_dst": seg.dst_port})
    echo = pkt.get_protocol(icmp.icmp)
    if echo is not None:
        h.update({"icmp_type": echo.type, "icmp_code": echo.code,
                  "icmp_id": getattr(echo.data, "id", 0)})
    echo6 = pkt.get_protocol(icmpv6.icmpv6)
    if echo6 is not None:
        h.update({"icmpv6_type": echo6.type_, "icmpv6_code": echo6.code})
    return h


def replay(pipeline: Any, in_port: int, headers: Mapping[str, Any]) -> dict[str, int] | None:
    """The registers the interpreter's run of the packet reaches the neighbor miss with
    (None: the compiled pipeline does not miss a neighbor for it)."""
    result = Bridge(pipeline, ties="first").send(Conntrack(), in_port, headers)
    return next((p.registers for p in result.packet_ins if p.cookie == ARP_MISS), None)
