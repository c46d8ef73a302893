"""ingress and arp: where a packet enters, and the router's own ARP."""
from __future__ import annotations

import itertools

from openflow_tables import layout as L
from openflow_tables.context import Context, router_match
from openflow_tables.flow import (Controller, Ct, Decap, Load, Move, Output, Resubmit, SetField,
                                  fields, flow, match)
from openflow_tables.stages import nd
from si_model import model as m
from si_model.paths import plane_of
from si_model.set_codes import SetCode, word_values


def applied_to_loads(held: frozenset[SetCode]) -> list[Load]:
    """Load an interface's applied_to set codes into the applied_to registers."""
    return [Load(reg, value, 0, 32)
            for reg, value in zip(L.APPLIED_TO_REGS, word_values(held)) if value]


def classify_here(ctx: Context, iface: m.Interface) -> list[Load]:
    """Make ``iface`` the interface the packet is classified at (its number, class and
    applied_to set codes)."""
    return [Load.field(L.SI_IFACE, iface.num), Load.field(L.SI_CLASS, ctx.iface_class(iface)),
            *applied_to_loads(ctx.iface_codes(iface))]


def returns_serviced(iface: m.Interface) -> bool:
    """Service ports and VTIs toward L3 nodes: what comes back has been serviced."""
    return iface.role == "service" or (iface.role == "vti" and not iface.classifies)


def _nat_behind(ctx: Context, vti: m.Interface) -> bool:
    """An L3 node behind this VTI source-NATs.  The server answers the node's address, so
    the answer reaches the client through the node, never through the router's record
    of the connection (made when the client's packet was classified): the record would
    see one direction only, and conntrack would soon call the client's packets invalid.
    What the node sends back is looked up in the router's zone (no commit) so the record
    sees the answers too.  Other VTIs spare that recirculation."""
    return any(n.transport == "l3" and n.nat and n.interface == vti.id
               for n in ctx.model.all("service-nodes"))


def _ip_ingress(ctx: Context, iface: m.Interface, port: int) -> list:
    """IPv4 and IPv6 alike: where they go depends on the interface alone."""
    router = ctx.router(iface.router)
    loads = [Load.field(L.ROUTER, router.num), Load.field(L.IN_IFACE, iface.num),
             Load.field(L.CT_ZONE, router.ct_zone)]
    ck = L.cookie("interface", iface.num)
    if iface.role == "service":
        return [flow("ingress", 90, match(in_port=port, eth_type=t),
                     loads + [Load.field(L.FLAGS_SERVICED, 1)], goto="routing", cookie=ck)
                for t in L.ETH_IPS]
    out = []
    for t in L.ETH_IPS:
        mt = match(in_port=port, eth_type=t, eth_dst=iface.mac)
        if returns_serviced(iface) and _nat_behind(ctx, iface):
            out.append(flow("ingress", 90, mt, loads + [Load.field(L.FLAGS_SERVICED, 1),
                                                        Ct(False, L.CT_ZONE, "routing")],
                            cookie=ck))
        elif returns_serviced(iface):
            out.append(flow("ingress", 90, mt, loads + [Load.field(L.FLAGS_SERVICED, 1)],
                            goto="routing", cookie=ck))
        elif iface.classifies:
            out.append(flow("ingress", 90, mt, loads + classify_here(ctx, iface), goto="ct",
                            cookie=ck))
        else:
            out.append(flow("ingress", 90, mt, loads, goto="routing", cookie=ck))
    return out


def _nsh_return_flows(ctx: Context, iface: m.Interface, port: int) -> list:
    """NSH back from the service plane at a path's final SI: the chain is done.

    Decapsulate to the original frame; it is serviced.  C2 names the interface it was
    classified at, so the router that classified it (a child using its parent's plane
    too) routes it on (resume).  Matching the final SI per path means a packet that
    skipped hops is not accepted.  A packet whose context header C1 is set carries a
    flow-programming signal from an NSH-aware node: it goes to the controller (lower
    priority, any SI).  A path through a NAT node ends in nat_leg (forward) or nat_back
    (reverse).  A probe path (no C2) ends at this router, which traps the probe.  Only
    the paths of planes the routers behind this interface are attached to come back.
    """
    router = ctx.router(iface.router)
    tags = ctx.plane_tags(router)
    out = []
    for spi, hops, way in ctx.nsh_paths():
        if way is not None and plane_of(spi) not in tags:
            continue
        mt = match(in_port=port, eth_type=L.ETH_NSH, nsh_mdtype=1, nsh_spi=spi,
                   nsh_si=L.NSH_FIRST_SI - len(hops), nsh_c1=0)
        ck = L.cookie("path", spi)
        if way is None:
            out.append(flow("ingress", 95, mt, [Decap(), Decap(), Load.field(L.ROUTER, router.num),
                                                Load.field(L.IN_IFACE, iface.num),
                                                Load.field(L.FLAGS_SERVICED, 1)],
                            goto="routing", cookie=ck))
            continue
        back = [Move.field(L.NSH_IFACE, L.IN_IFACE.register, L.IN_IFACE.ofs), Decap(), Decap(),
                Load.field(L.FLAGS_SERVICED, 1)]
        if way == "reverse" and ctx.through_nat(hops):
            back += [Load.field(L.FLAGS_SI_DONE, 1), Load.field(L.FLAGS_NAT_BACK, 1),
                     Resubmit("nat_back")]
        elif way == "forward" and ctx.through_nat(hops):
            path = ctx.path_by_spi(spi)
            back += [Load.field(L.TRANSPORT, L.TRANSPORT_NAT_LEG),
                     Load.field(L.FWD_DATA, L.TRANSPORT_CHAIN),
                     Load.field(L.REV_DATA, L.path_header(path.reverse_spi, L.NSH_FIRST_SI)),
                     Resubmit("nat_leg")]
        else:
            back.append(Resubmit("resume"))
        out.append(flow("ingress", 95, mt, back, cookie=ck))
    out.append(flow("ingress", 80, match(in_port=port, eth_type=L.ETH_NSH, nsh_mdtype=1),
                    [Controller()], cookie=L.cookie("pipeline", L.PIPELINE_FLOW_PROGRAM)))
    return out


