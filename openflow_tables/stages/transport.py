"""transport: send the packet the way the decision says."""
from __future__ import annotations

from openflow_tables import layout as L
from openflow_tables.context import Context
from openflow_tables.flow import Output, SetField, fields, flow, match
from openflow_tables.stages.conntrack import CT_RPL

PIPE = L.cookie("pipeline")


def _biw_flows(ctx: Context) -> list:
    """Forward leaves on side A and comes back on B; the reverse the other way.

    Frames carry the pair's MACs (A's as source toward B's, or back) so the
    node's transparent bridge learns one MAC per side and never drops.
    """
    out = []
    for node in ctx.model.all("service-nodes"):
        if node.transport != "biw":
            continue
        a, b = ctx.iface(node.interface_a), ctx.iface(node.interface_b)
        if not (ctx.on_switch(a.router) and ctx.port(a) and ctx.port(b)):
            continue
        ck = L.cookie("service_node", node.num)
        biw = (L.TRANSPORT, L.TRANSPORT_BIW)
        out.append(flow("transport", 20,
                        match(ct_state=(0, CT_RPL), **fields(biw, (L.FWD_DATA, node.num))),
                        [SetField("eth_src", a.mac), SetField("eth_dst", b.mac),
                         Output(ctx.port(a))], cookie=ck))
        out.append(flow("transport", 20,
                        match(ct_state=(CT_RPL, CT_RPL), **fields(biw, (L.REV_DATA, node.num))),
                        [SetField("eth_src", b.mac), SetField("eth_dst", a.mac),
                         Output(ctx.port(b))], cookie=ck))
    return out


def transport_flows(ctx: Context) -> list:
    none = (L.TRANSPORT, L.TRANSPORT_NONE)
    return _biw_flows(ctx) + [
        flow("transport", 30, match(**fields((L.TRANSPORT, L.TRANSPORT_DROP))), cookie=PIPE),
        flow("transport", 10, match(**fields(none, (L.FLAGS_EGRESS, 1))), goto="neighbor",
             cookie=PIPE),
        flow("transport", 5, match(**fields(none)), goto="routing", cookie=PIPE),
        flow("transport", 0, (), cookie=PIPE),
    ]
