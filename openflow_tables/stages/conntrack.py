"""ct, ct_result, commit and gen_check: the connection-tracking record of a decision."""
from __future__ import annotations

from openflow_tables import layout as L
from openflow_tables.context import Context, router_match
from openflow_tables.flow import Ct, Load, Move, Resubmit, fields, flow, match


def ct_flows() -> list:
    """Every IP packet not yet serviced is looked up in its router's zone."""
    return [
        *(flow("ct", 10, match(eth_type=t, **fields((L.FLAGS_SERVICED, 0))),
               [Load.field(L.FLAGS_SI_DONE, 1), Ct(False, L.CT_ZONE, "ct_result")],
               cookie=L.PIPELINE_COOKIE) for t in L.ETH_IPS),
        flow("ct", 0, (), cookie=L.PIPELINE_COOKIE),
    ]


def label_match(f: L.Field, value: int) -> tuple[int, int]:
    """Masked ct_label match on a decision field (ct_label mirrors xxreg1)."""
    stored = L.in_label(f)
    return stored.value(value), stored.mask


def ct_result_flows(ctx: Context) -> list:
    """Only records of the current classification generation may be reused: after a
    rule or applied_to edit every open connection is classified again by its next
    packet (one flow-mod here, no sweep), in both directions."""
    tag = L.CT_MARK_TAG.mask
    gen = L.GEN_CLASSIFY
    trk, trk_inv = L.CT_TRK, L.CT_TRK | L.CT_INV
    return [
        flow("ct_result", 30, match(ct_state=(trk_inv, trk_inv)), cookie=L.PIPELINE_COOKIE),
        flow("ct_result", 20, match(ct_state=(trk, trk), ct_mark=(tag, tag),
                                    ct_label=label_match(gen, ctx.generations.classify_stamp)),
             goto="applied_to", cookie=L.cookie("generation")),
        # A reply to a NAT leg's record (stamped by nat_leg, tag bit clear): back into
        # the reverse path it came out of.
        flow("ct_result", 25, match(ct_state=(trk | L.CT_RPL, trk_inv | L.CT_RPL),
                                    ct_mark=(0, tag),
                                    ct_label=label_match(L.TRANSPORT, L.TRANSPORT_NAT_LEG)),
             RESTORE_DECISION, goto="transport", cookie=L.PIPELINE_COOKIE),
        flow("ct_result", 10, match(ct_state=(trk, trk)), goto="orient", cookie=L.PIPELINE_COOKIE),
        flow("ct_result", 0, (), cookie=L.PIPELINE_COOKIE),
    ]


# Copy the record's decision back into the registers (ct_label mirrors xxreg1).
RESTORE_DECISION = (
    *(Move("ct_label", reg, ofs, 0, 32) for reg, ofs in L.CT_LABEL_OFFSETS.items()),
    Move("ct_mark", L.RULE_NUM.register, L.CT_MARK_RULE.ofs, L.RULE_NUM.ofs, L.RULE_NUM.nbits))


# Write the decision registers into the record (ct_label mirrors xxreg1; ct_mark
# takes the rule, the class of the interface it was classified at, and the tag).
STAMP = (
    *(Move(reg, "ct_label", 0, ofs, 32) for reg, ofs in L.CT_LABEL_OFFSETS.items()),
    Move.field(L.RULE_NUM, "ct_mark", L.CT_MARK_RULE.ofs),
    Move.field(L.SI_CLASS, "ct_mark", L.CT_MARK_CLASS.ofs),
    Load("ct_mark", 1, L.CT_MARK_TAG.ofs, 1))


def commit_flows(ctx: Context) -> list:
    """One flow commits every decision: values come from registers, not constants.

    The generations are loaded right before the commit, so bumping a generation
    changes these flows and the gen_check flow only — never one flow per
    connection.  A kept decision (keep_decision) gets only the current
    classification generation: its transport generations stay as stored, so
    gen_check still revalidates it if its node, path or flow-programming state
    changed meanwhile.
    """
    gens = ctx.generations
    classify_gen = Load.field(L.GEN_CLASSIFY, gens.classify_stamp)
    commit = Ct(True, L.CT_ZONE, "gen_check", STAMP)
    ck = L.cookie("generation")
    return [
        # A transit packet's egress decision is carried out, not recorded: the record
        # stays the decision of where it entered (transit_done).
        flow("commit", 35, match(**fields((L.FLAGS_TRANSIT, 1), (L.FLAGS_KEPT, 1))),
             [Resubmit("transit_done")], cookie=L.PIPELINE_COOKIE),
        flow("commit", 30, match(**fields((L.FLAGS_TRANSIT, 1))), goto="transport",
             cookie=L.PIPELINE_COOKIE),
        *(flow("commit", 20, match(eth_type=t, **fields((L.FLAGS_KEPT, 1))),
               [classify_gen, commit], cookie=ck) for t in L.ETH_IPS),
        *(flow("commit", 10, match(eth_type=t),
               [Load.field(L.GEN_TRANSPORT, gens.packed()), classify_gen, commit], cookie=ck)
          for t in L.ETH_IPS),
        flow("commit", 0, (), cookie=L.PIPELINE_COOKIE),
    ]


