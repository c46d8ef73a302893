"""The pipeline interpreter, and the security invariant of classification checked on the
compiled pipeline over random sequences of packets and edits (no switch).

The invariant (SPEC section 2, "No path weakens a decision"): every packet that is
classified at interface J gets what the highest-priority rule applied to J gives
the connection's ORIGINAL tuple in the current model (else the default allow),
whichever direction it travels, whatever the connection did before and whatever
was edited in between.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openflow_tables import layout as L
from openflow_tables.flow import (Bucket, Conjunction, Ct, Flow, Group, GroupAction, Load, Move,
                                  Output, Resubmit, match)
from openflow_tables.interpret import Bridge, Datapath, InterpretError, Packet, ipv4
from openflow_tables.layout import CT_EST, CT_INV, CT_NEW, CT_RPL, CT_TRK
from ryu_si.control.service import Service
from ryu_si.control.store import Store

CLIENT, SERVER = "198.51.100.5", "10.10.0.10"
ZONE = L.CT_ZONE


def pipeline(*flows: Flow, groups: tuple[Group, ...] = ()) -> SimpleNamespace:
    return SimpleNamespace(flows=flows, groups=groups)


def datapath(*flows: Flow, groups: tuple[Group, ...] = ()) -> Datapath:
    dp = Datapath()
    dp.load(1, pipeline(*flows, groups=groups))
    return dp


def tcp(src: str = CLIENT, dst: str = SERVER, sport: int = 40000, dport: int = 80, **kw):
    return ipv4(src, dst, sport=sport, dport=dport, **kw)


def reply(h: dict) -> dict:
    return tcp(h["ipv4_dst"], h["ipv4_src"], h["tcp_dst"], h["tcp_src"])


# --- (a) the interpreter itself, on hand-built flows ------------------------------------
def ct_state_ports(commit: bool = False, exec_: tuple = ()) -> Datapath:
    """ct in zone 5, then out port 1 for +new, 2 for +est-rpl, 3 for +est+rpl."""
    return datapath(
        Flow("ingress", 10, match(eth_type=0x0800),
             (Load.field(ZONE, 5), Ct(commit, ZONE, "ct_result", exec_))),
        Flow("ct_result", 10, match(ct_state=(CT_TRK | CT_NEW, CT_TRK | CT_NEW)), (Output(1),)),
        Flow("ct_result", 10, match(ct_state=(CT_TRK | CT_EST, CT_TRK | CT_EST | CT_RPL)),
             (Output(2),)),
        Flow("ct_result", 10, match(ct_state=(CT_TRK | CT_EST | CT_RPL, CT_TRK | CT_EST | CT_RPL)),
             (Output(3),)))


def test_an_uncommitted_connection_stays_new():
    dp = ct_state_ports()
    assert dp.send(1, 9, tcp()).ports == [1]
    assert dp.send(1, 9, tcp()).ports == [1]
    assert len(dp.conntrack) == 0


def test_committed_connection_is_established_both_ways_and_rpl_in_reply():
    dp = ct_state_ports(commit=True)
    assert dp.send(1, 9, tcp()).ports == [1]        # the packet that committed it: +new
    assert dp.send(1, 9, tcp()).ports == [2]
    assert dp.send(1, 9, reply(tcp())).ports == [3]
    assert dp.send(1, 9, tcp(sport=40001)).ports == [1]   # another connection
    assert len(dp.conntrack) == 2


def test_zones_keep_connections_apart():
    dp = datapath(
        Flow("ingress", 10, match(in_port=1), (Load.field(ZONE, 1), Ct(True, ZONE, "ct_result"))),
        Flow("ingress", 10, match(in_port=2), (Load.field(ZONE, 2), Ct(False, ZONE, "ct_result"))),
        Flow("ct_result", 10, match(ct_state=(CT_TRK | CT_NEW, CT_TRK | CT_NEW)), (Output(7),)),
        Flow("ct_result", 5, (), (Output(8),)))
    dp.send(1, 1, tcp())
    assert dp.send(1, 2, tcp()).ports == [7]
    assert dp.send(1, 1, tcp()).ports == [8]


def test_committed_mark_and_label_are_read_back_by_later_packets():
    stamp = (Load("ct_mark", 0x42, 0, 8), Move("reg3", "ct_label", 0, 64, 16))
    dp = datapath(
        Flow("ingress", 20, match(in_port=1),
             (Load.field(ZONE, 1), Load("reg3", 0xBEEF), Ct(True, ZONE, "ct_result", stamp))),
        Flow("ingress", 10, (), (Load.field(ZONE, 1), Ct(False, ZONE, "ct_result"))),
        Flow("ct_result", 10, match(ct_mark=(0x42, 0xFF), ct_label=(0xBEEF << 64, 0xFFFF << 64)),
             (Move("ct_label", "reg5", 64, 0, 16), Output(4))),
        Flow("ct_result", 0, (), (Output(5),)))
    first = dp.send(1, 1, tcp())
    assert first.ports == [4]        # the recirculated copy sees what it committed
    again = dp.send(1, 2, reply(tcp()))
    assert again.ports == [4] and again.registers["reg5"] == 0xBEEF
    (entry,) = dp.conntrack.entries()
    assert entry.mark == 0x42 and entry.label == 0xBEEF << 64


def test_exec_writes_only_its_bits_of_the_record():
    dp = datapath(
        Flow("ingress", 20, match(in_port=1),
             (Load.field(ZONE, 1), Ct(True, ZONE, None, (Load("ct_mark", 0xA, 0, 4),)))),
        Flow("ingress", 10, match(in_port=2),
             (Load.field(ZONE, 1), Ct(True, ZONE, None, (Load("ct_mark", 0xB, 28, 4),)))))
    dp.send(1, 1, tcp())
    dp.send(1, 2, tcp())
    assert dp.conntrack.entries()[0].mark == 0xB000000A


def test_the_packet_that_runs_ct_goes_on_untracked():
    """ovs-actions(7): the original continues untracked; only the recirculated copy is
    tracked (the pipeline must never rely on ct fields right after a ct action)."""
    dp = datapath(
        Flow("ingress", 10, (), (Load.field(ZONE, 1), Ct(True, ZONE, "ct_result",
                                                         (Load("ct_mark", 1, 0, 1),)),
                                 Resubmit("ct"))),
        Flow("ct", 10, match(ct_state=(0, CT_TRK)), (Output(1),)),
        Flow("ct_result", 10, match(ct_mark=1, ct_state=(CT_TRK, CT_TRK)), (Output(2),)))
    r = dp.send(1, 9, tcp())
    assert r.ports == [1, 2]
    assert [s.recirc for s in r.trace] == [0, 0, 1]


def test_a_reply_sees_the_original_direction_tuple():
    orig = match(ct_nw_proto=6, ct_nw_src=CLIENT, ct_nw_dst=SERVER, ct_tp_src=40000,
                 ct_tp_dst=80, ct_state=(CT_TRK, CT_TRK))
    dp = datapath(
        Flow("ingress", 10, (), (Load.field(ZONE, 1), Ct(True, ZONE, "ct_result"))),
        Flow("ct_result", 10, orig, (Output(1),)))
    assert dp.send(1, 9, tcp()).ports == [1]
    assert dp.send(1, 9, reply(tcp())).ports == [1]
    assert dp.send(1, 9, tcp(sport=40001)).ports == []    # another connection, its own tuple


def test_icmp_echo_reply_pairs_with_its_request():
    dp = ct_state_ports(commit=True)
    ping = ipv4(CLIENT, SERVER, proto=1, icmp_type=8, icmp_code=0, icmp_id=7)
    pong = ipv4(SERVER, CLIENT, proto=1, icmp_type=0, icmp_code=0, icmp_id=7)
    assert dp.send(1, 9, ping).ports == [1]
    assert dp.send(1, 9, pong).ports == [3]
    assert dp.send(1, 9, {**pong, "icmp_id": 8}).ports == [1]


def conjunctive_table(*extra: Flow) -> Datapath:
    """conj 1 = src in {A, B} and tcp_dst 80, priority 50: out 10; priority 10 fallback: 11."""
    a, b = "198.51.100.1", "198.51.100.2"
    return datapath(
        Flow("ingress", 10, (), goto="classify"),
        Flow("classify", 50, match(eth_type=0x0800, ipv4_src=a), (Conjunction(1, 1, 2),)),
        Flow("classify", 50, match(eth_type=0x0800, ipv4_src=b), (Conjunction(1, 1, 2),)),
        Flow("classify", 50, match(eth_type=0x0800, ip_proto=6, tcp_dst=80),
             (Conjunction(1, 2, 2),)),
        Flow("classify", 50, match(conj_id=1), (Output(10),)),
        Flow("classify", 10, (), (Output(11),)), *extra)


def test_conjunctive_match_needs_every_clause():
    dp = conjunctive_table()
    assert dp.send(1, 9, tcp("198.51.100.1")).ports == [10]
    assert dp.send(1, 9, tcp("198.51.100.2")).ports == [10]
    assert dp.send(1, 9, tcp("198.51.100.1", dport=81)).ports == [11]
    assert dp.send(1, 9, tcp("198.51.100.3")).ports == [11]


def test_conjunctive_match_competes_by_priority():
    higher = Flow("classify", 60, match(eth_type=0x0800, ip_proto=6, tcp_dst=80), (Output(12),))
    assert conjunctive_table(higher).send(1, 9, tcp("198.51.100.1")).ports == [12]
    same = Flow("classify", 50, match(eth_type=0x0800, ipv4_dst=SERVER), (Output(13),))
    assert conjunctive_table(same).send(1, 9, tcp("198.51.100.1")).ports == [13]
    lower = Flow("classify", 40, match(eth_type=0x0800, ipv4_dst=SERVER), (Output(14),))
    assert conjunctive_table(lower).send(1, 9, tcp("198.51.100.1")).ports == [10]


def test_prefix_and_port_range_matches():
    dp = datapath(
        Flow("ingress", 20, match(ipv4_src=("198.51.100.0", "255.255.255.0"),
                                  tcp_dst=(1024, 0xFC00)), (Output(1),)),
        Flow("ingress", 10, (), (Output(2),)))
    assert dp.send(1, 9, tcp(dport=1030)).ports == [1]
    assert dp.send(1, 9, tcp(dport=2048)).ports == [2]
    assert dp.send(1, 9, tcp("198.51.101.5", dport=1030)).ports == [2]


def test_two_different_flows_of_one_priority_are_refused():
    dp = datapath(Flow("ingress", 10, match(in_port=9), (Output(1),)),
                  Flow("ingress", 10, match(eth_type=0x0800), (Output(2),)))
    with pytest.raises(InterpretError):
        dp.send(1, 9, tcp())


def test_select_group_is_stable_per_connection_and_both_directions():
    group = Group(1, "select", tuple(Bucket((Output(p),)) for p in (1, 2, 3)))
    dp = datapath(Flow("ingress", 10, (), (GroupAction(1),)), groups=(group,))
    chosen = {}
    for sport in range(40000, 40060):
        h = tcp(sport=sport)
        (port,) = dp.send(1, 9, h).ports
        assert dp.send(1, 9, h).ports == [port]
        assert dp.send(1, 9, reply(h)).ports == [port]
        chosen[sport] = port
    assert set(chosen.values()) == {1, 2, 3}
    (pick,) = dp.send(1, 9, tcp()).trace[0].groups
    assert pick.buckets == 3 and len(pick.taken) == 1 and not pick.predicted


def test_a_table_miss_drops():
    dp = datapath(Flow("ingress", 10, match(in_port=1), goto="ct"))
    r = dp.send(1, 1, tcp())
    assert r.dropped and r.tables() == ["ingress", "ct"]


def test_tcp_flags_conntrack_refuses_are_invalid_and_never_committed():
    dp = datapath(
        Flow("ingress", 10, match(eth_type=0x0800), (Load.field(ZONE, 5),
                                                     Ct(True, ZONE, "ct_result"))),
        Flow("ct_result", 20, match(ct_state=(CT_TRK | CT_INV, CT_TRK | CT_INV)), (Output(9),)),
        Flow("ct_result", 10, match(ct_state=(CT_TRK, CT_TRK)), (Output(1),)))
    for flags in (0x03, 0x06, 0x00, 0x01, 0x12):      # SYN+FIN, SYN+RST, none, FIN, SYN+ACK
        assert dp.send(1, 8, tcp(tcp_flags=flags)).ports == [9], hex(flags)
    assert len(dp.conntrack) == 0
    assert dp.send(1, 8, tcp(tcp_flags=0x02)).ports == [1]           # SYN opens it
    assert dp.send(1, 8, reply(tcp()) | {"tcp_flags": 0x12}).ports == [1]   # SYN+ACK reply
    assert dp.send(1, 8, tcp(tcp_flags=0x10)).ports == [1]
    assert len(dp.conntrack) == 1


def test_the_walk_records_groups_ct_outputs_and_resubmit_depth():
    group = Group(7, "all", (Bucket((Output(1),)), Bucket((Resubmit("commit"),))))
    dp = datapath(
        Flow("ingress", 10, (), (Load.field(ZONE, 2), Ct(False, ZONE, "ct_result"))),
        Flow("ct_result", 10, (), (GroupAction(7),), cookie=L.cookie("policy", 7)),
        Flow("commit", 10, (), (Output(2),)), groups=(group,))
    r = dp.send(1, 9, tcp())
    ingress, ct_result, commit = r.trace
    assert ingress.events == [("ct", 2, False, CT_TRK | CT_NEW, 1)]
    assert ct_result.packet.read("ct_state") == CT_TRK | CT_NEW
    (pick,) = ct_result.groups
    assert (pick.group_id, pick.type, pick.buckets, pick.taken, pick.predicted) == (
        7, "all", 2, (0, 1), True)
    assert (commit.table, commit.depth, commit.recirc, r.ports) == ("commit", 1, 1, [1, 2])
    text = r.describe({1: "up1", 2: "up2"}).splitlines()
    assert text[0] == "pass 0: in_port 9"
    assert text[4] == "pass 1: ct_state +trk+new, ct_zone 2"
    assert text[5:9] == ["   3. ct_result: any, priority 10, policy 7", "      group:7",
                         "      -> all group 7: 2 bucket(s), took 0, 1",
                         "      -> output port 1 (up1)"]
    assert text[9:] == ["    11. commit: any, priority 10, cookie 0x0", "        output:2",
                        "        -> output port 2 (up2)"]         # inside the resubmit


def test_matching_lists_every_flow_a_packet_matches_conjunctions_too():
    dp = conjunctive_table(Flow("classify", 30, match(eth_type=0x0800, ipv4_dst=SERVER),
                                (Output(15),)))
    pkt_flows = dp.bridges[1].matching
    pkt = Packet({"eth_type": 0x0800, "ip_proto": 6, "ipv4_src": 0xC6336401,
                  "ipv4_dst": 0x0A0A000A, "tcp_src": 1, "tcp_dst": 80}, {"in_port": 9})
    assert [(f.priority, f.actions) for f in pkt_flows("classify", pkt)] == [
        (50, (Output(10),)), (30, (Output(15),)), (10, (Output(11),))]
    pkt.headers["tcp_dst"] = 81
    assert [f.priority for f in pkt_flows("classify", pkt)] == [30, 10]


def test_overlapping_flows_of_one_priority_take_the_first_when_told():
    flows = (Flow("ingress", 10, match(in_port=9), (Output(1),)),
             Flow("ingress", 10, match(eth_type=0x0800), (Output(2),)))
    dp = Datapath()
    dp.bridges[1] = Bridge(pipeline(*flows), ties="first")
    assert dp.send(1, 9, tcp()).ports == [1]


# End-to-end scenarios on the demo edge and the three-transport example: test_end_to_end.py.
DOWN_MAC = "02:00:00:00:10:01"


# --- (b) the security invariant over random sequences ----------------------------------
PORTS = {"up1": 1, "up2": 2, "up3": 3, "down1": 4, "bwa": 5, "bwb": 6, "vti1": 7}
UPLINKS = ("uplink1", "uplink2", "uplink3")
UPLINK_PORT = {"uplink1": "up1", "uplink2": "up2", "uplink3": "up3"}
UPLINK_MAC = {u: f"02:00:00:00:0{n}:01" for n, u in enumerate(UPLINKS, start=1)}
GATEWAY = {u: (f"10.0.{n}.2", f"02:00:00:00:0{n}:02") for n, u in enumerate(UPLINKS, start=1)}
SERVER_MAC = "02:00:00:00:10:0a"
VTI_MAC, L3_NODE_MAC = "02:00:00:00:d0:01", "02:00:00:00:d0:02"
# Outside hosts, each in a prefix first routed by a different uplink.
OUTSIDE = ("198.51.100.7", "203.0.113.7", "192.0.2.7")
OUTSIDE_PREFIX = ("198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24")


def edge_document(rules: list[dict]) -> dict:
    """One router: three ECMP uplinks, a server downlink, a biw firewall, an L3 node."""
    ifaces = [{"name": u, "router": "edge", "port": UPLINK_PORT[u], "role": "uplink",
               "ip": f"10.0.{n}.1/24", "mac": UPLINK_MAC[u]}
              for n, u in enumerate(UPLINKS, start=1)]
    ifaces += [
        {"name": "downlink1", "router": "edge", "port": "down1", "role": "downlink",
         "ip": "10.10.0.1/24", "mac": DOWN_MAC},
        {"name": "biw-a", "router": "edge", "port": "bwa", "role": "service",
         "mac": "02:00:00:00:a0:01"},
        {"name": "biw-b", "router": "edge", "port": "bwb", "role": "service",
         "mac": "02:00:00:00:b0:01"},
        {"name": "vti-l3", "router": "edge", "port": "vti1", "role": "vti", "classify": False,
         "ip": "169.254.10.1/30", "mac": VTI_MAC}]
    return {
        "routers": [{"name": "edge", "tier": "t0", "dpid": 1}],
        "interfaces": ifaces,
        "routes": [{"name": f"out{n}", "router": "edge", "prefix": p, "interface": u,
                    "next_hop": GATEWAY[u][0]}
                   for n, (p, u) in enumerate(zip(OUTSIDE_PREFIX, UPLINKS))],
        "neighbors": [{"name": f"gw-{u}", "ip": GATEWAY[u][0], "mac": GATEWAY[u][1],
                       "interface": u} for u in UPLINKS] + [
            {"name": "srv", "ip": SERVER, "mac": SERVER_MAC, "interface": "downlink1"},
            {"name": "l3n", "ip": "169.254.10.2", "mac": L3_NODE_MAC, "interface": "vti-l3"}],
        "service-nodes": [
            {"name": "fw1", "transport": "biw", "interface_a": "biw-a", "interface_b": "biw-b"},
            {"name": "l3n", "transport": "l3", "interface": "vti-l3",
             "next_hop": "169.254.10.2"}],
        "policies": [{"name": "inspect", "biw_nodes": ["fw1"], "failure_policy": "pass"},
                     {"name": "l3-nat", "l3_nodes": ["l3n"], "failure_policy": "pass"}],
        "rules": rules,
    }


# --- IPv6: the same edge, dual stack, every IPv4 address mirrored ---
# The IPv6 runs keep the IPv4 oracle: a rule's IPv6 prefix, a packet's IPv6 addresses and
# the IPv6 routes are images of the IPv4 ones, each octet in its own 32-bit word of
# 2001::/16 (2001:AA00:0:BB00:0:CC00:0:DD00), so that a swap or a match that misses any
# word of an IPv6 address shows; an IPv4 prefix of n bits is an IPv6 prefix ending at
# the n-th octet bit (the zero bits between octets are in every image alike).
OCTET_BITS = (16, 56, 88, 120)       # where each octet's top bit is, from the left


def to6(addr: str) -> str:
    octets = ipaddress.IPv4Address(addr).packed
    value = 0x2001 << 112
    for octet, top in zip(octets, OCTET_BITS):
        value |= octet << (128 - top - 8)
    return str(ipaddress.IPv6Address(value))


def _len6(n: int) -> int:
    return 0 if n == 0 else OCTET_BITS[(n - 1) // 8] + (n - 1) % 8 + 1


def cidr6(cidr: str, host: bool = False) -> str:
    """An IPv4 prefix (an interface address with ``host``) as its IPv6 image."""
    net = ipaddress.IPv4Interface(cidr)
    addr = net.ip if host else net.network.network_address
    return f"{to6(str(addr))}/{_len6(net.network.prefixlen)}"


def dual_document(doc: dict) -> dict:
    """The document with IPv6 beside IPv4: interfaces, routes (named ``<route>6``) and
    neighbours mirrored; the rules matching IPv6 images of their IPv4 prefixes."""
    out = {**doc}
    out["interfaces"] = [{**i, "ipv6": cidr6(i["ip"], host=True)} if "ip" in i else i
                         for i in doc["interfaces"]]
    out["routes"] = doc["routes"] + [{**r, "name": f"{r['name']}6", "prefix": cidr6(r["prefix"]),
                                      "next_hop": to6(r["next_hop"])} for r in doc["routes"]]
    out["neighbors"] = doc["neighbors"] + [{**n, "name": f"{n['name']}6", "ip": to6(n["ip"])}
                                           for n in doc["neighbors"] if n["name"] != "l3n"]
    out["rules"] = [rule6(r) for r in doc["rules"]]
    return out


def rule6(rule: dict) -> dict:
    match = {("ipv6" + k[4:] if k.startswith("ipv4") else k): (
        [cidr6(c) for c in v] if k.startswith("ipv4") and isinstance(v, list)
        else cidr6(v) if k.startswith("ipv4") else v) for k, v in rule["match"].items()}
    return {**rule, "match": match}


def headers6(h: dict) -> dict:
    """An IPv4 packet's IPv6 image (ICMP echo becomes ICMPv6 echo)."""
    out = {k: v for k, v in h.items() if not k.startswith(("ipv4", "icmp_"))}
    out.update(eth_type=L.ETH_IP6, ipv6_src=to6(h["ipv4_src"]), ipv6_dst=to6(h["ipv4_dst"]))
    if h["ip_proto"] == 1:
        out.update(ip_proto=L.IPPROTO_ICMPV6, icmp_id=h["icmp_id"],
                   icmpv6_type={8: L.ICMPV6_ECHO_REQUEST, 0: L.ICMPV6_ECHO_REPLY}[h["icmp_type"]],
                   icmpv6_code=0)
    return out


