"""The service plane bridge: NSH forwarding by (SPI, SI) and the proxy for plain nodes.

Compiled for the switch whose dpid is a router's ``service_plane_dpid``.  The
router sends NSH with SI 255; hop k of a path is reached at SI 255-k; the
final SI goes back to the router.  An NSH-unaware node gets the plain frame,
out side A on a forward path and side B on a reverse one, with the path's SPI and
C2 in its source MAC (layout.PROXY_MAC); it comes back on the other side with
that MAC, so the proxy rebuilds the NSH header from the frame alone.  It keeps no
state per connection: a node that NATs (rewrites addresses or ports) is proxied
like any other.
"""
from __future__ import annotations

from openflow_tables import layout as L
from openflow_tables.context import Context
from openflow_tables.flow import (Decap, EncapEthernet, EncapNsh, Load, Move, Output,
                                  Resubmit, SetField, fields, flow, match)
from si_model import model as m


def proxy_macs(node: m.ServiceNode) -> tuple[str, str]:
    """Destination MACs toward each side of a proxied node, never a source: its bridge
    floods them to the other side."""
    return (f"02:00:5e:{node.num >> 8 & 0xFF:02x}:{node.num & 0xFF:02x}:0a",
            f"02:00:5e:{node.num >> 8 & 0xFF:02x}:{node.num & 0xFF:02x}:0b")


def _plane_nodes(ctx: Context) -> list[m.ServiceNode]:
    return [n for n in ctx.model.all("service-nodes")
            if n.transport == "chain" and n.port in ctx.ports]


def _sides(ctx: Context, node: m.ServiceNode, way: str | None) -> tuple[int, int, str]:
    """(port out, port back, destination MAC) of a proxied hop: forward paths (and
    probes) go out side A, reverse paths out side B."""
    a, b = ctx.ports[node.port], ctx.ports[node.port_b]
    mac_a, mac_b = proxy_macs(node)
    return (b, a, mac_a) if way == "reverse" else (a, b, mac_b)


def _hop(ctx: Context, spi: int, node: m.ServiceNode, way: str | None) -> tuple[list, str | None]:
    """Actions (and next table) that hand the packet of path ``spi`` to ``node``.

    For a plain node the Ethernet header is set in the next table: OVS checks
    set_field against the flow's match, which is still NSH here."""
    if node.nsh_aware:
        return [Output(ctx.ports[node.port])], None
    return [Move.field(L.NSH_IFACE, L.SP_CONTEXT.register, L.SP_CONTEXT.ofs),
            Decap(), Decap(), Load.field(L.SP_PATH, spi), Load.field(L.SP_NODE, node.num),
            Load.field(L.SP_WAY, int(way == "reverse"))], "sp_to_node"


def to_node_flows(ctx: Context) -> list:
    """Per plain node and side: the frame goes out with its hop in the source MAC."""
    out = []
    for node in _plane_nodes(ctx):
        if node.nsh_aware or node.port_b not in ctx.ports:
            continue
        for way in ("forward", "reverse"):
            out_port, _back, dst_mac = _sides(ctx, node, way)
            out.append(flow("sp_to_node", 10,
                            match(eth_type=L.ETH_IP, **fields((L.SP_NODE, node.num),
                                                              (L.SP_WAY, int(way == "reverse")))),
                            [SetField("eth_src", L.proxy_mac(0)),
                             Move.field(L.SP_PATH, "eth_src", L.PROXY_SPI_SHIFT),
                             Move.field(L.SP_CONTEXT, "eth_src", 0),
                             SetField("eth_dst", dst_mac), Output(out_port)],
                            cookie=L.cookie("service_node", node.num)))
    return out


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
            if node.port in ctx.ports and (node.nsh_aware or node.port_b in ctx.ports):
                out.append(flow("sp_forward", 10, _nsh(spi, si), *_hop(ctx, spi, node, way),
                                cookie=L.cookie(kind, node.num)))
        # A path with no hops (a skip took its only node) comes in from the router and
        # goes straight back: OpenFlow sends to the in_port only when told so.
        back = Output(rtr) if hops else Output("in_port")
        out.append(flow("sp_forward", 10, _nsh(spi, L.NSH_FIRST_SI - len(hops)), [back],
                        cookie=L.cookie("router", router.num)))
    return out


def _nsh(spi: int, si: int) -> tuple:
    return match(eth_type=L.ETH_NSH, nsh_mdtype=1, nsh_spi=spi, nsh_si=si, nsh_c1=0)


def proxy_return_flows(ctx: Context) -> list:
    """A plain node's frame back on the side opposite the one it left by: the source
    MAC names the path, the node's place on it gives the SI; NSH goes back on, C2
    included, and the frame goes on to the next hop."""
    out = []
    for spi, hops, way in ctx.nsh_paths():
        for k, node_id in enumerate(hops):
            node = ctx.node(node_id)
            if node.nsh_aware or node.port not in ctx.ports or node.port_b not in ctx.ports:
                continue
            _out, back, _mac = _sides(ctx, node, way)
            out.append(flow("ingress", 90,
                            match(in_port=back, eth_type=L.ETH_IP,
                                  eth_src=(L.proxy_mac(spi), L.PROXY_MAC_MASK)),
                            [Move("eth_src", L.SP_CONTEXT.register, 0, L.SP_CONTEXT.ofs,
                                  L.PROXY_CONTEXT_BITS),
                             EncapNsh(), SetField("nsh_spi", spi),
                             SetField("nsh_si", L.NSH_FIRST_SI - k - 1),
                             Move.field(L.SP_CONTEXT, L.NSH_IFACE.register, L.NSH_IFACE.ofs),
                             EncapEthernet(), Resubmit("sp_forward")],
                            cookie=L.cookie("service_node", node.num)))
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
    out = proxy_return_flows(ctx) + to_node_flows(ctx)
    for router in ctx.plane_routers:
        out += plane_ingress_flows(ctx, router) + forward_flows(ctx, router)
    return out + [flow(t, 0, (), cookie=L.PIPELINE_COOKIE)
                  for t in ("ingress", "sp_forward", "sp_to_node")]
