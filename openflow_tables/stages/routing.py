"""routing, egress_si, neighbor, output: the router itself."""
from __future__ import annotations

import ipaddress

from openflow_tables import layout as L
from openflow_tables.context import Context, router_match
from openflow_tables.flow import (Controller, Ct, CtClear, DecTtl, Load, Move, Output, Resubmit,
                                  SetField, fields, flow, match, prefix_match)
from openflow_tables.stages.ingress import classify_here

LPM_BASE = 100  # routing priority = LPM_BASE + prefix length


def _next_hop(ctx: Context, net, next_hop: str | None):
    """What routing leaves in NEXT_HOP: the IPv4 next hop (the destination when
    connected); for IPv6, which does not fit, the next hop's number or 'the destination'
    (the neighbor table then matches ipv6_dst)."""
    if net.version == 6:
        return Load.field(L.NEXT_HOP, ctx.ipv6_next_hops[next_hop] if next_hop
                          else L.NEXT_HOP_V6_DIRECT)
    if next_hop:
        return Load.field(L.NEXT_HOP, int(ipaddress.IPv4Address(next_hop)))
    return Move("ipv4_dst", L.NEXT_HOP.register, 0, 0, 32)


def _route_flow(ctx: Context, router, prefix: str, iface, next_hop: str | None, ck: int):
    net = ipaddress.ip_network(prefix)
    dst_field = "ipv6_dst" if net.version == 6 else "ipv4_dst"
    eth_type = L.ETH_IP6 if net.version == 6 else L.ETH_IP
    return flow("routing", LPM_BASE + net.prefixlen,
                match(metadata=router_match(router), eth_type=eth_type,
                      **{dst_field: prefix_match(net)}),
                [Load.field(L.EGRESS_IFACE, iface.num), _next_hop(ctx, net, next_hop)],
                goto="neighbor", cookie=ck)


def routing_flows(ctx: Context) -> list:
    """Connected prefixes of the interfaces, the static routes, the routes links give."""
    out = []
    for iface in ctx.interfaces():
        if iface.role == "service":
            continue
        for addr in (iface.ip, iface.ipv6):
            if addr:
                prefix = str(ipaddress.ip_interface(addr).network)
                out.append(_route_flow(ctx, ctx.router(iface.router), prefix, iface, None,
                                       L.cookie("interface", iface.num)))
    for rt in ctx.model.all("routes"):
        iface = ctx.iface(rt.interface)
        if ctx.present(iface):
            out.append(_route_flow(ctx, ctx.router(rt.router), rt.prefix, iface, rt.next_hop,
                                   L.cookie("route")))
    for link, prefix in ctx.link_routes():
        out.append(_route_flow(ctx, ctx.router(link.router), prefix, link, None,
                               L.cookie("interface", link.num)))
    out.append(_probe_trap())
    out.append(flow("routing", 0, (), cookie=L.PIPELINE_COOKIE))
    return out


def _probe_trap():
    """A liveness probe that came back through its node reaches the controller."""
    return flow("routing", 200,
                match(eth_type=L.ETH_IP, ip_proto=17, ipv4_dst=L.PROBE_DST, udp_dst=L.PROBE_PORT,
                      **fields((L.FLAGS_SERVICED, 1))),
                [Controller()], cookie=L.cookie("pipeline", L.PIPELINE_PROBE))


def egress_si_flows(ctx: Context) -> list:
    """Classify at the egress interface, with the source MAC the packet will leave with
    (the neighbor table set the destination), unless it was classified at an interface
    of the same class: the same rules gave it its decision.

    Not classified yet: through the router's zone like ingress traffic (the record is
    made here).  Transit (classified where it entered, in this pass or before a
    service that said where): looked up in the router's zone and classified again
    without a record (commit, transit_done), so the rules of the interface it leaves by
    hold for it too.  Back from a service that says nothing (an L3 node, a NAT node):
    it leaves.
    """
    out = [
        flow("egress_si", 40, match(**fields((L.FLAGS_NAT_BACK, 1))), goto="output",
             cookie=L.PIPELINE_COOKIE),
        flow("egress_si", 30, match(**fields((L.FLAGS_SERVICED, 1), (L.FLAGS_SI_DONE, 0))),
             goto="output", cookie=L.PIPELINE_COOKIE),
    ]
    for iface in ctx.interfaces():
        if not iface.classifies:
            continue
        here = [*([SetField("eth_src", iface.mac)] if iface.mac else []),
                *classify_here(ctx, iface), Load.field(L.FLAGS_EGRESS, 1)]
        ck = L.cookie("interface", iface.num)
        out += [
            flow("egress_si", 35, match(**fields((L.EGRESS_IFACE, iface.num),
                                                 (L.FLAGS_SI_DONE, 1),
                                                 (L.SI_CLASS, ctx.iface_class(iface)))),
                 goto="output", cookie=ck),
            *(flow("egress_si", 25, match(eth_type=eth_type,
                                          **fields((L.EGRESS_IFACE, iface.num),
                                                   (L.FLAGS_SI_DONE, 1))),
                   [Move.field(L.SI_CLASS, L.DONE_CLASS.register, L.DONE_CLASS.ofs),
                    *here, Load.field(L.FLAGS_TRANSIT, 1), Load.field(L.FLAGS_REUSED, 0),
                    Load.field(L.FLAGS_KEPT, 0), CtClear(), Ct(False, L.CT_ZONE, "ct_result")],
                   cookie=ck) for eth_type in L.ETH_IPS),
            flow("egress_si", 20, match(**fields((L.EGRESS_IFACE, iface.num))),
                 [*here, Resubmit("ct")], cookie=ck)]
    out.append(flow("egress_si", 0, (), goto="output", cookie=L.PIPELINE_COOKIE))
    return out