# --- the model's answer, computed without the compiler ---
def _in_ports(spec: str, port: int) -> bool:
    lo, _, hi = spec.partition("-")
    return int(lo) <= port <= int(hi or lo)


def original_frame(iface: str, entered: bool) -> tuple[str, str]:
    """The Ethernet addresses of the connection's original direction on the wire at
    ``iface``: from the gateway to the router when it came in there, the other way when
    it left there (the route's next hop at that uplink is its gateway)."""
    peer, own = GATEWAY[iface][1], UPLINK_MAC[iface]
    return (peer, own) if entered else (own, peer)


def rule_matches(m: dict, orig: tuple, frame: tuple[str, str]) -> bool:
    for f, mac in zip(("eth_src", "eth_dst"), frame):
        if f in m and mac not in m[f]:
            return False
    proto, src, dst, sport, dport = orig
    if "ip_proto" in m and m["ip_proto"] != proto:
        return False
    if sport is None and ("tp_src" in m or "tp_dst" in m):
        return False
    for f, addr in (("ipv4_src", src), ("ipv4_dst", dst), ("ipv6_src", to6(src)),
                    ("ipv6_dst", to6(dst))):
        if f in m and not any(ipaddress.ip_address(addr) in ipaddress.ip_network(c)
                              for c in m[f]):
            return False
    for f, port in (("tp_src", sport), ("tp_dst", dport)):
        if f in m and not any(_in_ports(s, port) for s in m[f]):
            return False
    return True


