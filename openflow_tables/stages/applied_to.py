"""applied_to and class_check: reuse a record only where its rule applies (patent claims
1 and 2), and only where it is what the interface's own rules give the connection."""
from __future__ import annotations

import functools

from openflow_tables import layout as L
from openflow_tables.context import Context, router_match, router_num_match
from openflow_tables.flow import Flow, Load, flow, match
from openflow_tables.stages.conntrack import RESTORE_DECISION, class_pair_flows
from si_model.set_codes import SetCode


def record_match(rule_num: int) -> tuple[int, int]:
    """ct_mark of a service-insertion record made by ``rule_num`` (any class)."""
    return (L.CT_MARK_TAG.mask | L.CT_MARK_RULE.value(rule_num),
            L.CT_MARK_TAG.mask | L.CT_MARK_RULE.mask)


def applied_to_flows(ctx: Context) -> list:
    """One flow per rule: its ct_mark and its applied_to set's code.

    The code is in the registers only when the interface the packet is
    classified at belongs to the rule's applied_to set, so a hit means
    "the record's rule is applied here".  The default rule applies everywhere.
    """
    out = [_record_flow(rule.rule_num, ctx.router(rule.router).num, ctx.rule_code(rule))
           for rule in ctx.rules()]
    for router in ctx.routers:
        out.append(flow("applied_to", 10,
                        match(metadata=router_match(router),
                              ct_mark=record_match(L.DEFAULT_RULE_NUM)),
                        goto="class_check", cookie=L.cookie("router", router.num)))
    out.append(flow("applied_to", 0, (), goto="orient", cookie=L.PIPELINE_COOKIE))
    return out


@functools.lru_cache(maxsize=1 << 17)
def _record_flow(rule_num: int, router_num: int, code: SetCode) -> Flow:
    """The applied_to entry of one rule (cached: a REST change rebuilds only its own)."""
    reg, value, mask = L.applied_to_slice(*code)
    return flow("applied_to", 10,
                match(metadata=router_num_match(router_num), ct_mark=record_match(rule_num),
                      **{reg: (value, mask)}),
                goto="class_check", cookie=L.cookie("rule", rule_num))


def class_check_flows(ctx: Context) -> list:
    """Reuse where the record's class carries every applied_to set this class carries.

    The record's rule R won among the rules of class I.  If every set of class J
    is also a set of class I, J's rules are a subset of I's that contains R (the
    applied_to check said so), so R wins at J too and reusing the record gives
    exactly what classifying at J would.  Otherwise J may hold a rule that
    outranks R for this connection: classify again.  An interface where a rule
    matches Ethernet addresses is a class of its own (the frame differs from one
    interface to another): it reuses only records made there.  One flow per such pair
    of classes of a router (classes are few: interfaces with equal memberships share one).
    """
    reuse = [*RESTORE_DECISION, Load.field(L.FLAGS_REUSED, 1)]
    return class_pair_flows(ctx, "class_check", L.SI_CLASS, reuse, goto="gen_check") + [
        flow("class_check", 0, (), goto="orient", cookie=L.PIPELINE_COOKIE)]
