"""IPv6 in the compiled pipeline, read from the flows themselves: routing, neighbours,
the orient swap, one family per rule (the interpreter runs IPv6 packets through the same
flows in test_interpret)."""
from __future__ import annotations

import ipaddress

from openflow_tables import layout as L
from openflow_tables.flow import Move
from si_model import model as m
from tests.unit.conftest import compile_for


def _m(flow) -> dict:
    """A flow's match by field; a register's full-width mask left out."""
    return {k: v if mask is None or mask == 0xFFFFFFFF else (v, mask)
            for k, v, mask in flow.match}


def _prefix(value: tuple[str, str]) -> str:
    addr, mask = value
    return str(ipaddress.IPv6Network(f"{addr}/{bin(int(ipaddress.IPv6Address(mask))).count('1')}"))


def _loads(flow) -> dict:
    return {(a.dst, a.ofs): a.value for a in flow.actions if hasattr(a, "value")}


def test_ipv6_routes_are_longest_prefix_first_and_load_a_next_hop_number(service):
    pipe = compile_for(service)
    v6 = [f for f in pipe.table("routing") if _m(f).get("eth_type") == L.ETH_IP6]
    by_dst = {_m(f)["ipv6_dst"]: f for f in v6}
    down = by_dst[("2001:db8:10::", "ffff:ffff:ffff:ffff::")]
    clients = by_dst[("2001:db8:5100::", "ffff:ffff:ffff:ffff::")]
    assert down.priority == clients.priority == 100 + 64
    hops = m.ipv6_next_hops(service.model)
    nh = (L.NEXT_HOP.register, L.NEXT_HOP.ofs)
    assert _loads(down)[nh] == L.NEXT_HOP_V6_DIRECT
    assert _loads(clients)[nh] == hops["2001:db8:1::2"] >= 2
    assert all(n < L.NEXT_HOP_V6_LIMIT for n in hops.values())


def test_ipv6_neighbours_match_the_destination_or_the_next_hop_number(service):
    service.learn_neighbor(service.model.by_name("interfaces", "uplink1").id, "2001:db8:1::2",
                           "02:00:00:00:01:02")
    service.learn_neighbor(service.model.by_name("interfaces", "downlink1").id,
                           "2001:db8:10::10", "02:00:00:00:10:0a")
    pipe = compile_for(service)
    sets = {}
    for f in pipe.table("neighbor"):
        mac = next((a.value for a in f.actions if getattr(a, "field", None) == "eth_dst"), None)
        sets.setdefault(mac, []).append(_m(f))
    gw, srv = sets["02:00:00:00:01:02"], sets["02:00:00:00:10:0a"]
    number = m.ipv6_next_hops(service.model)["2001:db8:1::2"]
    assert any(mt.get(L.NEXT_HOP.register) == number and "ipv6_dst" not in mt for mt in gw)
    assert any(mt.get("ipv6_dst") == "2001:db8:10::10"
               and mt.get(L.NEXT_HOP.register) == L.NEXT_HOP_V6_DIRECT for mt in srv)


def test_a_learned_this_network_sender_never_stands_for_an_ipv6_next_hop(service):
    service.learn_neighbor(service.model.by_name("interfaces", "uplink1").id, "0.0.0.1",
                           "02:00:00:00:66:66")
    macs = [a.value for f in compile_for(service).table("neighbor") for a in f.actions
            if getattr(a, "field", None) == "eth_dst"]
    assert "02:00:00:00:66:66" not in macs


def test_orient_swaps_both_ipv6_addresses_word_by_word(service):
    pipe = compile_for(service)
    flows = [f for f in pipe.table("orient") if _m(f).get("eth_type") == L.ETH_IP6
             and "ct_state" in _m(f)]
    assert flows
    for f in flows:
        moves = [a for a in f.actions if isinstance(a, Move)]
        words = {(a.src, a.src_ofs) for a in moves if a.src in ("ipv6_src", "ipv6_dst")}
        assert words == {(fld, ofs) for fld in ("ipv6_src", "ipv6_dst") for ofs in range(0, 128, 32)}


def test_an_ipv6_rule_has_ipv6_flows_only_and_a_familyless_one_both(service):
    rule = service.create("rules", {"name": "v6-only", "priority": 70, "action": "drop",
                                    "applied_to": ["uplink1"],
                                    "match": {"ipv6_src": ["2001:db8:5100::/64",
                                                           "2001:db8:cb00::/48"]}})
    pipe = compile_for(service)
    mine = [f for f in pipe.table("classify") if f.cookie == L.cookie("rule", rule.rule_num)]
    assert mine and {_m(f)["eth_type"] for f in mine} == {L.ETH_IP6}
    assert {_prefix(_m(f)["ipv6_src"]) for f in mine} == {"2001:db8:5100::/64",
                                                           "2001:db8:cb00::/48"}
    web = service.model.by_name("rules", "web-inspect")
    both = [f for f in pipe.table("classify") if f.cookie == L.cookie("rule", web.rule_num)]
    assert {_m(f)["eth_type"] for f in both} == set(L.ETH_IPS)