def winner(svc: Service, iface: str, conn: "Conn", entered: bool):
    """The highest-priority rule applied at ``iface`` that matches the connection's
    original tuple and its original frame there (``entered``: the original direction
    came in by ``iface``); None: the default rule."""
    j = svc.model.by_name("interfaces", iface).id
    frame = original_frame(iface, entered)
    hits = [r for r in svc.model.all("rules")
            if r.enabled and j in r.applied_to and rule_matches(r.match, conn.orig, frame)]
    return max(hits, key=lambda r: r.priority) if hits else None


def decision_of(svc: Service, rule) -> tuple[str, str | None]:
    """(action, policy name) of a rule; the default rule allows."""
    if rule is None:
        return "allow", None
    return rule.action, svc.model.get("policies", rule.policy).name if rule.policy else None


def expected(svc: Service, iface: str, conn: "Conn") -> tuple[str, str | None]:
    """What classifying the connection at ``iface`` gives (an uplink it entered by when
    the outside initiated it, left by otherwise)."""
    return decision_of(svc, winner(svc, iface, conn, conn.outside_initiates))


def expected_walk(svc: Service, conn: "Conn", forward: bool, at: str,
                  dst: str) -> list[tuple[str, str | None]]:
    """The decisions a packet classified at ``at`` meets, in order.  In transit (both
    ends outside) the interface it leaves by classifies it too, unless the same rule
    won where it entered (a rule applied at both ends services it once).  What an L3
    node sends back says nothing of where it was classified: it leaves (README)."""
    if conn.peer is None:
        return [expected(svc, at, conn)]
    first = winner(svc, at, conn, entered=forward)
    walk = [decision_of(svc, first)]
    if walk[0][0] == "drop" or walk[0] == ("redirect", "l3-nat"):
        return walk
    second = winner(svc, route_of(svc, dst), conn, entered=not forward)
    return walk if second == first else walk + [decision_of(svc, second)]


