"""The peers' translations of generated rule bases classify packets like the
product's rules: each translation is evaluated on packets drawn inside, at the
edges of and just outside every rule's match."""
from __future__ import annotations

import ipaddress
import random
import re

import pytest

from benchmarks.peers import translate as T
from benchmarks.workload import rules

IFACES = [f"uplink{k}" for k in range(16)]
PROTOS = {"tcp": 6, "udp": 17, "icmp4": 1}


# ------------------------------------------------------------- packets

def _net(prefix: str) -> tuple[int, int]:
    net = ipaddress.IPv4Network(prefix)
    return int(net.network_address), int(net.broadcast_address)


def _around(lo: int, hi: int, rnd: random.Random, top: int) -> list[int]:
    return [v for v in (lo - 1, lo, rnd.randint(lo, hi), hi, hi + 1) if 0 <= v <= top]


def packets(match: dict, rnd: random.Random) -> list[dict]:
    """Packets near every value of the match, the other fields drawn from the match."""
    base = {"proto": match.get("ip_proto", 6),
            "src": _net(match["ipv4_src"][0])[0] if "ipv4_src" in match else 1,
            "dst": _net(match["ipv4_dst"][0])[0] if "ipv4_dst" in match else 2,
            "dport": T.port_span(match["tp_dst"][0])[0] if "tp_dst" in match else 80}
    out = [base, base | {"proto": 17 if base["proto"] == 6 else 6}]
    for field, key in (("ipv4_src", "src"), ("ipv4_dst", "dst")):
        for prefix in match.get(field, []):
            out += [base | {key: v} for v in _around(*_net(prefix), rnd, 2**32 - 1)]
    for item in match.get("tp_dst", []):
        out += [base | {"dport": v} for v in _around(*T.port_span(item), rnd, 65535)]
    return out


# --------------------------------------------------------- the product

def product_matches(match: dict, pkt: dict) -> bool:
    def inside(values, v, span):
        return any(lo <= v <= hi for lo, hi in map(span, values))
    return (match.get("ip_proto", pkt["proto"]) == pkt["proto"]
            and inside(match.get("ipv4_src", ["0.0.0.0/0"]), pkt["src"], _net)
            and inside(match.get("ipv4_dst", ["0.0.0.0/0"]), pkt["dst"], _net)
            and ("tp_dst" not in match or pkt["proto"] in (6, 17)
                 and inside(match["tp_dst"], pkt["dport"], T.port_span)))


# ----------------------------------------------------- OVN expressions

def _ovn_values(text: str) -> list[str]:
    return [v.strip() for v in text.strip("{}").split(",")]


def _ovn_term(term: str, pkt: dict, inport: str, groups: dict[str, set[str]]) -> bool:
    """One term of the subset of OVN's match language the translation writes."""
    term = term.strip()
    if term.startswith("(") and term.endswith(")"):
        return any(ovn_eval(t, pkt, inport, groups) for t in term[1:-1].split(" || "))
    if term == "ip4":
        return True
    if term in PROTOS:
        return pkt["proto"] == PROTOS[term]
    field, op, value = re.fullmatch(r"(\S+) (==|>=|<=) (.+)", term).groups()
    if field == "inport":
        return inport in groups[value.lstrip("@")]
    if field in ("ip4.src", "ip4.dst"):
        addr = pkt["src" if field == "ip4.src" else "dst"]
        return any(ipaddress.IPv4Address(addr) in ipaddress.IPv4Network(v)
                   for v in _ovn_values(value))
    proto, _, _ = field.partition(".")
    if pkt["proto"] != PROTOS[proto]:
        return False
    port = pkt["dport"]
    if op == "==":
        return port in {int(v) for v in _ovn_values(value)}
    return port >= int(value) if op == ">=" else port <= int(value)


def ovn_eval(expr: str, pkt: dict, inport: str, groups: dict[str, set[str]]) -> bool:
    """Conjunction of terms; a parenthesised disjunction counts as one term."""
    terms, depth, cur = [], 0, ""
    for part in expr.split(" && "):
        cur = f"{cur} && {part}" if cur else part
        depth += part.count("(") - part.count(")")
        if depth == 0:
            terms.append(cur)
            cur = ""
    return all(_ovn_term(t, pkt, inport, groups) for t in terms)


# ------------------------------------------------------------- Faucet

