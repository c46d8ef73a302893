"""Which rule a new connection hits, and where it goes, read off the compiled pipeline.

A trace builds the connection's first packet and runs it through the interpreter
(``openflow_tables.interpret``) on the pipeline of the router's switch, compiled with
the switch's own port numbers when it is connected (else with the numbering the
service's trial compile uses), with an empty connection table.  The answer is read
off the walk, never derived from the model a second way: the interface the packet is
classified at (the registers the classify lookup saw), the rule (the classify flow's
cookie) and every rule flow of that lookup the packet matches, the policy's live
members (the buckets of the group the policy flow ran), the outcome (the transport
the decision left), the route (the routing flow), the egress interface and the tables
crossed.  ``expected_ofproto_trace_flow`` writes the same packet for
``ovs-appctl ofproto/trace`` so the switch can confirm (``ryu_si.diagnose.ofproto_trace``).
"""
from __future__ import annotations

import ipaddress
from typing import Any, NamedTuple, TypedDict

from openflow_tables import layout as L
from openflow_tables.flow import Flow, Group, Load
from openflow_tables.interpret import (Bridge, Conntrack, Packet, Result, Step, echo,
                                       ipv4 as headers_of)
from openflow_tables.interpret.packet import show
from openflow_tables.layout import DEFAULT_RULE_NUM, TP_FIELDS
from ryu_si.control.service import Service
from si_model import model as m
from si_model.flowprog import ADDRESS_FIELDS, address_pair
from si_model.validate import (FAMILY_OF_PROTO, IP_PROTOS, Checker, ValidationError, boolean,
                               integer, ip_proto, ipv4, ipv6, string)

PROTO_NAMES = {num: name for name, num in IP_PROTOS.items()}
TRACE_TTL = 64
ICMP_OF = {4: IP_PROTOS["icmp"], 6: IP_PROTOS["icmpv6"]}   # each family's echo protocol
ICMP_ECHO_REQUEST = {4: 8, 6: L.ICMPV6_ECHO_REQUEST}   # an echo "connection"'s first packet
# ovs-ofctl's flow syntax by family: protocol shorthands, the any-protocol one, address
# fields and the ICMP type and code fields.
OFCTL = {4: ({1: "icmp", 6: "tcp", 17: "udp"}, "ip", "nw", "icmp"),
         6: ({58: "icmp6", 6: "tcp6", 17: "udp6"}, "ipv6", "ipv6", "icmpv6")}


class FiveTuple(NamedTuple):
    """The first packet of a connection, IPv4 or IPv6 (both addresses of one family);
    ports only for tcp and udp."""

    ip_proto: int
    src: str
    dst: str
    tp_src: int | None = None
    tp_dst: int | None = None

    @property
    def family(self) -> int:
        return 6 if ":" in self.src else 4


