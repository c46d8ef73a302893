"""The objects of the logical network, as plain dataclasses (no I/O, no Ryu).

Every object has a UUID ``id`` and a unique ``name``; references between
objects hold ids.  Small datapath numbers (``num``, ``rule_num``, ``ct_zone``)
are assigned by the store once and never change.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterator

ROLES = ("uplink", "downlink", "vti", "service", "router_link")
CLASSIFYING_ROLES = ("uplink", "vti")
TRANSPORTS = ("chain", "l3", "biw")
ACTIONS = ("redirect", "allow", "drop")
FAILURE_POLICIES = ("pass", "fail")
STRATEGIES = ("hash", "local")
TIERS = ("t0", "t1")

# What one router may hold, as the model promises it: the datapath layout is sized for
# these (tests/unit/test_layout.py checks every field holds its number space).
MAX_APPLIED_TO_SETS = 128      # distinct applied_to sets of a router's rules
APPLIED_TO_WORDS = 4           # 32-bit words holding their codes (si_model.set_codes)
APPLIED_TO_WORD_BITS = 32
MAX_INTERFACE_CLASSES = 128    # distinct memberships of its classifying interfaces
MAX_RULE_NUM = (1 << 24) - 1
MAX_POLICY_NUM = (1 << 16) - 1
MAX_IFACE_NUM = (1 << 16) - 1
MAX_PLANE_NUM = 255            # a plane's tag is the top byte of its paths' 24-bit SPIs


@dataclass
class Router:
    id: str
    name: str
    tier: str = "t0"
    parent: str | None = None
    host: str | None = None                 # where the router runs: "local" paths live here
    dpid: int | None = None
    service_plane_dpid: int | None = None   # the service plane bridge of this router
    service_plane_port: str | None = None   # its port toward the router
    num: int = 0
    ct_zone: int = 0


@dataclass
class ServicePlane:
    """A logical service plane (FIG. 26-27): the routers that may send into it, and the
    chains (and so the paths) that live in it.  Planes share the service-plane bridge;
    a plane's number is the top byte of every SPI of its paths, so the bridge's exact
    (SPI, SI) flows keep one plane's packets off another's hops, a node serving two
    planes included.  Chains and nodes without a plane are on the default plane (0),
    which every router with a service plane may use."""
    id: str
    name: str
    routers: list[str] = field(default_factory=list)
    num: int = 0


@dataclass
class Interface:
    id: str
    name: str
    router: str
    role: str
    port: str | None = None        # None only for a router_link (no physical port)
    ip: str | None = None          # CIDR: the router's address and the connected prefix
    ipv6: str | None = None        # the same for IPv6 (a link-local address comes with mac)
    mac: str | None = None
    classify: bool | None = None   # None: by role (uplink and vti classify)
    service_plane: bool = False    # a service interface that links to the service plane
    peer: str | None = None        # router_link of a t1: its parent's end of the link
    num: int = 0

    @property
    def classifies(self) -> bool:
        """By role when not set: uplinks and VTIs classify; a t1's link to its parent (the
        end that names a peer) is that t1's uplink, the parent's end is routed first."""
        if self.classify is not None:
            return self.classify
        if self.role == "router_link":
            return self.peer is not None
        return self.role in CLASSIFYING_ROLES


@dataclass
class Route:
    id: str
    name: str
    router: str
    prefix: str
    interface: str
    next_hop: str | None = None    # None: directly connected


@dataclass
class Neighbor:
    id: str
    name: str
    ip: str
    mac: str
    interface: str


@dataclass
class ServiceNode:
    id: str
    name: str
    transport: str
    profile: str = "generic"
    host: str | None = None
    port: str | None = None         # chain: port on the service plane (side A)
    port_b: str | None = None       # chain, NSH-unaware: the node returns forward traffic here
    nsh_aware: bool = False         # chain: speaks NSH itself (no proxy)
    interface: str | None = None    # l3: the VTI toward the node
    next_hop: str | None = None     # l3
    interface_a: str | None = None  # biw: forward leaves here
    interface_b: str | None = None  # biw: forward returns here
    admin_state: str = "up"
    nat: bool = False               # l3, chain: the node rewrites addresses (ingress.py, nat.py)
    planes: list[str] = field(default_factory=list)   # chain: the planes it serves ([]: default)
    num: int = 0


@dataclass
class Chain:
    id: str
    name: str
    profiles: list[str] = field(default_factory=list)
    reverse_profiles: list[str] | None = None
    strategy: str = "hash"
    plane: str | None = None        # the service plane its paths live in (None: default)
    num: int = 0


@dataclass
class Policy:
    id: str
    name: str
    chain: str | None = None
    l3_nodes: list[str] = field(default_factory=list)
    biw_nodes: list[str] = field(default_factory=list)
    weights: dict[str, int] = field(default_factory=dict)
    failure_policy: str = "pass"
    num: int = 0

    @property
    def transport(self) -> str:
        if self.chain:
            return "chain"
        return "l3" if self.l3_nodes else "biw"

    @property
    def nodes(self) -> list[str]:
        return self.l3_nodes or self.biw_nodes


@dataclass
class Rule:
    id: str
    name: str
    router: str
    priority: int
    action: str
    applied_to: list[str]
    match: dict[str, Any] = field(default_factory=dict)
    policy: str | None = None
    enabled: bool = True
    rule_num: int = 0


# REST resource name -> class, in dependency order (a kind refers only to earlier ones).
KINDS: dict[str, type] = {
    "routers": Router,
    "service-planes": ServicePlane,
    "interfaces": Interface,
    "routes": Route,
    "neighbors": Neighbor,
    "service-nodes": ServiceNode,
    "chains": Chain,
    "policies": Policy,
    "rules": Rule,
}

# Fields the controller assigns; clients may read but not write them.
ASSIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    "routers": ("num", "ct_zone"),
    "service-planes": ("num",),
    "interfaces": ("num",),
    "service-nodes": ("num",),
    "chains": ("num",),
    "policies": ("num",),
    "rules": ("rule_num",),
}

# kind -> {field: referenced kind}; list-valued fields reference each element.
REFERENCES: dict[str, dict[str, str]] = {
    "routers": {"parent": "routers"},
    "service-planes": {"routers": "routers"},
    "interfaces": {"router": "routers", "peer": "interfaces"},
    "routes": {"router": "routers", "interface": "interfaces"},
    "neighbors": {"interface": "interfaces"},
    "service-nodes": {"interface": "interfaces", "interface_a": "interfaces",
                      "interface_b": "interfaces", "planes": "service-planes"},
    "chains": {"plane": "service-planes"},
    "policies": {"chain": "chains", "l3_nodes": "service-nodes",
                 "biw_nodes": "service-nodes"},
    "rules": {"router": "routers", "policy": "policies", "applied_to": "interfaces"},
}


L2_MATCH_FIELDS = ("eth_src", "eth_dst")


def link_local(mac: str) -> str:
    """The interface's IPv6 link-local address, from its MAC (modified EUI-64, RFC 4291):
    what hosts on the link use as the router's address in neighbour discovery."""
    b = bytes.fromhex(mac.replace(":", ""))
    eui = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + eui))


