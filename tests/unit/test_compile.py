"""The compiler, flow by flow and by counts, without a switch."""
from __future__ import annotations

import copy
import dataclasses
import random

import pytest

from openflow_tables import layout as L
from openflow_tables.analysis import subtables
from openflow_tables.flow import Conjunction, GroupAction
from openflow_tables.stages.classify import port_range_masks
from ryu_si.control.config import default_document
from tests.unit.conftest import compile_for


def _rule(svc, name):
    return svc.model.by_name("rules", name)


def test_each_rule_is_one_classify_flow_per_family_on_its_applied_to_code(service):
    """web-inspect names no family (tcp port 80): one flow for IPv4, one for IPv6."""
    pipe = compile_for(service)
    web = _rule(service, "web-inspect")
    flows = [f for f in pipe.table("classify") if f.cookie == L.cookie("rule", web.rule_num)]
    assert sorted(dict((k, v) for k, v, _ in f.match)["eth_type"] for f in flows) == [
        L.ETH_IP, L.ETH_IP6]
    reg, value, mask = L.applied_to_slice(
        *service.applied_to_codes[(web.router, frozenset(web.applied_to))])
    for f in flows:
        m = {k: (v, mask) for k, v, mask in f.match}
        assert m[reg] == (value, mask) and value != 0
        assert m[L.CLASSIFY_TP_DST.register] == (L.CLASSIFY_TP_DST.value(80),
                                                 L.CLASSIFY_TP_DST.mask)
        assert m[L.CLASSIFY_PROTO.register] == (L.CLASSIFY_PROTO.value(6), L.CLASSIFY_PROTO.mask)
        assert "tcp_dst" not in m and f.priority == 100
        assert f.goto == "reorient"


def test_interfaces_carry_the_codes_of_every_set_they_belong_to(service):
    pipe = compile_for(service)
    ingress = {dict((k, v) for k, v, _ in f.match)["in_port"]: f
               for f in pipe.table("ingress") if ("eth_type", 0x0800, None) in f.match
               and f.priority == 90}
    both = service.applied_to_codes[(_rule(service, "web-inspect").router,
                                     frozenset(_rule(service, "web-inspect").applied_to))]
    only1 = service.applied_to_codes[(_rule(service, "alt-web-uplink1").router,
                                      frozenset(_rule(service, "alt-web-uplink1").applied_to))]

    def words(port):
        loads = {a.dst: a.value for a in ingress[port].actions if getattr(a, "dst", "") in
                 L.APPLIED_TO_REGS}
        return [loads.get(reg, 0) for reg in L.APPLIED_TO_REGS]

    def holds(port, code):
        reg, value, mask = L.applied_to_slice(*code)
        return words(port)[L.APPLIED_TO_REGS.index(reg)] & mask == value
    assert both.slice() != only1.slice()               # the two sets overlap: two slices
    assert holds(1, both) and holds(1, only1)          # uplink1 is in both sets
    assert holds(2, both) and not holds(2, only1)      # uplink2 only in the ECMP set
    assert ingress[3].goto == "routing"                # downlink: routed first
    assert ingress[4].goto == "routing" and any(       # service port marks serviced
        getattr(a, "dst", "") == "reg1" and a.value == 1 for a in ingress[4].actions)


def test_applied_to_table_has_one_flow_per_rule_plus_default(service):
    pipe = compile_for(service)
    rules = service.model.all("rules")
    assert len([f for f in pipe.table("applied_to") if f.priority == 10]) == len(rules) + 1


def test_policy_selects_biw_node_with_a_select_group(service):
    pipe = compile_for(service)
    inspect = service.model.by_name("policies", "inspect")
    (grp,) = pipe.groups
    assert grp.group_id == inspect.num and grp.type == "select" and len(grp.buckets) == 1
    (pflow,) = [f for f in pipe.table("policy") if f.priority == 10]
    assert pflow.actions == (GroupAction(inspect.num),)


