"""trace: the rule a new connection hits and where it goes, read off the interpreter's walk
of the compiled pipeline."""
from __future__ import annotations

import ipaddress
import itertools
from importlib import resources

import pytest
import yaml

from ryu_si.control.service import Service
from ryu_si.control.store import Store
from ryu_si.api import cli
from ryu_si.diagnose.trace import FiveTuple, Tracer, expected_ofproto_trace_flow, parse_request, trace
from si_model.validate import ValidationError

CLIENT, SERVER = "198.51.100.7", "10.10.0.10"


def tcp(dport: int, src: str = CLIENT, dst: str = SERVER, sport: int = 40000) -> FiveTuple:
    return FiveTuple(6, src, dst, sport, dport)


def run(svc: Service, iface: str, packet: FiveTuple) -> dict:
    return trace(svc, svc.find("interfaces", iface).id, packet)


def add_rule(svc: Service, name: str, priority: int, match: dict,
             applied_to: tuple[str, ...] = ("uplink1", "uplink2"), action: str = "allow") -> None:
    svc.create("rules", {"name": name, "priority": priority, "action": action,
                         "match": match, "applied_to": list(applied_to)})


def test_redirect_names_rule_policy_transport_and_live_nodes(service):
    r = run(service, "uplink1", tcp(80))
    assert r["classified_at"] == "uplink1"
    assert (r["rule"]["name"], r["rule"]["priority"], r["outcome"]) == ("web-inspect", 100,
                                                                        "redirect")
    assert r["rule"]["rule_num"] == service.find("rules", "web-inspect").rule_num
    assert {k: r["policy"][k] for k in ("name", "transport", "live_nodes")} == {
        "name": "inspect", "transport": "biw", "live_nodes": ["fw1"]}
    assert r["route"] == {"interface": "downlink1", "prefix": "10.10.0.0/24",
                          "next_hop": SERVER}
    assert r["egress"] == "biw-a"
    assert r["tables"] == ["ingress", "ct", "ct_result", "orient", "dst_named", "classify",
                           "reorient", "keep_decision", "policy", "commit", "gen_check",
                           "transport"]


def test_the_walk_reads_table_by_table(service):
    r = run(service, "uplink1", tcp(80))
    walk = "\n".join(r["walk"])
    assert r["walk"][0] == "pass 0: in_port 1"
    assert " 7. classify: " in walk and "priority 100, rule 3" in walk
    assert "pass 1: ct_state +trk+new, ct_zone 1" in walk
    assert "-> select group 1: 1 bucket(s), took 0 (the switch hashes" in walk
    assert r["walk"][-1].strip() == "-> output port 4 (bwa)"
    text = cli.trace_text(r, walk=True).splitlines()
    assert "leaves    biw-a" in text and text[text.index("walk") + 1] == "  pass 0: in_port 1"
    assert f"crosses   {' > '.join(r['tables'])}" in text


def test_a_packet_that_is_not_routed_leaves_by_no_interface(service):
    r = run(service, "downlink1", tcp(80, src=SERVER, dst="192.0.2.1"))
    assert (r["route"], r["egress"], r["tables"][-1]) == (None, None, "routing")
    r = run(service, "uplink2", tcp(22, dst="10.10.0.99"))     # no neighbor: the controller
    assert (r["egress"], r["tables"][-1], r["route"]["interface"]) == (None, "neighbor",
                                                                      "downlink1")
    assert "packet-in to the controller (pipeline 2)" in r["walk"][-1]


def test_highest_priority_wins_and_every_match_is_listed(service):
    add_rule(service, "low-ports", 150, {"ip_proto": "tcp", "tp_dst": "1-1023"})
    r = run(service, "uplink2", tcp(80))
    assert [h["name"] for h in r["matched"]] == ["low-ports", "web-inspect"]
    assert r["rule"]["name"] == "low-ports" and r["outcome"] == "allow" and r["policy"] is None
    r = run(service, "uplink2", tcp(23))
    assert [h["name"] for h in r["matched"]] == ["no-telnet", "low-ports"]
    assert r["outcome"] == "drop"


def test_equal_priority_overlap_is_flagged_and_names_the_lower_rule_number(service):
    assert run(service, "uplink1", tcp(80))["ambiguous"] is False
    add_rule(service, "tie-a", 300, {"ip_proto": "tcp", "tp_dst": [80, 81]})
    add_rule(service, "tie-b", 300, {"ip_proto": "tcp", "tp_dst": "80-90"})
    r = run(service, "uplink1", tcp(80))
    assert (r["rule"]["name"], r["ambiguous"]) == ("tie-a", True)
    assert run(service, "uplink1", tcp(85))["ambiguous"] is False


