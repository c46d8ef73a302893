"""Service path generation, SPI stability and select group weights (pure, no switch)."""
from __future__ import annotations

import json
from collections.abc import Iterable

import pytest

from si_model.model import Chain, ServiceNode
from si_model.paths import MAX_SPI, ServicePath, SpiTable, generate, is_local, select_weights


def _node(node_id: str, profile: str, host: str | None = "h1", num: int = 0,
          **kw) -> ServiceNode:
    return ServiceNode(id=node_id, name=node_id, transport="chain", profile=profile,
                       host=host, num=num, **kw)


def _grid(profiles: Iterable[str], per_profile: int, host: str = "h1") -> list[ServiceNode]:
    """Nodes named <profile><k>, all on one host, numbered in creation order."""
    nodes = []
    for p in profiles:
        for k in range(1, per_profile + 1):
            nodes.append(_node(f"{p}{k}", p, host, num=len(nodes) + 1))
    return nodes


def _chain(profiles: list[str], reverse: list[str] | None = None) -> Chain:
    return Chain(id="c1", name="c1", profiles=profiles, reverse_profiles=reverse)


def _gen(chain: Chain, nodes: list[ServiceNode], table: SpiTable | None = None,
         **kw) -> list[ServicePath]:
    return generate(chain, nodes, spi_allocator=(table or SpiTable()).allocate, **kw)


def _through(paths: list[ServicePath], node_id: str) -> set[int]:
    return {p.spi for p in paths if node_id in p.node_ids}


def test_first_path_keeps_all_hops_on_one_host():
    # Lower nums sit on h1, but lb lives only on h2: the best path stays on h2.
    nodes = [_node("fw1", "fw", "h1", 1), _node("fw2", "fw", "h2", 2),
             _node("ids1", "ids", "h1", 3), _node("ids2", "ids", "h2", 4),
             _node("lb2", "lb", "h2", 5)]
    paths = _gen(_chain(["fw", "ids", "lb"]), nodes)
    assert paths[0].hops == ("fw2", "ids2", "lb2")
    assert paths[0].host_crossings == 2
    assert all(p.host_crossings > 2 for p in paths[1:])
    crossings = [p.host_crossings for p in paths]
    assert crossings == sorted(crossings)


def test_nodes_on_the_router_host_cross_nothing():
    nodes = [_node("fw1", "fw", None, 1), _node("ids1", "ids", "router", 2)]
    assert _gen(_chain(["fw", "ids"]), nodes)[0].host_crossings == 0


def test_number_of_paths_is_bounded():
    chain = _chain(["a", "b", "c"])
    nodes = _grid("abc", 2)
    assert len(_gen(chain, nodes, max_paths=3)) == 3
    every = _gen(chain, nodes, max_paths=20)
    assert len(every) == 8 and len({p.hops for p in every}) == 8


def test_equal_cost_paths_spread_over_unused_nodes():
    paths = _gen(_chain(["a", "b"]), _grid("ab", 2), max_paths=2)
    assert [p.hops for p in paths] == [("a1", "b1"), ("a2", "b2")]


def test_node_load_breaks_ties_between_equal_crossings():
    paths = _gen(_chain(["a"]), _grid("a", 2), node_load={"a1": 5.0}, max_paths=1)
    assert paths[0].hops == ("a2",) and paths[0].load == 0.0


def test_default_reverse_path_is_the_forward_nodes_reversed():
    for p in _gen(_chain(["a", "b", "c"]), _grid("abc", 2), max_paths=8):
        assert p.reverse_hops == p.hops[::-1]


def test_custom_reverse_profiles_reuse_the_forward_node_of_each_profile():
    nodes = [*_grid(["fw", "ids", "lb"], 2), _node("nat1", "nat", "h1", 99)]
    paths = _gen(_chain(["fw", "ids", "lb"], reverse=["lb", "nat", "fw"]), nodes, max_paths=8)
    assert len(paths) == 8
    for p in paths:
        fw, _, lb = p.hops
        assert p.reverse_hops == (lb, "nat1", fw)
    assert len({p.reverse_spi for p in paths}) == 8
    assert not {p.reverse_spi for p in paths} & {p.spi for p in paths}


def test_a_repeated_profile_pairs_occurrences_from_the_end():
    paths = _gen(_chain(["fw", "ids", "fw"], reverse=["fw", "fw"]), _grid(["fw", "ids"], 2),
                 max_paths=8)
    for p in paths:
        assert p.reverse_hops == (p.hops[2], p.hops[0])


def test_backups_put_node_disjoint_paths_first():
    paths = _gen(_chain(["a", "b"]), _grid("ab", 2), max_paths=4)
    by_spi = {p.spi: p for p in paths}
    assert len(paths) == 4
    for p in paths:
        assert sorted(p.backups) == sorted(q.spi for q in paths if q is not p)
        shared = [len(by_spi[b].node_ids & p.node_ids) for b in p.backups]
        assert shared[0] == 0 and shared == sorted(shared)


