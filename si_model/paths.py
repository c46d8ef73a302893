"""Service paths: the concrete node sequences that carry a chain's traffic.

A chain names profiles; a service path picks one live node per profile.  This
module is pure (no I/O, no Ryu) so the service can recompute paths on every
change and liveness event and test the result without a switch.  See
docs/service-paths.md for the algorithm.
"""
from __future__ import annotations

import dataclasses
import functools
import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import networkx as nx

from si_model.model import Chain, Model, ServiceNode, node_planes, plane_num

MAX_SPI = (1 << 24) - 1
PLANE_SHIFT = 16                        # an SPI's top byte is its service plane's number
MAX_PLANE_SPI = (1 << PLANE_SHIFT) - 1
ROUTER_HOSTS = (None, "router")
SOURCE, SINK = "source", "sink"

# (host crossings, reuse of already chosen nodes, load, (num, id) of each hop)
Key = tuple[int, int, float, tuple[tuple[int, str], ...]]
Walk = tuple[ServiceNode, ...]


@dataclass(frozen=True)
class ServicePath:
    """One path of a chain.

    ``host_crossings`` counts, along the forward walk router → hops[0] → … →
    hops[-1] → router, the adjacent pairs whose hosts differ; a node whose host
    is None, "router" or the routers' own host (``home``) sits with the router.  So a path wholly on the router's
    host has 0 crossings and one wholly on another single host has 2.
    ``load`` is the sum of the forward hops' loads.  ``backups`` lists the SPIs
    of the chain's other up paths, node-disjoint ones first.
    """

    chain: str
    index: int
    spi: int
    reverse_spi: int
    hops: tuple[str, ...]
    reverse_hops: tuple[str, ...]
    hosts: tuple[str | None, ...]
    reverse_hosts: tuple[str | None, ...]
    host_crossings: int
    load: float
    state: str = "up"
    backups: tuple[int, ...] = ()

    @property
    def node_ids(self) -> frozenset[str]:
        return frozenset(self.hops) | frozenset(self.reverse_hops)