def test_applied_to_excludes_other_interfaces(service):
    assert run(service, "uplink1", tcp(8080))["rule"]["name"] == "alt-web-uplink1"
    r = run(service, "uplink2", tcp(8080))
    assert r["rule"]["name"] == "default" and r["matched"] == []


def test_disabled_rules_are_skipped(service):
    service.update("rules", "web-inspect", {"enabled": False})
    assert run(service, "uplink1", tcp(80))["rule"]["name"] == "default"


def test_default_rule_allows_without_service(service):
    r = run(service, "uplink1", FiveTuple(17, CLIENT, SERVER, 5000, 53))
    assert r["rule"] == {"id": None, "name": "default", "rule_num": 0, "priority": 0,
                         "action": "allow"}
    assert (r["policy"], r["outcome"]) == (None, "allow")


@pytest.mark.parametrize("src,hit", [("198.51.100.0", True), ("198.51.100.127", True),
                                     ("198.51.100.128", False), ("203.0.113.7", True),
                                     ("203.0.113.8", False)])
def test_prefix_lists(service, src, hit):
    add_rule(service, "nets", 500, {"ipv4_src": ["198.51.100.0/25", "203.0.113.7/32"]})
    assert (run(service, "uplink1", tcp(9, src=src))["rule"]["name"] == "nets") is hit


@pytest.mark.parametrize("dport,hit", [(999, False), (1000, True), (1537, True), (2000, True),
                                       (2001, False), (443, True), (444, False)])
def test_port_ranges_and_lists(service, dport, hit):
    add_rule(service, "ports", 500, {"ip_proto": "tcp", "tp_dst": ["1000-2000", 443]})
    assert (run(service, "uplink1", tcp(dport))["rule"]["name"] == "ports") is hit


def test_protocol_must_match(service):
    add_rule(service, "dns", 500, {"ip_proto": "udp", "tp_dst": 53})
    assert run(service, "uplink1", FiveTuple(17, CLIENT, SERVER, 5000, 53))["rule"]["name"] == "dns"
    assert run(service, "uplink1", tcp(53))["rule"]["name"] == "default"


def test_conjunctive_rule_needs_every_field(service):
    add_rule(service, "conj", 500, {"ip_proto": "tcp", "ipv4_src": ["198.51.100.0/28",
                                                                    "203.0.113.0/28"],
                                    "tp_dst": [22, "8000-8001"]})
    assert run(service, "uplink1", tcp(8001, src="203.0.113.3"))["rule"]["name"] == "conj"
    assert run(service, "uplink1", tcp(8002, src="203.0.113.3"))["rule"]["name"] == "default"
    assert run(service, "uplink1", tcp(22, src="203.0.113.99"))["rule"]["name"] == "default"


def test_downlink_traffic_is_classified_at_its_egress(service):
    r = run(service, "downlink1", tcp(23, src=SERVER, dst=CLIENT))
    assert (r["ingress"], r["classified_at"], r["rule"]["name"]) == ("downlink1", "uplink1",
                                                                     "no-telnet")
    assert r["route"] == {"interface": "uplink1", "prefix": "198.51.100.0/24",
                          "next_hop": "10.0.1.2"}


def test_traffic_back_from_a_service_node_is_not_classified(service):
    r = run(service, "biw-b", tcp(23))
    assert (r["classified_at"], r["rule"], r["matched"], r["outcome"]) == (None, None, [], "allow")


@pytest.mark.parametrize("failure_policy,outcome", [("pass", "allow"), ("fail", "drop")])
def test_no_live_node_follows_the_failure_policy(service, failure_policy, outcome):
    service.update("policies", "inspect", {"failure_policy": failure_policy})
    service.update("service-nodes", "fw1", {"admin_state": "down"})
    r = run(service, "uplink1", tcp(80))
    assert (r["rule"]["name"], r["policy"]["live_nodes"], r["outcome"]) == ("web-inspect", [],
                                                                             outcome)


def test_nodes_the_liveness_view_marks_down_are_not_live(service):
    service.set_node_state(service.find("service-nodes", "fw1").id, up=False)
    r = run(service, "uplink1", tcp(80))
    assert r["policy"]["live_nodes"] == [] and r["outcome"] == "allow"
    assert r["egress"] == "downlink1"


