"""Flow-programming instructions: what a service node or manager wants done to one flow.

An instruction names a connection by its 5-tuple (either direction; IPv4 or IPv6
addresses, one family's pair) and an action.  It is compiled into one flow per direction in the flow_program table
and stays pending until a packet of the connection has carried it out: the flow
then sends the controller a zero-byte packet-in, the instruction turns executed and
its flows leave the switch.

``drop_message`` (drop the one packet that carries the signal) exists only in-band:
the controller drops that packet and records nothing, so it is no instruction.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from si_model.validate import IP_PROTOS, ValidationError, integer, ipv4, ipv6

ACTIONS = ("none", "drop", "accept", "reroute", "skip")
ACTION_CODES = {1: "drop", 2: "accept", 3: "drop_message", 4: "reroute",   # NSH C1 in-band
                5: "skip"}
FIELDS = ("router", "ip_proto", "ipv4_src", "ipv4_dst", "ipv6_src", "ipv6_dst", "tp_src",
          "tp_dst", "action", "spi", "node")
# A connection's addresses are one family's pair, named like a rule's match fields.
ADDRESS_FIELDS = {4: ("ipv4_src", "ipv4_dst"), 6: ("ipv6_src", "ipv6_dst")}
ADDRESS_CHECKERS = {4: ipv4, 6: ipv6}
# The transports whose nodes each action may name: reroute to another biw or l3 node
# (a chain connection reroutes to a path, by spi); skip one chain node, keep the rest.
NODE_TRANSPORTS = {"reroute": ("biw", "l3"), "skip": ("chain",)}


@dataclass(kw_only=True)
class Instruction:
    """One instruction; its connection is IPv4 (``ipv4_src``/``ipv4_dst`` set, the IPv6
    pair None) or IPv6 (the other way round): ``family``, ``src`` and ``dst`` say which
    without looking."""

    num: int
    router: str
    ip_proto: int
    ipv4_src: str | None = None
    ipv4_dst: str | None = None
    ipv6_src: str | None = None
    ipv6_dst: str | None = None
    tp_src: int
    tp_dst: int
    action: str
    spi: int | None = None
    node: str | None = None          # reroute: to this biw or l3 node; skip: this chain node
    source: str = "rest"
    state: str = "pending"
    created: float = field(default_factory=time.time)
    executed: float | None = None

    @property
    def family(self) -> int:
        """4 or 6."""
        return 6 if self.ipv6_src is not None else 4

    @property
    def src(self) -> str:
        return self.ipv6_src if self.family == 6 else self.ipv4_src

    @property
    def dst(self) -> str:
        return self.ipv6_dst if self.family == 6 else self.ipv4_dst

    def directions(self) -> tuple[tuple[str, str, int, int], tuple[str, str, int, int]]:
        """The tuple as given and reversed: one flow each, the same decision."""
        return ((self.src, self.dst, self.tp_src, self.tp_dst),
                (self.dst, self.src, self.tp_dst, self.tp_src))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def address_pair(body: dict[str, Any]) -> tuple[int, str, str]:
    """The family, source and destination of a body that names a connection by one
    family's pair of addresses (``ADDRESS_FIELDS``; a null field is absent).  The first
    address field of the body says the family: a field of the other family, or one
    missing from the pair, is a 400 naming it."""
    given = [f for f, v in body.items() if v is not None
             and any(f in pair for pair in ADDRESS_FIELDS.values())]
    if not given:
        raise ValidationError("ipv4_src", "is required (ipv4_src and ipv4_dst, or ipv6_src "
                              "and ipv6_dst)")
    fam = 6 if given[0] in ADDRESS_FIELDS[6] else 4
    pair = ADDRESS_FIELDS[fam]
    for f in given:
        if f not in pair:
            raise ValidationError(f, f"is IPv{10 - fam} but {given[0]} makes the connection "
                                  f"IPv{fam}: give {' and '.join(pair)}")
    for f in pair:
        if f not in given:
            raise ValidationError(f, "is required")
    src, dst = (ADDRESS_CHECKERS[fam](f, body[f]) for f in pair)
    return fam, src, dst


def parse(body: Any, num: int, router_of: dict[str, str], node_of: dict[str, Any],
          source: str = "rest") -> Instruction:
    """Validate a REST body; ``router_of`` maps router names and ids to ids,
    ``node_of`` service node names and ids to nodes."""
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    for k in body:
        if k not in FIELDS:
            raise ValidationError(k, "unknown field")
    for k in ("ip_proto", "tp_src", "tp_dst", "action"):
        if k not in body:
            raise ValidationError(k, "is required")
    fam, src, dst = address_pair(body)
    proto = body["ip_proto"]
    proto = IP_PROTOS.get(proto, proto) if isinstance(proto, str) else proto
    if proto not in (6, 17):
        raise ValidationError("ip_proto", "must be tcp (6) or udp (17)")
    if body["action"] == "drop_message":
        raise ValidationError("action", "drop_message drops the one packet that carries it: "
                              "only a service node can send it, in-band")
    if body["action"] not in ACTIONS:
        raise ValidationError("action", f"must be one of {', '.join(ACTIONS)}")
    _check_target(body)
    src_f, dst_f = ADDRESS_FIELDS[fam]
    return Instruction(
        num=num, router=_router(body.get("router"), router_of), ip_proto=proto,
        **{src_f: src, dst_f: dst},
        tp_src=integer(0, 65535)("tp_src", body["tp_src"]),
        tp_dst=integer(0, 65535)("tp_dst", body["tp_dst"]), action=body["action"],
        spi=integer(1, (1 << 24) - 1)("spi", body["spi"]) if "spi" in body else None,
        node=_node(body["action"], body["node"], node_of) if "node" in body else None,
        source=source)


def _check_target(body: dict[str, Any]) -> None:
    """reroute names exactly one target: a path (``spi``) or a biw/l3 node (``node``);
    skip names the chain node to skip (``node``); the other actions name none."""
    action, targets = body["action"], [k for k in ("spi", "node") if k in body]
    if action == "reroute" and len(targets) != 1:
        raise ValidationError("spi", "reroute needs exactly one of spi (a service path) "
                              "or node (a biw or l3 node)")
    if action == "skip" and targets != ["node"]:
        raise ValidationError("node", "skip needs the chain node to skip (node), and no spi")
    if action not in ("reroute", "skip") and targets:
        raise ValidationError(targets[0], "goes with action reroute or skip only")


def _node(action: str, ref: Any, node_of: dict[str, Any]) -> str:
    if not isinstance(ref, str) or ref not in node_of:
        raise ValidationError("node", f"unknown service node {ref!r}", 422)
    node = node_of[ref]
    if node.transport not in NODE_TRANSPORTS[action]:
        raise ValidationError("node", f"{node.name!r} is a {node.transport} node; {action} "
                              f"takes a {' or '.join(NODE_TRANSPORTS[action])} node"
                              + (" (reroute a chain connection by spi)"
                                 if action == "reroute" else ""))
    return node.id


def _router(ref: Any, router_of: dict[str, str]) -> str:
    if ref is not None and not isinstance(ref, str):
        raise ValidationError("router", "must be a router name or id")
    if ref is None:
        if len(set(router_of.values())) != 1:
            raise ValidationError("router", "is required when there are several routers")
        return next(iter(router_of.values()))
    if ref not in router_of:
        raise ValidationError("router", f"unknown router {ref!r}", 422)
    return router_of[ref]
