"""Which rule a new connection would hit, and where it would go, without a switch.

The answer is read off the compiler's own output so the two cannot disagree:
rules are matched through the OpenFlow values the classify stage emits
(``match_dimensions``), an interface carries the applied_to-set bits the
ingress stage loads, and a policy's live members are the buckets of the select
group the policy stage builds.  ``expected_ofproto_trace_flow`` writes the same
packet for ``ovs-appctl ofproto/trace`` so the real switch can confirm.
"""
from __future__ import annotations

import ipaddress
from typing import Any, NamedTuple, TypedDict

from openflow_tables import layout as L
from openflow_tables.context import Context
from openflow_tables.flow import Group, Load
from openflow_tables.stages.applied_to import DEFAULT_RULE_NUM
from openflow_tables.stages.classify import TP_FIELDS, match_dimensions
from openflow_tables.stages.ingress import returns_serviced
from openflow_tables.stages.policy import nsh_data, policy_groups
from si_model import model as m
from si_model.validate import (IP_PROTOS, Checker, ValidationError, boolean, integer, ip_proto,
                            ipv4, string)

PROTO_NAMES = {num: name for name, num in IP_PROTOS.items()}
TRACE_TTL = 64
ICMP_ECHO_REQUEST = 8   # the first packet of an ICMP "connection" conntrack calls new


class FiveTuple(NamedTuple):
    """The first packet of a connection; ports only for tcp and udp."""

    ip_proto: int
    ipv4_src: str
    ipv4_dst: str
    tp_src: int | None = None
    tp_dst: int | None = None


# A trace request body: field -> (checker, required), like validate.SCHEMAS.  The
# five-tuple fields are named like a rule's match fields.
FIVE_TUPLE_FIELDS: dict[str, tuple[Checker, bool]] = {
    "ip_proto": (ip_proto, True), "ipv4_src": (ipv4, True), "ipv4_dst": (ipv4, True),
    "tp_src": (integer(0, 65535), False), "tp_dst": (integer(0, 65535), False),
}
# ``confirm``: also trace the packet through the switch's flows (ofproto/trace).
REQUEST_FIELDS: dict[str, tuple[Checker, bool]] = {"interface": (string, True),
                                                   **FIVE_TUPLE_FIELDS,
                                                   "confirm": (boolean, False)}


class RuleHit(TypedDict):
    id: str | None
    name: str
    rule_num: int
    priority: int
    action: str


class LivePath(TypedDict):
    spi: int
    reverse_spi: int
    hops: list[str]
    weight: int


class PolicyHit(TypedDict):
    id: str
    name: str
    num: int
    transport: str
    failure_policy: str
    live_nodes: list[str]
    live_paths: list[LivePath]


class RouteHit(TypedDict):
    interface: str
    prefix: str
    next_hop: str


class Confirmation(TypedDict):
    """The same packet traced through the switch's flows (``ryu_si.ofproto_trace``):
    the flows' tables, the rule and policy their cookies name, the OpenFlow output, the
    datapath actions of each conntrack pass, and where the switch disagrees with the
    model.  ``error`` says why it could not be confirmed (no bridge on this host...)."""

    bridge: str | None
    command: str | None
    tables: list[str]
    rule_num: int | None
    policy_num: int | None
    output_port: str | None
    datapath_actions: list[str]
    agrees: bool
    disagreements: list[str]
    error: str | None


class TraceResult(TypedDict):
    """``classified_at`` is null when the packet is not classified at all (it comes
    back from a service node, or leaves by an interface that does not classify);
    ``matched`` lists every rule applied there that covers the packet, winner first;
    ``ambiguous``: the winner shares its priority with another matching rule, and
    OVS leaves such overlaps undefined (the trace names the lower rule number);
    ``outcome`` is what happens after the policy's failure policy: redirect, allow
    (routed without service) or drop."""

    ingress: str
    classified_at: str | None
    rule: RuleHit | None
    matched: list[RuleHit]
    ambiguous: bool
    policy: PolicyHit | None
    outcome: str
    route: RouteHit | None
    ofproto_trace_flow: str
    confirmed: Confirmation | None


DEFAULT_RULE = RuleHit(id=None, name="default", rule_num=DEFAULT_RULE_NUM, priority=0,
                       action="allow")