class SpiTable:
    """Path key → SPI, kept by the store so a hop sequence keeps its SPI across
    recomputations and restarts.  Each service plane numbers its own paths: an SPI is
    the plane's number (top byte) and a number within the plane, never handed out
    twice; 0 stays free to mean "no path" in registers."""

    def __init__(self) -> None:
        self._spis: dict[str, int] = {}
        self._next: dict[int, int] = {}     # plane -> next number within it

    def allocate(self, key: str, plane: int = 0) -> int:
        stored = key if plane == 0 else f"plane{plane}:{key}"
        if stored not in self._spis:
            local = self._next.get(plane, 1)
            if local > MAX_PLANE_SPI:
                raise OverflowError(f"service plane {plane} has used all its "
                                    f"{MAX_PLANE_SPI} SPIs")
            self._spis[stored] = plane << PLANE_SHIFT | local
            self._next[plane] = local + 1
        return self._spis[stored]

    def to_dict(self) -> dict[str, Any]:
        return {"next": self._next.get(0, 1), "spis": dict(self._spis),
                "next_by_plane": {str(p): n for p, n in self._next.items() if p}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpiTable:
        table = cls()
        table._spis = {str(k): int(v) for k, v in data.get("spis", {}).items()}
        stored = {0: int(data.get("next", 1)),
                  **{int(p): int(n) for p, n in data.get("next_by_plane", {}).items()}}
        for spi in table._spis.values():
            plane = plane_of(spi)
            stored[plane] = max(stored.get(plane, 1), (spi & MAX_PLANE_SPI) + 1)
        table._next = stored
        return table


def plane_of(spi: int) -> int:
    """The service plane an SPI belongs to."""
    return spi >> PLANE_SHIFT


# --- path generation ---------------------------------------------------------------

def generate(chain: Chain, nodes: Iterable[ServiceNode], *, max_paths: int = 4,
             spi_allocator: Callable[[str], int],
             node_load: Mapping[str, float] | None = None,
             down: frozenset[str] = frozenset(),
             admin_down: frozenset[int] = frozenset(),
             previous: Sequence[ServicePath] = (),
             home: str | None = None) -> list[ServicePath]:
    """Up to ``max_paths`` up paths of ``chain``, then the admin-down ones met.

    Paths in ``previous`` whose nodes are all still live come first, unchanged,
    so a recomputation does not move connections off a working path; the best
    new paths fill the remaining slots.  ``down`` holds failed node ids;
    ``admin_down`` holds SPIs an operator disabled (such paths are listed with
    state "down" and do not count toward ``max_paths``).  ``home`` is the host the
    routers run on: nodes there cost no host crossing.
    An empty list means some profile has no live node: the caller applies the
    policy's failure policy.
    """
    live = _live_by_profile(chain, nodes, down)
    if not chain.profiles or not all(live.get(p) for p in _profiles(chain)):
        return []
    load = node_load or {}
    graph = layered_dag([live[p] for p in chain.profiles], home)
    up: list[ServicePath] = []
    parked: list[ServicePath] = []

    def place(path: ServicePath) -> None:
        if path.spi in admin_down:
            parked.append(dataclasses.replace(path, state="down"))
        elif len(up) < max_paths:
            up.append(path)

    for walks in _survivors(chain, previous, live):
        place(_path(chain, *walks, load, spi_allocator, home))
    while len(up) < max_paths:
        uses = Counter(n for p in up for n in p.node_ids)
        hops = _next_best(graph, {p.hops for p in (*up, *parked)}, uses, load)
        if hops is None:
            break
        reverse = _reverse_walk(chain, hops, live, uses, load, home)
        place(_path(chain, hops, reverse, load, spi_allocator, home))
    return _finish(up, parked)


def layered_dag(layers: Sequence[Sequence[ServiceNode]], home: str | None = None) -> nx.DiGraph:
    """Source → one layer of candidate nodes per profile → sink.

    An edge weighs 1 where it crosses hosts, so the lightest walks are the
    paths with the fewest host crossings.  Source and sink stand for the router.
    """
    graph = nx.DiGraph()
    prev: list[tuple[Any, str | None]] = [(SOURCE, None)]
    for i, layer in enumerate(layers):
        graph.add_nodes_from(((i, n.id), {"node": n}) for n in layer)
        cur = [((i, n.id), n.host) for n in layer]
        graph.add_weighted_edges_from((u, v, _crossing(hu, hv, home))
                                      for u, hu in prev for v, hv in cur)
        prev = cur
    graph.add_weighted_edges_from((u, SINK, _crossing(hu, None, home)) for u, hu in prev)
    return graph


def _profiles(chain: Chain) -> list[str]:
    return chain.profiles + _reverse_profiles(chain)


def _reverse_profiles(chain: Chain) -> list[str]:
    if chain.reverse_profiles is None:
        return chain.profiles[::-1]
    return chain.reverse_profiles


def _live_by_profile(chain: Chain, nodes: Iterable[ServiceNode],
                     down: frozenset[str]) -> dict[str, list[ServiceNode]]:
    """Live chain-transport nodes of the chain's profiles, by num for a stable order."""
    wanted = set(_profiles(chain))
    live: dict[str, list[ServiceNode]] = {}
    for n in sorted(nodes, key=lambda n: (n.num, n.id)):
        if (n.transport == "chain" and n.admin_state == "up" and n.id not in down
                and n.profile in wanted):
            live.setdefault(n.profile, []).append(n)
    return live


def _site(host: str | None, home: str | None) -> str | None:
    """None for the routers' own host, else the host."""
    return None if host in ROUTER_HOSTS or host == home else host


def _crossing(a: str | None, b: str | None, home: str | None) -> int:
    return int(_site(a, home) != _site(b, home))


def _host_crossings(walk: Walk, home: str | None) -> int:
    hosts = [None, *(n.host for n in walk), None]
    return sum(_crossing(a, b, home) for a, b in pairwise(hosts))


def _k_best(graph: nx.DiGraph, k: int, uses: Mapping[str, int],
            load: Mapping[str, float]) -> list[Walk]:
    """The ``k`` source→sink walks with the smallest ``Key``, in order.

    Every part of the key is additive along the walk (the node order is a
    prefix), so the k best walks from a vertex are among its own step followed
    by the k best walks of each successor: one backward pass over the DAG.
    That bounds the work to successors x k candidates per vertex, instead of
    20^10 walks for 10 profiles x 20 nodes.
    """
    best: dict[Any, list[tuple[Key, Walk]]] = {SINK: [((0, 0, 0.0, ()), ())]}
    for v in reversed(list(nx.topological_sort(graph))):
        if v == SINK:
            continue
        node: ServiceNode | None = graph.nodes[v].get("node")
        cands = (_extend(key, walk, graph[v][w]["weight"], node, uses, load)
                 for w in graph.successors(v) for key, walk in best[w])
        best[v] = heapq.nsmallest(k, cands, key=lambda c: c[0])
    return [walk for _, walk in best[SOURCE]]


def _extend(key: Key, walk: Walk, weight: int, node: ServiceNode | None,
            uses: Mapping[str, int], load: Mapping[str, float]) -> tuple[Key, Walk]:
    crossings, reuse, total, order = key
    if node is None:
        return (crossings + weight, reuse, total, order), walk
    return ((crossings + weight, reuse + uses.get(node.id, 0), total + load.get(node.id, 0.0),
             ((node.num, node.id), *order)), (node, *walk))


def _next_best(graph: nx.DiGraph, taken: set[tuple[str, ...]], uses: Mapping[str, int],
               load: Mapping[str, float]) -> Walk | None:
    """The best walk not taken yet; ``uses`` makes reusing chosen nodes cost, so
    paths spread over the nodes."""
    for walk in _k_best(graph, len(taken) + 1, uses, load):
        if tuple(n.id for n in walk) not in taken:
            return walk
    return None


def _reverse_walk(chain: Chain, hops: Walk, live: Mapping[str, list[ServiceNode]],
                  uses: Mapping[str, int], load: Mapping[str, float],
                  home: str | None) -> Walk:
    """Reverse hops: the forward node wherever the profile recurs (a stateful
    node must see both directions), the best live node for reverse-only ones.

    The k-th last forward occurrence of a profile pairs with its k-th reverse
    occurrence, so the default reverse is exactly the forward hops reversed.
    """
    stacks: dict[str, list[ServiceNode]] = {}
    for profile, node in zip(chain.profiles, hops, strict=True):
        stacks.setdefault(profile, []).append(node)
    layers = [[stacks[p].pop()] if stacks.get(p) else live[p] for p in _reverse_profiles(chain)]
    return _k_best(layered_dag(layers, home), 1, uses, load)[0]


def _survivors(chain: Chain, previous: Sequence[ServicePath],
               live: Mapping[str, list[ServiceNode]]) -> Iterable[tuple[Walk, Walk]]:
    """Previous paths of this chain whose hops still fit its profiles and are live."""
    by_id = {n.id: n for nodes in live.values() for n in nodes}
    for p in previous:
        fwd = _fit(p.hops, chain.profiles, by_id)
        rev = _fit(p.reverse_hops, _reverse_profiles(chain), by_id)
        if p.chain == chain.id and fwd is not None and rev is not None:
            yield fwd, rev


def _fit(ids: Sequence[str], profiles: Sequence[str],
         by_id: Mapping[str, ServiceNode]) -> Walk | None:
    walk = tuple(by_id[i] for i in ids if i in by_id)
    if len(walk) == len(ids) == len(profiles) and all(
            n.profile == p for n, p in zip(walk, profiles, strict=True)):
        return walk
    return None


def path_key(chain_id: str, hops: Sequence[str]) -> str:
    """The key a path's SPI is allocated under: the same hops, the same SPI."""
    return f"{chain_id}:{'/'.join(hops)}"


def _path(chain: Chain, hops: Walk, reverse: Walk, load: Mapping[str, float],
          spi_allocator: Callable[[str], int], home: str | None) -> ServicePath:
    """SPIs come from the hop sequences, so the same hops always get the same SPI.

    The reverse key includes the forward hops: two paths that differ only in a
    forward-only profile still get distinct reverse SPIs, one pair per path.
    """
    ids = tuple(n.id for n in hops)
    rev_ids = tuple(n.id for n in reverse)
    key = path_key(chain.id, ids)
    return ServicePath(
        chain=chain.id, index=0, spi=spi_allocator(key),
        reverse_spi=spi_allocator(f"rev:{key}:{'/'.join(rev_ids)}"),
        hops=ids, reverse_hops=rev_ids, hosts=tuple(n.host for n in hops),
        reverse_hosts=tuple(n.host for n in reverse),
        host_crossings=_host_crossings(hops, home), load=sum(load.get(i, 0.0) for i in ids))


def _finish(up: list[ServicePath], parked: list[ServicePath]) -> list[ServicePath]:
    """Number the paths and give each up path its backups."""
    done = [dataclasses.replace(p, backups=_backups(p, up)) for p in up] + parked
    return [dataclasses.replace(p, index=i) for i, p in enumerate(done)]


def _backups(path: ServicePath, up: Sequence[ServicePath]) -> tuple[int, ...]:
    """Other up paths, fewest shared nodes first: the node-disjoint ones lead,
    and they survive the failure of any node of ``path``."""
    others = [(len(path.node_ids & p.node_ids), i, p.spi)
              for i, p in enumerate(up) if p.spi != path.spi]
    return tuple(spi for _, _, spi in sorted(others))


# --- select group weights -----------------------------------------------------------

def select_weights(paths: Iterable[ServicePath], strategy: str,
                   home: str | None = None) -> dict[int, int]:
    """Bucket weights (SPI → weight) of the chain's select group, up paths only.

    ``hash`` spreads connections evenly over the up paths.  ``local`` keeps them
    on the local paths (every hop, both directions, on the routers' host ``home``)
    while one is up, and spreads them over all up paths when none is.
    """
    up = [p for p in paths if p.state == "up"]
    if strategy == "hash":
        return {p.spi: 1 for p in up}
    if strategy == "local":
        local = [p for p in up if is_local(p, home)]
        return {p.spi: 1 for p in local or up}
    raise ValueError(f"unknown strategy {strategy!r}")


def is_local(path: ServicePath, home: str | None) -> bool:
    """Every node of the path, forward and reverse, runs where the routers run."""
    return all(_site(h, home) is None for h in (*path.hosts, *path.reverse_hosts))


def routers_home(model: Model) -> str | None:
    """The host the routers run on, when they name one (validation keeps it one)."""
    return next((r.host for r in model.all("routers") if r.host), None)


def chain_paths(model: Model, spis: SpiTable, down: Iterable[str] = frozenset(),
                admin_down: frozenset[int] = frozenset(),
                previous: Mapping[str, Sequence[ServicePath]] | None = None
                ) -> dict[str, list[ServicePath]]:
    """Service paths of every chain of the model, each from the nodes of its plane and
    numbered in it; surviving paths keep their SPIs."""
    nodes = [n for n in model.all("service-nodes") if n.transport == "chain"]
    home = routers_home(model)
    out = {}
    for c in model.all("chains"):
        plane = plane_num(model, c.plane)
        out[c.id] = generate(c, [n for n in nodes if plane in node_planes(model, n)],
                             spi_allocator=functools.partial(spis.allocate, plane=plane),
                             down=frozenset(down), admin_down=admin_down,
                             previous=(previous or {}).get(c.id, ()), home=home)
    return out


MAX_SKIPPED_PER_PATH = 3    # skipped nodes of one path combined: 2**3 - 1 derived paths


SkipKey = tuple[int, frozenset]     # (the path's SPI, the nodes taken off it)


def skip_paths(path: ServicePath, skipped: Iterable[str],
               spi_allocator: Callable[[str, int], int]) -> dict[SkipKey, ServicePath]:
    """``path`` without each non-empty combination of the skipped nodes it goes through
    (FIG. 13: skip this node, keep the rest of the chain; a second skip on the same
    connection takes another node off), up to MAX_SKIPPED_PER_PATH of them."""
    mine = sorted(n for n in set(skipped) if n in path.node_ids)[:MAX_SKIPPED_PER_PATH]
    combos = (frozenset(c) for k in range(1, len(mine) + 1)
              for c in itertools.combinations(mine, k))
    return {(path.spi, c): skip_path(path, c, spi_allocator) for c in combos}


def skip_path(path: ServicePath, removed: frozenset,
              spi_allocator: Callable[[str, int], int]) -> ServicePath:
    """``path`` without the ``removed`` nodes, both ways, with SPIs of its own in the
    path's plane: a connection programmed to skip a node is moved to it.  Its backups
    are the path's, so it fails over as the path would."""
    plane = plane_of(path.spi)
    key = f"skip:{'/'.join(sorted(removed))}:{path.spi}"
    fwd = [(h, host) for h, host in zip(path.hops, path.hosts) if h not in removed]
    rev = [(h, host) for h, host in zip(path.reverse_hops, path.reverse_hosts)
           if h not in removed]
    return dataclasses.replace(
        path, spi=spi_allocator(key, plane), reverse_spi=spi_allocator(f"rev:{key}", plane),
        hops=tuple(h for h, _ in fwd), hosts=tuple(host for _, host in fwd),
        reverse_hops=tuple(h for h, _ in rev), reverse_hosts=tuple(host for _, host in rev))


def probe_spis(model: Model, spis: SpiTable) -> dict[str, int]:
    """A one-hop probe path per chain node (stable SPI, in the first plane it serves),
    for liveness."""
    return {n.id: spis.allocate(f"probe:{n.id}", node_planes(model, n)[0])
            for n in model.all("service-nodes") if n.transport == "chain"}