def route_of(svc: Service, dst: str) -> str:
    """The uplink the model routes an outside address by."""
    for rt in svc.model.all("routes"):
        if ipaddress.IPv4Address(dst) in ipaddress.IPv4Network(rt.prefix):
            return svc.model.get("interfaces", rt.interface).name
    raise AssertionError(f"no route to {dst}")


# --- strategies ---
PORT_ITEMS = (22, 80, 443, 5001, "5000-5003", "0-1023", "1024-65535")
SPORTS = (40001, 40005, 50000)
CIDRS = ("198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24", "198.51.100.7/32",
         "10.10.0.0/24", "10.10.0.10/32", "0.0.0.0/1", "128.0.0.0/1")
DPORTS = (22, 80, 443, 5001, 5002)
MACS = tuple(GATEWAY[u][1] for u in UPLINKS) + tuple(UPLINK_MAC[u] for u in UPLINKS[:2])


def one_or_many(items: tuple) -> st.SearchStrategy:
    return st.one_of(st.sampled_from(items),
                     st.lists(st.sampled_from(items), min_size=2, max_size=3, unique=True))


@st.composite
def rule_matches_(draw, l2: bool = True) -> dict:
    m: dict = {}
    if draw(st.integers(0, 4)):
        m["ip_proto"] = "tcp"
        if draw(st.integers(0, 3)):
            m["tp_dst"] = draw(one_or_many(PORT_ITEMS))
        if not draw(st.integers(0, 4)):
            m["tp_src"] = draw(one_or_many(("40000-40003", "50000", "40005")))
    elif draw(st.booleans()):
        m["ip_proto"] = "udp"
    for f in ("ipv4_src", "ipv4_dst"):
        if not draw(st.integers(0, 2)):
            m[f] = draw(one_or_many(CIDRS))
    for f in ("eth_src", "eth_dst") if l2 else ():
        if not draw(st.integers(0, 5)):
            m[f] = draw(one_or_many(MACS))
    return m