def parse_request(body: Any, model: m.Model) -> tuple[str, FiveTuple, bool]:
    """The interface id, packet and ``confirm`` of a trace request body; a 4xx naming the
    field otherwise."""
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    values: dict[str, Any] = {}
    for f, v in body.items():
        if f not in REQUEST_FIELDS:
            raise ValidationError(f, "unknown field")
        if v is not None:
            values[f] = REQUEST_FIELDS[f][0](f, v)
    for f, (_, required) in REQUEST_FIELDS.items():
        if required and f not in values:
            raise ValidationError(f, "is required")
    ref = values["interface"]
    iface = model.get("interfaces", ref) or model.by_name("interfaces", ref)
    if iface is None:
        raise ValidationError("interface", f"unknown interface {ref!r}", 422)
    packet = FiveTuple(**{f: values.get(f) for f in FIVE_TUPLE_FIELDS})
    for f in ("tp_src", "tp_dst"):
        if packet.ip_proto in TP_FIELDS and getattr(packet, f) is None:
            raise ValidationError(f, "is required for tcp and udp")
        if packet.ip_proto not in TP_FIELDS and getattr(packet, f) is not None:
            raise ValidationError(f, "only tcp and udp have ports")
    return iface.id, packet, values.get("confirm", False)


def trace(model: m.Model, applied_to_bits: dict[tuple[str, frozenset], int],
          interface_id: str, five_tuple: FiveTuple, *, down_nodes: frozenset = frozenset(),
          paths: dict[str, list[Any]] | None = None) -> TraceResult:
    """Classify a new connection entering the router on ``interface_id``.

    ``down_nodes`` and ``paths`` are the service's liveness view (as the compiler
    gets them); a policy's live members are those its select group would hold.
    """
    entry = _interface(model, interface_id)
    ctx = Context(model, model.get("routers", entry.router).dpid, {}, applied_to_bits,
                  down_nodes=down_nodes, paths=paths or {})
    route = _route(model, entry.router, five_tuple.ipv4_dst)
    at = _classified_at(entry, route and model.get("interfaces", route[0]))
    matched = _matching_rules(ctx, at, five_tuple) if at else []
    rule = matched[0] if matched else None
    hit = _rule_hit(rule) if rule else (RuleHit(**DEFAULT_RULE) if at else None)
    policy = _policy_hit(ctx, model.get("policies", rule.policy)) if rule and rule.policy else None
    return TraceResult(
        ingress=entry.name, classified_at=at.name if at else None, rule=hit,
        matched=[_rule_hit(r) for r in matched],
        ambiguous=len(matched) > 1 and matched[0].priority == matched[1].priority, policy=policy,
        outcome=_outcome(hit, policy),
        route=_route_hit(model, route) if route else None,
        ofproto_trace_flow=expected_ofproto_trace_flow(model, interface_id, five_tuple),
        confirmed=None)


def expected_ofproto_trace_flow(model: m.Model, interface_id: str, five_tuple: FiveTuple) -> str:
    """The packet in ``ovs-appctl ofproto/trace BRIDGE FLOW --ct-next trk,new`` syntax.

    It enters on the interface's OVS port, addressed to the interface's MAC (the
    ingress stage matches it), with a TTL that survives routing.
    """
    iface = _interface(model, interface_id)
    p = five_tuple
    parts = [PROTO_NAMES.get(p.ip_proto, f"ip,nw_proto={p.ip_proto}"), f"in_port={iface.port}"]
    if iface.mac:
        parts.append(f"dl_dst={iface.mac}")
    parts += [f"nw_src={p.ipv4_src}", f"nw_dst={p.ipv4_dst}", f"nw_ttl={TRACE_TTL}"]
    if p.ip_proto in TP_FIELDS:
        src, dst = TP_FIELDS[p.ip_proto]
        parts += [f"{src}={p.tp_src}", f"{dst}={p.tp_dst}"]
    elif p.ip_proto == IP_PROTOS["icmp"]:
        parts += [f"icmp_type={ICMP_ECHO_REQUEST}", "icmp_code=0"]
    return ",".join(parts)


def _interface(model: m.Model, interface_id: str) -> m.Interface:
    iface = model.get("interfaces", interface_id)
    if iface is None:
        raise ValidationError("interface", f"unknown interface {interface_id!r}", 422)
    return iface


def _classified_at(entry: m.Interface, egress: m.Interface | None) -> m.Interface | None:
    """Where the pipeline classifies: at a classifying ingress, else (unless it comes
    back from a service node) at the egress interface if that one classifies."""
    if returns_serviced(entry):
        return None
    if entry.classifies:
        return entry
    return egress if egress is not None and egress.classifies else None