def test_failure_policy_when_no_node_is_live(service):
    svc = service
    svc.update("service-nodes", "fw1", {"admin_state": "down"})
    pipe = compile_for(svc)
    assert pipe.groups == ()
    (pflow,) = [f for f in pipe.table("policy") if f.priority == 10]
    assert pflow.goto == "commit"
    assert pflow.actions[0].value == L.TRANSPORT_NONE
    svc.update("policies", "inspect", {"failure_policy": "fail"})
    (pflow,) = [f for f in compile_for(svc).table("policy") if f.priority == 10]
    assert pflow.actions[0].value == L.TRANSPORT_DROP


def test_two_multivalued_fields_make_a_conjunction(service):
    service.create("rules", {"name": "multi", "priority": 300, "action": "allow",
                             "applied_to": ["uplink1"],
                             "match": {"ipv4_src": ["1.0.0.0/8", "2.0.0.0/8", "3.3.3.3/32"],
                                       "ipv4_dst": ["10.1.0.0/16", "10.2.0.0/16"]}})
    flows = _rule_flows(compile_for(service), _rule(service, "multi"))
    assert len(flows) == 3 + 2 + 1
    assert {a.n_clauses for f in flows for a in f.actions if isinstance(a, Conjunction)} == {2}


def test_a_port_list_with_an_address_list_is_every_combination_behind_the_port(service):
    """Each flow carries the port key, so OVS turns a packet for another port away in
    its register stage, before the source address is looked at."""
    service.create("rules", {"name": "multi", "priority": 300, "action": "allow",
                             "applied_to": ["uplink1"],
                             "match": {"ip_proto": "tcp",
                                       "ipv4_src": ["1.0.0.0/8", "2.0.0.0/8", "3.3.3.3/32"],
                                       "tp_dst": [22, 443]}})
    flows = _rule_flows(compile_for(service), _rule(service, "multi"))
    key = L.CLASSIFY_TP_DST
    combos = {(dict((n, v) for n, v, _ in f.match)["ipv4_src"],
               dict((n, v) for n, v, _ in f.match)[key.register] >> key.ofs) for f in flows}
    assert combos == {(a, p) for a in ("1.0.0.0", "2.0.0.0", "3.3.3.3") for p in (22, 443)}
    assert not any(isinstance(a, Conjunction) for f in flows for a in f.actions)


def test_long_lists_stay_a_conjunction(service):
    """Every combination only while it is at most twice a conjunction's flows."""
    service.create("rules", {"name": "long", "priority": 300, "action": "allow",
                             "applied_to": ["uplink1"],
                             "match": {"ip_proto": "tcp",
                                       "ipv4_src": [f"1.0.{k}.0/24" for k in range(6)],
                                       "tp_dst": [22, 443, 8443, 8080, 25, 110]}})
    flows = _rule_flows(compile_for(service), _rule(service, "long"))
    assert len(flows) == 6 + 6 + 1


def test_one_multivalued_field_expands_without_conjunction(service):
    service.create("rules", {"name": "ports", "priority": 300, "action": "drop",
                             "applied_to": ["uplink2"],
                             "match": {"ip_proto": "udp", "tp_dst": ["1000-1003", 53]}})
    r = _rule(service, "ports")
    flows = [f for f in compile_for(service).table("classify")
             if f.cookie == L.cookie("rule", r.rule_num)]
    assert len(flows) == 2 * 2  # 1000/0xfffc covers 1000-1003, plus 53; IPv4 and IPv6
    assert not any(isinstance(a, Conjunction) for f in flows for a in f.actions)


def test_port_range_masks_cover_exactly():
    rnd = random.Random(7)
    for _ in range(200):
        lo = rnd.randrange(0, 65536)
        hi = rnd.randrange(lo, min(65536, lo + rnd.choice([1, 10, 1000, 70000])))
        covered = set()
        for v, mask in port_range_masks(lo, hi):
            size = (~mask & 0xFFFF) + 1
            assert v & ~mask & 0xFFFF == 0
            covered.update(range(v, v + size))
        assert covered == set(range(lo, hi + 1))