ACTION_CHOICES = (("drop", None), ("allow", None), ("redirect", "inspect"),
                  ("redirect", "l3-nat"))
ACTIONS = st.sampled_from(ACTION_CHOICES)
SUBSETS = tuple(tuple(u for n, u in enumerate(UPLINKS) if bits >> n & 1) for bits in range(1, 8))
APPLIED_TO = st.sampled_from(SUBSETS).map(list)


@st.composite
def rules_(draw, l2: bool = True) -> list[dict]:
    n = draw(st.integers(1, 4))
    prios = draw(st.lists(st.integers(1, 300), min_size=n, max_size=n, unique=True))
    out = []
    for k, prio in enumerate(prios):
        action, policy = draw(ACTIONS)
        rule = {"name": f"r{k}", "priority": prio, "action": action,
                "match": draw(rule_matches_(l2)), "applied_to": draw(APPLIED_TO)}
        if policy:
            rule["policy"] = policy
        out.append(rule)
    return out


@dataclass(frozen=True)
class Conn:
    outside_initiates: bool
    host: int          # index into OUTSIDE
    sport: int         # the echo id for ICMP
    dport: int
    proto: int = 6
    peer: int | None = None   # transit: the server is this OUTSIDE host, not SERVER

    @property
    def orig(self) -> tuple:
        """The first packet's tuple, as rules read it (no ports for ICMP)."""
        ends = (OUTSIDE[self.host], SERVER if self.peer is None else OUTSIDE[self.peer])
        src, dst = ends if self.outside_initiates else ends[::-1]
        if self.proto == 1:
            return 1, src, dst, None, None
        return self.proto, src, dst, self.sport, self.dport

    def headers(self, from_initiator: bool, **eth) -> dict:
        _, src, dst, sport, dport = self.orig
        if self.proto == 1:
            ends = (src, dst) if from_initiator else (dst, src)
            return ipv4(*ends, proto=1, icmp_type=8 if from_initiator else 0, icmp_code=0,
                        icmp_id=self.sport, **eth)
        if not from_initiator:
            src, dst, sport, dport = dst, src, dport, sport
        return ipv4(src, dst, proto=self.proto, sport=sport, dport=dport, **eth)