def _route(model: m.Model, router_id: str, dst: str) -> tuple[str, str, str] | None:
    """(interface id, prefix, next hop) by longest prefix, as the routing stage orders
    its flows: connected prefixes first, so they win a tie with a static route."""
    addr = ipaddress.IPv4Address(dst)
    connected = [(i.id, str(ipaddress.IPv4Interface(i.ip).network), dst)
                 for i in model.interfaces_of(router_id) if i.ip and i.role != "service"]
    static = [(r.interface, r.prefix, r.next_hop or dst)
              for r in model.all("routes") if r.router == router_id]
    best = None
    for candidate in connected + static:
        net = ipaddress.IPv4Network(candidate[1])
        if addr in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, candidate)
    return best[1] if best else None


def _packet_fields(p: FiveTuple) -> dict[str, int]:
    """The packet's values under the OpenFlow field names the classify stage matches."""
    out = {"ip_proto": p.ip_proto, "ipv4_src": int(ipaddress.IPv4Address(p.ipv4_src)),
           "ipv4_dst": int(ipaddress.IPv4Address(p.ipv4_dst))}
    if p.ip_proto in TP_FIELDS:
        src, dst = TP_FIELDS[p.ip_proto]
        out.update({f: v for f, v in ((src, p.tp_src), (dst, p.tp_dst)) if v is not None})
    return out


def _as_int(v: int | str) -> int:
    return int(ipaddress.IPv4Address(v)) if isinstance(v, str) else v


def _admits(spec: Any, value: int) -> bool:
    """One match value (exact, or a (value, mask) pair) against the packet's field."""
    want, mask = spec if isinstance(spec, tuple) else (spec, -1)
    mask = _as_int(mask)
    return value & mask == _as_int(want) & mask


def covers(rule: m.Rule, five_tuple: FiveTuple) -> bool:
    """True when every field of the rule's flows admits the packet (any one value of a
    multi-valued field, as its flows or conjunction clauses do)."""
    pkt = _packet_fields(five_tuple)
    return all(f in pkt and any(_admits(s, pkt[f]) for s in specs)
               for f, specs in match_dimensions(rule).items())


def _matching_rules(ctx: Context, at: m.Interface, five_tuple: FiveTuple) -> list[m.Rule]:
    """Enabled rules whose applied_to-set bit the interface carries and whose match
    covers the packet, highest priority first; the lower rule number breaks a tie,
    as the compiler does when two rules have one match."""
    bits = ctx.iface_bits(at)
    hits = [r for r in ctx.rules() if r.router == at.router and bits >> ctx.rule_bit(r) & 1
            and covers(r, five_tuple)]
    return sorted(hits, key=lambda r: (-r.priority, r.rule_num))


def _rule_hit(rule: m.Rule) -> RuleHit:
    return RuleHit(id=rule.id, name=rule.name, rule_num=rule.rule_num, priority=rule.priority,
                   action=rule.action)


def _policy_hit(ctx: Context, policy: m.Policy) -> PolicyHit:
    """The policy and the members its select group holds (none: failure policy)."""
    group = next((g for g in policy_groups(ctx) if g.group_id == policy.num), None)
    weights = _bucket_weights(group) if group else {}
    names = {n.id: n.name for n in ctx.model.all("service-nodes")}
    live_paths = [LivePath(spi=p.spi, reverse_spi=p.reverse_spi, hops=[names[h] for h in p.hops],
                           weight=weights[nsh_data(p.spi)])
                  for p in ctx.paths.get(policy.chain, []) if nsh_data(p.spi) in weights]
    if policy.chain:
        live_nodes = sorted({h for p in live_paths for h in p["hops"]})
    else:
        live_nodes = [names[n] for n in policy.nodes if ctx.node(n).num in weights]
    return PolicyHit(id=policy.id, name=policy.name, num=policy.num,
                     transport=policy.transport, failure_policy=policy.failure_policy,
                     live_nodes=live_nodes, live_paths=live_paths)


def _bucket_weights(group: Group) -> dict[int, int]:
    """Forward data (a node number, or SPI and SI) of each bucket -> its weight."""
    return {a.value: b.weight for b in group.buckets for a in b.actions
            if isinstance(a, Load) and a == Load.field(L.FWD_DATA, a.value)}


def _outcome(hit: RuleHit | None, policy: PolicyHit | None) -> str:
    if hit is None:
        return "allow"
    if policy is None:
        return hit["action"]
    if policy["live_nodes"]:
        return "redirect"
    return "allow" if policy["failure_policy"] == "pass" else "drop"


def _route_hit(model: m.Model, route: tuple[str, str, str]) -> RouteHit:
    iface_id, prefix, next_hop = route
    return RouteHit(interface=model.get("interfaces", iface_id).name, prefix=prefix,
                    next_hop=next_hop)
