"""The benchmarks' generated rule bases: every family's rules pass the project's
validator, IPv6 rules are IPv6 rules, and no generated rule matches the datapath
benchmark's own traffic (TCP to the server on a reserved port, from any source)."""
from __future__ import annotations

import ipaddress

import pytest

from benchmarks import datapath
from benchmarks.workload import RESERVED_PORTS, V4, V6, Edge, rules
from ryu_si.control.service import Service
from ryu_si.control.store import Store
from si_model.validate import match_family

EDGE = Edge("b2", 16, datapath.DPID)
COUNT = 1_500


@pytest.fixture(scope="module")
def dual_model(tmp_path_factory):
    """The datapath benchmark's dual-stack config, loaded by the config service."""
    svc = Service(Store(str(tmp_path_factory.mktemp("wl") / "si.sqlite")))
    svc.replace_config(datapath.config(EDGE, COUNT, "dual"))
    yield svc.model
    svc.store.close()


def generated(model, prefix: str) -> list:
    return [r for r in model.all("rules") if r.name.startswith(prefix)]


def test_dual_base_holds_the_ipv4_base_then_as_many_ipv6_rules():
    names = EDGE.uplink_names()
    dual = rules(COUNT, names, family="dual")
    assert dual[:COUNT] == rules(COUNT, names)
    assert dual[COUNT:] == rules(COUNT, names, family="ipv6")
    assert [r["name"] for r in dual[COUNT:COUNT + 2]] == ["g6-0", "g6-1"]


def test_every_ipv6_rule_validates_as_an_ipv6_rule(dual_model):
    six = generated(dual_model, "g6-")
    assert len(six) == COUNT
    assert {match_family("match", r.match) for r in six} == {6}


def test_ipv6_addresses_come_from_the_documentation_blocks(dual_model):
    blocks = {"ipv6_src": V6.src, "ipv6_dst": V6.dst}
    seen = {field: 0 for field in blocks}
    for r in generated(dual_model, "g6-"):
        for field, block in blocks.items():
            for prefix in r.match.get(field, []):
                assert ipaddress.IPv6Network(prefix).subnet_of(block), (r.name, prefix)
                seen[field] += 1
    assert all(seen.values())


TRAFFIC_PORTS = set(RESERVED_PORTS) | {datapath.CONN_PORT, datapath.IPERF_PORT}


def _may_match(match: dict, dst: str) -> bool:
    """Whether the match can take a TCP packet to ``dst`` on a reserved port or one the
    benchmark uses, whatever its source (the cold sources lie in the rules' own source
    blocks)."""
    family = ipaddress.ip_address(dst).version
    dst_field = f"ipv{family}_dst"
    ports = (range(int(p.split("-")[0]), int(p.split("-")[-1]) + 1)
             for p in match.get("tp_dst", []))
    return (match.get("ip_proto", 6) == 6
            and match_family("match", match) in (None, family)
            and (dst_field not in match or any(ipaddress.ip_address(dst)
                                               in ipaddress.ip_network(p)
                                               for p in match[dst_field]))
            and ("tp_dst" not in match or any(set(r) & TRAFFIC_PORTS for r in ports)))


@pytest.mark.parametrize("dst", [datapath.SRV.ip, datapath.SRV.ip6])
def test_no_generated_rule_matches_the_benchmark_traffic(dual_model, dst):
    rules_ = generated(dual_model, "g")
    assert len(rules_) == 2 * COUNT
    assert not [r.name for r in rules_ if _may_match(r.match, dst)]


@pytest.mark.parametrize("dst", [datapath.SRV.ip, datapath.SRV.ip6])
def test_the_benchmark_allow_rules_do_match_it(dual_model, dst):
    """The check above can fail: the benchmark's own allow rule of each family passes it."""
    allow = [r for r in dual_model.all("rules") if r.name.startswith("bench-allow")]
    assert [r.name for r in allow if _may_match(r.match, dst)] == [
        "bench-allow6" if ":" in dst else "bench-allow"]


def test_cold_sources_lie_in_the_rules_source_blocks():
    for block, plan in ((datapath.COLD_NET, V4), (datapath.COLD_NET6, V6)):
        sources = datapath.cold_sources(200, block)
        assert len(set(sources)) == 200
        assert all(ipaddress.ip_address(s) in plan.src for s in sources)
