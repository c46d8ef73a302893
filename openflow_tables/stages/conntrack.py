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


def ct_result_flows() -> list:
    tag = L.CT_MARK_TAG.mask
    return [
        flow("ct_result", 30, match(ct_state=(CT_TRK | CT_INV, CT_TRK | CT_INV)), cookie=PIPE),
        flow("ct_result", 20, match(ct_state=(CT_TRK, CT_TRK), ct_mark=(tag, tag)),
             goto="applied_to", cookie=PIPE),
        flow("ct_result", 10, match(ct_state=(CT_TRK, CT_TRK)), goto="classify", cookie=PIPE),
        flow("ct_result", 0, (), cookie=PIPE),
    ]


# Copy the record's decision back into the registers (ct_label mirrors xxreg1).
RESTORE_DECISION = (
    *(Move("ct_label", reg, ofs, 0, 32) for reg, ofs in L.CT_LABEL_OFFSETS.items()),
    Move("ct_mark", L.RULE_NUM.register, 0, 0, L.CT_MARK_RULE.nbits))


def commit_flows(ctx: Context) -> list:
    """One flow commits every decision: values come from registers, not constants.

    The generations register is loaded with the current generations right
    before the commit, so bumping a generation changes this flow and the
    gen_check flow only — never one flow per connection.
    """
    stamp = [Move(reg, "ct_label", 0, ofs, 32) for reg, ofs in L.CT_LABEL_OFFSETS.items()]
    stamp += [Move(L.RULE_NUM.register, "ct_mark", 0, 0, L.CT_MARK_RULE.nbits),
              Load("ct_mark", 1, L.CT_MARK_TAG.ofs, 1)]
    gen = L.cookie("generation")
    return [
        flow("commit", 10, match(eth_type=ETH_IP),
             [Load(L.GENERATIONS_REG, ctx.generations.packed(), 0, 32),
              Ct(True, L.CT_ZONE, "gen_check", tuple(stamp))], cookie=gen),
        flow("commit", 0, (), cookie=PIPE),
    ]


def gen_check_flows(ctx: Context) -> list:
    """Fast path for current records; stale ones go through revalidation."""
    return [
        flow("gen_check", 10, match(**{L.GENERATIONS_REG: ctx.generations.packed()}),
             goto="transport", cookie=L.cookie("generation")),
        flow("gen_check", 0, (), goto="flow_program", cookie=PIPE),
    ]