@pytest.fixture
def transports(tmp_path) -> Service:
    """The example with chains on a service plane and an L3 node behind a VTI."""
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    text = resources.files("ryu_si").joinpath("examples/three_transports.yaml").read_text()
    svc.replace_config(yaml.safe_load(text))
    return svc


def test_chain_policy_lists_its_up_paths(transports):
    chain = transports.find("chains", "fw-only")
    names = {n.id: n.name for n in transports.model.all("service-nodes")}
    up = [p for p in transports.paths[chain.id] if p.state == "up"]
    r = run(transports, "uplink2", tcp(5202))
    assert (r["rule"]["name"], r["policy"]["transport"], r["outcome"]) == ("fw-5202", "chain",
                                                                           "redirect")
    assert r["policy"]["live_paths"] == [{"spi": p.spi, "reverse_spi": p.reverse_spi,
                                          "hops": [names[h] for h in p.hops], "weight": 1}
                                         for p in up]
    assert r["policy"]["live_nodes"] == sorted({names[h] for p in up for h in p.hops})
    for p in up:
        transports.set_path_admin_state(p.spi, "down")
    r = run(transports, "uplink2", tcp(5202))
    assert (r["policy"]["live_paths"], r["outcome"]) == ([], "allow")


def test_l3_policy_and_a_vti_toward_another_network(transports):
    r = run(transports, "uplink1", tcp(5203))
    assert (r["policy"]["transport"], r["policy"]["live_nodes"]) == ("l3", ["l3n"])
    r = run(transports, "vti-remote", tcp(80, src="203.0.113.5"))
    assert (r["classified_at"], r["rule"]["name"]) == ("vti-remote", "web-inspect")
    r = run(transports, "vti-l3", tcp(80, src=SERVER, dst=CLIENT))   # back from the L3 node
    assert (r["classified_at"], r["rule"], r["route"]["interface"]) == (None, None, "uplink1")


def test_ofproto_trace_flow(service):
    up1 = service.find("interfaces", "uplink1").id
    assert expected_ofproto_trace_flow(service.model, up1, tcp(80)) == (
        "tcp,in_port=up1,dl_dst=02:00:00:00:01:01,nw_src=198.51.100.7,nw_dst=10.10.0.10,"
        "nw_ttl=64,tcp_src=40000,tcp_dst=80")
    assert expected_ofproto_trace_flow(service.model, up1, FiveTuple(17, CLIENT, SERVER, 5,
                                                                     53)).endswith(
        "udp_src=5,udp_dst=53")
    assert expected_ofproto_trace_flow(service.model, up1, FiveTuple(1, CLIENT, SERVER)) == (
        "icmp,in_port=up1,dl_dst=02:00:00:00:01:01,nw_src=198.51.100.7,nw_dst=10.10.0.10,"
        "nw_ttl=64,icmp_type=8,icmp_code=0")
    assert expected_ofproto_trace_flow(service.model, up1, FiveTuple(47, CLIENT, SERVER)) == (
        "ip,nw_proto=47,in_port=up1,dl_dst=02:00:00:00:01:01,nw_src=198.51.100.7,"
        "nw_dst=10.10.0.10,nw_ttl=64")
    assert run(service, "uplink1", tcp(80))["ofproto_trace_flow"] == (
        expected_ofproto_trace_flow(service.model, up1, tcp(80)))


def _oracle(rule, p: FiveTuple) -> bool:
    """The match as a person reads it: prefixes contain, ranges include."""
    mt = rule.match
    ports = {"tp_src": p.tp_src, "tp_dst": p.tp_dst}

    def in_port_spec(spec: str, port: int) -> bool:
        lo, _, hi = spec.partition("-")
        return int(lo) <= port <= int(hi or lo)

    fields = {f"ipv{p.family}_src": p.src, f"ipv{p.family}_dst": p.dst}
    family_of_rule = {4 for f in ("ipv4_src", "ipv4_dst") if f in mt} | {
        6 for f in ("ipv6_src", "ipv6_dst") if f in mt}
    return (mt.get("ip_proto", p.ip_proto) == p.ip_proto
            and family_of_rule <= {p.family}
            and all(any(ipaddress.ip_address(fields[f]) in ipaddress.ip_network(c)
                        for c in mt[f]) for f in fields if f in mt)
            and all(ports[f] is not None and any(in_port_spec(s, ports[f]) for s in mt[f])
                    for f in ("tp_src", "tp_dst") if f in mt))