def _scaled_doc(n_rules: int, n_ifaces: int) -> dict:
    doc = copy.deepcopy(default_document())
    ups = [f"up{i}" for i in range(3, 3 + n_ifaces - 2)]
    for k, port in enumerate(ups):
        doc["interfaces"].append({"name": f"uplink{k + 3}", "router": "edge", "port": port,
                                  "role": "uplink", "ip": f"10.1.{k}.1/24",
                                  "mac": f"02:00:00:01:{k // 256:02x}:{k % 256:02x}"})
    all_up = ["uplink1", "uplink2"] + [f"uplink{k + 3}" for k in range(len(ups))]
    doc["rules"] = [{"name": f"r{n}", "priority": 1 + n % 60000, "action": "allow",
                     "applied_to": all_up,
                     "match": {"ip_proto": "tcp", "ipv4_src": f"10.{n // 256}.{n % 256}.0/24",
                               "tp_dst": 1000 + n}} for n in range(n_rules)]
    return doc, {**{"up1": 1, "up2": 2, "down1": 3, "bwa": 4, "bwb": 5},
                 **{p: 10 + k for k, p in enumerate(ups)}}


def test_flows_grow_like_rules_plus_interfaces_not_their_product(service):
    """1,000 rules x 32 interfaces: classify < 1,100 + 32k flows with k = 0 (naive: 32,000)."""
    doc, ports = _scaled_doc(1000, 32)
    service.replace_config(doc)
    pipe = compile_for(service, ports)
    classify = pipe.table("classify")
    assert len(classify) < 1100, len(classify)
    assert len(pipe.table("applied_to")) <= 1000 + 2
    # IPv4+IPv6+ARP per routed iface (33), the two service ports and the tagged biw
    # return per family, miss; ND per IPv6 iface (3): NS, NA, echo to its two addresses
    assert len(pipe.table("ingress")) == 3 * 33 + 2 * 2 + 2 * 2 + 1 + 4 * 3
    assert subtables(pipe.flows, "classify") <= 3


def _flows_one_rule_changes(service, n_rules: int) -> set:
    doc, ports = _scaled_doc(n_rules, 8)
    service.replace_config(doc)
    before = set(compile_for(service, ports).flows)
    service.create("rules", {"name": "extra", "priority": 7, "action": "drop",
                             "applied_to": ["uplink1", "uplink3"],
                             "match": {"ip_proto": "tcp", "tp_dst": 9}})
    return before ^ set(compile_for(service, ports).flows)


def test_adding_one_rule_changes_few_flows_whatever_the_rule_count(service):
    """A rule costs its own flows (classify, applied_to; keep_decision for a redirect),
    the interfaces whose sets or class change (ingress, egress_si, resume), the pair of
    class_check flows of new classes and the transit_done flows of a new class value;
    the classify generation bump changes ct_result and commit.  None of it grows with
    the rules already there."""
    changed = _flows_one_rule_changes(service, 300)
    assert changed and {f.table for f in changed} <= {
        "classify", "applied_to", "keep_decision", "ingress", "egress_si", "class_check",
        "ct_result", "commit", "resume", "transit_done"}
    assert len(changed) == len(_flows_one_rule_changes(service, 30))
    assert sorted(f.table for f in changed if L.cookie_owner(f.cookie)[0] == "rule") == [
        "applied_to", "classify", "classify"]   # per family; a drop keeps no decision


@pytest.mark.parametrize("which,transports", [
    ("flow_program", set(L.TRANSPORT_CODES.values()) | {L.TRANSPORT_NONE, L.TRANSPORT_DROP}),
    ("bfd", {L.TRANSPORT_BIW}), ("spi_fail", {L.TRANSPORT_CHAIN}), ("sn", {L.TRANSPORT_L3})])
def test_a_generation_bump_changes_the_gen_check_of_its_transports_only(service, which,
                                                                         transports):
    """FIG. 14: a biw liveness bump leaves chain and L3 records on the fast path."""
    before = set(compile_for(service).flows)
    gens = service.generations
    service.set_generations(dataclasses.replace(gens, **{which: getattr(gens, which) + 1}))
    after = set(compile_for(service).flows)
    changed = after - before
    assert {(f.table, f.priority) for f in changed} == {
        ("commit", 10), ("gen_check", 10), ("gen_check", 12)}   # 12: redirects fallen back
    checks = [v for f in changed if (f.table, f.priority) == ("gen_check", 10)
              for name, v, _mask in f.match if name == L.TRANSPORT.register]
    assert {(v & L.TRANSPORT.mask) >> L.TRANSPORT.ofs for v in checks} == transports
    assert len([f for f in changed if f.priority == 12]) == 2     # both fallbacks


