"""applied_to: reuse a record only where its rule applies (patent claims 1 and 2)."""
from __future__ import annotations

import functools

from openflow_tables import layout as L
from openflow_tables.context import Context, router_match, router_num_match
from openflow_tables.flow import Flow, flow, match
from openflow_tables.stages.conntrack import CT_MARK_RULE_MASK, RESTORE_DECISION

DEFAULT_RULE_NUM = 0


def _record(rule_num: int) -> tuple[int, int]:
    return (L.CT_MARK_TAG.mask | rule_num, CT_MARK_RULE_MASK)


def applied_to_flows(ctx: Context) -> list:
    """One flow per rule: its ct_mark and its applied_to-set bit.

    The bit is set in the registers only when the interface the packet is
    classified at belongs to the rule's applied_to set, so a hit means
    "the record's rule is applied here".  The default rule applies everywhere.
    """
    out = [_record_flow(rule.rule_num, ctx.router(rule.router).num, ctx.rule_bit(rule))
           for rule in ctx.rules()]
    for router in ctx.routers:
        out.append(flow("applied_to", 10,
                        match(metadata=router_match(router), ct_mark=_record(DEFAULT_RULE_NUM)),
                        RESTORE_DECISION, goto="gen_check", cookie=L.cookie("router", router.num)))
    out.append(flow("applied_to", 0, (), goto="classify", cookie=L.cookie("pipeline")))
    return out


@functools.lru_cache(maxsize=1 << 17)
def _record_flow(rule_num: int, router_num: int, bit: int) -> Flow:
    """The applied_to entry of one rule (cached: a REST change rebuilds only its own)."""
    reg, mask = L.applied_to_bit(bit)
    return flow("applied_to", 10,
                match(metadata=router_num_match(router_num), ct_mark=_record(rule_num),
                      **{reg: (mask, mask)}),
                RESTORE_DECISION, goto="gen_check", cookie=L.cookie("rule", rule_num))
