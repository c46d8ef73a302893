"""What the compiler needs besides the model, and the lookups every stage shares."""
from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from openflow_tables import layout as L
from openflow_tables.flow import FlowError
from si_model import model as m
from si_model.flowprog import Instruction
from si_model.paths import ServicePath, is_local, routers_home
from si_model.set_codes import SetCode, memberships


@dataclass(frozen=True)
class Generations:
    """The global state generations (SPEC section 6): the four that say a record's
    service node, path or flow-programming state may be stale (8 bits each, wrapping),
    and the classification generation that says its rule may no longer be what its
    interface's rules give (a rule, applied_to or interface edit).  ``classify`` counts
    every bump; records carry its low bits (``classify_stamp``), and each time those
    wrap (a new ``classify_epoch``) the controller flushes the routers' conntrack zones,
    so no record can pass for current 256 bumps after it was made."""

    flow_program: int = 0
    bfd: int = 0
    spi_fail: int = 0
    sn: int = 0
    classify: int = 0

    @property
    def classify_stamp(self) -> int:
        return self.classify % (1 << L.GEN_CLASSIFY.nbits)

    @property
    def classify_epoch(self) -> int:
        return self.classify >> L.GEN_CLASSIFY.nbits

    def transport_values(self) -> dict[L.Field, int]:
        """Each transport generation's field and its 8-bit value."""
        vals = (self.flow_program, self.bfd, self.spi_fail, self.sn)
        return {f: v & 0xFF for f, v in zip(L.GENERATIONS, vals)}

    def packed(self) -> int:
        """The value of the generations register (and ct_label bits 96-127)."""
        return sum(f.value(v) for f, v in self.transport_values().items())


