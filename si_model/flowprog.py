"""Flow-programming instructions: what a service node or manager wants done to one flow.

An instruction names a connection by its 5-tuple (either direction) and an
action.  It is compiled into one flow per direction in the flow_program table
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

from si_model.validate import IP_PROTOS, ValidationError, integer, ipv4

ACTIONS = ("none", "drop", "accept", "reroute", "skip")
ACTION_CODES = {1: "drop", 2: "accept", 3: "drop_message", 4: "reroute",   # NSH C1 in-band
                5: "skip"}
FIELDS = ("router", "ip_proto", "ipv4_src", "ipv4_dst", "tp_src", "tp_dst", "action", "spi",
          "node")
# The transports whose nodes each action may name: reroute to another biw or l3 node
# (a chain connection reroutes to a path, by spi); skip one chain node, keep the rest.
NODE_TRANSPORTS = {"reroute": ("biw", "l3"), "skip": ("chain",)}


@dataclass
class Instruction:
    num: int
    router: str
    ip_proto: int
    ipv4_src: str
    ipv4_dst: str
    tp_src: int
    tp_dst: int
    action: str
    spi: int | None = None
    node: str | None = None          # reroute: to this biw or l3 node; skip: this chain node
    source: str = "rest"
    state: str = "pending"
    created: float = field(default_factory=time.time)
    executed: float | None = None

    def directions(self) -> tuple[tuple[str, str, int, int], tuple[str, str, int, int]]:
        """The tuple as given and reversed: one flow each, the same decision."""
        return ((self.ipv4_src, self.ipv4_dst, self.tp_src, self.tp_dst),
                (self.ipv4_dst, self.ipv4_src, self.tp_dst, self.tp_src))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse(body: Any, num: int, router_of: dict[str, str], node_of: dict[str, Any],
          source: str = "rest") -> Instruction:
    """Validate a REST body; ``router_of`` maps router names and ids to ids,
    ``node_of`` service node names and ids to nodes."""
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    for k in body:
        if k not in FIELDS:
            raise ValidationError(k, "unknown field")
    for k in ("ip_proto", "ipv4_src", "ipv4_dst", "tp_src", "tp_dst", "action"):
        if k not in body:
            raise ValidationError(k, "is required")
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
    router = _router(body.get("router"), router_of)
    return Instruction(num, router, proto, ipv4("ipv4_src", body["ipv4_src"]),
                       ipv4("ipv4_dst", body["ipv4_dst"]),
                       integer(0, 65535)("tp_src", body["tp_src"]),
                       integer(0, 65535)("tp_dst", body["tp_dst"]), body["action"],
                       integer(1, (1 << 24) - 1)("spi", body["spi"]) if "spi" in body else None,
                       _node(body["action"], body["node"], node_of) if "node" in body else None,
                       source)


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