def conns(outside_initiates: bool) -> st.SearchStrategy:
    return st.builds(Conn, st.just(outside_initiates), st.integers(0, 2),
                     st.sampled_from(SPORTS), st.sampled_from(DPORTS),
                     st.sampled_from((6, 6, 6, 17, 1)))


@st.composite
def transit_conns(draw) -> Conn:
    """Both ends outside, each in a prefix the router routes by an uplink."""
    host, peer = draw(st.lists(st.integers(0, 2), min_size=2, max_size=2, unique=True))
    return Conn(True, host, draw(st.sampled_from(SPORTS)), draw(st.sampled_from(DPORTS)),
                draw(st.sampled_from((6, 6, 6, 17, 1))), peer)


# A step is drawn as three small integers (cheap to generate and to shrink: all zeros
# is a packet from the initiator on uplink1) and decoded here.
KINDS_WEIGHTED = ["packet"] * 10 + ["applied_to"] * 2 + ["action", "priority", "enabled", "route"]
STEPS = st.lists(st.tuples(st.integers(0, len(KINDS_WEIGHTED) - 1), st.integers(0, 5),
                           st.integers(0, 299)), min_size=1, max_size=24)


def decode(step: tuple[int, int, int]) -> tuple:
    """("packet", from the initiator?, ECMP uplink it arrives on if it comes from outside),
    or an edit: (kind, rule index, value), ("route", outside prefix, uplink)."""
    k, a, b = step
    kind = KINDS_WEIGHTED[k]
    if kind == "packet":
        return kind, a % 2 == 0, UPLINKS[b % 3]
    if kind == "route":
        return kind, a % 3, UPLINKS[b % 3]
    value = {"applied_to": lambda: list(SUBSETS[b % len(SUBSETS)]),
             "action": lambda: ACTION_CHOICES[b % len(ACTION_CHOICES)],
             "priority": lambda: b + 1,
             "enabled": lambda: b % 2 == 1}[kind]()
    return kind, a, value


