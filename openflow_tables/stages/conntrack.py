"""ct, ct_result, commit and gen_check: the connection-tracking record of a decision."""
from __future__ import annotations

from openflow_tables import layout as L
from openflow_tables.context import Context
from openflow_tables.flow import Ct, Load, Move, fields, flow, match

ETH_IP = 0x0800
CT_NEW, CT_EST, CT_REL, CT_RPL, CT_INV, CT_TRK = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
CT_MARK_RULE_MASK = L.CT_MARK_TAG.mask | L.CT_MARK_RULE.mask
PIPE = L.cookie("pipeline")


def ct_flows() -> list:
    """Every IPv4 packet not yet serviced is looked up in its router's zone."""
    return [
        flow("ct", 10, match(eth_type=ETH_IP, **fields((L.FLAGS_SERVICED, 0))),
             [Load.field(L.FLAGS_SI_DONE, 1), Ct(False, L.CT_ZONE, "ct_result")], cookie=PIPE),
        flow("ct", 0, (), cookie=PIPE),
    ]


def label_match(f: L.Field, value: int) -> tuple[int, int]:
    """Masked ct_label match on a decision field (ct_label mirrors xxreg1)."""
    shift = L.CT_LABEL_OFFSETS[f.register]
    return f.value(value) << shift, f.mask << shift


def ct_result_flows(ctx: Context) -> list:
    """Only records of the current classification generation may be reused: after a
    rule or applied_to edit every open connection is classified again by its next
    packet (one flow-mod here, no sweep), in both directions."""
    tag = L.CT_MARK_TAG.mask
    gen = L.GEN_CLASSIFY
    return [
        flow("ct_result", 30, match(ct_state=(CT_TRK | CT_INV, CT_TRK | CT_INV)), cookie=PIPE),
        flow("ct_result", 20, match(ct_state=(CT_TRK, CT_TRK), ct_mark=(tag, tag),
                                    ct_label=label_match(gen, ctx.generations.classify_stamp)),
             goto="applied_to", cookie=L.cookie("generation")),
        flow("ct_result", 10, match(ct_state=(CT_TRK, CT_TRK)), goto="orient", cookie=PIPE),
        flow("ct_result", 0, (), cookie=PIPE),
    ]


# Copy the record's decision back into the registers (ct_label mirrors xxreg1).
RESTORE_DECISION = (
    *(Move("ct_label", reg, ofs, 0, 32) for reg, ofs in L.CT_LABEL_OFFSETS.items()),
    Move("ct_mark", L.RULE_NUM.register, 0, 0, L.CT_MARK_RULE.nbits))


# Write the decision registers into the record (ct_label mirrors xxreg1; ct_mark
# takes the rule, the class of the interface it was classified at, and the tag).
STAMP = (
    *(Move(reg, "ct_label", 0, ofs, 32) for reg, ofs in L.CT_LABEL_OFFSETS.items()),
    Move(L.RULE_NUM.register, "ct_mark", 0, L.CT_MARK_RULE.ofs, L.CT_MARK_RULE.nbits),
    Move(L.SI_CLASS.register, "ct_mark", L.SI_CLASS.ofs, L.CT_MARK_CLASS.ofs,
         L.CT_MARK_CLASS.nbits),
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
        flow("commit", 20, match(eth_type=ETH_IP, **fields((L.FLAGS_KEPT, 1))),
             [classify_gen, commit], cookie=ck),
        flow("commit", 10, match(eth_type=ETH_IP),
             [Load(L.GENERATIONS_REG, gens.packed(), 0, 32), classify_gen, commit], cookie=ck),
        flow("commit", 0, (), cookie=PIPE),
    ]


def gen_check_flows(ctx: Context) -> list:
    """Fast path for current records; stale ones go through revalidation."""
    return [
        flow("gen_check", 10, match(**{L.GENERATIONS_REG: ctx.generations.packed()}),
             goto="transport", cookie=L.cookie("generation")),
        flow("gen_check", 0, (), goto="flow_program", cookie=PIPE),
    ]