# The generations a record of each transport depends on (FIG. 14): a node or path
# liveness change of one transport leaves the records of the others on the fast path.
FALLBACKS = (L.TRANSPORT_NONE, L.TRANSPORT_DROP)     # a redirect's failure policy
TRANSPORT_GENERATIONS: dict[int, tuple[L.Field, ...]] = {
    L.TRANSPORT_NONE: (L.GEN_FLOW_PROGRAM,),
    L.TRANSPORT_DROP: (L.GEN_FLOW_PROGRAM,),
    L.TRANSPORT_BIW: (L.GEN_FLOW_PROGRAM, L.GEN_BFD),
    L.TRANSPORT_CHAIN: (L.GEN_FLOW_PROGRAM, L.GEN_SPI_FAIL),
    L.TRANSPORT_L3: (L.GEN_FLOW_PROGRAM, L.GEN_SN),
}


def gen_check_flows(ctx: Context) -> list:
    """Fast path for records current in the generations of their own transport;
    stale ones go through flow programming and revalidation, and are committed with the
    current generations then (a kept decision too: "kept" is cleared, or a record stale
    in its transport would come back here from commit for ever)."""
    current = ctx.generations.transport_values()
    stale = [Load.field(L.FLAGS_KEPT, 0)]
    redirect = (L.RULE_ACTION, L.ACTION_REDIRECT)
    return [
        flow("gen_check", 25, match(**fields((L.FLAGS_TRANSIT, 1), (L.FLAGS_REUSED, 1))),
             [Resubmit("transit_done")], cookie=L.PIPELINE_COOKIE)
    ] + [
        flow("gen_check", 10,
             match(**fields((L.TRANSPORT, code), *((g, current[g]) for g in gens))),
             goto="transport", cookie=L.cookie("generation"))
        for code, gens in TRANSPORT_GENERATIONS.items()
    ] + [
        # A redirect that found no live node and fell back to its policy's failure policy
        # (routed unserviced, or dropped) waits for any node or path to come back: every
        # liveness generation is its own, and revalidation sends it through its policy.
        flow("gen_check", 12,
             match(**fields((L.TRANSPORT, code), redirect, *current.items())),
             goto="transport", cookie=L.cookie("generation"))
        for code in FALLBACKS
    ] + [flow("gen_check", 11, match(**fields((L.TRANSPORT, code), redirect)), stale,
              goto="flow_program", cookie=L.PIPELINE_COOKIE) for code in FALLBACKS] + [
        flow("gen_check", 0, (), stale, goto="flow_program", cookie=L.PIPELINE_COOKIE)]


def transit_done_flows(ctx: Context) -> list:
    """A transit packet's egress found a record that holds there (reused), or its rule
    won again (kept).  Where the record also holds at the interface the packet entered
    by (its class carries every set of that class: the class_check pairs), its decision
    is the one carried out there, and the packet leaves: a rule applied at both ends
    services a connection once.  Otherwise replies made the record at this egress since:
    it is this interface's decision, carried out now."""
    return class_pair_flows(ctx, "transit_done", L.DONE_CLASS, [Resubmit("output")]) + [
        flow("transit_done", 5, match(**fields((L.FLAGS_REUSED, 1))),
             [Load.field(L.FLAGS_REUSED, 0), Resubmit("gen_check")], cookie=L.PIPELINE_COOKIE),
        flow("transit_done", 0, (), [Resubmit("transport")], cookie=L.PIPELINE_COOKIE)]


def class_pair_flows(ctx: Context, table: str, field: L.Field, actions: list,
                     goto: str | None = None) -> list:
    """One flow per router and class pair (i, j) whose record of class i holds at class
    j (Context.class_pairs): the record's class in ct_mark, j in ``field``."""
    return [flow(table, 10, match(metadata=router_match(router),
                                  ct_mark=(L.CT_MARK_CLASS.value(i), L.CT_MARK_CLASS.mask),
                                  **fields((field, j))),
                 actions, goto=goto, cookie=L.cookie("router", router.num))
            for router in ctx.routers for i, j in ctx.class_pairs(router)]