def test_spis_are_stable_across_recompute_and_save_load():
    chain, nodes = _chain(["a", "b"]), _grid("ab", 3)
    table = SpiTable()
    first = _gen(chain, nodes, table, max_paths=4)
    again = _gen(chain, nodes, table, max_paths=4)
    assert [(p.hops, p.spi, p.reverse_spi) for p in again] == \
           [(p.hops, p.spi, p.reverse_spi) for p in first]
    loaded = SpiTable.from_dict(json.loads(json.dumps(table.to_dict())))
    reloaded = _gen(chain, nodes, loaded, max_paths=4)
    assert [(p.spi, p.reverse_spi) for p in reloaded] == [(p.spi, p.reverse_spi) for p in first]
    used = {p.spi for p in first} | {p.reverse_spi for p in first}
    assert loaded.allocate("c1:new") not in used


def test_spi_numbers_are_never_reused_and_stay_24_bit():
    table = SpiTable.from_dict({"next": 10, "spis": {"x": 3}})
    assert table.allocate("x") == 3 and table.allocate("y") == 10
    full = SpiTable.from_dict({"next": MAX_SPI + 1, "spis": {}})
    with pytest.raises(OverflowError):
        full.allocate("z")


def test_a_failed_node_removes_exactly_its_paths_and_keeps_the_other_spis():
    chain, nodes, table = _chain(["a", "b"]), _grid("ab", 3), SpiTable()
    before = _gen(chain, nodes, table, max_paths=4)
    gone = _through(before, "a1")
    assert gone and gone != {p.spi for p in before}
    after = _gen(chain, nodes, table, max_paths=4, down=frozenset({"a1"}), previous=before)
    assert not _through(after, "a1")
    kept = {(p.spi, p.hops) for p in before if p.spi not in gone}
    assert kept <= {(p.spi, p.hops) for p in after}
    assert {p.spi for p in before} - {p.spi for p in after} == gone
    assert len(after) == 4  # the freed slots go to other live paths


def test_admin_down_nodes_and_other_transports_are_not_used():
    nodes = [_node("a1", "a", num=1, admin_state="down"), _node("a2", "a", num=2),
             ServiceNode(id="a3", name="a3", transport="l3", profile="a", num=3)]
    paths = _gen(_chain(["a"]), nodes, max_paths=4)
    assert [p.hops for p in paths] == [("a2",)]


@pytest.mark.parametrize("kw", [{"down": frozenset({"b1"})}, {}])
def test_no_path_when_a_profile_has_no_live_node(kw):
    nodes = _grid("a", 2) + ([_node("b1", "b", num=9)] if kw else [])
    assert _gen(_chain(["a", "b"]), nodes, **kw) == []


def test_no_path_when_a_reverse_only_profile_has_no_live_node():
    assert _gen(_chain(["a"], reverse=["a", "nat"]), _grid("a", 2)) == []


def test_admin_down_paths_are_listed_down_and_replaced():
    chain, nodes, table = _chain(["a", "b"]), _grid("ab", 2), SpiTable()
    first = _gen(chain, nodes, table, max_paths=2)
    off = first[0].spi
    paths = _gen(chain, nodes, table, max_paths=2, admin_down=frozenset({off}))
    up = [p for p in paths if p.state == "up"]
    assert len(up) == 2 and off not in {p.spi for p in up}
    assert [p.spi for p in paths if p.state == "down"] == [off]
    assert all(off not in p.backups for p in up)
    assert off not in select_weights(paths, "hash")


def test_ten_profiles_of_twenty_nodes_enumerate_only_what_is_asked():
    profiles = [f"p{i}" for i in range(10)]
    nodes = [_node(f"{p}n{k}", p, f"h{k % 4}", num=i * 20 + k)
             for i, p in enumerate(profiles) for k in range(20)]
    paths = _gen(_chain(profiles), nodes, max_paths=8)
    assert len(paths) == 8 and len({p.hops for p in paths}) == 8


def _weighted() -> list[ServicePath]:
    nodes = [_node("a1", "a", "h1", 1), _node("a2", "a", "h2", 2), _node("a3", "a", "h2", 3)]
    return _gen(_chain(["a"]), nodes, node_load={"a1": 0.0, "a2": 1.0, "a3": 3.0})


def test_hash_weights_are_equal():
    paths = _weighted()
    assert select_weights(paths, "hash") == {p.spi: 1 for p in paths}


def test_local_weights_keep_paths_wholly_on_the_routers_host_or_fall_back():
    paths = _weighted()
    on_h2 = {p.spi for p in paths if p.hops[0] in ("a2", "a3")}
    assert set(select_weights(paths, "local", home="h2")) == on_h2
    assert set(select_weights(paths, "local", home="h9")) == {p.spi for p in paths}


@pytest.mark.parametrize("b_host,local", [("h2", False), ("h1", True), (None, True)])
def test_a_path_is_local_only_if_its_reverse_hops_are_too(b_host, local):
    nodes = [_node("a1", "a", "h1", 1), _node("b1", "b", b_host, 2)]
    paths = _gen(_chain(["a"], reverse=["b", "a"]), nodes, home="h1")
    assert paths[0].reverse_hops == ("b1", "a1")
    assert is_local(paths[0], "h1") is local


def test_the_routers_host_costs_no_crossing():
    nodes = [_node("a1", "a", "h1", 1), _node("a2", "a", "h2", 2)]
    paths = _gen(_chain(["a"]), nodes, home="h2", max_paths=1)
    assert paths[0].hops == ("a2",) and paths[0].host_crossings == 0


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError):
        select_weights(_weighted(), "random")
