"""nat_leg and nat_back: the two ends of a path through a node that rewrites addresses
(a chain's path, or a bump-in-the-wire node's two sides).

The router classifies a connection as the client made it (its record, made at
classification).  A NAT node sends it on with other addresses: a tuple the router
has never seen.  At the end of the forward path that tuple gets a record of its own
(TRANSPORT_NAT_LEG, the path's reverse SPI), so the server's replies to the node's
addresses go back into the reverse path (ct_result) instead of being classified as a
new connection, which conntrack would call invalid.  The node restores the client's
addresses on the way back; at the end of the reverse path the packet is checked
against the rules of the interface the reply entered by (C2), as any reply is
checked there: the client's record is reused where its rule is applied, and the
connection is classified again elsewhere.
"""
from __future__ import annotations

import itertools

from openflow_tables import layout as L
from openflow_tables.context import Context
from openflow_tables.flow import Ct, Load, Move, Output, Resubmit, SetField, fields, flow, match
from openflow_tables.stages.ingress import classify_here

# The NAT leg's record holds the transport word (reg7), the transport of the node
# (forward data: TRANSPORT_CHAIN or TRANSPORT_BIW) and the way back (reverse data: the
# path's reverse SPI, or the biw node's number).
_NAT_LEG_STAMP = tuple(Move(reg, "ct_label", 0, L.CT_LABEL_OFFSETS[reg], 32)
                       for reg in (L.TRANSPORT.register, L.FWD_DATA.register,
                                   L.REV_DATA.register))


def nat_flows(ctx: Context) -> list:
    """Both tables, on a router bridge where a path goes through a NAT node."""
    if not ctx.any_nat():
        return []
    return nat_leg_flows(ctx) + nat_back_flows(ctx) + biw_nat_flows(ctx)


def _classifying(ctx: Context) -> list:
    return [i for i in ctx.interfaces() if i.classifies]


def nat_leg_flows(ctx: Context) -> list:
    """Look the packet up in the zone of the router that classified it (C2's interface;
    here: OVS checks ct() against the match, which at the plane port is NSH); a new
    tuple is recorded and routed, a known one (the node did not rewrite this connection,
    or a later packet) routed, an invalid one dropped."""
    trk, inv, new = L.CT_TRK, L.CT_INV, L.CT_NEW
    out = []
    for i, t in itertools.product(_classifying(ctx), L.ETH_IPS):
        router = ctx.router(i.router)
        out.append(flow("nat_leg", 30, match(ct_state=(0, trk), eth_type=t,
                                             **fields((L.IN_IFACE, i.num))),
                        [Load.field(L.ROUTER, router.num), Load.field(L.CT_ZONE, router.ct_zone),
                         Ct(False, L.CT_ZONE, "nat_leg")], cookie=L.cookie("interface", i.num)))
    probe = match(eth_type=L.ETH_IP, ip_proto=17, ipv4_dst=L.PROBE_DST, udp_dst=L.PROBE_PORT)
    # A biw node's liveness probe is no connection to record.
    out.append(flow("nat_leg", 40, probe, [Resubmit("routing")], cookie=L.PIPELINE_COOKIE))
    for t in L.ETH_IPS:
        out += [
            # Back from a biw node: the router and zone are loaded already.
            flow("nat_leg", 25, match(ct_state=(0, trk), eth_type=t),
                 [Ct(False, L.CT_ZONE, "nat_leg")], cookie=L.PIPELINE_COOKIE),
            flow("nat_leg", 20, match(ct_state=(trk | inv, trk | inv), eth_type=t),
                 cookie=L.PIPELINE_COOKIE),
            flow("nat_leg", 10, match(ct_state=(trk | new, trk | new | inv), eth_type=t),
                 [Ct(True, L.CT_ZONE, "routing", _NAT_LEG_STAMP)], cookie=L.PIPELINE_COOKIE),
            flow("nat_leg", 5, match(ct_state=(trk, trk | inv), eth_type=t),
                 [Resubmit("routing")], cookie=L.PIPELINE_COOKIE)]
    return out + [flow("nat_leg", 0, (), cookie=L.PIPELINE_COOKIE)]


def nat_back_flows(ctx: Context) -> list:
    """One flow per classifying interface: become a packet classified there (by its
    router), then that router's zone and ct_result like any other."""
    out = []
    for iface, t in itertools.product(_classifying(ctx), L.ETH_IPS):
        router = ctx.router(iface.router)
        out.append(flow("nat_back", 10,
                        match(eth_type=t, **fields((L.IN_IFACE, iface.num))),
                        [Load.field(L.ROUTER, router.num), *classify_here(ctx, iface),
                         Load.field(L.CT_ZONE, router.ct_zone),
                         Ct(False, L.CT_ZONE, "ct_result")],
                        cookie=L.cookie("interface", iface.num)))
    return out + [flow("nat_back", 0, (), cookie=L.PIPELINE_COOKIE)]


def biw_nat_flows(ctx: Context) -> list:
    """A bump-in-the-wire node that NATs: what it returns on side B is the forward
    direction (nat_leg records a rewritten tuple); a NAT leg's reply goes out side B with
    the interface it entered by in its source MAC (NAT_RETURN_MAC), and comes back on
    side A restored, to be checked there (nat_back), then routed (transport)."""
    out = []
    for node, a, b in ctx.biw_nodes():
        if not node.nat:
            continue
        router = ctx.router(b.router)
        ck = L.cookie("service_node", node.num)
        for t in L.ETH_IPS:
            out.append(flow("ingress", 92, match(in_port=ctx.port(b), eth_type=t),
                            [Load.field(L.ROUTER, router.num), Load.field(L.IN_IFACE, b.num),
                             Load.field(L.CT_ZONE, router.ct_zone),
                             Load.field(L.FLAGS_SERVICED, 1),
                             Load.field(L.TRANSPORT, L.TRANSPORT_NAT_LEG),
                             Load.field(L.FWD_DATA, L.TRANSPORT_BIW),
                             Load.field(L.REV_DATA, node.num), Resubmit("nat_leg")], cookie=ck))
            out.append(flow("ingress", 95, match(in_port=ctx.port(a), eth_type=t,
                                                 eth_src=(L.NAT_RETURN_MAC, L.NAT_RETURN_MASK)),
                            [Move("eth_src", L.IN_IFACE.register, 0, L.IN_IFACE.ofs,
                                  L.IN_IFACE.nbits),
                             Load.field(L.FLAGS_SERVICED, 1), Load.field(L.FLAGS_SI_DONE, 1),
                             Load.field(L.FLAGS_NAT_BACK, 1), Resubmit("nat_back")], cookie=ck))
        rpl = (L.CT_RPL, L.CT_RPL)
        out.append(flow("transport", 20,
                        match(ct_state=rpl, **fields((L.TRANSPORT, L.TRANSPORT_NAT_LEG),
                                                     (L.FWD_DATA, L.TRANSPORT_BIW),
                                                     (L.REV_DATA, node.num))),
                        [SetField("eth_src", L.NAT_RETURN_MAC),
                         Move.field(L.SI_IFACE, "eth_src", 0), SetField("eth_dst", a.mac),
                         Output(ctx.port(b))], cookie=L.cookie("node_reverse", node.num)))
        out.append(flow("transport", 30,
                        match(ct_state=rpl, **fields((L.TRANSPORT, L.TRANSPORT_BIW),
                                                     (L.FLAGS_NAT_BACK, 1),
                                                     (L.REV_DATA, node.num))),
                        goto="routing", cookie=ck))
    return out
