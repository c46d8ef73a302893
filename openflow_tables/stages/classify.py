"""orient, classify, reorient and keep_decision: service insertion rules, without copying
a rule per interface, matched against connections rather than packets.

A rule matches its applied_to set's code (a value in a slice of the applied_to
registers, si_model.set_codes), so it is one flow (or one flow per value of one
multi-valued field); rules with two or more
multi-valued fields become a conjunctive match with one clause per field.

Rules match the connection's original direction (the tuple of its first packet).  A
reply that is classified — because it crosses an interface where the record's rule is
not applied, or after an edit — has its addresses and ports swapped into that
direction around the classify lookup (orient / reorient), so it gets the rule its
connection gets there, never one matched on its own swapped headers.  The router does
no NAT, so the swapped reply tuple is conntrack's original tuple.  OVS also offers that
tuple as ``ct_nw_src``...``ct_tp_dst``, but ``ofproto/trace`` cannot set them, and the
switch's own trace confirms the model's classification (ryu_si.diagnose.ofproto_trace).
"""
from __future__ import annotations

import functools
import ipaddress
import itertools
from typing import NamedTuple

from openflow_tables import layout as L
from openflow_tables.context import Context, router_match, router_num_match
from openflow_tables.flow import (Conjunction, Flow, Load, Move, Resubmit, fields, flow,
                                  match, prefix_match)
from openflow_tables.stages.applied_to import record_match
from openflow_tables.stages.conntrack import RESTORE_DECISION, label_match
from si_model import model as m
from si_model.set_codes import SetCode
from si_model.validate import match_family


def port_range_masks(lo: int, hi: int) -> list[tuple[int, int]]:
    """Cover [lo, hi] with the fewest (value, mask) prefix matches."""
    out = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << 16
        while size > hi - lo + 1:
            size >>= 1
        out.append((lo, 0xFFFF & ~(size - 1)))
        lo += size
    return out


def _ports(spec: str) -> list:
    lo, _, hi = spec.partition("-")
    masks = port_range_masks(int(lo), int(hi or lo))
    return [v if mask == 0xFFFF else (v, mask) for v, mask in masks]


def _prefix(cidr: str):
    return prefix_match(ipaddress.ip_network(cidr))


def rule_eth_types(mt: dict) -> tuple[int, ...]:
    """The ethertypes a rule's match covers: its one family, or both when nothing in it
    names a family (``tp_dst: 80`` holds for IPv4 and IPv6 connections)."""
    fam = match_family("match", mt)
    return L.ETH_IPS if fam is None else (L.ETH_IP6 if fam == 6 else L.ETH_IP,)


def match_dimensions(rule: m.Rule) -> dict[str, list]:
    """Each OpenFlow field of the rule with the list of values it may take."""
    return _dimensions(rule.match)


def _dimensions(mt: dict) -> dict[str, list]:
    dims: dict[str, list] = {f: list(mt[f]) for f in ("eth_src", "eth_dst") if f in mt}
    if "ip_proto" in mt:
        dims["ip_proto"] = [mt["ip_proto"]]
    for f in L.IP_ADDRS:
        if f in mt:
            dims[f] = [_prefix(c) for c in mt[f]]
    for k, f in (("tp_src", 0), ("tp_dst", 1)):
        if k in mt:
            dims[L.TP_FIELDS[mt["ip_proto"]][f]] = [v for s in mt[k] for v in _ports(s)]
    return dims


def _port_keyed(dims: dict[str, list], proto: int | None) -> dict[str, list]:
    """A TCP or UDP rule's protocol, and its destination port dimension, moved to the
    registers orient copies them into, where OVS checks them before any address
    (layout.CLASSIFY_TP_DST)."""
    if proto not in L.TP_FIELDS:
        return dims
    port_field = L.TP_FIELDS[proto][1]
    key, shift = L.CLASSIFY_TP_DST, L.CLASSIFY_TP_DST.ofs
    out = {f: v for f, v in dims.items() if f != port_field}
    out[L.CLASSIFY_PROTO.register] = [(L.CLASSIFY_PROTO.value(proto), L.CLASSIFY_PROTO.mask)]
    if port_field in dims:
        out[key.register] = [(key.value(v), key.mask) if isinstance(v, int)
                             else (key.value(v[0]), v[1] << shift) for v in dims[port_field]]
    return out


