"""The product's rules in each peer's own terms, so that all three classify the
same packets.

Both peers start from the product's normalised match (``si_model.validate.rule_match``:
protocol numbers, lists everywhere, ports as ``"80"`` or ``"1000-2000"``).

OVN: one ACL per rule, ``from-lport`` (the product classifies what arrives on an
interface), on a port group holding exactly the rule's applied_to interfaces.
Lists stay sets (``ip4.src == {a, b}``), a port range is ``tcp.dst >= lo &&
tcp.dst <= hi``.  allow and redirect become ``allow-related`` (OVN has no
service insertion in ACLs; the product's allow is stateful too), drop becomes
``drop``.  OVN's ACL priorities stop at 32,767, so a priority is halved
(rounded down): order is kept, neighbouring priorities may tie.

Faucet: one ACL per rule whose entries are the cross product of the rule's
values (Faucet matches one value per field), a port range split into
value/mask blocks.  Each uplink's ``acls_in`` lists the rules applied to it,
highest priority first (Faucet takes the first entry that matches), then an
allow-all entry: the product routes what no rule matches, Faucet would drop it.
drop is ``allow: 0``, allow is ``allow: 1``, redirect outputs to the service
node's first port.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from si_model.validate import rule_match

PROTO_NAMES = {1: "icmp4", 6: "tcp", 17: "udp"}
OVN_ACTIONS = {"allow": "allow-related", "redirect": "allow-related", "drop": "drop"}
DEFAULT_ALLOW = "default-allow"


def normalised(rule: dict[str, Any]) -> dict[str, Any]:
    return rule_match("match", rule["match"])


def port_span(item: str) -> tuple[int, int]:
    """``"80"`` -> (80, 80); ``"1000-2000"`` -> (1000, 2000)."""
    lo, _, hi = item.partition("-")
    return int(lo), int(hi or lo)


def port_blocks(lo: int, hi: int) -> list[tuple[int, int]]:
    """The fewest (value, mask) pairs of 16-bit ports that cover exactly lo..hi."""
    blocks = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << 16
        while lo + size - 1 > hi:
            size //= 2
        blocks.append((lo, 0xFFFF & ~(size - 1)))
        lo += size
    return blocks


# --------------------------------------------------------------------- OVN

@dataclass(frozen=True)
class OvnAcl:
    port_group: str
    priority: int
    match: str
    action: str
    direction: str = "from-lport"


def port_group_name(applied_to: list[str], interfaces: list[str]) -> str:
    """A name that only the set decides (OVN names must be identifiers)."""
    bits = sum(1 << interfaces.index(name) for name in applied_to)
    return f"pg_{bits:x}"


def ovn_priority(priority: int) -> int:
    return priority // 2


def _ovn_ports(field: str, items: list[str]) -> str:
    spans = [port_span(i) for i in items]
    if all(lo == hi for lo, hi in spans):
        values = [str(lo) for lo, _ in spans]
        return f"{field} == {values[0]}" if len(values) == 1 else \
            f"{field} == {{{', '.join(values)}}}"
    terms = [f"{field} == {lo}" if lo == hi else f"({field} >= {lo} && {field} <= {hi})"
             for lo, hi in spans]
    return terms[0] if len(terms) == 1 else f"({' || '.join(terms)})"


def _ovn_set(field: str, values: list[str]) -> str:
    return f"{field} == {values[0]}" if len(values) == 1 else \
        f"{field} == {{{', '.join(values)}}}"


def ovn_match(match: dict[str, Any]) -> str:
    """An OVN match expression for a normalised product match (IPv4 only)."""
    terms = ["ip4"]
    proto = PROTO_NAMES.get(match.get("ip_proto"), None)
    if "ip_proto" in match:
        terms.append(proto or f"ip.proto == {match['ip_proto']}")
    for field, ovn_field in (("ipv4_src", "ip4.src"), ("ipv4_dst", "ip4.dst")):
        if field in match:
            terms.append(_ovn_set(ovn_field, match[field]))
    for field, suffix in (("tp_src", "src"), ("tp_dst", "dst")):
        if field in match:
            terms.append(_ovn_ports(f"{proto}.{suffix}", match[field]))
    return " && ".join(terms)


def ovn_acl(rule: dict[str, Any], interfaces: list[str]) -> OvnAcl:
    group = port_group_name(rule["applied_to"], interfaces)
    return OvnAcl(group, ovn_priority(rule["priority"]),
                  f"inport == @{group} && {ovn_match(normalised(rule))}",
                  OVN_ACTIONS[rule["action"]])


# ------------------------------------------------------------------ Faucet

def _faucet_ports(items: list[str]) -> list[int | str]:
    values: list[int | str] = []
    for item in items:
        lo, hi = port_span(item)
        values += [lo] if lo == hi else [f"0x{v:04x}/0x{m:04x}" for v, m in port_blocks(lo, hi)]
    return values


def faucet_entries(rule: dict[str, Any], service_port: str,
                   cookie: int | None = None) -> list[dict[str, Any]]:
    """Faucet ACL entries of one rule: one per combination of its values."""
    match = normalised(rule)
    actions = {"allow": {"allow": 1}, "drop": {"allow": 0},
               "redirect": {"output": {"port": service_port}}}[rule["action"]]
    proto = match.get("ip_proto")
    fields: dict[str, list[Any]] = {"eth_type": [0x0800]}
    if proto is not None:
        fields["ip_proto"] = [proto]
    for field in ("ipv4_src", "ipv4_dst"):
        if field in match:
            fields[field] = match[field]
    for field, suffix in (("tp_src", "src"), ("tp_dst", "dst")):
        if field in match:
            fields[f"{PROTO_NAMES[proto]}_{suffix}"] = _faucet_ports(match[field])
    extra = {} if cookie is None else {"cookie": cookie}
    return [{"rule": {**dict(zip(fields, combo)), **extra, "actions": actions}}
            for combo in itertools.product(*fields.values())]


def faucet_acls_in(rules: list[dict[str, Any]], interface: str) -> list[str]:
    """The ACL names an interface applies, highest priority first, then allow-all."""
    mine = [r for r in rules if interface in r["applied_to"]]
    return [r["name"] for r in sorted(mine, key=lambda r: -r["priority"])] + [DEFAULT_ALLOW]


def faucet_acls(rules: list[dict[str, Any]], service_port: str,
                cookies: dict[str, int] | None = None) -> dict[str, list[dict[str, Any]]]:
    cookies = cookies or {}
    acls = {r["name"]: faucet_entries(r, service_port, cookies.get(r["name"])) for r in rules}
    return acls | {DEFAULT_ALLOW: [{"rule": {"actions": {"allow": 1}}}]}
