"""The service plane bridge: NSH forwarding by (SPI, SI) and the proxy for plain nodes.

Compiled for the switch whose dpid is a router's ``service_plane_dpid``.  The
router sends NSH with SI 255; hop k of a path is reached at SI 255-k; the
final SI goes back to the router.  An NSH-unaware node gets the plain frame:
the proxy keeps SPI and the next SI in the node's own conntrack zone (one label
half per direction, so a reply in flight never overwrites a request's state)
and restores them when the frame comes back.  A node that rewrites the
5-tuple (NAT) therefore breaks the proxy: its packets miss the zone and drop.
"""
from __future__ import annotations

from openflow_tables import layout as L
from openflow_tables.context import Context
from openflow_tables.flow import (Ct, Decap, EncapEthernet, EncapNsh, Load, Move, Output,
                                  Resubmit, SetField, fields, flow, match)
from si_model import model as m

# ct_state rpl bit of each direction, and where the proxy keeps that direction's SPI/SI.
DIRECTIONS = ((0, L.SP_FWD_LABEL), (L.CT_RPL, L.SP_REV_LABEL))


def proxy_macs(node: m.ServiceNode) -> tuple[str, str]:
    """Stable MACs for the two sides of a proxied node, so its bridge learns one per side."""
    return (f"02:00:5e:{node.num >> 8 & 0xFF:02x}:{node.num & 0xFF:02x}:0a",
            f"02:00:5e:{node.num >> 8 & 0xFF:02x}:{node.num & 0xFF:02x}:0b")


def _plane_nodes(ctx: Context) -> list[m.ServiceNode]:
    return [n for n in ctx.model.all("service-nodes")
            if n.transport == "chain" and n.port in ctx.ports]


def _hop(ctx: Context, spi: int, si: int, node: m.ServiceNode) -> tuple[list, str | None]:
    """Actions (and next table) that hand the packet at (spi, si) to ``node``.

    For the proxy, conntrack runs in the next table: OVS checks ct() against
    the flow's match, which is still NSH here, not IPv4.
    """
    if node.nsh_aware:
        return [Output(ctx.ports[node.port])], None
    return [Decap(), Decap(), Load.field(L.SP_NSH, L.path_header(spi, si - 1)),
            Load.field(L.SP_NODE, node.num), Load.field(L.CT_ZONE, node.ct_zone)], "sp_proxy_ct"


def forward_flows(ctx: Context, router: m.Router) -> list:
    """Each hop of each path (and probe path) by exact (SPI, SI); the final SI to the router.

    A frame whose C1 is set (a flow-programming signal from an NSH-aware node)
    skips the remaining hops and goes straight back to the router.
    """
    rtr = ctx.ports.get(router.service_plane_port or "")
    if rtr is None:
        return []
    out = [flow("sp_forward", 5, match(eth_type=L.ETH_NSH, nsh_mdtype=1), [Output(rtr)],
                cookie=L.cookie("router", router.num))]
    for spi, hops, way in ctx.nsh_paths():
        kind = L.NODE_DIRECTION_COOKIES.get(way, "service_node")
        for k, node_id in enumerate(hops):
            si, node = L.NSH_FIRST_SI - k, ctx.node(node_id)
            if node.port in ctx.ports:
                out.append(flow("sp_forward", 10, _nsh(spi, si), *_hop(ctx, spi, si, node),
                                cookie=L.cookie(kind, node.num)))
        # A path with no hops (a skip took its only node) comes in from the router and
        # goes straight back: OpenFlow sends to the in_port only when told so.
        back = Output(rtr) if hops else Output("in_port")
        out.append(flow("sp_forward", 10, _nsh(spi, L.NSH_FIRST_SI - len(hops)), [back],
                        cookie=L.cookie("router", router.num)))
    return out


def _nsh(spi: int, si: int) -> tuple:
    return match(eth_type=L.ETH_NSH, nsh_mdtype=1, nsh_spi=spi, nsh_si=si, nsh_c1=0)


def proxy_flows(ctx: Context) -> list:
    """Out: save SPI/next SI per direction and send side A (forward) or B (reverse).
    In: restore them, re-encapsulate, forward to the next hop."""
    out = []
    for node in _plane_nodes(ctx):
        if node.nsh_aware or node.port_b not in ctx.ports:
            continue
        ck = L.cookie("service_node", node.num)
        a, b = ctx.ports[node.port], ctx.ports[node.port_b]
        mac_a, mac_b = proxy_macs(node)
        nm = fields((L.SP_NODE, node.num))
        out.append(flow("sp_proxy_ct", 10, match(eth_type=L.ETH_IP, **nm),
                        [Ct(False, L.CT_ZONE, "sp_proxy_out")], cookie=ck))
        for rpl, label in DIRECTIONS:
            side, src, dst = (a, mac_a, mac_b) if not rpl else (b, mac_b, mac_a)
            state = (L.CT_TRK | rpl, L.CT_TRK | L.CT_RPL | L.CT_INV)
            out.append(flow("sp_proxy_out", 10, match(eth_type=L.ETH_IP, ct_state=state, **nm),
                            [Ct(True, L.CT_ZONE, None,
                                (Move.field(L.SP_NSH, "ct_label", label.ofs),)),
                             SetField("eth_src", src), SetField("eth_dst", dst), Output(side)],
                            cookie=ck))
            out.append(flow("sp_proxy_in", 10, match(eth_type=L.ETH_IP, ct_state=state, **nm),
                            [Move("ct_label", L.SP_NSH.register, label.ofs, L.SP_NSH.ofs,
                                  label.nbits), EncapNsh(),
                             Move.field(L.SP_SPI, "nsh_spi"), Move.field(L.SP_SI, "nsh_si"),
                             EncapEthernet(), Resubmit("sp_forward")], cookie=ck))
        for port in (a, b):
            out.append(flow("ingress", 90, match(in_port=port, eth_type=L.ETH_IP),
                            [Load.field(L.SP_NODE, node.num), Load.field(L.CT_ZONE, node.ct_zone),
                             Ct(False, L.CT_ZONE, "sp_proxy_in")], cookie=ck))
    return out


def plane_ingress_flows(ctx: Context, router: m.Router) -> list:
    """NSH from the router and from NSH-aware nodes is forwarded by (SPI, SI)."""
    ports = [ctx.ports.get(router.service_plane_port or "")]
    ports += [ctx.ports[n.port] for n in _plane_nodes(ctx) if n.nsh_aware]
    return [flow("ingress", 100, match(in_port=p, eth_type=L.ETH_NSH), goto="sp_forward",
                 cookie=L.cookie("router", router.num)) for p in ports if p is not None]


def service_plane_flows(ctx: Context) -> list:
    if not ctx.plane_routers:
        return []
    out = proxy_flows(ctx)
    for router in ctx.plane_routers:
        out += plane_ingress_flows(ctx, router) + forward_flows(ctx, router)
    return out + [flow(t, 0, (), cookie=L.PIPELINE_COOKIE)
                  for t in ("ingress", "sp_forward", "sp_proxy_ct", "sp_proxy_out", "sp_proxy_in")]