def _dst_named(dims: dict[str, list], router_num: int, cookie: int) -> list[Flow]:
    """A rule that matches a source and a destination prefix but no port: the flows that
    tell classify a packet's destination is inside one of its destination prefixes (the
    rule's flows match that bit).  Without them a rule whose destination cannot match
    would still have OVS walk its source trie, for packets to any destination, whenever
    another rule's prefix of the same length holds the destination."""
    if L.CLASSIFY_TP_DST.register in dims or not any(f in dims for f in ("ipv4_src", "ipv6_src")):
        return []
    router = router_num_match(router_num)
    return [flow("dst_named", _prefix_len(v, f), match(metadata=router, eth_type=eth, **{f: v}),
                 [Load.field(L.CLASSIFY_DST_NAMED, 1)], cookie=cookie)
            for f, eth in (("ipv4_dst", L.ETH_IP), ("ipv6_dst", L.ETH_IP6)) if f in dims
            for v in dims[f]]


def _with_bit(dims: dict[str, list], f: L.Field) -> dict[str, list]:
    """``dims`` with one more single-valued register field set (ORed into its register)."""
    value, mask = dims.get(f.register, [(0, 0)])[0]
    return {**dims, f.register: [(value | f.value(1), mask | f.mask)]}


def _prefix_len(value, field: str) -> int:
    """Prefix length of a prefix match value (prefix_match): longer prefixes go first."""
    if value is None:
        return 0
    if isinstance(value, str):
        return 32 if field == "ipv4_dst" else 128
    return bin(int(ipaddress.ip_address(value[1]))).count("1")


def _crossed(multi: dict[str, list]) -> bool:
    """A port list with one other list: each combination a flow of its own, when that is
    at most twice a conjunction's flows.  A conjunction's other clause carries no port,
    so OVS would look it up, and un-wildcard its addresses, for packets of any port."""
    if len(multi) != 2 or L.CLASSIFY_TP_DST.register not in multi:
        return False
    a, b = (len(v) for v in multi.values())
    return a * b <= 2 * (a + b + 1)


class RuleInputs(NamedTuple):
    """Everything a rule's classify flows depend on.  Equal inputs give equal flows, so
    they are compiled once and reused by every later compile (a REST change recompiles
    the pipeline; only the rules it touched are built again)."""

    rule_num: int
    priority: int
    action: str
    policy_num: int
    router_num: int
    set_code: SetCode
    match: tuple        # the rule's match, frozen: ((field, value or tuple of values), ...)


def rule_inputs(rule: m.Rule, ctx: Context) -> RuleInputs:
    policy = ctx.model.get("policies", rule.policy) if rule.action == "redirect" else None
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                          for k, v in rule.match.items()))
    return RuleInputs(rule.rule_num, rule.priority, rule.action, policy.num if policy else 0,
                      ctx.router(rule.router).num, ctx.rule_code(rule), frozen)


def decision(rule_num: int, action: str, policy_num: int) -> list:
    """The registers a rule's classification loads (keep_decision reads them next)."""
    loads = [Load.field(L.RULE_NUM, rule_num),
             Load.field(L.RULE_ACTION, L.RULE_ACTION_CODES[action])]
    if action == "redirect":
        return loads + [Load.field(L.POLICY_NUM, policy_num)]
    transport = L.TRANSPORT_DROP if action == "drop" else L.TRANSPORT_NONE
    return loads + [Load.field(L.TRANSPORT, transport)]


def rule_flows(rule: m.Rule, ctx: Context) -> tuple[Flow, ...]:
    """The classify flows of one rule (from the cache when its inputs did not change)."""
    return compiled_rule(rule_inputs(rule, ctx))