@dataclass
class Context:
    """One switch's share of the model, with port numbers resolved.

    ``applied_to_codes`` maps (router id, frozenset of interface ids) to where that
    set is written in the applied_to registers (si_model.set_codes); the service keeps
    it sticky so that adding a rule does not move the sets of other rules.
    """

    model: m.Model
    dpid: int
    ports: dict[str, int]
    applied_to_codes: dict[tuple[str, frozenset], SetCode]
    generations: Generations = Generations()
    down_nodes: frozenset = frozenset()
    learned_neighbors: dict[tuple[str, str], str] = field(default_factory=dict)
    paths: dict[str, list[ServicePath]] = field(default_factory=dict)   # chain id -> paths
    failed_paths: dict[int, ServicePath] = field(default_factory=dict)  # down SPI -> the path
    probe_spis: dict[str, int] = field(default_factory=dict)   # chain node id -> probe SPI
    instructions: list[Instruction] = field(default_factory=list)  # flow programming
    # (path SPI, chain nodes taken off) -> that path without them, for skip instructions
    skips: dict[tuple[int, frozenset], ServicePath] = field(default_factory=dict)
    routers: list[m.Router] = field(init=False)
    plane_routers: list[m.Router] = field(init=False)

    def __post_init__(self) -> None:
        self.routers = [r for r in self.model.all("routers") if r.dpid == self.dpid]
        self.plane_routers = [r for r in self.model.all("routers")
                              if r.service_plane_dpid == self.dpid]
        self._router_ids = {r.id for r in self.routers}
        self._classes: dict[str, dict[tuple[tuple, str | None], int]] = {}
        self._held: dict[str, frozenset[SetCode]] = {}      # interface id -> its set codes
        self._l2: dict[str, frozenset[str]] | None = None
        self._interfaces: list[m.Interface] | None = None
        self._link_ends: dict[str, m.Interface] = {
            i.peer: i for i in self.model.all("interfaces") if i.peer is not None}

    @functools.cached_property
    def ipv6_next_hops(self) -> dict[str, int]:
        """The numbers IPv6 routing loads for its next hops (si_model.model)."""
        return m.ipv6_next_hops(self.model)

    def on_switch(self, router_id: str) -> bool:
        return router_id in self._router_ids

    def router(self, router_id: str) -> m.Router:
        return self.model.get("routers", router_id)

    def iface(self, iface_id: str) -> m.Interface:
        return self.model.get("interfaces", iface_id)

    def interfaces(self) -> list[m.Interface]:
        """Interfaces of this switch's routers whose port exists on the switch, and the
        links between them (no port)."""
        if self._interfaces is None:
            self._interfaces = sorted((i for i in self.model.all("interfaces")
                                       if self.present(i)), key=lambda i: i.num)
        return self._interfaces

    def present(self, iface: m.Interface) -> bool:
        if not self.on_switch(iface.router):
            return False
        if iface.role == "router_link":
            return self.link_peer(iface) is not None
        return iface.port in self.ports

    def link_peer(self, iface: m.Interface) -> m.Interface | None:
        """The other end of a router link (a t1's end names it; the parent's end is named)."""
        if iface.peer is not None:
            return self.model.get("interfaces", iface.peer)
        return self._link_ends.get(iface.id)

    def link_routes(self) -> list[tuple[m.Interface, str]]:
        """Routes a link gives (egress interface, prefix): a parent reaches each of its
        child's downlink prefixes over the link; a child without a default route of its
        own sends everything else to its parent."""
        out = []
        for link in self.interfaces():
            if link.role != "router_link":
                continue
            peer = self.link_peer(link)
            if link.peer is None:
                out += [(link, str(ipaddress.ip_interface(a).network))
                        for i in self.model.interfaces_of(peer.router)
                        if i.role == "downlink" for a in (i.ip, i.ipv6) if a]
                continue
            own = {r.prefix for r in self.model.all("routes") if r.router == link.router}
            out += [(link, default) for default in ("0.0.0.0/0", "::/0") if default not in own]
        return out

    def port(self, iface: m.Interface) -> int | None:
        return self.ports.get(iface.port)

    def rules(self) -> list[m.Rule]:
        return sorted((r for r in self.model.all("rules")
                       if r.enabled and self.on_switch(r.router)), key=lambda r: r.rule_num)

    def rule_code(self, rule: m.Rule) -> SetCode:
        return self.applied_to_codes[(rule.router, frozenset(rule.applied_to))]

    def iface_codes(self, iface: m.Interface) -> frozenset[SetCode]:
        """The codes of every applied_to set this interface belongs to (asked for each
        interface by several stages: found once per compile)."""
        held = self._held.get(iface.id)
        if held is None:
            held = self._held[iface.id] = memberships(self.applied_to_codes, iface.router,
                                                      iface.id)
        return held

    def router_classes(self, router_id: str) -> dict[tuple[tuple, str | None], int]:
        """(applied_to codes, own id) -> class number of the router's classifying interfaces.

        Interfaces with the same applied_to sets are one class, except where a rule
        matches Ethernet addresses: those differ from interface to interface for one
        connection, so an interface in such a rule's applied_to is a class of its own
        (own id set) and reuses only records made there.  Numbered from the model alone
        (sorted), so every switch and every compile of one model agree; any change that
        could renumber them bumps the classification generation, which makes older
        records re-classify instead of comparing classes of another numbering."""
        cached = self._classes.get(router_id)
        if cached is None:
            keys = sorted({self.class_key(i) for i in self.model.all("interfaces")
                           if i.router == router_id and i.classifies},
                          key=lambda k: (k[0], k[1] or ""))
            if len(keys) > L.MAX_CLASSES:
                raise FlowError(f"router {self.router(router_id).name} has {len(keys)} "
                                f"interface classes (distinct applied_to memberships); the "
                                f"limit is {L.MAX_CLASSES} per router")
            cached = self._classes[router_id] = {k: n for n, k in enumerate(keys)}
        return cached

    def class_key(self, iface: m.Interface) -> tuple[tuple, str | None]:
        if self._l2 is None:
            self._l2 = {router: m.l2_interfaces(rules)
                        for router, rules in m.rules_by_router(self.model).items()}
        l2 = self._l2.get(iface.router, frozenset())
        return tuple(sorted(self.iface_codes(iface))), iface.id if iface.id in l2 else None

    def class_pairs(self, router: m.Router) -> list[tuple[int, int]]:
        """(i, j): a record made at class i holds at class j when its rule is applied
        there: every applied_to set of j is one of i's, and j is no class of its own
        (an L2 rule's interface) unless it is i (applied_to.class_check_flows)."""
        classes = self.router_classes(router.id)
        return [(i, j) for (sets_i, own_i), i in classes.items()
                for (sets_j, own_j), j in classes.items()
                if set(sets_j) <= set(sets_i) and own_j in (None, own_i)]

    def iface_class(self, iface: m.Interface) -> int:
        return self.router_classes(iface.router)[self.class_key(iface)]

    def node_live(self, node: m.ServiceNode) -> bool:
        return node.admin_state == "up" and node.id not in self.down_nodes

    def node(self, node_id: str) -> m.ServiceNode:
        return self.model.get("service-nodes", node_id)

    def plane_interface(self, router: m.Router) -> m.Interface | None:
        """The router's service interface that links to its service plane (port present)."""
        return next((i for i in self.interfaces()
                     if i.router == router.id and i.service_plane), None)

    def chain_interface(self, router: m.Router) -> m.Interface | None:
        """Where the router's chain decisions enter a service plane: its own, or its
        parent's (a t1 using a service the t0 offers, FIG. 28-31)."""
        own = self.plane_interface(router)
        if own is not None or router.parent is None or not self.on_switch(router.parent):
            return own
        return self.plane_interface(self.router(router.parent))

    def plane_tags(self, router: m.Router) -> frozenset[int]:
        """The service planes whose paths come back by ``router``'s plane interface: the
        default plane, and every plane it or a child using its interface is attached to."""
        users = {router.id} | {r.id for r in self.children(router.id)
                               if self.plane_interface(r) is None}
        return frozenset({0} | {p.num for p in self.model.all("service-planes")
                                if users & set(p.routers)})

    def biw_nodes(self) -> list[tuple[m.ServiceNode, m.Interface, m.Interface]]:
        """(node, side A, side B) of each biw node whose two ports are on this switch."""
        out = []
        for node in self.model.all("service-nodes"):
            if node.transport != "biw":
                continue
            a, b = self.iface(node.interface_a), self.iface(node.interface_b)
            if self.on_switch(a.router) and self.port(a) and self.port(b):
                out.append((node, a, b))
        return out

    def children(self, router_id: str) -> list[m.Router]:
        return [r for r in self.routers if r.parent == router_id]

    def up_paths(self, chain_id: str) -> list[Any]:
        return [p for p in self.paths.get(chain_id, []) if p.state == "up"]

    def path_by_spi(self, spi: int) -> Any | None:
        return next((p for p in self._all_paths() if p.spi == spi), None)

    def _all_paths(self) -> list[ServicePath]:
        return [p for ps in self.paths.values() for p in ps] + list(self.skips.values())

    def backup_of(self, failed_spi: int) -> ServicePath | None:
        """Where a failed path's connections go (None: no backup is up).  Among its
        backups that are up: for a ``local`` chain a local one first, then the one that
        keeps most of the failed path's surviving nodes (their state: a firewall that
        saw the connection), then the backups' own order (node-disjoint first)."""
        failed = self.failed_paths.get(failed_spi)
        if failed is None:
            return None
        ups = [p for p in (self.path_by_spi(b) for b in failed.backups)
               if p is not None and p.state == "up"]
        chain = self.model.get("chains", failed.chain)
        local = chain is not None and chain.strategy == "local"
        home = routers_home(self.model)
        survivors = failed.node_ids - self.down_nodes
        ranked = sorted(enumerate(ups), key=lambda ip: (
            local and not is_local(ip[1], home), -len(survivors & ip[1].node_ids), ip[0]))
        return ranked[0][1] if ranked else None

    def through_nat(self, hops: tuple[str, ...]) -> bool:
        """A path through a node that may rewrite addresses or ports."""
        return any(self.node(h).nat for h in hops)

    def any_nat(self) -> bool:
        """A path through a NAT node, or a biw node that NATs, on this switch."""
        return (any(n.nat for n, _a, _b in self.biw_nodes())
                or any(self.through_nat(hops) for _spi, hops, _way in self.nsh_paths()))

    def nsh_paths(self) -> list[tuple[int, tuple[str, ...], str | None]]:
        """(SPI, hops, direction) of every way through the service plane: each direction
        ("forward", "reverse") of every up path, and the one-hop probe path of every
        chain node (direction None: probes are not data)."""
        ups = [p for c in self.model.all("chains") for p in self.up_paths(c.id)]
        out = [(spi, hops, way) for p in ups + list(self.skips.values())
               for spi, hops, way in ((p.spi, p.hops, "forward"),
                                      (p.reverse_spi, p.reverse_hops, "reverse"))]
        return out + [(spi, (node_id,), None) for node_id, spi in sorted(self.probe_spis.items())]


def router_match(router: Any) -> tuple[int, int]:
    """Masked metadata match selecting one router's slice of a shared table."""
    return router_num_match(router.num)


def router_num_match(num: int) -> tuple[int, int]:
    """The same, from the router's number (the compiler's caches key on numbers)."""
    return (num, L.ROUTER.mask)
