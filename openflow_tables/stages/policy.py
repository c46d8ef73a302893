"""policy: a redirect rule's policy picks a service node, stable per connection."""
from __future__ import annotations

from openflow_tables import layout as L
from openflow_tables.context import Context
from openflow_tables.flow import Bucket, Group, GroupAction, Load, Resubmit, fields, flow, match
from ryu_si import model as m

TRANSPORT_CODES = {"biw": L.TRANSPORT_BIW, "l3": L.TRANSPORT_L3, "chain": L.TRANSPORT_CHAIN}


def used_policies(ctx: Context) -> list[m.Policy]:
    """Policies that a rule on this switch redirects to."""
    ids = {r.policy for r in ctx.rules() if r.action == "redirect"}
    return sorted((ctx.model.get("policies", i) for i in ids), key=lambda p: p.num)


def _live_nodes(ctx: Context, policy: m.Policy) -> list[m.ServiceNode]:
    return [n for n in (ctx.node(i) for i in policy.nodes) if ctx.node_live(n)]


def _bucket(ctx: Context, policy: m.Policy, node: m.ServiceNode) -> Bucket:
    weight = policy.weights.get(node.id, policy.weights.get(node.name, 1))
    return Bucket((Load.field(L.TRANSPORT, TRANSPORT_CODES[node.transport]),
                   Load.field(L.FWD_DATA, node.num), Load.field(L.REV_DATA, node.num),
                   Resubmit("commit")), weight)


def policy_groups(ctx: Context) -> list[Group]:
    """A select group per policy with live nodes; OVS hashes the flow to a bucket."""
    out = []
    for p in used_policies(ctx):
        nodes = _live_nodes(ctx, p)
        if nodes:
            out.append(Group(p.num, "select", tuple(_bucket(ctx, p, n) for n in nodes),
                             L.cookie("policy", p.num)))
    return out


def policy_flows(ctx: Context) -> list:
    out = []
    for p in used_policies(ctx):
        mt = match(**fields((L.POLICY_NUM, p.num)))
        ck = L.cookie("policy", p.num)
        if _live_nodes(ctx, p):
            out.append(flow("policy", 10, mt, [GroupAction(p.num)], cookie=ck))
        else:
            fallback = L.TRANSPORT_NONE if p.failure_policy == "pass" else L.TRANSPORT_DROP
            out.append(flow("policy", 10, mt, [Load.field(L.TRANSPORT, fallback)],
                            goto="commit", cookie=ck))
    out.append(flow("policy", 0, (), cookie=L.cookie("pipeline")))
    return out