@functools.lru_cache(maxsize=1 << 17)      # holds the rules of a 50,000-rule config twice
def compiled_rule(rule: RuleInputs) -> tuple[Flow, ...]:
    reg, value, mask = L.applied_to_slice(*rule.set_code)
    mt = {k: list(v) if isinstance(v, tuple) else v for k, v in rule.match}
    prio, ck = rule.priority, L.cookie("rule", rule.rule_num)
    dims = _port_keyed(_dimensions(mt), mt.get("ip_proto"))
    named = _dst_named(dims, rule.router_num, ck)
    if named:
        dims = _with_bit(dims, L.CLASSIFY_DST_NAMED)
    # The protocol key and the destination bit hold for the whole rule: in every flow,
    # conjunction clauses too, so OVS turns a packet away from each in its register stage.
    keys = {f: v[0] for f, v in dims.items() if f == L.CLASSIFY_PROTO.register}
    single = {f: v[0] for f, v in dims.items() if len(v) == 1 and f not in keys}
    multi = {f: v for f, v in dims.items() if len(v) > 1}
    actions, goto = decision(rule.rule_num, rule.action, rule.policy_num), "reorient"
    out = list(named)
    for eth_type in rule_eth_types(mt):
        base = {"metadata": router_num_match(rule.router_num), "eth_type": eth_type, **keys}
        if "ip_proto" in mt:
            base["ip_proto"] = mt["ip_proto"]
        first = {**base, **single, reg: (value, mask)}
        if len(multi) <= 1 or _crossed(multi):
            out += [flow("classify", prio, match(**first, **dict(zip(multi, values))),
                         actions, goto, ck) for values in itertools.product(*multi.values())]
            continue
        for k, (f, values) in enumerate(multi.items(), start=1):
            extra = first if k == 1 else base
            out += [flow("classify", prio, match(**extra, **{f: v}),
                         [Conjunction(rule.rule_num, k, len(multi))], cookie=ck)
                    for v in values]
        # One per family too: its counter is the rule's hits of that family (/stats).
        out.append(flow("classify", prio, match(conj_id=rule.rule_num, eth_type=eth_type),
                        actions, goto, ck))
    return tuple(out)


def merge_conjunctions(flows: list[Flow]) -> list[Flow]:
    """Clause flows of different rules with the same match become one flow.

    OpenFlow keeps one flow per (table, priority, match); a second flow-mod
    would replace the first, so their conjunction actions are combined.  For
    two ordinary rules with the same match and priority, the lower rule number
    wins (deterministic; the REST layer warns about such shadowing).
    """
    by_key: dict[tuple, Flow] = {}
    for f in flows:
        old = by_key.setdefault(f.key(), f)
        if old is f:
            continue
        if all(isinstance(a, Conjunction) for a in old.actions + f.actions):
            acts = tuple(sorted(set(old.actions + f.actions), key=lambda a: (a.id, a.clause)))
            by_key[f.key()] = Flow(old.table, old.priority, old.match, acts, None,
                                   L.PIPELINE_COOKIE)
    return list(by_key.values())


def default_rule_flows(ctx: Context) -> list[Flow]:
    """The lowest-priority rule of every router: allow, no service."""
    return [flow("classify", 0, match(metadata=router_match(r), eth_type=t),
                 decision(L.DEFAULT_RULE_NUM, "allow", 0), "reorient",
                 L.cookie("router", r.num)) for r in ctx.routers for t in L.ETH_IPS]


def _swap(a: str, b: str, nbits: int) -> list[Move]:
    """Swap two fields through the 32-bit scratch register, 32 bits at a time."""
    tmp = L.SWAP_SCRATCH.register
    out = []
    for ofs in range(0, nbits, 32):
        n = min(32, nbits - ofs)
        out += [Move(a, tmp, ofs, 0, n), Move(b, a, ofs, ofs, n), Move(tmp, b, 0, ofs, n)]
    return out


