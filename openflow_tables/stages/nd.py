"""nd and nd_reply: IPv6 neighbour discovery and echo for the router's own addresses.

As ARP is for IPv4, the datapath answers by itself: a Neighbor Solicitation for one of
an interface's addresses (its global one or its link-local one) is turned into the
Advertisement in place (RFC 4861 7.2.4: to the soliciting address, Router, Solicited
and Override set, hop limit 255) and goes back where it came from; so does an echo
request to one of them, as the reply.  Only Advertisements addressed to the router
reach the controller (neighbour learning).  A solicitation from the unspecified address
is another host's duplicate address detection: no unicast answer can reach it, it
drops, as do solicitations for other targets.

A Solicitation that carries the sender's link-layer address (its first option) is
answered with the interface's: that option's type becomes a target link-layer address,
and nd_reply writes the MAC into it once the packet is an Advertisement (OVS checks a
flow's writes against its match, and nd_tll needs an Advertisement).
"""
from __future__ import annotations

from openflow_tables import layout as L
from openflow_tables.context import Context, router_match
from openflow_tables.flow import Controller, Load, Move, Output, SetField, fields, flow, match
from si_model import model as m

UNSPECIFIED = "::"
ECHO_HOP_LIMIT = 64
ND_HOP_LIMIT = 255    # RFC 4861: neighbour discovery is sent, and accepted, with 255 only
ICMPV6 = {"eth_type": L.ETH_IP6, "ip_proto": L.IPPROTO_ICMPV6}


def answers_nd(iface: m.Interface) -> bool:
    """Interfaces with an IPv6 prefix that hosts reach as their router: not the ports
    toward service nodes, not the links between routers of one bridge."""
    return bool(iface.ipv6) and iface.role not in ("service", "router_link")


def nd_ingress_flows(ctx: Context, iface: m.Interface, port: int) -> list:
    """Solicitations and Advertisements entering by ``iface``, and echo requests to its
    own addresses, go to nd with the router and the interface they entered by."""
    if not answers_nd(iface):
        return []
    loads = [Load.field(L.ROUTER, ctx.router(iface.router).num),
             Load.field(L.IN_IFACE, iface.num)]
    matches = [match(in_port=port, icmpv6_type=t, **ICMPV6) for t in (L.ND_NS, L.ND_NA)]
    matches += [match(in_port=port, icmpv6_type=L.ICMPV6_ECHO_REQUEST, ipv6_dst=a, **ICMPV6)
                for a in m.ipv6_addresses(iface)]
    return [flow("ingress", 100, mt, loads, goto="nd", cookie=L.cookie("interface", iface.num))
            for mt in matches]


def _turned_back(iface: m.Interface, own: str, hop_limit: int) -> list:
    """The packet back to its sender, from ``own`` and the interface's MAC."""
    return [Move("eth_src", "eth_dst", 0, 0, 48), SetField("eth_src", iface.mac),
            Move("ipv6_src", "ipv6_dst", 0, 0, 128), SetField("ipv6_src", own),
            SetField("nw_ttl", hop_limit)]


def _advertisement(iface: m.Interface, own: str) -> list:
    return _turned_back(iface, own, ND_HOP_LIMIT) + [
        SetField("icmpv6_type", L.ND_NA), SetField("nd_reserved", L.ND_NA_FLAGS)]


def _address_flows(ctx: Context, iface: m.Interface, own: str) -> list:
    """Solicitations for ``own`` (with and without the sender's link-layer address), echo
    requests to it, and Advertisements addressed to it."""
    here = {"metadata": router_match(ctx.router(iface.router)),
            **fields((L.IN_IFACE, iface.num)), **ICMPV6}
    ns = {"icmpv6_type": L.ND_NS, "nd_target": own, **here}
    ck = L.cookie("interface", iface.num)
    return [
        flow("nd", 100, match(nd_options_type=L.ND_OPT_SLL, **ns),
             _advertisement(iface, own) + [SetField("nd_options_type", L.ND_OPT_TLL)],
             goto="nd_reply", cookie=ck),
        flow("nd", 90, match(**ns), _advertisement(iface, own) + [Output("in_port")],
             cookie=ck),
        flow("nd", 100, match(icmpv6_type=L.ICMPV6_ECHO_REQUEST, ipv6_dst=own, **here),
             _turned_back(iface, own, ECHO_HOP_LIMIT)
             + [SetField("icmpv6_type", L.ICMPV6_ECHO_REPLY), Output("in_port")], cookie=ck),
        flow("nd", 80, match(icmpv6_type=L.ND_NA, ipv6_dst=own, **here), [Controller()],
             cookie=L.cookie("pipeline", L.PIPELINE_ARP_LEARN)),
    ]


def nd_flows(ctx: Context) -> list:
    """The nd table and nd_reply: every own address of every interface that answers."""
    out = [flow("nd", 110, match(icmpv6_type=L.ND_NS, ipv6_src=UNSPECIFIED, **ICMPV6),
                cookie=L.PIPELINE_COOKIE),
           flow("nd", 0, (), cookie=L.PIPELINE_COOKIE),
           flow("nd_reply", 0, (), cookie=L.PIPELINE_COOKIE)]
    for iface in ctx.interfaces():
        if not answers_nd(iface):
            continue
        for own in m.ipv6_addresses(iface):
            out += _address_flows(ctx, iface, own)
        out.append(flow("nd_reply", 100,
                        match(icmpv6_type=L.ND_NA, nd_options_type=L.ND_OPT_TLL,
                              **fields((L.IN_IFACE, iface.num)), **ICMPV6),
                        [SetField("nd_tll", iface.mac), Output("in_port")],
                        cookie=L.cookie("interface", iface.num)))
    return out
