"""Input checks that name the field: every bad request becomes a 4xx, never a crash.

``build`` turns a JSON body into a model object (resolving references given by
id or by name); ``check_model`` checks what only the whole model can tell
(unique names, one router per rule, transports that fit).  Nothing here
changes any state: the service applies a change only after both pass.
"""
from __future__ import annotations

import dataclasses

import ipaddress
import re
import uuid
from typing import Any, Callable

from si_model import model as m
from si_model.rule_index import RuleIndex

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MIN_PRIORITY, MAX_PRIORITY = 1, 65000
MATCH_FIELDS = ("eth_src", "eth_dst", "eth_type", "ip_proto", "ipv4_src", "ipv4_dst",
                "ipv6_src", "ipv6_dst", "tp_src", "tp_dst")
IP_PROTOS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}
ETH_TYPES = {"ipv4": 0x0800, "ipv6": 0x86DD}
FAMILY_OF_ETH_TYPE = {0x0800: 4, 0x86DD: 6}
FAMILY_OF_PROTO = {1: 4, 58: 6}       # ICMP is IPv4's, ICMPv6 IPv6's
# 0.0.0.0/8 ("this network") is never a next hop: the datapath numbers IPv6 next hops there.
THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")

# What one object of each kind is called in messages ("no policy 'x'"; a kind is not
# made singular by cutting its last letter, which gave "policie").
NOUNS: dict[str, str] = {
    "routers": "router", "service-planes": "service plane", "interfaces": "interface",
    "routes": "route",
    "neighbors": "neighbor", "service-nodes": "service node", "chains": "chain",
    "policies": "policy", "rules": "rule"}


def noun(kind: str) -> str:
    """The singular noun of a kind, for messages."""
    return NOUNS[kind]