def test_matched_rules_agree_with_the_plain_reading_of_the_match(service):
    """Every rule flow of the classify lookup the packet matches, against a person's
    reading of the rules (prefixes contain, ranges include, lists are alternatives)."""
    add_rule(service, "mix", 400, {"ip_proto": "tcp", "ipv4_src": ["198.51.100.64/26"],
                                   "ipv4_dst": ["10.10.0.0/29", "10.10.0.9"],
                                   "tp_src": "1024-65535", "tp_dst": ["3-17", 80, "443-444"]})
    add_rule(service, "udp-any", 400, {"ip_proto": 17})
    up1 = service.find("interfaces", "uplink1")
    rules = [r for r in service.model.all("rules") if up1.id in r.applied_to]
    tracer = Tracer(service, up1.router)
    srcs = ["198.51.100.63", "198.51.100.64", "198.51.100.127", "198.51.100.128"]
    dsts = ["10.10.0.0", "10.10.0.7", "10.10.0.8", "10.10.0.9", "10.10.0.10"]
    sports = [0, 1023, 1024, 65535]
    dports = [2, 3, 16, 17, 18, 22, 23, 79, 80, 443, 444, 445, 8080]
    for proto, src, dst, sport, dport in itertools.product((6, 17), srcs, dsts, sports, dports):
        p = FiveTuple(proto, src, dst, sport, dport)
        got = {h["name"] for h in tracer.trace(up1.id, p)["matched"]}
        assert got == {r.name for r in rules if _oracle(r, p)}, p


def test_parse_request_resolves_names_and_normalises(service):
    iface, packet, confirm = parse_request({"interface": "uplink2", "ip_proto": "tcp",
                                            "ipv4_src": CLIENT, "ipv4_dst": SERVER,
                                            "tp_src": 1, "tp_dst": 2}, service.model)
    assert iface == service.find("interfaces", "uplink2").id
    assert packet == FiveTuple(6, CLIENT, SERVER, 1, 2)
    assert confirm is False
    assert parse_request({"interface": iface, "ip_proto": 1, "ipv4_src": CLIENT,
                          "ipv4_dst": SERVER}, service.model)[1] == FiveTuple(1, CLIENT, SERVER)
    assert parse_request({**GOOD, "confirm": True}, service.model)[2] is True


GOOD = {"interface": "uplink1", "ip_proto": "tcp", "ipv4_src": CLIENT, "ipv4_dst": SERVER,
        "tp_src": 40000, "tp_dst": 80}


@pytest.mark.parametrize("body,field,status", [
    ({**GOOD, "colour": "red"}, "colour", 400),
    ({k: v for k, v in GOOD.items() if k != "ipv4_dst"}, "ipv4_dst", 400),
    ({k: v for k, v in GOOD.items() if k != "tp_dst"}, "tp_dst", 400),
    ({**GOOD, "ip_proto": "icmp"}, "tp_src", 400),
    ({**GOOD, "ip_proto": "sctp"}, "ip_proto", 400),
    ({**GOOD, "tp_dst": 70000}, "tp_dst", 400),
    ({**GOOD, "ipv4_src": "10.0.0.256"}, "ipv4_src", 400),
    ({**GOOD, "ipv4_dst": True}, "ipv4_dst", 400),        # once 0.0.0.1 (found by schemathesis)
    ({**GOOD, "ipv4_src": 167772161}, "ipv4_src", 400),
    ({**GOOD, "confirm": "yes"}, "confirm", 400),
    ({**GOOD, "interface": "uplink9"}, "interface", 422),
    (["not", "an", "object"], "body", 400),
])
def test_parse_request_names_the_bad_field(service, body, field, status):
    with pytest.raises(ValidationError) as e:
        parse_request(body, service.model)
    assert (e.value.field, e.value.status) == (field, status)


# --- IPv6 ----------------------------------------------------------------------------------
CLIENT6, SERVER6, GATEWAY6 = "2001:db8:5100::7", "2001:db8:10::10", "2001:db8:1::2"


def tcp6(dport: int, src: str = CLIENT6, dst: str = SERVER6, sport: int = 40000) -> FiveTuple:
    return FiveTuple(6, src, dst, sport, dport)


