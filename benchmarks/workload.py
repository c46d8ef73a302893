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

A rule base is of one ``family``: ``ipv4`` (the rules above; those that name
no address classify both families, as the product compiles a rule without a
family), ``ipv6`` (the same shapes from their own seeded draw, addresses from
2001:db8:6400::/40 and 2001:db8:8000::/33, ICMPv6 for ICMP, and ``eth_type``
ipv6 where no address names the family, so every one is an IPv6 rule), or
``dual``: the N IPv4 rules, then N IPv6 ones.
"""
from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import Any, Callable

RESERVED_PORTS = range(5000, 9000)   # the datapath benchmark's destination ports
FAMILIES = ("ipv4", "ipv6", "dual")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Plan:
    """Where one family's generated rules draw their addresses, and how they say the family."""

    src_field: str
    dst_field: str
    src: Network
    dst: Network
    src_lens: tuple[int, ...]
    dst_lens: tuple[int, ...]
    icmp: str
    tag: dict[str, str]   # added to a match that names no address of the family


V4 = Plan("ipv4_src", "ipv4_dst", ipaddress.IPv4Network("100.64.0.0/10"),
          ipaddress.IPv4Network("10.128.0.0/9"), (16, 20, 24, 28, 32), (16, 24, 32), "icmp", {})
V6 = Plan("ipv6_src", "ipv6_dst", ipaddress.IPv6Network("2001:db8:6400::/40"),
          ipaddress.IPv6Network("2001:db8:8000::/33"), (48, 52, 56, 64, 128), (48, 64, 128),
          "icmpv6", {"eth_type": "ipv6"})

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


def _prefix(rnd: random.Random, block: Network, lens: tuple[int, ...]) -> str:
    plen = rnd.choice(lens)
    addr = int(block.network_address) | rnd.getrandbits(block.max_prefixlen - block.prefixlen)
    return str(type(block)((addr, plen), strict=False))


def _src(rnd: random.Random, plan: Plan) -> str:
    return _prefix(rnd, plan.src, plan.src_lens)


def _dst(rnd: random.Random, plan: Plan) -> str:
    return _prefix(rnd, plan.dst, plan.dst_lens)


def _proto(rnd: random.Random) -> str:
    return rnd.choice(("tcp", "tcp", "udp"))


SHAPES: dict[str, Callable[[random.Random, Plan], dict[str, Any]]] = {
    "port": lambda r, p: {"ip_proto": _proto(r), "tp_dst": _port(r),
                          **({p.dst_field: _dst(r, p)} if r.random() < 0.5 else {})},
    "range": lambda r, p: {"ip_proto": _proto(r), "tp_dst": _port_range(r)},
    "prefix_list": lambda r, p: {"ip_proto": "tcp", "tp_dst": _port(r),
                                 p.src_field: [_src(r, p) for _ in range(r.randint(2, 6))]},
    "wildcard": lambda r, p: r.choice(({"ip_proto": "udp"}, {"ip_proto": p.icmp},
                                       {p.dst_field: _dst(r, p)})),
    "conjunction": lambda r, p: {"ip_proto": "tcp",
                                 p.src_field: [_src(r, p) for _ in range(r.randint(2, 4))],
                                 "tp_dst": [_port(r) for _ in range(r.randint(2, 4))]},
    "src_dst": lambda r, p: {"ip_proto": _proto(r), p.src_field: _src(r, p),
                             p.dst_field: _dst(r, p)},
}


def _tagged(match: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The match, made of the plan's family if no address (or ICMP) says so already."""
    named = (plan.src_field in match or plan.dst_field in match
             or match.get("ip_proto") == plan.icmp)
    return match if named else {**plan.tag, **match}


def rule(n: int, rnd: random.Random, pool: dict[str, list[list[str]]], plan: Plan = V4,
         name: str = "g") -> dict[str, Any]:
    """Rule number ``n`` of a generated rule base (name ``<name><n>``)."""
    action = _pick(rnd, ACTION_MIX)
    return {"name": f"{name}{n}", "priority": rnd.randrange(2, 65001), "action": action,
            **({"policy": "inspect"} if action == "redirect" else {}),
            "applied_to": rnd.choice(pool[_pick(rnd, APPLIED_TO_MIX)]),
            "match": _tagged(SHAPES[_pick(rnd, SHAPE_MIX)](rnd, plan), plan)}


def rules(count: int, uplinks: list[str], seed: int = 1,
          family: str = "ipv4") -> list[dict[str, Any]]:
    """``count`` rules of the family (``dual``: ``count`` IPv4 rules ``g<n>``, then ``count``
    IPv6 rules ``g6-<n>``); the IPv6 ones draw from their own seeded generator, so the
    IPv4 rules of a dual base are those of the IPv4 base."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}")
    pool = applied_to_pool(uplinks)
    out = []
    if family != "ipv6":
        rnd = random.Random(seed)
        out += [rule(n, rnd, pool) for n in range(count)]
    if family != "ipv4":
        rnd = random.Random(f"ipv6-{seed}")
        out += [rule(n, rnd, pool, V6, "g6-") for n in range(count)]
    return out


def ipv6_prefix(k: int, downlink: bool = False) -> str:
    """Uplink ``k``'s IPv6 prefix (or the downlink's) in a dual-stack document."""
    return "2001:db8:98::1/64" if downlink else str(ipaddress.IPv6Interface(
        (int(ipaddress.IPv6Address("2001:db8:99::1")) | k << 64, 64)))


def document(edge: Edge, n_rules: int, seed: int = 1, family: str = "ipv4") -> dict[str, Any]:
    """A whole config: the router, its interfaces (with IPv6 prefixes too unless the
    family is ipv4), a bump-in-the-wire node, the rules of the family."""
    six = family != "ipv4"
    uplinks = [{"name": name, "router": "bench", "port": port, "role": "uplink",
                "ip": f"10.99.{k}.1/24", "mac": f"02:b0:00:00:{k // 256:02x}:{k % 256:02x}",
                **({"ipv6": ipv6_prefix(k)} if six else {})}
               for k, (name, port) in enumerate(zip(edge.uplink_names(), edge.uplink_ports()))]
    side_a, side_b = edge.service_ports()
    return {
        "routers": [{"name": "bench", "tier": "t0", "dpid": edge.dpid}],
        "interfaces": uplinks + [
            {"name": "downlink", "router": "bench", "port": edge.downlink_port(),
             "role": "downlink", "ip": "10.98.0.1/24", "mac": "02:b0:00:01:00:01",
             **({"ipv6": ipv6_prefix(0, downlink=True)} if six else {})},
            {"name": "svc-a", "router": "bench", "port": side_a, "role": "service",
             "mac": "02:b0:00:02:00:01"},
            {"name": "svc-b", "router": "bench", "port": side_b, "role": "service",
             "mac": "02:b0:00:02:00:02"}],
        "service-nodes": [{"name": "fw", "transport": "biw", "profile": "firewall",
                           "interface_a": "svc-a", "interface_b": "svc-b"}],
        "policies": [{"name": "inspect", "biw_nodes": ["fw"]}],
        "rules": rules(n_rules, edge.uplink_names(), seed, family),
    }