class ValidationError(Exception):
    """A rejected request: HTTP status, the field at fault, and why."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field, "status": self.status}


# --- scalar checkers: (field name, raw value) -> normalised value ----------------
Checker = Callable[[str, Any], Any]


def describes(schema: dict[str, Any]) -> Callable[[Checker], Checker]:
    """Attach the JSON schema of the values a checker accepts (the OpenAPI document reads it)."""
    def attach(checker: Checker) -> Checker:
        checker.schema = schema
        return checker
    return attach


def _fail(field: str, message: str) -> None:
    raise ValidationError(field, message)


@describes({"type": "string", "minLength": 1})
def string(f: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        _fail(f, "must be a non-empty string")
    return v


@describes({"type": "string", "pattern": NAME_RE.pattern})
def name(f: str, v: Any) -> str:
    if not isinstance(v, str) or not NAME_RE.fullmatch(v):
        _fail(f, "must be 1-64 characters of letters, digits, '_.:-', starting alphanumeric")
    return v


def enum(*choices: str) -> Checker:
    @describes({"type": "string", "enum": list(choices)})
    def check(f: str, v: Any) -> str:
        if v not in choices:
            _fail(f, f"must be one of {', '.join(choices)}")
        return v
    return check


def integer(lo: int, hi: int) -> Checker:
    @describes({"type": "integer", "minimum": lo, "maximum": hi})
    def check(f: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            _fail(f, "must be an integer")
        if not lo <= v <= hi:
            _fail(f, f"must be between {lo} and {hi}")
        return v
    return check


@describes({"type": "boolean"})
def boolean(f: str, v: Any) -> bool:
    if not isinstance(v, bool):
        _fail(f, "must be true or false")
    return v


def _prefix_checker(version: int, example: str) -> Checker:
    """A prefix of one IP version with no host bits; a bare address is a host prefix."""
    cls = ipaddress.IPv6Network if version == 6 else ipaddress.IPv4Network
    name = f"IPv{version} prefix"

    @describes({"type": "string", "format": f"ipv{version}-prefix", "example": example,
                "description": f"no host bits; a bare address means /{cls.max_prefixlen}"})
    def check(f: str, v: Any) -> str:
        if not isinstance(v, str):
            _fail(f, f"must be an {name} string like {example}")
        try:
            return str(cls(v, strict=True))
        except ValueError as e:
            _fail(f, f"bad {name} {v!r}: {e}")
    return check


cidr = _prefix_checker(4, "10.0.0.0/24")
cidr6 = _prefix_checker(6, "2001:db8:10::/64")


@describes({"anyOf": [cidr.schema, cidr6.schema]})
def any_cidr(f: str, v: Any) -> str:
    """An IPv4 or an IPv6 prefix (a route's)."""
    return (cidr6 if isinstance(v, str) and ":" in v else cidr)(f, v)


@describes({"type": "string", "format": "ipv6-interface", "example": "2001:db8:1::1/64"})
def iface_cidr6(f: str, v: Any) -> str:
    """An interface's IPv6 address with its prefix length (``2001:db8:1::1/64``)."""
    if not isinstance(v, str) or "/" not in v:
        _fail(f, "must be an IPv6 address with prefix length, like 2001:db8:1::1/64")
    try:
        addr = ipaddress.IPv6Interface(v)
    except ValueError as e:
        _fail(f, f"bad IPv6 interface address {v!r}: {e}")
    if addr.is_link_local or addr.is_multicast or addr.ip == addr.network.network_address:
        _fail(f, "must be a unicast address that is not link-local (the link-local address "
              "comes from the MAC) nor the prefix's subnet-router anycast address")
    return str(addr)


@describes({"type": "string", "format": "ipv4-interface", "example": "10.0.1.1/24"})
def iface_cidr(f: str, v: Any) -> str:
    """An interface address with its prefix length (``10.0.0.1/24``)."""
    if not isinstance(v, str) or "/" not in v:
        _fail(f, "must be an address with prefix length, like 10.0.1.1/24")
    try:
        return str(ipaddress.IPv4Interface(v))
    except ValueError as e:
        _fail(f, f"bad interface address {v!r}: {e}")


def _address_checker(version: int, example: str) -> Checker:
    """An address string of one IP version, in its canonical form (ipaddress would also
    take an int, and a bool as 0 or 1)."""
    cls = ipaddress.IPv6Address if version == 6 else ipaddress.IPv4Address

    @describes({"type": "string", "format": f"ipv{version}"})
    def check(f: str, v: Any) -> str:
        if not isinstance(v, str):
            _fail(f, f"must be an IPv{version} address string like {example}, got {v!r}")
        try:
            return str(cls(v))
        except (ValueError, TypeError):
            _fail(f, f"bad IPv{version} address {v!r}")
    return check


ipv4 = _address_checker(4, "10.0.0.1")
ipv6 = _address_checker(6, "2001:db8::1")


@describes({"anyOf": [ipv4.schema, ipv6.schema]})
def ip_address(f: str, v: Any) -> str:
    """A neighbour or next hop: an IPv4 address outside 0.0.0.0/8, or an IPv6 unicast one."""
    if isinstance(v, str) and ":" in v:
        out = ipv6(f, v)
        if ipaddress.IPv6Address(out).is_multicast or out == "::":
            _fail(f, "must be a unicast IPv6 address")
        return out
    out = ipv4(f, v)
    if ipaddress.IPv4Address(out) in THIS_NETWORK:
        _fail(f, "0.0.0.0/8 is not a valid next hop or neighbour")
    return out


@describes({"type": "string", "pattern": "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"})
def mac(f: str, v: Any) -> str:
    if not isinstance(v, str) or not MAC_RE.match(v.lower()):
        _fail(f, f"bad MAC address {v!r}")
    return v.lower()


@describes({"anyOf": [integer(1, (1 << 64) - 1).schema,
                      {"type": "string", "pattern": "^(0[xX])?[0-9A-Fa-f]{1,16}$"}]})
def dpid(f: str, v: Any) -> int:
    if isinstance(v, str):
        try:
            v = int(v, 16)
        except ValueError:
            _fail(f, "must be an integer or a hex string")
    return integer(1, (1 << 64) - 1)(f, v)


@describes({"type": "array", "items": string.schema})
def string_list(f: str, v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        _fail(f, "must be a list of strings")
    return list(v)


@describes({"type": "array", "items": string.schema, "minItems": 1})
def interface_list(f: str, v: Any) -> list[str]:
    """applied_to: a rule that applies nowhere is refused, not stored silently inert
    (``enabled: false`` is how a rule is switched off)."""
    if not isinstance(v, list) or not v:
        _fail(f, "must be a non-empty list of interfaces (ids or names)")
    return string_list(f, v)


@describes({"type": "object", "additionalProperties": integer(1, 1000).schema})
def weights(f: str, v: Any) -> dict[str, int]:
    if not isinstance(v, dict):
        _fail(f, "must be an object of node -> weight")
    return {k: integer(1, 1000)(f"{f}.{k}", w) for k, w in v.items()}


@describes({"anyOf": [integer(0, 255).schema, enum(*IP_PROTOS).schema]})
def ip_proto(f: str, v: Any) -> int:
    """A protocol number, or its name."""
    if isinstance(v, str):
        if v not in IP_PROTOS:
            _fail(f, f"unknown protocol {v!r}")
        return IP_PROTOS[v]
    return integer(0, 255)(f, v)


# --- rule match -------------------------------------------------------------
@describes({"anyOf": [integer(0, 65535).schema,
                      {"type": "string", "pattern": r"^\d+(-\d+)?$", "example": "1000-2000"}]})
def _port_item(f: str, v: Any) -> str:
    """A port or an inclusive range 'lo-hi'; kept as text for round-trips."""
    if isinstance(v, int) and not isinstance(v, bool):
        integer(0, 65535)(f, v)
        return str(v)
    if isinstance(v, str):
        parts = v.split("-")
        if len(parts) in (1, 2) and all(p.strip().isascii() and p.strip().isdigit()
                                         for p in parts):
            lo, hi = int(parts[0]), int(parts[-1])
            if 0 <= lo <= hi <= 65535:
                return str(lo) if lo == hi else f"{lo}-{hi}"
    _fail(f, f"bad port or range {v!r} (use 80 or '1000-2000')")


def _many(f: str, v: Any, one: Checker) -> list:
    items = v if isinstance(v, list) else [v]
    if not items:
        _fail(f, "must not be an empty list")
    return [one(f, x) for x in items]


def _one_or_many(item: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [*item.get("anyOf", [item]), {"type": "array", "items": item,
                                                   "minItems": 1}]}


MATCH_SCHEMAS = {
    "eth_src": _one_or_many(mac.schema), "eth_dst": _one_or_many(mac.schema),
    "eth_type": {"anyOf": [{"type": "integer", "enum": list(ETH_TYPES.values())},
                           {"type": "string", "enum": list(ETH_TYPES)}]},
    "ip_proto": ip_proto.schema,
    "ipv4_src": _one_or_many(cidr.schema), "ipv4_dst": _one_or_many(cidr.schema),
    "ipv6_src": _one_or_many(cidr6.schema), "ipv6_dst": _one_or_many(cidr6.schema),
    "tp_src": _one_or_many(_port_item.schema), "tp_dst": _one_or_many(_port_item.schema),
}


@describes({"type": "object", "additionalProperties": False,
            "properties": {k: MATCH_SCHEMAS[k] for k in MATCH_FIELDS}})
def rule_match(f: str, v: Any) -> dict[str, Any]:
    """Normalise a match: lists everywhere a field may hold several values."""
    if not isinstance(v, dict):
        _fail(f, "must be an object")
    out: dict[str, Any] = {}
    for k, x in v.items():
        fk = f"{f}.{k}"
        if k not in MATCH_FIELDS:
            _fail(fk, f"unknown match field (known: {', '.join(MATCH_FIELDS)})")
        if k == "eth_type":
            if not isinstance(x, (int, str)) or isinstance(x, bool) or (
                    x not in ETH_TYPES and x not in ETH_TYPES.values()):
                _fail(fk, "must be IPv4 (0x0800, 'ipv4') or IPv6 (0x86dd, 'ipv6')")
            out[k] = ETH_TYPES.get(x, x)
        elif k == "ip_proto":
            out[k] = ip_proto(fk, x)
        elif k in ("ipv4_src", "ipv4_dst"):
            out[k] = _many(fk, x, cidr)
        elif k in ("ipv6_src", "ipv6_dst"):
            out[k] = _many(fk, x, cidr6)
        elif k in ("eth_src", "eth_dst"):
            out[k] = _many(fk, x, mac)
        else:
            out[k] = _many(fk, x, _port_item)
    if ("tp_src" in out or "tp_dst" in out) and out.get("ip_proto") not in (6, 17):
        _fail(f"{f}.ip_proto", "tp_src/tp_dst need ip_proto tcp (6) or udp (17)")
    match_family(f, out)
    return out


def match_family(f: str, mt: dict[str, Any]) -> int | None:
    """The one IP family a match is of (None: both).  A rule is one family: a match that
    names both, through eth_type, its address fields or ICMP/ICMPv6, is refused naming
    the field that disagrees with the first one."""
    seen: tuple[str, int] | None = None
    claims = [("eth_type", FAMILY_OF_ETH_TYPE.get(mt.get("eth_type"))),
              ("ip_proto", FAMILY_OF_PROTO.get(mt.get("ip_proto"))),
              *((k, 4) for k in ("ipv4_src", "ipv4_dst") if k in mt),
              *((k, 6) for k in ("ipv6_src", "ipv6_dst") if k in mt)]
    for k, fam in claims:
        if fam is None:
            continue
        if seen is not None and fam != seen[1]:
            _fail(f"{f}.{k}", f"is IPv{fam} but {seen[0]} makes the rule IPv{seen[1]}: "
                  "a rule matches one family")
        seen = seen or (k, fam)
    return seen[1] if seen else None


# --- per-kind schemas: field -> (checker, required) ----------------------------
SCHEMAS: dict[str, dict[str, tuple[Checker, bool]]] = {
    "routers": {"name": (name, True), "tier": (enum(*m.TIERS), False),
                "parent": (string, False), "host": (name, False), "dpid": (dpid, False),
                "service_plane_dpid": (dpid, False), "service_plane_port": (name, False)},
    "service-planes": {"name": (name, True), "routers": (string_list, False)},
    "interfaces": {"name": (name, True), "router": (string, True), "port": (name, False),
                   "role": (enum(*m.ROLES), True), "ip": (iface_cidr, False),
                   "ipv6": (iface_cidr6, False),
                   "mac": (mac, False), "classify": (boolean, False),
                   "service_plane": (boolean, False), "peer": (string, False)},
    "routes": {"name": (name, False), "router": (string, True), "prefix": (any_cidr, True),
               "interface": (string, True), "next_hop": (ip_address, False)},
    "neighbors": {"name": (name, False), "ip": (ip_address, True), "mac": (mac, True),
                  "interface": (string, True)},
    "service-nodes": {"name": (name, True), "transport": (enum(*m.TRANSPORTS), True),
                      "profile": (name, False), "host": (name, False), "port": (name, False),
                      "port_b": (name, False), "nsh_aware": (boolean, False),
                      "interface": (string, False), "next_hop": (ipv4, False),
                      "interface_a": (string, False), "interface_b": (string, False),
                      "admin_state": (enum("up", "down"), False), "nat": (boolean, False),
                      "planes": (string_list, False)},
    "chains": {"name": (name, True), "profiles": (string_list, True),
               "reverse_profiles": (string_list, False),
               "strategy": (enum(*m.STRATEGIES), False), "plane": (string, False)},
    "policies": {"name": (name, True), "chain": (string, False),
                 "l3_nodes": (string_list, False), "biw_nodes": (string_list, False),
                 "weights": (weights, False),
                 "failure_policy": (enum(*m.FAILURE_POLICIES), False)},
    "rules": {"name": (name, True), "router": (string, False),
              "priority": (integer(MIN_PRIORITY, MAX_PRIORITY), True),
              "action": (enum(*m.ACTIONS), True), "applied_to": (interface_list, True),
              "match": (rule_match, False), "policy": (string, False),
              "enabled": (boolean, False)},
}


def _resolve(model: m.Model, kind: str, f: str, ref: str) -> str:
    """An id, or a unique name, of an existing object of ``kind`` -> its id."""
    if model.get(kind, ref) is not None:
        return ref
    obj = model.by_name(kind, ref)
    if obj is None:
        raise ValidationError(f, f"unknown {noun(kind)} {ref!r}", 422)
    return obj.id


def _resolve_refs(kind: str, values: dict[str, Any], model: m.Model) -> None:
    for f, target in m.REFERENCES[kind].items():
        v = values.get(f)
        if isinstance(v, list):
            values[f] = [_resolve(model, target, f, x) for x in v]
        elif v is not None:
            values[f] = _resolve(model, target, f, v)


def build(kind: str, body: Any, model: m.Model, existing: Any | None = None) -> Any:
    """A new object from ``body``, or ``existing`` updated by it (PATCH-like PUT)."""
    if kind not in SCHEMAS:
        raise ValidationError("kind", f"unknown resource {kind!r}", 404)
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    schema = SCHEMAS[kind]
    values: dict[str, Any] = {}
    for f, v in body.items():
        if f == "id":
            if existing is not None and v != existing.id:
                raise ValidationError("id", "cannot be changed")
            values["id"] = _uuid(v)
        elif f in m.ASSIGNED_FIELDS.get(kind, ()):
            if existing is None or v != getattr(existing, f):
                raise ValidationError(f, "is assigned by the controller (read-only)")
        elif f not in schema:
            raise ValidationError(f, "unknown field")
        elif v is None:
            values[f] = _cleared(kind, f, schema[f][1])
        else:
            values[f] = schema[f][0](f, v)
    if existing is None:
        for f, (_, required) in schema.items():
            if required and f not in values:
                raise ValidationError(f, "is required")
    _resolve_refs(kind, values, model)
    if existing is not None:
        values = m.fields_of(existing) | values
    values.setdefault("id", str(uuid.uuid4()))
    if values.get("name") is None:     # absent, or cleared with null: a generated name
        values["name"] = f"{noun(kind).replace(' ', '-')}-{values['id'][:8]}"
    if kind == "rules" and values.get("router") is None:
        values["router"] = _router_of_applied_to(values["applied_to"], model)
    return m.KINDS[kind](**values)


def _cleared(kind: str, f: str, required: bool) -> Any:
    """``null`` gives an optional field its default (a redirect rule PATCHed to drop
    sheds its policy with ``"policy": null``), or derives it again (a name, a rule's
    router); a required field cannot be cleared."""
    if required:
        raise ValidationError(f, "is required: null cannot clear it")
    default = m.KINDS[kind].__dataclass_fields__[f]
    if default.default_factory is not dataclasses.MISSING:
        return default.default_factory()
    if default.default is dataclasses.MISSING:
        return None                      # derived by build(): a name, a rule's router
    return default.default


def _uuid(v: Any) -> str:
    try:
        return str(uuid.UUID(str(v)))
    except ValueError:
        raise ValidationError("id", f"must be a UUID, got {v!r}") from None


def _router_of_applied_to(applied_to: list[str], model: m.Model) -> str:
    return model.get("interfaces", applied_to[0]).router   # never empty: interface_list


# --- whole-model checks -------------------------------------------------------
def check_model(model: m.Model) -> None:
    """What single objects cannot show; raises the first problem found."""
    for kind in m.KINDS:
        _unique(model, kind, "name")
    _unique(model, "interfaces", "port")
    _unique(model, "interfaces", "peer")
    for r in model.all("routers"):
        _check_router(model, r)
    if len({r.host for r in model.all("routers") if r.host}) > 1:
        raise ValidationError("host", "every router runs on the one edge host: service "
                              "paths are ranked and 'local' is judged from it", 409)
    for i in model.all("interfaces"):
        _check_interface(i)
        if i.role == "router_link":
            _check_link(model, i)
    for rt in model.all("routes"):
        _same_router(model, "interface", rt.interface, rt.router)
        _check_route_family(model, rt)
    for sp in model.all("service-planes"):
        _no_repeats("routers", sp.routers)
    for n in model.all("service-nodes"):
        _check_node(model, n)
        _no_repeats("planes", n.planes)
    for c in model.all("chains"):
        _check_chain(c)
    for p in model.all("policies"):
        _check_policy(model, p)
    for rule in model.all("rules"):
        _check_rule(model, rule)
    rules = m.rules_by_router(model)
    for r in model.all("routers"):
        mine = rules.get(r.id, [])
        _check_capacity(model, r, {frozenset(x.applied_to) for x in mine},
                        m.l2_interfaces(mine))


def check_rules(model: m.Model, rule_ids: set[str], index: RuleIndex) -> None:
    """``check_model`` of a model that passed it but for the rules ``rule_ids`` (created,
    updated or deleted; ``index`` is of this model's rules): the same first problem,
    found in time proportional to those rules.  Nothing else reads a rule, so only their
    names, their own checks and their routers' capacity can fail."""
    rules = [r for r in (model.get("rules", i) for i in rule_ids) if r is not None]
    for rule in rules:
        if len(index.names[rule.name]) > 1:
            raise _used("rules", "name", rule.name)
    for rule in rules:
        _check_rule(model, rule)
    touched = {rule.router for rule in rules}
    for r in model.all("routers"):
        if r.id in touched:
            _check_capacity(model, r, index.router_sets(r.id), index.l2_interfaces(r.id))


def _check_capacity(model: m.Model, r: m.Router, sets: set[frozenset[str]],
                    l2: frozenset[str]) -> None:
    """The datapath's per-router limits, refused as a 409 naming the limit (a model
    past them cannot be compiled).  Each distinct applied_to set (``sets``, of the
    router's rules) takes one of MAX_APPLIED_TO_SETS register bits; each distinct
    membership of a classifying interface in those sets (its interface class; ``l2``: the
    interfaces that are classes of their own, m.l2_interfaces) one of
    MAX_INTERFACE_CLASSES values of the ct_mark class field.  The compiler refuses the
    same models; this names the field."""
    if len(sets) > m.MAX_APPLIED_TO_SETS:
        raise ValidationError("applied_to", f"router {r.name!r} would have {len(sets)} "
                              f"distinct applied_to sets; the limit is {m.MAX_APPLIED_TO_SETS} per "
                              f"router (rules with the same applied_to share one)", 409)
    classes = {(frozenset(s for s in sets if i.id in s), i.id if i.id in l2 else None)
               for i in model.interfaces_of(r.id) if i.classifies}
    if len(classes) > m.MAX_INTERFACE_CLASSES:
        raise ValidationError("applied_to", f"router {r.name!r} would have {len(classes)} "
                              f"interface classes (distinct applied_to memberships of its "
                              f"classifying interfaces); the limit is {m.MAX_INTERFACE_CLASSES} per "
                              f"router", 409)


def _unique(model: m.Model, kind: str, f: str) -> None:
    seen: dict[str, str] = {}
    for o in model.all(kind):
        v = getattr(o, f)
        if v is None:
            continue
        if v in seen and seen[v] != o.id:
            raise _used(kind, f, v)
        seen[v] = o.id


def _used(kind: str, f: str, v: Any) -> ValidationError:
    return ValidationError(f, f"{noun(kind)} {f} {v!r} is already used", 409)


def _check_router(model: m.Model, r: m.Router) -> None:
    if r.parent == r.id:
        raise ValidationError("parent", "a router cannot be its own parent")
    if r.tier == "t0" and r.parent is not None:
        raise ValidationError("parent", "only a t1 router has a parent")
    if r.tier == "t1" and r.parent is None:
        raise ValidationError("parent", "a t1 router needs a t0 parent")
    if r.parent is not None and model.get("routers", r.parent).tier != "t0":
        raise ValidationError("parent", "must be a t0 router")
    if r.service_plane_dpid is not None and r.service_plane_dpid == r.dpid:
        raise ValidationError("service_plane_dpid", "must be another bridge than the "
                              "router's own (dpid): the two pipelines share registers")


def _check_route_family(model: m.Model, rt: m.Route) -> None:
    """A route's next hop is of its prefix's family; an IPv6 route leaves by an interface
    with an IPv6 address (its neighbour discovery needs one)."""
    fam = m.family(rt.prefix)
    if rt.next_hop is not None and m.family(rt.next_hop) != fam:
        raise ValidationError("next_hop", f"is IPv{m.family(rt.next_hop)} but the prefix "
                              f"{rt.prefix} is IPv{fam}")
    iface = model.get("interfaces", rt.interface)
    if fam == 6 and iface.ipv6 is None and iface.role != "router_link":
        raise ValidationError("interface", f"interface {iface.name!r} has no IPv6 address "
                              "for an IPv6 route to leave by")


def _check_interface(i: m.Interface) -> None:
    if i.ipv6 is not None and i.role in ("service", "router_link"):
        raise ValidationError("ipv6", f"a {i.role} interface has no IPv6 address (IPv6 is "
                              "routed on uplinks, downlinks and VTIs)")
    if i.ipv6 is not None and i.mac is None:
        raise ValidationError("mac", "is required with ipv6: the link-local address and "
                              "neighbour advertisements come from it")
    if i.role in ("uplink", "downlink") and (i.ip is None or i.mac is None):
        raise ValidationError("ip" if i.ip is None else "mac",
                              f"is required for a {i.role} interface")
    if i.role == "router_link":
        if i.port is not None:
            raise ValidationError("port", "a router_link has no port: the routers it joins "
                                  "share one bridge")
        if i.mac is None:
            raise ValidationError("mac", "is required for a router_link interface")
        if i.service_plane:
            raise ValidationError("service_plane", "goes with a service interface only")
    elif i.port is None:
        raise ValidationError("port", f"is required for a {i.role} interface")
    if i.peer is not None and i.role != "router_link":
        raise ValidationError("peer", "goes with a router_link interface only")
    if i.role == "service" and i.mac is None:
        raise ValidationError("mac", "is required for a service interface")


def _check_link(model: m.Model, i: m.Interface) -> None:
    """A t1's end of its link to its parent names the parent's end (``peer``); both
    routers run on one bridge (the packet crosses with no port); a t1 has one link."""
    router = model.get("routers", i.router)
    if i.peer is None:
        if router.tier == "t1":
            raise ValidationError("peer", "is required on a t1's router_link: the parent "
                                  "router's router_link it joins")
        return
    if router.tier != "t1":
        raise ValidationError("peer", "is set on the t1's end of a link only (this router "
                              "is a t0: its end is named by the t1's)")
    peer = model.get("interfaces", i.peer)
    if peer.role != "router_link" or peer.peer is not None:
        raise ValidationError("peer", "must be the parent's end of the link: a router_link "
                              "without a peer of its own")
    if peer.router != router.parent:
        raise ValidationError("peer", "must be an interface of this router's parent")
    if model.get("routers", peer.router).dpid != router.dpid:
        raise ValidationError("peer", "both routers of a link run on one bridge (same "
                              "dpid): a link has no port to cross bridges by")
    links = [o.name for o in model.interfaces_of(router.id) if o.role == "router_link"]
    if len(links) > 1:
        raise ValidationError("role", f"a t1 router has one router_link, its uplink to its "
                              f"parent (this one has {', '.join(sorted(links))})", 409)


def _same_router(model: m.Model, f: str, iface_id: str, router_id: str) -> None:
    if model.get("interfaces", iface_id).router != router_id:
        raise ValidationError(f, "interface belongs to another router")


TRANSPORT_FIELDS = {"biw": ("interface_a", "interface_b"), "l3": ("interface", "next_hop"),
                    "chain": ("port",)}
# Fields only one transport reads: set on a node of another, they would be stored and
# ignored, so they are refused.  ``host`` places chain nodes on service paths.
TRANSPORT_ONLY: dict[str, tuple[str, ...]] = {
    "interface_a": ("biw",), "interface_b": ("biw",), "interface": ("l3",),
    "next_hop": ("l3",), "port": ("chain",), "port_b": ("chain",), "nsh_aware": ("chain",),
    "host": ("chain",), "planes": ("chain",)}
UNSET = (None, False, [])


def upgrade_stored(kind: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """An object stored by an earlier version, as this one reads it, and what was
    dropped: fields that no longer exist (a chain's failure_policy: the policy's
    decides), values that no longer exist (round_robin: hash), and fields another
    transport reads (refused now, stored and ignored before)."""
    known = set(m.field_names(kind))
    out = {k: v for k, v in body.items() if k in known}
    dropped = [f"{k} (no longer a field)" for k in body if k not in known]
    if kind == "chains" and out.get("strategy") not in (*m.STRATEGIES, None):
        dropped.append(f"strategy {out['strategy']} (now hash)")
        out["strategy"] = "hash"
    if kind == "service-nodes":
        for f, transports in TRANSPORT_ONLY.items():
            if out.get(f) not in UNSET and out.get("transport") not in transports:
                dropped.append(f"{f} (read by {' and '.join(transports)} nodes only)")
                out.pop(f)
        if out.get("nsh_aware") and out.get("port_b") is not None:
            dropped.append("port_b (an NSH-aware node has one port)")
            out.pop("port_b")
    return out, dropped


def _check_node(model: m.Model, n: m.ServiceNode) -> None:
    for f in TRANSPORT_FIELDS[n.transport]:
        if getattr(n, f) is None:
            raise ValidationError(f, f"is required for transport {n.transport}")
    for f, transports in TRANSPORT_ONLY.items():
        if getattr(n, f) not in UNSET and n.transport not in transports:
            raise ValidationError(f, f"goes with transport {' or '.join(transports)} only "
                                  f"(this node's transport is {n.transport})")
    if n.nsh_aware and n.port_b is not None:
        raise ValidationError("port_b", "goes with a node that is not NSH-aware only (an "
                              "NSH-aware node returns frames on its port)")
    if n.transport == "chain" and not n.nsh_aware and n.port_b is None:
        raise ValidationError("port_b", "is required for a chain node that is not NSH-aware "
                              "(the proxy sends forward traffic out port, it returns on port_b)")
    if n.transport == "l3" and model.get("interfaces", n.interface).role != "vti":
        raise ValidationError("interface", "must be an interface with role 'vti'")
    if n.nat and n.transport == "l3" and model.get("interfaces", n.interface).classifies:
        raise ValidationError("nat", "needs the node's VTI not to classify (classify: false): "
                              "what comes back through it is then serviced, and looked up")
    if n.transport == "biw":
        a = model.get("interfaces", n.interface_a)
        b = model.get("interfaces", n.interface_b)
        if n.interface_a == n.interface_b:
            raise ValidationError("interface_b", "must differ from interface_a")
        for f, i in (("interface_a", a), ("interface_b", b)):
            if i.role != "service":
                raise ValidationError(f, "must be an interface with role 'service'")
        if a.router != b.router:
            raise ValidationError("interface_b", "must be on the same router as interface_a")


def _check_chain(c: m.Chain) -> None:
    """A path passes a node once: the proxy knows a plain node's hop by its path."""
    for f in ("profiles", "reverse_profiles"):
        listed = getattr(c, f) or []
        twice = sorted({p for p in listed if listed.count(p) > 1})
        if twice:
            raise ValidationError(f, f"lists profile {twice[0]} twice: a service path "
                                  "passes a node once")


def _check_policy(model: m.Model, p: m.Policy) -> None:
    targets = [x for x in (p.chain, p.l3_nodes, p.biw_nodes) if x]
    if len(targets) != 1:
        raise ValidationError("chain", "give exactly one of chain, l3_nodes, biw_nodes")
    for f, want in (("l3_nodes", "l3"), ("biw_nodes", "biw")):
        for nid in getattr(p, f):
            if model.get("service-nodes", nid).transport != want:
                raise ValidationError(f, f"node {nid} is not a {want} node")
    if p.weights and p.chain:
        raise ValidationError("weights", "goes with a policy of biw or l3 nodes only (a "
                              "chain's paths are spread by its strategy)")
    for node in p.weights:
        if _resolve(model, "service-nodes", f"weights.{node}", node) not in p.nodes:
            raise ValidationError(f"weights.{node}", "is not a node of this policy")


def _check_rule(model: m.Model, rule: m.Rule) -> None:
    for iid in rule.applied_to:
        i = model.get("interfaces", iid)
        if i.router != rule.router:
            raise ValidationError("applied_to", f"interface {i.name!r} is on another router")
        if not i.classifies:
            raise ValidationError("applied_to", f"interface {i.name!r} does not classify "
                                  f"(role {i.role})")
    if len(set(rule.applied_to)) != len(rule.applied_to):
        raise ValidationError("applied_to", "lists an interface twice")
    if rule.action == "redirect" and rule.policy is None:
        raise ValidationError("policy", "is required when action is redirect")
    if rule.action != "redirect" and rule.policy is not None:
        raise ValidationError("policy", f"must be empty when action is {rule.action}")
    if rule.policy is not None:
        _check_reachable(model, rule, model.get("policies", rule.policy))


def _no_repeats(f: str, ids: list[str]) -> None:
    if len(set(ids)) != len(ids):
        raise ValidationError(f, "lists one object twice")


def _check_reachable(model: m.Model, rule: m.Rule, p: m.Policy) -> None:
    """A rule redirects only to what its router reaches: biw nodes on its own or its
    parent's interfaces (a t1 using a service the t0 offers, FIG. 28-31), L3 nodes behind
    its own VTIs (and biw nodes that NAT on its own interfaces), a chain by its own
    service plane or its parent's."""
    router = model.get("routers", rule.router)
    reach = [router.id] + ([router.parent] if router.parent else [])
    if p.chain is not None:
        if not any(i.service_plane for r in reach for i in model.interfaces_of(r)):
            raise ValidationError("policy", f"policy {p.name!r} is a chain and neither router "
                                  f"{router.name!r} nor its parent has a service plane "
                                  "interface", 422)
        plane = model.get("service-planes", model.get("chains", p.chain).plane or "")
        if plane is not None and router.id not in plane.routers:
            raise ValidationError("policy", f"policy {p.name!r} is a chain of service plane "
                                  f"{plane.name!r}, which router {router.name!r} is not "
                                  "attached to (the plane's routers)", 422)
        return
    for node_id, own in [(n, False) for n in p.biw_nodes or []] + [
            (n, True) for n in p.l3_nodes or []]:
        node = model.get("service-nodes", node_id)
        at = model.get("interfaces", node.interface_a or node.interface).router
        if at not in (reach[:1] if own or node.nat else reach):
            where = ("its own router" if own or node.nat
                     else "its router or its parent")
            raise ValidationError("policy", f"node {node.name!r} of policy {p.name!r} is "
                                  f"attached to router {model.get('routers', at).name!r}: a "
                                  f"rule of {router.name!r} reaches {node.transport} nodes of "
                                  f"{where} only", 422)