def orient_flows(table: str, then: str, keyed: bool = False) -> list[Flow]:
    """Swap a reply-direction packet's Ethernet and IP addresses and ports (its own
    inverse, so the same flows orient before classify and reorient after it);
    ``keyed`` (before classify): copy every TCP and UDP packet's port key too, and look
    the (original-direction) destination up in dst_named."""
    ck = L.PIPELINE_COOKIE
    reply = (L.CT_TRK | L.CT_RPL, L.CT_TRK | L.CT_RPL)
    named = [Resubmit("dst_named")] if keyed else []
    out = []
    for eth_type, (a, b, nbits) in ((L.ETH_IP, ("ipv4_src", "ipv4_dst", 32)),
                                   (L.ETH_IP6, ("ipv6_src", "ipv6_dst", 128))):
        addrs = _swap("eth_src", "eth_dst", 48) + _swap(a, b, nbits)
        for proto, (src, dst) in L.TP_FIELDS.items():
            key = [*_port_key(proto, dst), *named] if keyed else []
            out.append(flow(table, 20, match(ct_state=reply, eth_type=eth_type, ip_proto=proto),
                            [*addrs, *_swap(src, dst, 16), *key], goto=then, cookie=ck))
            if keyed:
                out.append(flow(table, 15, match(eth_type=eth_type, ip_proto=proto), key,
                                goto=then, cookie=ck))
        out.append(flow(table, 10, match(ct_state=reply, eth_type=eth_type), [*addrs, *named],
                        goto=then, cookie=ck))
    out.append(flow(table, 0, (), named, goto=then, cookie=ck))
    return out + ([flow("dst_named", 0, (), cookie=ck)] if keyed else [])


def _port_key(proto: int, dst: str) -> list:
    """Copy the (original-direction) destination port and its protocol for classify."""
    return [Move(dst, L.CLASSIFY_TP_DST.register, 0, L.CLASSIFY_TP_DST.ofs, 16),
            Load.field(L.CLASSIFY_PROTO, proto)]


def keep_decision_flows(ctx: Context) -> list[Flow]:
    """Re-classified to the record's own redirect rule, with the same policy: keep the
    stored decision (its node or path, and what flow programming made of it) and
    re-commit it with this interface's class.  A rule whose action or policy changed
    since the record was made takes its new decision instead.  Allow and drop carry
    no state to keep: deciding them again gives the same decision, so they have no
    flow here (one flow per redirect rule)."""
    out = [_keep_flow(r.rule_num, ctx.router(r.router).num, rule_inputs(r, ctx).policy_num)
           for r in ctx.rules() if r.action == "redirect"]
    return out + [
        flow("keep_decision", 1, match(**fields((L.RULE_ACTION, L.ACTION_REDIRECT))),
             goto="policy", cookie=L.PIPELINE_COOKIE),
        flow("keep_decision", 0, (), goto="commit", cookie=L.PIPELINE_COOKIE),
    ]


@functools.lru_cache(maxsize=1 << 17)
def _keep_flow(rule_num: int, router_num: int, policy_num: int) -> Flow:
    stored = (L.RULE_ACTION, L.ACTION_REDIRECT), (L.POLICY_NUM, policy_num)
    label = [label_match(f, v) for f, v in stored]
    return flow("keep_decision", 10,
                match(metadata=router_num_match(router_num),
                      ct_mark=record_match(rule_num),
                      ct_label=(label[0][0] | label[1][0], label[0][1] | label[1][1]),
                      **fields((L.RULE_NUM, rule_num))),
                [*RESTORE_DECISION, Load.field(L.FLAGS_KEPT, 1)], goto="commit",
                cookie=L.cookie("rule", rule_num))


def classify_flows(ctx: Context) -> list[Flow]:
    """Rules, then each router's default rule at priority 0.  No catch-all drop here:
    two overlapping flows of one priority are an undefined choice for OVS (the
    table miss drops anything that is not IPv4 of a known router)."""
    flows = list(itertools.chain.from_iterable(rule_flows(r, ctx) for r in ctx.rules()))
    return merge_conjunctions(flows) + default_rule_flows(ctx)