# --- running a sequence ---
class Edge:
    """The service, its compiled bridge and the datapath state that outlives recompiles."""

    def __init__(self, rules: list[dict], family: int = 4) -> None:
        self.dp = Datapath()
        self.family = family
        self.svc = Service(Store(":memory:"), on_change=self.push, ports_of=lambda dpid: PORTS)
        doc = edge_document(rules)
        self.svc.replace_config(dual_document(doc) if family == 6 else doc)

    def push(self, compiled: dict) -> None:
        """What the app does on a change: load the pipeline the service's check compiled
        for this switch (conntrack stays, as in the datapath), then flush the router
        zones if the classification stamp wrapped."""
        ports, pipe = compiled.get(1) or (PORTS, self.svc.pipeline(1, PORTS))
        assert ports == PORTS
        self.dp.load(1, pipe)
        for zone in self.svc.conntrack_flush_due(1):
            self.dp.conntrack.flush_zone(zone)
            self.svc.conntrack_flushed(1)

    def rule(self, k: int):
        rules = sorted(self.svc.model.all("rules"), key=lambda r: r.name)
        return rules[k % len(rules)]

    def edit(self, step: tuple) -> None:
        kind, arg, value = step
        if kind == "route":
            self.svc.update("routes", f"out{arg}", {"interface": value,
                                                    "next_hop": GATEWAY[value][0]})
            if self.family == 6:
                self.svc.update("routes", f"out{arg}6", {"interface": value,
                                                         "next_hop": to6(GATEWAY[value][0])})
        elif kind == "applied_to":
            self.svc.update("rules", self.rule(arg).id, {"applied_to": value})
        elif kind == "action":
            self.set_action(self.rule(arg), *value)
        elif kind == "priority":
            taken = {r.priority for r in self.svc.model.all("rules")}
            while value in taken - {self.rule(arg).priority}:
                value = value % 300 + 1
            self.svc.update("rules", self.rule(arg).id, {"priority": value})
        elif kind == "enabled":
            self.svc.update("rules", self.rule(arg).id, {"enabled": value})

    def set_action(self, rule, action: str, policy: str | None) -> None:
        """A redirect rule that stops redirecting sheds its policy with null."""
        self.svc.update("rules", rule.id, {"action": action, "policy": policy})


def packet(conn: Conn, from_initiator: bool, uplink: str,
           family: int = 4) -> tuple[int, dict, str]:
    """(in_port, headers, interface classified at, "" when routing decides) of one packet
    (its IPv6 image for ``family`` 6)."""
    inside = conn.peer is None and conn.outside_initiates != from_initiator
    if inside:
        port, eth, iface = PORTS["down1"], {"eth_src": SERVER_MAC, "eth_dst": DOWN_MAC}, ""
    else:
        port, iface = PORTS[UPLINK_PORT[uplink]], uplink
        eth = {"eth_src": GATEWAY[uplink][1], "eth_dst": UPLINK_MAC[uplink]}
    h = conn.headers(from_initiator, **eth)
    return port, headers6(h) if family == 6 else h, iface


def observed(edge: Edge, result, dst: str) -> tuple:
    """What the bridge did with a packet, in the terms of the model."""
    if result.dropped:
        return ("drop",)
    if len(result.outputs) != 1 or result.packet_ins:
        return ("odd", result.ports, len(result.packet_ins))
    sent = result.outputs[0]
    if sent.port == PORTS["bwa"]:
        return ("biw", "A")
    if sent.port == PORTS["bwb"]:
        return ("biw", "B")
    if sent.port == PORTS["vti1"] and sent.headers["eth_dst"] == L3_NODE_MAC:
        return ("l3",)
    if sent.port == destination_port(edge, dst):
        return ("allow",)
    return ("odd", result.ports)


def destination_port(edge: Edge, dst: str) -> int:
    if dst == SERVER:
        return PORTS["down1"]
    return PORTS[UPLINK_PORT[route_of(edge.svc, dst)]]


def wanted(decision: tuple[str, str | None], forward: bool) -> tuple:
    action, policy = decision
    if action == "redirect":
        return ("biw", "A" if forward else "B") if policy == "inspect" else ("l3",)
    return (action,)


def return_from_node(sent, seen: tuple) -> tuple[int, dict]:
    """What the service node sends back: the biw pair bridges the frame to its other
    side; the L3 node routes it back to the router over the VTI."""
    if seen[0] == "biw":
        return PORTS["bwb" if seen[1] == "A" else "bwa"], dict(sent.headers)
    return PORTS["vti1"], {**sent.headers, "eth_src": L3_NODE_MAC, "eth_dst": VTI_MAC}


def run_sequence(rules: list[dict], conn: Conn, steps: list[tuple[int, int, int]],
                 family: int = 4) -> None:
    edge = Edge(rules, family)
    steps = [decode(s) for s in steps]
    steps = [("packet", True, steps[0][2] if steps[0][0] == "packet" else UPLINKS[0]), *steps]
    log: list[str] = []
    for step in steps:
        if step[0] != "packet":
            edge.edit(step)
            log.append(f"edit {step}")
            continue
        _, from_initiator, uplink = step
        uplink = off_route(edge.svc, conn, from_initiator, uplink)
        in_port, headers, iface = packet(conn, from_initiator, uplink, family)
        _, src, dst, *_ = conn.orig
        dst = dst if from_initiator else src         # the oracle's (IPv4) terms
        iface = iface or route_of(edge.svc, dst)
        walk = expected_walk(edge.svc, conn, from_initiator, iface, dst)
        log.append(f"packet {'forward' if from_initiator else 'reply'} in port {in_port}, "
                   f"classified at {iface}: want {walk}")
        result = edge.dp.send(1, in_port, headers)
        follow_walk(edge, conn, log, walk, result, from_initiator, dst)


