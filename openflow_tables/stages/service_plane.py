"""The service plane bridge: NSH forwarding by (SPI, SI) and the proxy for plain nodes.

Compiled for the switch whose dpid is a router's ``service_plane_dpid``.  The
router sends NSH with SI 255; hop k of a path is reached at SI 255-k; the
final SI goes back to the router (sp_return).  Service planes share the bridge: a
plane's number is the top byte of its SPIs, so the exact (SPI, SI) flows keep its
packets on its own paths, through a node that serves two planes too.  An NSH-unaware node gets the plain frame,
out side A on a forward path and side B on a reverse one, with the path's SPI and
C2 in its source MAC (layout.PROXY_MAC); it comes back on the other side with
that MAC, so the proxy rebuilds the NSH header from the frame alone.  It keeps no
state per connection: a node that NATs (rewrites addresses or ports) is proxied
like any other.
"""
from __future__ import annotations

import itertools

from openflow_tables import layout as L
from openflow_tables.context import Context
from openflow_tables.flow import (Decap, EncapEthernet, EncapNsh, Load, Move, Output,
                                  Resubmit, SetField, fields, flow, match)
from si_model import model as m
from si_model.paths import plane_of


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
        for way, t in itertools.product(("forward", "reverse"), L.ETH_IPS):
            out_port, _back, dst_mac = _sides(ctx, node, way)
            out.append(flow("sp_to_node", 10,
                            match(eth_type=t, **fields((L.SP_NODE, node.num),
                                                       (L.SP_WAY, int(way == "reverse")))),
                            [SetField("eth_src", L.proxy_mac(0)),
                             Move.field(L.SP_PATH, "eth_src", L.PROXY_SPI_SHIFT),
                             Move.field(L.SP_CONTEXT, "eth_src", 0),
                             SetField("eth_dst", dst_mac), Output(out_port)],
                            cookie=L.cookie("service_node", node.num)))
    return out


def plane_links(ctx: Context) -> list[tuple[m.Router, int]]:
    """(router, port) of each router whose service interface links to this plane
    bridge, by router number: the first also takes the probes back."""
    return [(r, ctx.ports[r.service_plane_port])
            for r in sorted(ctx.plane_routers, key=lambda r: r.num)
            if r.service_plane_port in ctx.ports]


def forward_flows(ctx: Context) -> list:
    """Each hop of each path (and probe path) by exact (SPI, SI); the final SI back
    toward the routers (sp_return).

    A frame whose C1 is set (a flow-programming signal from an NSH-aware node)
    skips the remaining hops and goes straight back to the router.
    """
    out = [flow("sp_forward", 5, match(eth_type=L.ETH_NSH, nsh_mdtype=1), goto="sp_return",
                cookie=L.PIPELINE_COOKIE)]
    for spi, hops, way in ctx.nsh_paths():
        kind = L.NODE_DIRECTION_COOKIES.get(way, "service_node")
        for k, node_id in enumerate(hops):
            si, node = L.NSH_FIRST_SI - k, ctx.node(node_id)
            if node.port in ctx.ports and (node.nsh_aware or node.port_b in ctx.ports):
                out.append(flow("sp_forward", 10, _nsh(spi, si), *_hop(ctx, spi, node, way),
                                cookie=L.cookie(kind, node.num)))
        # A path with no hops (a skip took its only node) comes in from the router and
        # goes straight back: OpenFlow sends to the in_port only when told so.
        end = {"goto": "sp_return"} if hops else {"actions": [Output("in_port")]}
        out.append(flow("sp_forward", 10, _nsh(spi, L.NSH_FIRST_SI - len(hops)), **end,
                        cookie=L.cookie("service_plane", plane_of(spi))))
    return out


def return_flows(ctx: Context, links: list[tuple[m.Router, int]]) -> list:
    """What leaves the plane goes back by the link of the router that sent it: with one
    link, that one; with several, the one of the router (or its parent, whose link a
    t1 without its own uses) owning the interface C2 names.  Probes carry no C2: they
    go back by the first link, whose router traps them."""
    out = [flow("sp_return", 0, (), [Output(links[0][1])], cookie=L.PIPELINE_COOKIE)]
    if len(links) < 2:
        return out
    for router, port in links:
        senders = {router.id} | {r.id for r in ctx.model.all("routers")
                                 if r.parent == router.id and not _own_link(ctx, r)}
        out += [flow("sp_return", 10, match(eth_type=L.ETH_NSH, **fields((L.NSH_IFACE, i.num))),
                     [Output(port)], cookie=L.cookie("router", router.num))
                for i in ctx.model.all("interfaces") if i.router in senders]
    return out


def _own_link(ctx: Context, router: m.Router) -> bool:
    return any(i.service_plane for i in ctx.model.interfaces_of(router.id))


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
            out += [flow("ingress", 90,
                         match(in_port=back, eth_type=t,
                               eth_src=(L.proxy_mac(spi), L.PROXY_MAC_MASK)),
                         [Move("eth_src", L.SP_CONTEXT.register, 0, L.SP_CONTEXT.ofs,
                               L.PROXY_CONTEXT_BITS),
                          EncapNsh(), SetField("nsh_spi", spi),
                          SetField("nsh_si", L.NSH_FIRST_SI - k - 1),
                          Move.field(L.SP_CONTEXT, L.NSH_IFACE.register, L.NSH_IFACE.ofs),
                          EncapEthernet(), Resubmit("sp_forward")],
                         cookie=L.cookie("service_node", node.num)) for t in L.ETH_IPS]
    return out


def plane_ingress_flows(ctx: Context, links: list[tuple[m.Router, int]]) -> list:
    """NSH from the routers and from NSH-aware nodes is forwarded by (SPI, SI)."""
    ports = [(port, L.cookie("router", r.num)) for r, port in links]
    ports += [(ctx.ports[n.port], L.cookie("service_node", n.num))
              for n in _plane_nodes(ctx) if n.nsh_aware]
    return [flow("ingress", 100, match(in_port=p, eth_type=L.ETH_NSH), goto="sp_forward",
                 cookie=ck) for p, ck in ports]


def service_plane_flows(ctx: Context) -> list:
    links = plane_links(ctx)
    if not links:
        return []
    return (proxy_return_flows(ctx) + to_node_flows(ctx) + plane_ingress_flows(ctx, links)
            + forward_flows(ctx) + return_flows(ctx, links)
            + [flow(t, 0, (), cookie=L.PIPELINE_COOKIE)
               for t in ("ingress", "sp_forward", "sp_to_node")])