def neighbor_flows(ctx: Context) -> list:
    """Static neighbors win over learned ones; a miss asks the controller (ARP miss)."""
    entries = {**ctx.learned_neighbors,
               **{(n.interface, n.ip): n.mac for n in ctx.model.all("neighbors")}}
    out = []
    for (iface_id, ip), mac in sorted(entries.items()):
        iface = ctx.model.get("interfaces", iface_id)
        if iface is None or not ctx.present(iface):
            continue
        out += [flow("neighbor", 10, mt, [SetField("eth_dst", mac)], goto="egress_si",
                     cookie=L.cookie("neighbor", iface.num))
                for mt in _neighbor_matches(ctx, iface, ip)]
    # A link's far end is a router on this bridge: no address to resolve.
    out += [flow("neighbor", 20, match(**fields((L.EGRESS_IFACE, link.num))), goto="egress_si",
                 cookie=L.cookie("interface", link.num))
            for link in ctx.interfaces() if link.role == "router_link"]
    out.append(flow("neighbor", 0, (), [Controller()],
                    cookie=L.cookie("pipeline", L.PIPELINE_ARP_MISS)))
    return out


def _neighbor_matches(ctx: Context, iface, ip: str) -> list[tuple]:
    """How routing's result names this neighbour: its IPv4 address in NEXT_HOP; an IPv6
    one as the destination itself (NEXT_HOP_V6_DIRECT and ipv6_dst) and, when it is a
    route's next hop, by that next hop's number."""
    egress = (L.EGRESS_IFACE, iface.num)
    if ":" not in ip:
        value = int(ipaddress.IPv4Address(ip))
        # A learned 0.0.0.0/8 sender would stand for IPv6 next hops: never installed.
        return [match(**fields(egress, (L.NEXT_HOP, value)))] if value >= L.NEXT_HOP_V6_LIMIT \
            else []
    out = [match(eth_type=L.ETH_IP6, ipv6_dst=ip,
                 **fields(egress, (L.NEXT_HOP, L.NEXT_HOP_V6_DIRECT)))]
    if ip in ctx.ipv6_next_hops:
        out.append(match(**fields(egress, (L.NEXT_HOP, ctx.ipv6_next_hops[ip]))))
    return out


def output_flows(ctx: Context) -> list:
    """Out of its port; over a link, to the router at its other end (cross)."""
    out = []
    for iface in ctx.interfaces():
        ck = L.cookie("interface", iface.num)
        for eth_type in L.ETH_IPS:
            mt = match(eth_type=eth_type, **fields((L.EGRESS_IFACE, iface.num)))
            if iface.role == "router_link":
                out.append(flow("output", 10, mt, [SetField("eth_src", iface.mac),
                                                   SetField("eth_dst", ctx.link_peer(iface).mac),
                                                   DecTtl()], goto="cross", cookie=ck))
            elif iface.role != "service":
                out.append(flow("output", 10, mt, [SetField("eth_src", iface.mac), DecTtl(),
                                                   Output(ctx.port(iface))], cookie=ck))
    out.append(flow("output", 0, (), cookie=L.PIPELINE_COOKIE))
    return out


# What a packet carries from one router's pipeline that the next must not see: flags,
# the classification interface, the decision, the routing result.
_RESET_AT_CROSSING = (L.FLAGS_SERVICED, L.FLAGS_SI_DONE, L.FLAGS_EGRESS, L.FLAGS_KEPT,
                      L.FLAGS_NAT_BACK, L.SI_IFACE, L.SI_CLASS, L.RULE_NUM, L.EGRESS_IFACE,
                      L.NEXT_HOP, L.SWAP_SCRATCH, *L.APPLIED_TO)


def cross_flows(ctx: Context) -> list:
    """A link: the packet enters the router at the link's other end as if by a port,
    with that router's number, zone and registers of its own (its decision, its
    classification, FIG. 24), and no conntrack state of the router it left."""
    out = []
    for link in ctx.interfaces():
        if link.role != "router_link":
            continue
        peer = ctx.link_peer(link)
        router = ctx.router(peer.router)
        enter = [CtClear(), *(Load.field(f, 0) for f in _RESET_AT_CROSSING),
                 *(Load(reg, 0, 0, 32) for reg in L.WORDS[L.DECISION.register]),
                 Load.field(L.ROUTER, router.num), Load.field(L.IN_IFACE, peer.num),
                 Load.field(L.CT_ZONE, router.ct_zone)]
        go = [*classify_here(ctx, peer), Resubmit("ct")] if peer.classifies else [
            Resubmit("routing")]
        out += [flow("cross", 10,
                     match(metadata=router_match(ctx.router(link.router)),
                           eth_type=eth_type, **fields((L.EGRESS_IFACE, link.num))),
                     enter + go, cookie=L.cookie("interface", link.num))
                for eth_type in L.ETH_IPS]
    return out + [flow("cross", 0, (), cookie=L.PIPELINE_COOKIE)]