def faucet_hits(entry: dict, pkt: dict) -> bool:
    rule = entry["rule"]
    checks = {"eth_type": lambda v: v == 0x0800, "ip_proto": lambda v: v == pkt["proto"],
              "ipv4_src": lambda v: ipaddress.IPv4Address(pkt["src"]) in
              ipaddress.IPv4Network(v),
              "ipv4_dst": lambda v: ipaddress.IPv4Address(pkt["dst"]) in
              ipaddress.IPv4Network(v)}
    for proto in ("tcp", "udp"):
        checks[f"{proto}_dst"] = lambda v, p=proto: pkt["proto"] == PROTOS[p] and (
            pkt["dport"] == v if isinstance(v, int) else
            pkt["dport"] & int(v.split("/")[1], 16) == int(v.split("/")[0], 16))
    return all(checks[k](v) for k, v in rule.items() if k not in ("actions", "cookie"))


def faucet_first(acls: dict, acls_in: list[str], pkt: dict) -> str:
    return next(name for name in acls_in if any(faucet_hits(e, pkt) for e in acls[name]))


# --------------------------------------------------------------- tests

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_rule_matches_the_same_packets_in_every_peer(seed):
    base = rules(400, IFACES, seed)
    groups = {T.port_group_name(r["applied_to"], IFACES): set(r["applied_to"]) for r in base}
    acls = T.faucet_acls(base, "svc-a")
    rnd = random.Random(seed)
    compared = 0
    for r in base:
        match, acl = T.normalised(r), T.ovn_acl(r, IFACES)
        assert groups[acl.port_group] == set(r["applied_to"])
        outside = next(i for i in IFACES if i not in r["applied_to"]) \
            if len(r["applied_to"]) < len(IFACES) else None
        for pkt in packets(match, rnd):
            want = product_matches(match, pkt)
            assert ovn_eval(acl.match, pkt, r["applied_to"][0], groups) == want, (r, pkt)
            assert any(faucet_hits(e, pkt) for e in acls[r["name"]]) == want, (r, pkt)
            if outside:
                assert not ovn_eval(acl.match, pkt, outside, groups)
            compared += want
    assert compared > len(base)   # most sampled packets hit their own rule


@pytest.mark.parametrize("seed", [1, 2])
def test_faucet_port_lists_keep_the_products_winner(seed):
    base = rules(300, IFACES, seed)
    acls = T.faucet_acls(base, "svc-a")
    by_name = {r["name"]: r for r in base}
    rnd = random.Random(seed)
    for iface in IFACES[:4]:
        acls_in = T.faucet_acls_in(base, iface)
        mine = [r for r in base if iface in r["applied_to"]]
        assert acls_in[-1] == T.DEFAULT_ALLOW and len(acls_in) == len(mine) + 1
        for r in rnd.sample(mine, 20):
            for pkt in packets(T.normalised(r), rnd):
                hits = [m for m in mine if product_matches(T.normalised(m), pkt)]
                first = faucet_first(acls, acls_in, pkt)
                if not hits:
                    assert first == T.DEFAULT_ALLOW
                else:
                    assert by_name[first]["priority"] == max(m["priority"] for m in hits)


def test_ovn_priorities_keep_the_order_within_ovns_range():
    values = [T.ovn_priority(p) for p in range(65536)]
    assert values == sorted(values) and max(values) <= 32767


@pytest.mark.parametrize("lo,hi", [(0, 65535), (1, 1), (1000, 1999), (5000, 9095),
                                   (65528, 65535), (3, 4100)])
def test_port_blocks_cover_the_range_exactly(lo, hi):
    covered = {p for v, m in T.port_blocks(lo, hi) for p in range(65536) if p & m == v}
    assert covered == set(range(lo, hi + 1))


def test_flow_shapes_ignore_values_and_name_protocol_fields():
    from benchmarks.peers.measure import subtables
    lines = [" table=0, priority=9,tcp,in_port=1,nw_src=10.0.0.0/8,tp_dst=80 actions=drop",
             " cookie=0x5, table=0, priority=7,udp,in_port=2,nw_src=9.0.0.0/8,tp_dst=5 actions=drop",
             " table=0, priority=9,tcp,in_port=1,nw_src=10.0.0.0/16,tp_dst=80 actions=drop",
             " table=0, priority=9,ip,in_port=1,nw_proto=6,nw_src=1.0.0.0/16,tp_dst=8 actions=drop",
             " table=0, priority=9,tcp,in_port=1,tp_dst=0x1000/0xf000 actions=drop",
             " table=0, tcp,in_port=1,tp_dst=0x2000/0xf000 actions=drop"]
    assert subtables(lines) == 3