# A trace request body: field -> (checker, required), like validate.SCHEMAS.  The
# five-tuple fields are named like a rule's match fields: the addresses are one
# family's pair, ipv4_src and ipv4_dst or ipv6_src and ipv6_dst (ADDRESS_FIELDS).
FIVE_TUPLE_FIELDS: dict[str, tuple[Checker, bool]] = {
    "ip_proto": (ip_proto, True), "ipv4_src": (ipv4, False), "ipv4_dst": (ipv4, False),
    "ipv6_src": (ipv6, False), "ipv6_dst": (ipv6, False),
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
    """The same packet traced through the switch's flows (``ryu_si.diagnose.ofproto_trace``):
    the flows' tables, the rule and policy their cookies name, the OpenFlow output, the
    datapath actions of each conntrack pass, and where the switch disagrees with the
    interpreter.  ``error`` says why it could not be confirmed (no bridge on this host...)."""

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


class TierHit(TypedDict):
    """One router's classification of the packet on its walk (a t0's, then a t1's)."""
    router: str
    classified_at: str
    rule: RuleHit | None
    outcome: str


class TraceResult(TypedDict):
    """``classified_at`` is null when the packet is not classified at all (it comes
    back from a service node, or leaves by an interface that does not classify);
    ``matched`` lists every rule applied there that covers the packet, winner first;
    ``ambiguous``: the winner shares its priority with another matching rule, and
    OVS leaves such overlaps undefined (the trace names the lower rule number);
    ``outcome`` is what happens after the policy's failure policy: redirect, allow
    (routed without service) or drop; ``egress`` the interface the packet leaves
    by (null: dropped, or sent to the controller to resolve its next hop);
    ``tables`` the tables it crossed, in order; ``walk`` the interpreter's report,
    table by table (``openflow_tables.walk``).  ``classified_at``, ``rule`` and
    ``outcome`` are the first classification's; ``tiers`` lists every router's that
    the walk met, in order (the packet crosses router links within the switch: FIG. 24
    classifies at the t0, then at the tenant's uplink)."""

    ingress: str
    classified_at: str | None
    rule: RuleHit | None
    matched: list[RuleHit]
    ambiguous: bool
    policy: PolicyHit | None
    outcome: str
    tiers: list[TierHit]
    route: RouteHit | None
    egress: str | None
    tables: list[str]
    walk: list[str]
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
    fam, src, dst = address_pair(values)
    packet = FiveTuple(values["ip_proto"], src, dst, values.get("tp_src"), values.get("tp_dst"))
    if FAMILY_OF_PROTO.get(packet.ip_proto, fam) != fam:
        raise ValidationError("ip_proto", f"{PROTO_NAMES[packet.ip_proto]} is not IPv{fam}'s: "
                              f"an IPv{fam} echo is {PROTO_NAMES[ICMP_OF[fam]]}")
    for f in ("tp_src", "tp_dst"):
        if packet.ip_proto in TP_FIELDS and getattr(packet, f) is None:
            raise ValidationError(f, "is required for tcp and udp")
        if packet.ip_proto not in TP_FIELDS and getattr(packet, f) is not None:
            raise ValidationError(f, "only tcp and udp have ports")
    return iface.id, packet, values.get("confirm", False)


def trace(service: Service, interface_id: str, five_tuple: FiveTuple) -> TraceResult:
    """Run the first packet of a connection entering on ``interface_id`` through the
    pipeline of its router's switch, as the service has it now."""
    entry = _interface(service.model, interface_id)
    return Tracer(service, entry.router).trace(interface_id, five_tuple)


TRANSPORT_OUTCOMES = {L.TRANSPORT_NONE: "allow", L.TRANSPORT_DROP: "drop",
                      L.TRANSPORT_BIW: "redirect", L.TRANSPORT_CHAIN: "redirect",
                      L.TRANSPORT_L3: "redirect"}
ZERO_MAC = "00:00:00:00:00:00"   # what ofproto/trace gives a packet whose source is unsaid


class Tracer:
    """The interpreter loaded with one router's switch pipeline: one compile, many
    traces (each with an empty connection table)."""

    def __init__(self, service: Service, router_id: str) -> None:
        self.service = service
        self.model = service.model
        self.router = self.model.get("routers", router_id)
        self.ports = service.switch_ports(self.router.dpid)
        self.port_names = {no: name for name, no in self.ports.items()}
        self.bridge = Bridge(service.pipeline(self.router.dpid, self.ports), ties="first")

    def run(self, iface: m.Interface, five_tuple: FiveTuple) -> Result:
        """The interpreter's walk of the packet (the connection's first)."""
        p = five_tuple
        eth = {"eth_src": ZERO_MAC, "eth_dst": iface.mac or ZERO_MAC, "ttl": TRACE_TTL}
        if p.ip_proto == ICMP_OF[p.family]:
            headers = echo(p.src, p.dst, **eth)
        else:
            headers = headers_of(p.src, p.dst, p.ip_proto, p.tp_src or 0, p.tp_dst or 0, **eth)
        return self.bridge.send(Conntrack(), self.ports[iface.port], headers)

    def trace(self, interface_id: str, five_tuple: FiveTuple) -> TraceResult:
        entry = _interface(self.model, interface_id)
        result = self.run(entry, five_tuple)
        steps = result.trace
        classify = _step(steps, "classify")
        at = self._iface(_field(classify.packet, L.SI_IFACE)) if classify else None
        matched = self._matched(classify)
        hit = self._rule(classify.flow) if classify else None
        policy = self._policy_hit(hit, _step(steps, "policy"))
        tiers = self._tiers(steps)
        return TraceResult(
            ingress=entry.name, classified_at=at.name if at else None, rule=hit,
            matched=matched,
            ambiguous=len(matched) > 1 and matched[0]["priority"] == matched[1]["priority"],
            policy=policy, outcome=tiers[0]["outcome"] if tiers else "allow", tiers=tiers,
            route=self._route(steps),
            egress=self._egress(result), tables=result.tables(),
            walk=result.describe(self.port_names).splitlines(),
            ofproto_trace_flow=expected_ofproto_trace_flow(self.model, interface_id,
                                                           five_tuple),
            confirmed=None)

    # --- reading the walk ---
    def _tiers(self, steps: list[Step]) -> list[TierHit]:
        """Each classification of the walk, with what its transport step decided (a
        classification the walk leaves before its transport is a drop)."""
        out = []
        for k, step in enumerate(steps):
            if step.table != "classify" or step.flow is None:
                continue
            transport = _step(steps[k:], "transport")
            router = next(r for r in self.model.all("routers")
                          if r.num == _field(step.packet, L.ROUTER))
            at = self._iface(_field(step.packet, L.SI_IFACE))
            out.append(TierHit(
                router=router.name, classified_at=at.name if at else "-",
                rule=self._rule(step.flow),
                outcome=(TRANSPORT_OUTCOMES.get(_field(transport.packet, L.TRANSPORT), "drop")
                         if transport else "allow")))
        return out

    def _iface(self, num: int) -> m.Interface | None:
        """An interface of a router on this switch (a walk crosses router links)."""
        return next((i for i in self.model.all("interfaces") if i.num == num
                     and self.model.get("routers", i.router).dpid == self.router.dpid), None)

    def _rule(self, flow: Flow) -> RuleHit | None:
        """The rule a classify flow's cookie names (the router's default rule too)."""
        owner = L.cookie_owner(flow.cookie)
        if owner is None or owner[0] not in ("rule", "router"):
            return None
        if owner[0] == "router":
            return RuleHit(**DEFAULT_RULE)
        rule = next((r for r in self.model.all("rules") if r.rule_num == owner[1]), None)
        return _rule_hit(rule) if rule else None

    def _matched(self, classify: Step | None) -> list[RuleHit]:
        """Every rule whose classify flow the packet matches there, winner first (the
        flow the lookup took), then by priority and rule number."""
        if classify is None:
            return []
        hits: dict[int, RuleHit] = {}
        for f in [classify.flow, *self.bridge.matching("classify", classify.packet.copy())]:
            hit = self._rule(f)
            if hit is not None and hit["id"] is not None:
                hits.setdefault(hit["rule_num"], hit)
        first, *rest = list(hits.values()) or [None]
        rest.sort(key=lambda h: (-h["priority"], h["rule_num"]))
        return [first, *rest] if first else []

    def _policy_hit(self, hit: RuleHit | None, step: Step | None) -> PolicyHit | None:
        """The rule's policy, with the members the group its policy flow ran holds
        (none: the policy flow followed the failure policy)."""
        rule = self.model.get("rules", hit["id"]) if hit and hit["id"] else None
        if rule is None or not rule.policy:
            return None
        policy = self.model.get("policies", rule.policy)
        picks = step.groups if step else []
        group = self.bridge.groups.get(picks[0].group_id) if picks else None
        weights = _bucket_weights(group) if group else {}
        names = {n.id: n.name for n in self.model.all("service-nodes")}
        live_paths = [LivePath(spi=p.spi, reverse_spi=p.reverse_spi,
                               hops=[names[h] for h in p.hops],
                               weight=weights[L.path_header(p.spi, L.NSH_FIRST_SI)])
                      for p in self.service.paths.get(policy.chain, [])
                      if L.path_header(p.spi, L.NSH_FIRST_SI) in weights]
        if policy.chain:
            live_nodes = sorted({h for p in live_paths for h in p["hops"]})
        else:
            live_nodes = [names[n] for n in policy.nodes
                          if self.model.get("service-nodes", n).num in weights]
        return PolicyHit(id=policy.id, name=policy.name, num=policy.num,
                         transport=policy.transport, failure_policy=policy.failure_policy,
                         live_nodes=live_nodes, live_paths=live_paths)

    def _route(self, steps: list[Step]) -> RouteHit | None:
        """The routing flow the packet crossed; for a packet that does not reach routing
        (redirected or dropped first), the one it would take as it entered."""
        routing = _step(steps, "routing")
        if routing is not None:
            flow, pkt = routing.flow, routing.packet
        elif len(steps) > 1 and steps[1].packet is not None:
            pkt = steps[1].packet.copy()
            flow = self.bridge.lookup("routing", pkt)
        else:
            return None
        owner = L.cookie_owner(flow.cookie) if flow else None
        if flow is None or owner is None or owner[0] not in ("interface", "route"):
            return None
        egress = next(self._iface(a.value) for a in flow.actions
                      if isinstance(a, Load) and a == Load.field(L.EGRESS_IFACE, a.value))
        hop = next(a for a in flow.actions if getattr(a, "dst", None) == L.NEXT_HOP.register)
        fam = 6 if pkt.read("ipv6_dst") is not None else 4
        dst_field = ADDRESS_FIELDS[fam][1]
        dst = show(dst_field, pkt.read(dst_field))
        prefix = next((_prefix(v, mask) for name, v, mask in flow.match if name == dst_field),
                      "::/0" if fam == 6 else "0.0.0.0/0")
        return RouteHit(interface=egress.name, prefix=prefix,
                        next_hop=self._next_hop(fam, hop, dst))

    def _next_hop(self, fam: int, hop: Any, dst: str) -> str:
        """What routing left in NEXT_HOP, as an address: an IPv4 next hop itself (a move
        of the destination when connected); for IPv6 the next hop of that number, or the
        destination (``NEXT_HOP_V6_DIRECT``)."""
        if not isinstance(hop, Load):
            return dst
        if fam == 4:
            return str(ipaddress.IPv4Address(hop.value))
        numbered = {n: a for a, n in m.ipv6_next_hops(self.model).items()}
        return numbered.get(hop.value, dst)

    def _egress(self, result: Result) -> str | None:
        if not result.outputs:
            return None
        name = self.port_names.get(result.outputs[0].port)
        iface = next((i for i in self.model.all("interfaces") if i.port == name
                      and self.model.get("routers", i.router).dpid == self.router.dpid), None)
        return iface.name if iface else name


def _step(steps: list[Step], table: str) -> Step | None:
    """The first lookup of ``table`` that found a flow."""
    return next((s for s in steps if s.table == table and s.flow is not None), None)


def _field(pkt: Packet | None, f: L.Field) -> int:
    value = pkt.read(f.register) if pkt is not None else None
    return ((value or 0) >> f.ofs) & ((1 << f.nbits) - 1)


def _prefix(value: str, mask: str | None) -> str:
    """A routing flow's (address, mask) match as a prefix (an address alone: a host)."""
    addr = ipaddress.ip_address(value)
    bits = addr.max_prefixlen if mask is None else bin(int(ipaddress.ip_address(mask))).count("1")
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


def expected_ofproto_trace_flow(model: m.Model, interface_id: str, five_tuple: FiveTuple) -> str:
    """The packet in ``ovs-appctl ofproto/trace BRIDGE FLOW --ct-next trk,new`` syntax.

    It enters on the interface's OVS port, addressed to the interface's MAC (the
    ingress stage matches it), with a TTL that survives routing.
    """
    iface = _interface(model, interface_id)
    p = five_tuple
    protos, any_proto, addr, icmp = OFCTL[p.family]
    parts = [protos.get(p.ip_proto, f"{any_proto},nw_proto={p.ip_proto}"),
             f"in_port={iface.port}"]
    if iface.mac:
        parts.append(f"dl_dst={iface.mac}")
    parts += [f"{addr}_src={p.src}", f"{addr}_dst={p.dst}", f"nw_ttl={TRACE_TTL}"]
    if p.ip_proto in TP_FIELDS:
        src, dst = TP_FIELDS[p.ip_proto]
        parts += [f"{src}={p.tp_src}", f"{dst}={p.tp_dst}"]
    elif p.ip_proto == ICMP_OF[p.family]:
        parts += [f"{icmp}_type={ICMP_ECHO_REQUEST[p.family]}", f"{icmp}_code=0"]
    return ",".join(parts)


def _interface(model: m.Model, interface_id: str) -> m.Interface:
    iface = model.get("interfaces", interface_id)
    if iface is None:
        raise ValidationError("interface", f"unknown interface {interface_id!r}", 422)
    if iface.port is None:
        raise ValidationError("interface", f"{iface.name} is a router link, which no packet "
                              "enters the edge by: trace from a port's interface (the walk "
                              "crosses links)", 422)
    return iface


def _rule_hit(rule: m.Rule) -> RuleHit:
    return RuleHit(id=rule.id, name=rule.name, rule_num=rule.rule_num, priority=rule.priority,
                   action=rule.action)


def _bucket_weights(group: Group) -> dict[int, int]:
    """Forward data (a node number, or SPI and SI) of each bucket -> its weight."""
    return {a.value: b.weight for b in group.buckets for a in b.actions
            if isinstance(a, Load) and a == Load.field(L.FWD_DATA, a.value)}
