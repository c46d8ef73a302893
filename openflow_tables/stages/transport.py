"""transport: send the packet the way the decision says."""
from __future__ import annotations

import ipaddress

from openflow_tables import layout as L
from openflow_tables.context import Context, router_match
from openflow_tables.flow import (EncapEthernet, EncapNsh, Load, Move, Output, SetField, fields,
                                  flow, match)


def _biw_flows(ctx: Context) -> list:
    """Forward leaves on side A and comes back on B; the reverse the other way.

    The source MAC says where the packet was classified (service_tag_mac: the
    interface, the direction), which the node's bridge keeps, so what comes back is
    routed on by that interface's router (a child using its parent's node too)
    knowing it (ingress.biw_return_flows).  The node's transparent bridge learns each
    direction's sources on one side and never drops.
    """
    out = []
    for node, a, b in ctx.biw_nodes():
        for rpl, data, dst, port, way in (
                (0, L.FWD_DATA, b.mac, ctx.port(a), "node_forward"),
                (L.CT_RPL, L.REV_DATA, a.mac, ctx.port(b), "node_reverse")):
            out.append(flow("transport", 20,
                            match(ct_state=(rpl, L.CT_RPL),
                                  **fields((L.TRANSPORT, L.TRANSPORT_BIW), (data, node.num))),
                            [SetField("eth_src", L.service_tag_mac(bool(rpl))),
                             Move.field(L.SI_IFACE, "eth_src", 0), SetField("eth_dst", dst),
                             Output(port)], cookie=L.cookie(way, node.num)))
    return out


def _chain_flows(ctx: Context) -> list:
    """Into the service plane with NSH: SPI and SI come from the decision registers,
    C2 says which interface the packet was classified at.

    One flow per router and direction, whatever the number of paths: the
    select group already wrote SPI and SI into the forward/reverse data.  A reply
    to a NAT leg's record takes the record's reverse path the same way.
    """
    out = []
    for router in ctx.routers:
        svc = ctx.chain_interface(router)
        if svc is None:
            continue
        chain = (L.TRANSPORT, L.TRANSPORT_CHAIN)
        ways = ((0, (chain,), (L.FWD_SPI, L.FWD_SI)),
                (L.CT_RPL, (chain,), (L.REV_SPI, L.REV_SI)),
                (L.CT_RPL, ((L.TRANSPORT, L.TRANSPORT_NAT_LEG), (L.FWD_DATA, L.TRANSPORT_CHAIN)),
                 (L.REV_SPI, L.REV_SI)))
        for rpl, decision, (spi, si) in ways:
            out.append(flow("transport", 20,
                            match(metadata=router_match(router), ct_state=(rpl, L.CT_RPL),
                                  **fields(*decision)),
                            [EncapNsh(), Move.field(spi, "nsh_spi"), Move.field(si, "nsh_si"),
                             Move.field(L.SI_IFACE, L.NSH_IFACE.register, L.NSH_IFACE.ofs),
                             EncapEthernet(),
                             SetField("eth_src", svc.mac), SetField("eth_dst", L.PLANE_MAC),
                             Output(ctx.port(svc))],
                            cookie=L.cookie("router", router.num)))
    return out + _nat_back_flows(ctx)


def _nat_back_flows(ctx: Context) -> list:
    """Back from the reverse path its decision names (nat_back, the rules said so
    again): the node has serviced it, route it."""
    return [flow("transport", 30,
                 match(ct_state=(L.CT_RPL, L.CT_RPL),
                       **fields((L.TRANSPORT, L.TRANSPORT_CHAIN), (L.FLAGS_NAT_BACK, 1),
                                (L.REV_DATA, L.path_header(spi, L.NSH_FIRST_SI)))),
                 goto="routing", cookie=L.cookie("path", spi))
            for spi, hops, way in ctx.nsh_paths() if way == "reverse" and ctx.through_nat(hops)]


def _l3_flows(ctx: Context) -> list:
    """To an L3 node: route the packet to the node's address out of its VTI (one flow
    per direction, so /stats counts each)."""
    out = []
    for node in ctx.model.all("service-nodes"):
        if node.transport != "l3":
            continue
        vti = ctx.iface(node.interface)
        if not ctx.on_switch(vti.router) or ctx.port(vti) is None:
            continue
        for rpl, way in ((0, "node_forward"), (L.CT_RPL, "node_reverse")):
            out.append(flow("transport", 20,
                            match(ct_state=(rpl, L.CT_RPL),
                                  **fields((L.TRANSPORT, L.TRANSPORT_L3), (L.FWD_DATA, node.num))),
                            [Load.field(L.EGRESS_IFACE, vti.num),
                             Load.field(L.NEXT_HOP, int(ipaddress.IPv4Address(node.next_hop)))],
                            goto="neighbor", cookie=L.cookie(way, node.num)))
    return out


def transport_flows(ctx: Context) -> list:
    none = (L.TRANSPORT, L.TRANSPORT_NONE)
    return _biw_flows(ctx) + _chain_flows(ctx) + _l3_flows(ctx) + [
        flow("transport", 30, match(**fields((L.TRANSPORT, L.TRANSPORT_DROP))),
             cookie=L.PIPELINE_COOKIE),
        flow("transport", 10, match(**fields(none, (L.FLAGS_EGRESS, 1))), goto="egress_si",
             cookie=L.PIPELINE_COOKIE),
        flow("transport", 5, match(**fields(none)), goto="routing", cookie=L.PIPELINE_COOKIE),
        flow("transport", 0, (), cookie=L.PIPELINE_COOKIE),
    ]