def off_route(svc: Service, conn: Conn, from_initiator: bool, uplink: str) -> str:
    """In transit, a packet comes in by another uplink than its route leaves by (the
    router sends nothing back out of the port it came in by)."""
    if conn.peer is None:
        return uplink
    _, src, dst, *_ = conn.orig
    out = route_of(svc, dst if from_initiator else src)
    return uplink if uplink != out else UPLINKS[(UPLINKS.index(uplink) + 1) % len(UPLINKS)]


def follow_walk(edge: Edge, conn: Conn, log: list[str], walk: list, result,
                forward: bool, dst: str) -> None:
    """Each decision of the walk in turn: allow goes on, drop ends it, a redirect shows
    the packet handed to its node, which sends it back; then it reaches ``dst``."""
    for decision in walk:
        if decision[0] == "allow":
            continue
        want, seen = wanted(decision, forward), observed(edge, result, dst)
        log.append(f"  {decision}: want {want}, got {seen}")
        assert seen == want, _report(edge, conn, log, result)
        if seen == ("drop",):
            return
        port, back = return_from_node(result.outputs[0], seen)
        result = edge.dp.send(1, port, back)
        log.append(f"  back from the node in port {port}")
    seen = observed(edge, result, dst)
    log.append(f"  then: {seen}")
    assert seen == ("allow",), _report(edge, conn, log, result)


def _report(edge: Edge, conn: Conn, log: list[str], result) -> str:
    rules = [(r.name, r.priority, r.action, r.match,
              [edge.svc.model.get("interfaces", i).name for i in r.applied_to],
              r.enabled) for r in sorted(edge.svc.model.all("rules"), key=lambda r: r.name)]
    return "\n".join([f"connection {conn} original {conn.orig}", f"rules now {rules}", *log,
                      "trace of the last packet:", result.describe()])


SEQUENCE_SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=1000,
                             suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.data_too_large])


@SEQUENCE_SETTINGS
@given(rules=rules_(), conn=conns(outside_initiates=True), steps=STEPS)
def test_no_sequence_weakens_a_decision_outside_initiated(rules, conn, steps):
    run_sequence(rules, conn, steps)


@SEQUENCE_SETTINGS
@given(rules=rules_(), conn=conns(outside_initiates=False), steps=STEPS)
def test_no_sequence_weakens_a_decision_inside_initiated(rules, conn, steps):
    run_sequence(rules, conn, steps)


IPV6_SETTINGS = settings(SEQUENCE_SETTINGS, max_examples=400)


@IPV6_SETTINGS
@given(rules=rules_(), conn=conns(outside_initiates=True), steps=STEPS)
def test_no_sequence_weakens_a_decision_outside_initiated_ipv6(rules, conn, steps):
    """The same invariant for IPv6 connections on a dual-stack edge."""
    run_sequence(rules, conn, steps, family=6)


@IPV6_SETTINGS
@given(rules=rules_(), conn=conns(outside_initiates=False), steps=STEPS)
def test_no_sequence_weakens_a_decision_inside_initiated_ipv6(rules, conn, steps):
    run_sequence(rules, conn, steps, family=6)


@IPV6_SETTINGS
@given(rules=rules_(l2=False), conn=transit_conns(), steps=STEPS)
def test_no_sequence_weakens_a_decision_in_transit_ipv6(rules, conn, steps):
    run_sequence(rules, conn, steps, family=6)


@SEQUENCE_SETTINGS
@given(rules=rules_(l2=False), conn=transit_conns(), steps=STEPS)
def test_no_sequence_weakens_a_decision_in_transit(rules, conn, steps):
    """Both ends outside: each packet meets the rules of the uplink it enters by and,
    where they differ, of the uplink it leaves by (FIG. 23).  No L2 rules: with ECMP on
    both sides one uplink sees the connection's first direction both come in and go
    out, so "its frame at the interface" is the first one seen there (the record's)."""
    run_sequence(rules, conn, steps)


def test_a_connection_idle_across_256_rule_edits_is_classified_again():
    """Records carry 8 bits of the classification generation: after 256 rule edits the
    stamp comes back to the value an idle connection's record was stamped with.  That
    record must not pass for current (its rule now drops): the wrap flushed the zone."""
    edge = Edge([{"name": "r0", "priority": 100, "action": "allow", "applied_to": ["uplink1"],
                  "match": {"ip_proto": "tcp", "tp_dst": 22}}])
    conn = Conn(True, 0, 40001, 22)
    in_port, headers, _ = packet(conn, True, "uplink1")
    assert observed(edge, edge.dp.send(1, in_port, headers), SERVER) == ("allow",)
    for k in range(255):
        edge.edit(("priority", 0, 101 + k % 2))
    edge.edit(("action", 0, ("drop", None)))
    assert expected(edge.svc, "uplink1", conn) == ("drop", None)
    result = edge.dp.send(1, in_port, headers)
    assert observed(edge, result, SERVER) == ("drop",), result.describe()