def ipv6_addresses(iface: "Interface") -> tuple[str, ...]:
    """The router's own IPv6 addresses on an interface with an IPv6 prefix: its global
    one and its link-local one."""
    if not iface.ipv6:
        return ()
    own = str(ipaddress.IPv6Interface(iface.ipv6).ip)
    return (own, link_local(iface.mac)) if iface.mac else (own,)


def family(address: str) -> int:
    """4 or 6: the IP version of an address or prefix."""
    return ipaddress.ip_network(address, strict=False).version


def ipv6_next_hops(model: "Model") -> dict[str, int]:
    """Every IPv6 next hop of the static routes, numbered from 2 (1 says the destination
    is the neighbour): IPv6 routing loads this number where IPv4 loads the address."""
    hops = sorted({r.next_hop for r in model.all("routes")
                   if r.next_hop and family(r.next_hop) == 6},
                  key=lambda a: int(ipaddress.IPv6Address(a)))
    return {a: 2 + k for k, a in enumerate(hops)}


def l2_interfaces(rules: list["Rule"]) -> frozenset[str]:
    """Interfaces where one of a router's ``rules`` matches Ethernet addresses: a
    connection's frame differs from one such interface to another."""
    return frozenset(i for r in rules
                     if any(f in r.match for f in L2_MATCH_FIELDS) for i in r.applied_to)


def plane_num(model: "Model", plane_id: str | None) -> int:
    """The tag of a chain's or node's plane: 0 for the default plane."""
    return model.get("service-planes", plane_id).num if plane_id else 0


def node_planes(model: "Model", node: "ServiceNode") -> tuple[int, ...]:
    """The tags of the planes a chain node serves (the default plane when none is set)."""
    return tuple(sorted(plane_num(model, p) for p in node.planes)) or (0,)


def rules_by_router(model: "Model") -> dict[str, list["Rule"]]:
    """Every router's rules, in one pass (a loop over routers calling rules_of is
    routers x rules)."""
    out: dict[str, list[Rule]] = {}
    for r in model.objects["rules"].values():
        out.setdefault(r.router, []).append(r)
    return out


def to_dict(obj: Any) -> dict[str, Any]:
    """A deep copy of the object's fields: the caller may change it."""
    return dataclasses.asdict(obj)


def fields_of(obj: Any) -> dict[str, Any]:
    """The object's fields, sharing their values (objects are never changed in place):
    for serialising and merging, where a deep copy of 50,000 rules costs seconds."""
    return dict(vars(obj))


def field_names(kind: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(KINDS[kind]))


@dataclass
class Model:
    """All objects, by kind and id.  Copy before changing: the service swaps whole models.

    Objects are never changed in place (a change puts a new object), so a copy shares
    them: copying a 50,000-rule model costs its dicts, not its objects."""

    objects: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {k: {} for k in KINDS})

    def copy(self) -> "Model":
        return Model({k: dict(v) for k, v in self.objects.items()})

    def all(self, kind: str) -> list[Any]:
        return list(self.objects[kind].values())

    def get(self, kind: str, obj_id: str) -> Any | None:
        return self.objects[kind].get(obj_id)

    def by_name(self, kind: str, name: str) -> Any | None:
        return next((o for o in self.objects[kind].values() if o.name == name), None)

    def put(self, kind: str, obj: Any) -> None:
        self.objects[kind][obj.id] = obj

    def remove(self, kind: str, obj_id: str) -> None:
        del self.objects[kind][obj_id]

    def referrers(self, kind: str, obj_id: str) -> Iterator[tuple[str, Any, str]]:
        """(kind, object, field) of everything that refers to ``kind``/``obj_id``."""
        for other, refs in REFERENCES.items():
            for fname, target in refs.items():
                if target != kind:
                    continue
                for o in self.objects[other].values():
                    v = getattr(o, fname)
                    if v == obj_id or (isinstance(v, list) and obj_id in v):
                        yield other, o, fname

    # convenience views used by the compiler
    def interfaces_of(self, router_id: str) -> list[Interface]:
        return [i for i in self.objects["interfaces"].values() if i.router == router_id]

    def rules_of(self, router_id: str) -> list[Rule]:
        return [r for r in self.objects["rules"].values() if r.router == router_id]
