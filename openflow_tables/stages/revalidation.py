"""flow_program and revalidate: what a stale record's next packet goes through.

A generation bump makes every record stale at once with one flow-mod; each
connection is then revalidated lazily by its own next packet, never by a
sweep over connections.

An instruction's flows tell the controller when a packet has carried them out: a
zero-byte packet-in, sent only when the datapath runs the actions for a real packet.
Flow counters cannot say it: when OVS re-translates its cached datapath flows after
a change, it credits the packets those flows carried before the change to the flows
of the new translation, so an instruction can count a packet it never touched.
"""
from __future__ import annotations

from openflow_tables import layout as L
from openflow_tables.context import Context, router_match
from openflow_tables.flow import Controller, Load, Resubmit, fields, flow, match

EXECUTED = Controller(max_len=0)   # "this instruction was carried out" (no packet bytes)


def _program_actions(ctx: Context, ins) -> tuple[list, str | None]:
    """Actions (and goto) that carry out one instruction, then re-commit."""
    if ins.action == "none":
        return [], "revalidate"
    if ins.action == "reroute" and ins.node is not None:
        node = ctx.node(ins.node)      # deleted or down since: the record as it is
        if node is None or not ctx.node_live(node):
            return [], "revalidate"
        return [Load.field(L.TRANSPORT, L.TRANSPORT_CODES[node.transport]),
                Load.field(L.FWD_DATA, node.num), Load.field(L.REV_DATA, node.num),
                Resubmit("commit")], None
    if ins.action == "reroute":
        path = ctx.path_by_spi(ins.spi)
        return (_to_path(path), None) if path and path.state == "up" else ([], "revalidate")
    transport = L.TRANSPORT_DROP if ins.action == "drop" else L.TRANSPORT_NONE
    return [Load.field(L.TRANSPORT, transport), Resubmit("commit")], None


def _skip_order(item) -> tuple:
    (spi, removed), _ = item
    return spi, sorted(removed)


def _variants(ctx: Context, ins) -> list[tuple[int, dict, list, str | None]]:
    """(priority, extra match, actions, goto) of one instruction's flows.  A skip moves a
    connection from each path through the node (a path, or one a skip derived) to that
    path without it, so it has one flow per such path (matched by the record's forward
    SPI), and a lower one that only reports a connection on no such path (nothing to
    skip)."""
    if ins.action != "skip":
        return [(10, {}, *_program_actions(ctx, ins))]
    out = []
    for (spi, removed), path in sorted(ctx.skips.items(), key=lambda kv: (kv[0][0], sorted(kv[0][1]))):
        if ins.node not in removed:
            continue
        rest = removed - {ins.node}
        source = ctx.skips.get((spi, rest)) if rest else ctx.path_by_spi(spi)
        if source is not None:
            out.append((10, fields((L.TRANSPORT, L.TRANSPORT_CHAIN), (L.FWD_SPI, source.spi)),
                        _to_path(path), None))
    return out + [(5, {}, [], "revalidate")]


def flow_program_flows(ctx: Context) -> list:
    out = []
    for ins in ctx.instructions:
        if ins.state != "pending" or not ctx.on_switch(ins.router):
            continue
        sport_f, dport_f = L.TP_FIELDS[ins.ip_proto]
        fam = f"ipv{ins.family}"
        eth_type = L.ETH_IP6 if ins.family == 6 else L.ETH_IP
        for priority, extra, actions, goto in _variants(ctx, ins):
            for src, dst, sp, dp in ins.directions():
                out.append(flow("flow_program", priority,
                                match(metadata=router_match(ctx.router(ins.router)),
                                      eth_type=eth_type, ip_proto=ins.ip_proto,
                                      **{f"{fam}_src": src, f"{fam}_dst": dst,
                                         sport_f: sp, dport_f: dp}, **extra),
                                [EXECUTED, *actions], goto, L.cookie("flow_program", ins.num)))
    return out + [flow("flow_program", 0, (), goto="revalidate", cookie=L.PIPELINE_COOKIE)]


def _to_path(path) -> list:
    """Put the connection on ``path`` (both directions, from its first hop) and commit."""
    return [Load.field(L.TRANSPORT, L.TRANSPORT_CHAIN),
            Load.field(L.FWD_DATA, L.path_header(path.spi, L.NSH_FIRST_SI)),
            Load.field(L.REV_DATA, L.path_header(path.reverse_spi, L.NSH_FIRST_SI)),
            Resubmit("commit")]


def revalidate_flows(ctx: Context) -> list:
    """Records on a failed node go through their policy again; records on a failed
    path move to a backup that is up (through the policy when none is); a redirect that
    fell back to its failure policy tries its policy again (a node may be back)."""
    out = []
    for node in ctx.model.all("service-nodes"):
        if node.transport in ("biw", "l3") and not ctx.node_live(node):
            code = L.TRANSPORT_CODES[node.transport]
            out.append(flow("revalidate", 10,
                            match(**fields((L.TRANSPORT, code), (L.FWD_DATA, node.num))),
                            [Resubmit("policy")], cookie=L.cookie("service_node", node.num)))
    for spi in sorted(ctx.failed_paths):
        backup = ctx.backup_of(spi)
        out.append(flow("revalidate", 10,
                        match(**fields((L.TRANSPORT, L.TRANSPORT_CHAIN), (L.FWD_SPI, spi))),
                        _to_path(backup) if backup else [Resubmit("policy")],
                        cookie=L.cookie("path", spi)))
    for code in (L.TRANSPORT_NONE, L.TRANSPORT_DROP):      # a redirect's failure policy
        out.append(flow("revalidate", 5, match(**fields((L.TRANSPORT, code),
                                                        (L.RULE_ACTION, L.ACTION_REDIRECT))),
                        [Resubmit("policy")], cookie=L.PIPELINE_COOKIE))
    return out + [flow("revalidate", 0, (), [Resubmit("commit")], cookie=L.PIPELINE_COOKIE)]
