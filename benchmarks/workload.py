"""Generated configurations: one router, P classifying uplinks, R rules of realistic shapes.

Deterministic (seeded) so that two runs, or two benchmarks, measure the same
document.  The shapes follow what an edge router's rule base looks like:
some rules on every uplink, many on one to four interfaces (an ECMP pair, a
rack's quad), a few on half of them; single ports, port ranges, prefix lists,
wildcards, and rules with two multi-valued fields (conjunctive matches).

Rule addresses come from 100.64.0.0/10 (sources) and 10.128.0.0/9
(destinations) and ports avoid ``RESERVED_PORTS``, so generated rules never
match the datapath benchmark's own traffic, which a low-priority allow rule
classifies after every generated rule has been looked at.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

RESERVED_PORTS = range(5000, 9000)   # the datapath benchmark's destination ports
SRC_PREFIX_LENS = (16, 20, 24, 28, 32)
DST_PREFIX_LENS = (16, 24, 32)

# Shares of applied_to sizes and of match shapes (weights, not percentages).
APPLIED_TO_MIX = (("all", 10), ("half", 5), ("one", 40), ("pair", 30), ("quad", 15))
SHAPE_MIX = (("port", 30), ("range", 15), ("prefix_list", 15), ("wildcard", 10),
             ("conjunction", 15), ("src_dst", 15))
ACTION_MIX = (("allow", 70), ("drop", 15), ("redirect", 15))


@dataclass(frozen=True)
class Edge:
    """Names of the generated router and its ports (OVS port names are global: prefix them)."""

    prefix: str
    uplinks: int
    dpid: int

    def uplink_ports(self) -> list[str]:
        return [f"{self.prefix}u{k}" for k in range(self.uplinks)]

    def uplink_names(self) -> list[str]:
        return [f"uplink{k}" for k in range(self.uplinks)]

    def service_ports(self) -> list[str]:
        return [f"{self.prefix}sa", f"{self.prefix}sb"]

    def downlink_port(self) -> str:
        return f"{self.prefix}d"

    def all_ports(self) -> list[str]:
        return [*self.uplink_ports(), self.downlink_port(), *self.service_ports()]


def applied_to_pool(names: list[str]) -> dict[str, list[list[str]]]:
    """The interface groups rules are applied to, by size class.

    Grouping (pairs, quads, halves) keeps the number of distinct applied_to
    sets at most ~1.8 x P, under the datapath's 128 bits for P <= 64.
    """
    p = len(names)
    return {"all": [names], "half": [names[: p // 2], names[p // 2:]] if p > 1 else [names],
            "one": [[n] for n in names],
            "pair": [names[i:i + 2] for i in range(0, p, 2)],
            "quad": [names[i:i + 4] for i in range(0, p, 4)]}


def _pick(rnd: random.Random, mix: tuple[tuple[str, int], ...]) -> str:
    return rnd.choices([k for k, _ in mix], weights=[w for _, w in mix])[0]


def _port(rnd: random.Random) -> int:
    while True:
        port = rnd.randrange(1, 65536)
        if port not in RESERVED_PORTS:
            return port


def _port_range(rnd: random.Random) -> str:
    width = rnd.choice((8, 100, 1000, 4096))
    lo = rnd.choice((rnd.randrange(RESERVED_PORTS.stop, 65536 - width),
                     rnd.randrange(1, RESERVED_PORTS.start - width)))
    return f"{lo}-{lo + width - 1}"


def _prefix(rnd: random.Random, base: int, base_len: int, lens: tuple[int, ...]) -> str:
    plen = rnd.choice(lens)
    host_bits = 32 - base_len
    addr = base | rnd.getrandbits(host_bits)
    addr &= (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
    return f"{addr >> 24}.{addr >> 16 & 255}.{addr >> 8 & 255}.{addr & 255}/{plen}"


def _src(rnd: random.Random) -> str:
    return _prefix(rnd, 0x64400000, 10, SRC_PREFIX_LENS)     # 100.64.0.0/10


def _dst(rnd: random.Random) -> str:
    return _prefix(rnd, 0x0A800000, 9, DST_PREFIX_LENS)      # 10.128.0.0/9


def _proto(rnd: random.Random) -> str:
    return rnd.choice(("tcp", "tcp", "udp"))


SHAPES: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "port": lambda r: {"ip_proto": _proto(r), "tp_dst": _port(r),
                       **({"ipv4_dst": _dst(r)} if r.random() < 0.5 else {})},
    "range": lambda r: {"ip_proto": _proto(r), "tp_dst": _port_range(r)},
    "prefix_list": lambda r: {"ip_proto": "tcp", "tp_dst": _port(r),
                              "ipv4_src": [_src(r) for _ in range(r.randint(2, 6))]},
    "wildcard": lambda r: r.choice(({"ip_proto": "udp"}, {"ip_proto": "icmp"},
                                    {"ipv4_dst": _dst(r)})),
    "conjunction": lambda r: {"ip_proto": "tcp",
                              "ipv4_src": [_src(r) for _ in range(r.randint(2, 4))],
                              "tp_dst": [_port(r) for _ in range(r.randint(2, 4))]},
    "src_dst": lambda r: {"ip_proto": _proto(r), "ipv4_src": _src(r), "ipv4_dst": _dst(r)},
}


def rule(n: int, rnd: random.Random, pool: dict[str, list[list[str]]]) -> dict[str, Any]:
    """Rule number ``n`` of a generated rule base (name ``g<n>``)."""
    action = _pick(rnd, ACTION_MIX)
    return {"name": f"g{n}", "priority": rnd.randrange(2, 65001), "action": action,
            **({"policy": "inspect"} if action == "redirect" else {}),
            "applied_to": rnd.choice(pool[_pick(rnd, APPLIED_TO_MIX)]),
            "match": SHAPES[_pick(rnd, SHAPE_MIX)](rnd)}


def rules(count: int, uplinks: list[str], seed: int = 1) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    pool = applied_to_pool(uplinks)
    return [rule(n, rnd, pool) for n in range(count)]


def document(edge: Edge, n_rules: int, seed: int = 1) -> dict[str, Any]:
    """A whole config: the router, its interfaces, a bump-in-the-wire node, R rules."""
    uplinks = [{"name": name, "router": "bench", "port": port, "role": "uplink",
                "ip": f"10.99.{k}.1/24", "mac": f"02:b0:00:00:{k // 256:02x}:{k % 256:02x}"}
               for k, (name, port) in enumerate(zip(edge.uplink_names(), edge.uplink_ports()))]
    side_a, side_b = edge.service_ports()
    return {
        "routers": [{"name": "bench", "tier": "t0", "dpid": edge.dpid}],
        "interfaces": uplinks + [
            {"name": "downlink", "router": "bench", "port": edge.downlink_port(),
             "role": "downlink", "ip": "10.98.0.1/24", "mac": "02:b0:00:01:00:01"},
            {"name": "svc-a", "router": "bench", "port": side_a, "role": "service",
             "mac": "02:b0:00:02:00:01"},
            {"name": "svc-b", "router": "bench", "port": side_b, "role": "service",
             "mac": "02:b0:00:02:00:02"}],
        "service-nodes": [{"name": "fw", "transport": "biw", "profile": "firewall",
                           "interface_a": "svc-a", "interface_b": "svc-b"}],
        "policies": [{"name": "inspect", "biw_nodes": ["fw"]}],
        "rules": rules(n_rules, edge.uplink_names(), seed),
    }