def test_classify_generation_bump_changes_ct_result_and_commit_only(service):
    before = set(compile_for(service).flows)
    gens = service.generations
    service.set_generations(dataclasses.replace(gens, classify=gens.classify + 1))
    after = set(compile_for(service).flows)
    assert {(f.table, f.priority) for f in after - before} == {
        ("ct_result", 20), ("commit", 20), ("commit", 10)}


def _rule_flows(pipe, rule, table="classify"):
    return [f for f in pipe.table(table) if f.cookie == L.cookie("rule", rule.rule_num)]


def test_a_change_rebuilds_only_the_rules_it_touches(service):
    before = compile_for(service)
    web, alt = _rule(service, "web-inspect"), _rule(service, "alt-web-uplink1")
    service.update("rules", "alt-web-uplink1", {"priority": 95,
                                                        "applied_to": ["uplink1", "uplink2"]})
    after = compile_for(service)
    assert [f.priority for f in _rule_flows(after, alt)] == [95, 95]    # IPv4, IPv6
    assert _rule_flows(after, alt, "applied_to") != _rule_flows(before, alt, "applied_to")
    for table in ("classify", "applied_to"):       # the untouched rule: the very same objects
        assert all(a is b for a, b in zip(_rule_flows(after, web, table),
                                          _rule_flows(before, web, table), strict=True))


def test_cached_rule_flows_equal_a_cold_compile(service):
    from openflow_tables.stages import applied_to, classify
    service.update("rules", "web-inspect", {"match": {"ip_proto": "tcp", "tp_dst": "80-90",
                                                      "ipv4_src": ["198.51.100.0/25",
                                                                   "203.0.113.0/24"]}})
    warm = compile_for(service)
    classify.compiled_rule.cache_clear()
    applied_to._record_flow.cache_clear()
    assert compile_for(service) == warm


def test_a_policy_renumbered_under_a_rule_changes_its_flows(service):
    from openflow_tables.stages.classify import rule_inputs
    from tests.unit.conftest import DEMO_PORTS
    web = _rule(service, "web-inspect")
    ctx = service.context(1, DEMO_PORTS)
    inputs = rule_inputs(web, ctx)
    policy = service.model.get("policies", web.policy)
    policy.num += 7                                   # what a cached key must notice
    assert rule_inputs(web, ctx) != inputs


def test_a_source_and_destination_rule_without_a_port_is_behind_dst_named(service):
    """Its classify flows match the dst_named bit, set by one dst_named flow per
    destination prefix (longest first); a port-keyed rule with a source needs neither."""
    service.create("rules", {"name": "pair", "priority": 300, "action": "drop",
                             "applied_to": ["uplink1"],
                             "match": {"ip_proto": "tcp", "ipv4_src": "1.0.0.0/8",
                                       "ipv4_dst": ["10.9.0.0/16", "10.8.7.6/32"]}})
    service.create("rules", {"name": "keyed", "priority": 300, "action": "drop",
                             "applied_to": ["uplink1"],
                             "match": {"ip_proto": "tcp", "ipv4_src": "1.0.0.0/8",
                                       "ipv4_dst": "10.7.0.0/16", "tp_dst": 22}})
    pipe = compile_for(service)
    pair, keyed = _rule(service, "pair"), _rule(service, "keyed")
    bit = L.CLASSIFY_DST_NAMED
    named = {(f.priority, dict((n, v) for n, v, _ in f.match)["ipv4_dst"])
             for f in pipe.table("dst_named") if f.cookie == L.cookie("rule", pair.rule_num)}
    assert named == {(16, "10.9.0.0"), (32, "10.8.7.6")}
    for rule, behind in ((pair, True), (keyed, False)):
        for f in _rule_flows(pipe, rule, "classify"):
            value, mask = {n: (v, k) for n, v, k in f.match}.get(bit.register, (0, 0))
            assert bool(mask & bit.mask and value & bit.mask) == behind, f
    assert not [f for f in pipe.table("dst_named") if f.cookie == L.cookie("rule", keyed.rule_num)]