def resume_flows(ctx: Context) -> list:
    """Back from a service: the router of the interface the packet was classified at
    (C2 or the biw source MAC, now in_iface) routes it on, as classified there (its
    egress compares classes, routing.egress_si_flows)."""
    return [flow("resume", 10, match(**fields((L.IN_IFACE, i.num))),
                 [Load.field(L.ROUTER, ctx.router(i.router).num),
                  Load.field(L.CT_ZONE, ctx.router(i.router).ct_zone),
                  Load.field(L.FLAGS_SI_DONE, 1), Load.field(L.SI_IFACE, i.num),
                  Load.field(L.SI_CLASS, ctx.iface_class(i)), Resubmit("routing")],
                 cookie=L.cookie("interface", i.num))
            for i in ctx.interfaces() if i.classifies] + [
        flow("resume", 0, (), cookie=L.PIPELINE_COOKIE)]


def biw_return_flows(ctx: Context) -> list:
    """A biw node back from serving a decision: its source MAC names the interface the
    packet was classified at (transport.service_tag_mac), whose router routes it on,
    serviced (resume).  A node that NATs has its own way back (nat.biw_nat_flows);
    frames without the tag (liveness probes) come back as the service port's."""
    out = []
    for node, a, b in ctx.biw_nodes():
        if node.nat:
            continue
        for (side, reply), t in itertools.product(((b, False), (a, True)), L.ETH_IPS):
            out.append(flow("ingress", 95,
                            match(in_port=ctx.port(side), eth_type=t,
                                  eth_src=(L.service_tag_mac(reply), L.SERVICE_TAG_MASK)),
                            [Move("eth_src", L.IN_IFACE.register, 0, L.IN_IFACE.ofs,
                                  L.IN_IFACE.nbits),
                             Load.field(L.FLAGS_SERVICED, 1), Resubmit("resume")],
                            cookie=L.cookie("interface", side.num)))   # nodes may share sides
    return out


def ingress_flows(ctx: Context) -> list:
    out = []
    for iface in ctx.interfaces():
        if iface.role == "router_link":      # entered by crossing (routing.cross_flows)
            continue
        if iface.service_plane:
            out += _nsh_return_flows(ctx, iface, ctx.port(iface))
        port = ctx.port(iface)
        out += _ip_ingress(ctx, iface, port)
        if iface.role != "service":
            router = ctx.router(iface.router)
            out.append(flow("ingress", 100, match(in_port=port, eth_type=L.ETH_ARP),
                            [Load.field(L.ROUTER, router.num), Load.field(L.IN_IFACE, iface.num)],
                            goto="arp", cookie=L.cookie("interface", iface.num)))
        out += nd.nd_ingress_flows(ctx, iface, port)
    out.append(flow("ingress", 0, (), cookie=L.PIPELINE_COOKIE))
    return out + biw_return_flows(ctx)


def _arp_reply(iface: m.Interface, ip: str) -> list:
    """Turn the request into the reply in place and send it back where it came from."""
    return [Move("eth_src", "eth_dst", 0, 0, 48), SetField("eth_src", iface.mac),
            SetField("arp_op", 2), Move("arp_sha", "arp_tha", 0, 0, 48),
            SetField("arp_sha", iface.mac), Move("arp_spa", "arp_tpa", 0, 0, 32),
            SetField("arp_spa", ip), Output("in_port")]


def arp_flows(ctx: Context) -> list:
    out = []
    for iface in ctx.interfaces():
        if iface.ip is None or iface.role == "router_link":
            continue
        ip = iface.ip.split("/")[0]
        rm = router_match(ctx.router(iface.router))
        ck = L.cookie("interface", iface.num)
        out.append(flow("arp", 100, match(metadata=rm, **fields((L.IN_IFACE, iface.num)),
                                          eth_type=L.ETH_ARP, arp_op=1, arp_tpa=ip),
                        _arp_reply(iface, ip), cookie=ck))
        out.append(flow("arp", 90, match(metadata=rm, **fields((L.IN_IFACE, iface.num)),
                                         eth_type=L.ETH_ARP, arp_op=2, arp_tpa=ip),
                        [Controller()], cookie=L.cookie("pipeline", L.PIPELINE_ARP_LEARN)))
    out.append(flow("arp", 0, (), cookie=L.PIPELINE_COOKIE))
    return out
