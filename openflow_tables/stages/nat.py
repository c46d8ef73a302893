"""nat_leg and nat_back: the two ends of a path through a node that rewrites addresses.

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

from openflow_tables import layout as L
from openflow_tables.context import Context
from openflow_tables.flow import Ct, Load, Move, Resubmit, fields, flow, match
from openflow_tables.stages.ingress import classify_here

# The NAT leg's record holds the transport word (reg7) and the reverse data (reg5).
_NAT_LEG_STAMP = tuple(Move(reg, "ct_label", 0, L.CT_LABEL_OFFSETS[reg], 32)
                       for reg in (L.TRANSPORT.register, L.REV_DATA.register))


def nat_flows(ctx: Context) -> list:
    """Both tables, on a router bridge where a path goes through a NAT node."""
    return nat_leg_flows(ctx) + nat_back_flows(ctx) if ctx.any_nat_path() else []


def _classifying(ctx: Context) -> list:
    return [i for i in ctx.interfaces() if i.classifies]


def nat_leg_flows(ctx: Context) -> list:
    """Look the packet up in the zone of the router that classified it (C2's interface;
    here: OVS checks ct() against the match, which at the plane port is NSH); a new
    tuple is recorded and routed, a known one (the node did not rewrite this connection,
    or a later packet) routed, an invalid one dropped."""
    trk, inv, new = L.CT_TRK, L.CT_INV, L.CT_NEW
    ip = {"eth_type": L.ETH_IP}
    out = []
    for i in _classifying(ctx):
        router = ctx.router(i.router)
        out.append(flow("nat_leg", 30, match(ct_state=(0, trk), **ip,
                                             **fields((L.IN_IFACE, i.num))),
                        [Load.field(L.ROUTER, router.num), Load.field(L.CT_ZONE, router.ct_zone),
                         Ct(False, L.CT_ZONE, "nat_leg")], cookie=L.cookie("interface", i.num)))
    return out + [
        flow("nat_leg", 20, match(ct_state=(trk | inv, trk | inv), **ip),
             cookie=L.PIPELINE_COOKIE),
        flow("nat_leg", 10, match(ct_state=(trk | new, trk | new | inv), **ip),
             [Ct(True, L.CT_ZONE, "routing", _NAT_LEG_STAMP)], cookie=L.PIPELINE_COOKIE),
        flow("nat_leg", 5, match(ct_state=(trk, trk | inv), **ip), [Resubmit("routing")],
             cookie=L.PIPELINE_COOKIE),
        flow("nat_leg", 0, (), cookie=L.PIPELINE_COOKIE),
    ]


def nat_back_flows(ctx: Context) -> list:
    """One flow per classifying interface: become a packet classified there (by its
    router), then that router's zone and ct_result like any other."""
    out = []
    for iface in _classifying(ctx):
        router = ctx.router(iface.router)
        out.append(flow("nat_back", 10,
                        match(eth_type=L.ETH_IP, **fields((L.IN_IFACE, iface.num))),
                        [Load.field(L.ROUTER, router.num), *classify_here(ctx, iface),
                         Load.field(L.CT_ZONE, router.ct_zone),
                         Ct(False, L.CT_ZONE, "ct_result")],
                        cookie=L.cookie("interface", iface.num)))
    return out + [flow("nat_back", 0, (), cookie=L.PIPELINE_COOKIE)]