def test_an_ipv6_connection_is_classified_redirected_and_routed(service):
    r = run(service, "uplink1", tcp6(80))
    assert (r["classified_at"], r["rule"]["name"], r["outcome"]) == ("uplink1", "web-inspect",
                                                                     "redirect")
    assert r["policy"]["live_nodes"] == ["fw1"] and r["egress"] == "biw-a"
    assert r["route"] == {"interface": "downlink1", "prefix": "2001:db8:10::/64",
                          "next_hop": SERVER6}
    assert "eth_type=0x86dd" in r["walk"][1]
    assert run(service, "uplink2", tcp6(23))["outcome"] == "drop"


def test_an_ipv6_reply_routes_by_its_numbered_next_hop_and_is_classified_at_egress(service):
    r = run(service, "downlink1", tcp6(23, src=SERVER6, dst=CLIENT6))
    assert r["route"] == {"interface": "uplink1", "prefix": "2001:db8:5100::/64",
                          "next_hop": GATEWAY6}
    assert (r["egress"], r["tables"][-1]) == (None, "neighbor")   # not resolved yet
    service.learn_neighbor(service.find("interfaces", "uplink1").id, GATEWAY6,
                           "02:00:00:00:01:02")
    r = run(service, "downlink1", tcp6(23, src=SERVER6, dst=CLIENT6))
    assert (r["classified_at"], r["rule"]["name"], r["outcome"]) == ("uplink1", "no-telnet",
                                                                     "drop")


def test_an_ipv6_echo_is_traced_as_icmpv6_and_confirmed_with_ipv6_fields(service):
    up2 = service.find("interfaces", "uplink2").id
    ping = FiveTuple(58, CLIENT6, SERVER6)
    r = trace(service, up2, ping)
    assert (r["rule"]["name"], r["outcome"]) == ("default", "allow")
    assert r["ofproto_trace_flow"] == (
        "icmp6,in_port=up2,dl_dst=02:00:00:00:02:01,ipv6_src=2001:db8:5100::7,"
        "ipv6_dst=2001:db8:10::10,nw_ttl=64,icmpv6_type=128,icmpv6_code=0")
    assert expected_ofproto_trace_flow(service.model, up2, tcp6(80)) == (
        "tcp6,in_port=up2,dl_dst=02:00:00:00:02:01,ipv6_src=2001:db8:5100::7,"
        "ipv6_dst=2001:db8:10::10,nw_ttl=64,tcp_src=40000,tcp_dst=80")
    assert expected_ofproto_trace_flow(service.model, up2, FiveTuple(17, CLIENT6, SERVER6, 5,
                                                                     53)).startswith("udp6,")
    assert expected_ofproto_trace_flow(service.model, up2, FiveTuple(47, CLIENT6, SERVER6)
                                       ).startswith("ipv6,nw_proto=47,in_port=up2,")


def test_a_rule_of_one_family_never_covers_the_other(service):
    add_rule(service, "v6-web", 500, {"ipv6_src": ["2001:db8:5100::/64"], "tp_dst": 80,
                                      "ip_proto": "tcp"})
    add_rule(service, "v4-web", 500, {"ipv4_src": ["0.0.0.0/0"], "tp_dst": 80,
                                      "ip_proto": "tcp"})
    assert [h["name"] for h in run(service, "uplink1", tcp6(80))["matched"]] == [
        "v6-web", "web-inspect"]
    assert [h["name"] for h in run(service, "uplink1", tcp(80))["matched"]] == [
        "v4-web", "web-inspect"]


def test_matched_ipv6_rules_agree_with_the_plain_reading_of_the_match(service):
    add_rule(service, "mix6", 400, {"ip_proto": "tcp",
                                    "ipv6_src": ["2001:db8:5100::/65", "2001:db8:cb00::1"],
                                    "ipv6_dst": ["2001:db8:10::/126"], "tp_dst": "80-81"})
    add_rule(service, "dst6", 400, {"ipv6_dst": ["2001:db8:10::8/125"]})
    up1 = service.find("interfaces", "uplink1")
    rules = [r for r in service.model.all("rules") if up1.id in r.applied_to]
    tracer = Tracer(service, up1.router)
    srcs = ["2001:db8:5100::", "2001:db8:5100:0:7fff:ffff:ffff:ffff", "2001:db8:5100:0:8000::",
            "2001:db8:cb00::1", "2001:db8:cb00::2"]
    dsts = ["2001:db8:10::", "2001:db8:10::3", "2001:db8:10::4", "2001:db8:10::8",
            "2001:db8:10::f", "2001:db8:10::10"]
    for proto, src, dst, dport in itertools.product((6, 17), srcs, dsts, (79, 80, 81, 82)):
        p = FiveTuple(proto, src, dst, 40000, dport)
        got = {h["name"] for h in tracer.trace(up1.id, p)["matched"]}
        assert got == {r.name for r in rules if _oracle(r, p)}, p


