"""policy: a redirect rule's policy picks a service node, stable per connection."""
from __future__ import annotations

from openflow_tables import layout as L
from openflow_tables.context import Context
from openflow_tables.flow import (Bucket, Group, GroupAction, Load, Resubmit, fields, flow,
                                  group, match)
from si_model import model as m
from si_model.paths import routers_home, select_weights


def used_policies(ctx: Context) -> list[m.Policy]:
    """Policies that a rule on this switch redirects to."""
    ids = {r.policy for r in ctx.rules() if r.action == "redirect"}
    return sorted((ctx.model.get("policies", i) for i in ids), key=lambda p: p.num)


def _decision(transport: int, fwd: int, rev: int) -> tuple:
    return (Load.field(L.TRANSPORT, transport), Load.field(L.FWD_DATA, fwd),
            Load.field(L.REV_DATA, rev), Resubmit("commit"))


def _node_buckets(ctx: Context, policy: m.Policy) -> list[Bucket]:
    """One bucket per live node (biw, l3): both directions use the same node."""
    nodes = [n for n in (ctx.node(i) for i in policy.nodes) if ctx.node_live(n)]
    return [Bucket(_decision(L.TRANSPORT_CODES[n.transport], n.num, n.num),
                   policy.weights.get(n.id, policy.weights.get(n.name, 1))) for n in nodes]


def _path_buckets(ctx: Context, policy: m.Policy) -> list[Bucket]:
    """One bucket per up service path of the chain, weighted by the chain's strategy."""
    chain = ctx.model.get("chains", policy.chain)
    paths = ctx.up_paths(chain.id)
    weights = select_weights(paths, chain.strategy, routers_home(ctx.model)) if paths else {}
    first = L.NSH_FIRST_SI
    return [Bucket(_decision(L.TRANSPORT_CHAIN, L.path_header(p.spi, first),
                             L.path_header(p.reverse_spi, first)),
                   weights[p.spi]) for p in paths if p.spi in weights]


def _buckets(ctx: Context, policy: m.Policy) -> list[Bucket]:
    return _path_buckets(ctx, policy) if policy.chain else _node_buckets(ctx, policy)


def policy_groups(ctx: Context) -> list[Group]:
    """A select group per policy with somewhere to go; OVS hashes the flow to a bucket."""
    out = []
    for p in used_policies(ctx):
        buckets = _buckets(ctx, p)
        if buckets:
            out.append(group("policy", p.num, "select", buckets, L.cookie("policy", p.num)))
    return out


def policy_flows(ctx: Context) -> list:
    out = []
    for p in used_policies(ctx):
        mt = match(**fields((L.POLICY_NUM, p.num)))
        ck = L.cookie("policy", p.num)
        if _buckets(ctx, p):
            out.append(flow("policy", 10, mt, [GroupAction(p.num)], cookie=ck))
        else:
            fallback = L.TRANSPORT_NONE if p.failure_policy == "pass" else L.TRANSPORT_DROP
            out.append(flow("policy", 10, mt, [Load.field(L.TRANSPORT, fallback)],
                            goto="commit", cookie=ck))
    out.append(flow("policy", 0, (), cookie=L.PIPELINE_COOKIE))
    return out