GOOD6 = {"interface": "uplink1", "ip_proto": "tcp", "ipv6_src": CLIENT6, "ipv6_dst": SERVER6,
         "tp_src": 40000, "tp_dst": 80}


def test_parse_request_takes_an_ipv6_pair(service):
    _, packet, _ = parse_request(GOOD6, service.model)
    assert packet == FiveTuple(6, CLIENT6, SERVER6, 40000, 80) and packet.family == 6
    _, ping, _ = parse_request({"interface": "uplink1", "ip_proto": "icmpv6",
                                "ipv6_src": "2001:DB8:5100:0::7", "ipv6_dst": SERVER6},
                               service.model)
    assert ping == FiveTuple(58, CLIENT6, SERVER6)                 # compressed


def _without(body: dict, *fields: str) -> dict:
    return {k: v for k, v in body.items() if k not in fields}


@pytest.mark.parametrize("body,field", [
    ({**_without(GOOD6, "ipv6_dst"), "ipv4_dst": SERVER}, "ipv4_dst"),
    ({**_without(GOOD, "ipv4_dst"), "ipv6_dst": SERVER6}, "ipv6_dst"),
    ({**GOOD, "ipv6_src": CLIENT6, "ipv6_dst": SERVER6}, "ipv6_src"),
    ({**GOOD6, "ipv4_src": CLIENT}, "ipv4_src"),
    (_without(GOOD6, "ipv6_dst"), "ipv6_dst"),
    (_without(GOOD6, "ipv6_src", "ipv6_dst"), "ipv4_src"),
    ({**GOOD6, "ipv6_src": CLIENT}, "ipv6_src"),
    ({**GOOD, "ipv4_src": CLIENT6}, "ipv4_src"),
    ({**GOOD6, "ipv6_dst": "2001:db8::/64"}, "ipv6_dst"),
    ({**_without(GOOD6, "tp_src", "tp_dst"), "ip_proto": "icmp"}, "ip_proto"),
    ({**_without(GOOD, "tp_src", "tp_dst"), "ip_proto": "icmpv6"}, "ip_proto"),
    ({**GOOD6, "ip_proto": 58}, "tp_src"),
])
def test_parse_request_refuses_a_family_mix_naming_the_field(service, body, field):
    with pytest.raises(ValidationError) as e:
        parse_request(body, service.model)
    assert (e.value.field, e.value.status) == (field, 400), e.value.message


@pytest.mark.parametrize("src,dst,proto,fields", [
    (CLIENT, SERVER, "tcp", ("ipv4_src", "ipv4_dst")),
    (CLIENT6, SERVER6, "tcp", ("ipv6_src", "ipv6_dst")),
    (CLIENT6, SERVER6, "icmpv6", ("ipv6_src", "ipv6_dst"))])
def test_the_cli_puts_each_address_in_its_familys_field(service, monkeypatch, capsys, src, dst,
                                                        proto, fields):
    """``ryu-si trace`` as far as the controller: its body parses and traces."""
    bodies = []

    def call(args, method, path, body=None, **_):
        bodies.append(body)
        iface, packet, _ = parse_request(body, service.model)
        return trace(service, iface, packet)

    monkeypatch.setattr(cli, "call", call)
    ports = ["--sport", "40000", "--dport", "80"] if proto == "tcp" else []
    assert cli.main(["trace", "--iface", "uplink1", "--proto", proto, "--src", src, "--dst", dst,
                     *ports]) == 0
    assert {bodies[0][f] for f in fields} == {src, dst}
    assert "entered   uplink1" in capsys.readouterr().out


def test_the_trace_request_schema_takes_one_familys_pair():
    from jsonschema.exceptions import ValidationError as SchemaError
    from openapi_schema_validator import OAS30WriteValidator, validate

    from ryu_si.api.openapi import document
    root = {"components": document()["components"],
            "$ref": "#/components/schemas/TraceRequest"}
    for good in (GOOD, GOOD6):
        validate(good, root, cls=OAS30WriteValidator)
    for bad in ({**GOOD, **GOOD6}, _without(GOOD6, "ipv6_dst"),
                {**_without(GOOD6, "ipv6_dst"), "ipv4_dst": SERVER},
                {**GOOD6, "ipv6_src": 7}):
        with pytest.raises(SchemaError):
            validate(bad, root, cls=OAS30WriteValidator)
