"""IPv6 in the pipeline interpreter: 128-bit fields and their moves, prefix matches,
conntrack by IPv6 5-tuple and ICMPv6 echo, the hop limit, the group hash, and an IPv6
connection through the demo edge's compiled pipeline."""
from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from openflow_tables import layout as L
from openflow_tables.flow import (Bucket, Ct, DecTtl, Flow, Group, GroupAction, Load, Move,
                                  Output, SetField, match)
from openflow_tables.interpret import Datapath, InterpretError, echo, ipv4, ipv6
from openflow_tables.interpret.packet import match_entry, to_int
from openflow_tables.layout import CT_EST, CT_INV, CT_NEW, CT_RPL, CT_TRK
from openflow_tables.stages.classify import orient_flows
from ryu_si.control.service import Service
from tests.unit.conftest import DEMO_PORTS

CLIENT, SERVER = "2001:db8:5100::7", "2001:db8:10::10"
ZONE = L.CT_ZONE
addresses6 = st.integers(0, (1 << 128) - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
ports = st.integers(0, 65535)


def datapath(*flows: Flow, groups: tuple[Group, ...] = ()) -> Datapath:
    dp = Datapath()
    dp.load(1, SimpleNamespace(flows=flows, groups=groups))
    return dp


def tcp6(src: str = CLIENT, dst: str = SERVER, sport: int = 40000, dport: int = 80, **kw):
    return ipv6(src, dst, sport=sport, dport=dport, **kw)


def reply(h: dict) -> dict:
    return tcp6(h["ipv6_dst"], h["ipv6_src"], h["tcp_dst"], h["tcp_src"])


# --- values and matches ------------------------------------------------------------------
def test_ipv6_and_mac_text_are_told_apart_and_each_field_takes_its_own():
    assert to_int("ipv6_src", "2001:db8::1") == int(ipaddress.IPv6Address("2001:db8::1"))
    assert to_int("eth_src", "02:00:00:00:00:0a") == 0x02000000000A
    assert to_int("nd_tll", "2:0:0:0:0:a") == 0x02000000000A
    assert to_int("xxreg0", "2001:db8::1") == int(ipaddress.IPv6Address("2001:db8::1"))
    assert to_int("reg0", "02:00:00:00:00:0a") == 0x02000000000A     # six groups: a MAC
    for name, bad in (("ipv4_src", "2001:db8::1"), ("ipv6_src", "10.0.0.1"),
                      ("ipv6_dst", "02:00:00:00:00:0a"), ("eth_dst", "2001:db8::1"),
                      ("ipv4_dst", "02:00:00:00:00:0a")):
        with pytest.raises(InterpretError, match=name):
            to_int(name, bad)


def test_a_prefix_of_the_other_family_is_refused():
    with pytest.raises(InterpretError, match="IPv6 prefix"):
        match_entry("ipv4_dst", "2001:db8::/64", None)
    with pytest.raises(InterpretError, match="IPv4 prefix"):
        match_entry("ipv6_dst", "10.0.0.0/8", None)


@settings(max_examples=200, deadline=None)
@given(addr=addresses6, net=addresses6, length=st.integers(0, 128),
       form=st.sampled_from(["tuple", "text", "length"]))
def test_masked_ipv6_matches_hold_exactly_the_prefix(addr, net, length, form):
    """Each way a flow can write a prefix (the compiler's (address, mask) strings, a
    ``/len`` string, a prefix length as the mask) matches what ipaddress says it holds."""
    prefix = ipaddress.IPv6Network(f"{net}/{length}", strict=False)
    value = {"tuple": (str(prefix.network_address), str(prefix.netmask)),
             "text": str(prefix), "length": (str(prefix.network_address), str(length))}[form]
    dp = datapath(Flow("ingress", 10, match(eth_type=L.ETH_IP6, ipv6_dst=value), (Output(1),)))
    hit = dp.send(1, 9, tcp6(dst=addr)).ports == [1]
    assert hit is (ipaddress.IPv6Address(addr) in prefix)


def test_an_ipv6_flow_never_matches_an_ipv4_packet_nor_the_other_way():
    dp = datapath(Flow("ingress", 10, match(ipv6_dst="::/1"), (Output(1),)),
                  Flow("ingress", 5, match(ipv4_dst="0.0.0.0/1"), (Output(2),)))
    assert dp.send(1, 9, tcp6()).ports == [1]
    assert dp.send(1, 9, ipv4("10.0.0.1", "10.0.0.2")).ports == [2]


def test_builders_say_the_family_and_refuse_a_mix():
    h = tcp6()
    assert (h["eth_type"], h["ipv6_src"], h["ipv6_label"], h["nw_ttl"]) == (L.ETH_IP6, CLIENT,
                                                                          0, 64)
    assert "ipv4_src" not in h
    assert ipv4(CLIENT, SERVER)["eth_type"] == L.ETH_IP6      # ipv4() follows the addresses
    assert (echo(CLIENT, SERVER)["icmpv6_type"], echo(CLIENT, SERVER, False)["icmpv6_type"],
            echo("10.0.0.1", "10.0.0.2")["icmp_type"]) == (128, 129, 8)
    for build in (lambda: ipv6("10.0.0.1", "10.0.0.2"), lambda: ipv4(CLIENT, "10.0.0.2"),
                  lambda: echo("10.0.0.1", SERVER)):
        with pytest.raises(InterpretError):
            build()


# --- moves and the hop limit -------------------------------------------------------------
def words(addr: str) -> list[int]:
    """The four 32-bit words of an address, least significant (bits 0..31) first."""
    n = int(ipaddress.IPv6Address(addr))
    return [(n >> (32 * k)) & 0xFFFFFFFF for k in range(4)]


@settings(max_examples=100, deadline=None)
@given(src=addresses6, dst=addresses6, word=st.integers(0, 3))
def test_a_32_bit_move_reads_and_writes_one_word_of_an_ipv6_address(src, dst, word):
    """ipv6_src[32w..32w+31] -> reg11, then reg11 -> ipv6_dst[96..127]: the word lands
    in the destination's top word and nothing else of either address moves."""
    dp = datapath(Flow("ingress", 10, (), (Move("ipv6_src", "reg11", 32 * word, 0, 32),
                                           Move("reg11", "ipv6_dst", 0, 96, 32), Output(1))))
    out = dp.send(1, 9, tcp6(src, dst))
    got = out.outputs[0].headers
    assert got["ipv6_src"] == str(ipaddress.IPv6Address(src))
    assert words(got["ipv6_dst"]) == [*words(dst)[:3], words(src)[word]]
    assert out.registers["reg11"] == words(src)[word]


def reply_swapper() -> Datapath:
    """ct commits in zone 5, then the compiler's own orient flows (they swap a reply's
    addresses and ports through reg11), then out port 1."""
    return datapath(Flow("ingress", 10, (), (Load.field(ZONE, 5), Ct(True, ZONE, "orient"))),
                    *orient_flows("orient", "classify"),
                    Flow("classify", 0, (), (Output(1),)))


@settings(max_examples=100, deadline=None)
@given(a=addresses6, b=addresses6, pa=ports, pb=ports)
def test_the_orient_flows_swap_a_reply_word_by_word_through_reg11(a, b, pa, pb):
    dp = reply_swapper()
    first = dp.send(1, 9, tcp6(a, b, pa, pb)).outputs[0].headers
    assert (first["ipv6_src"], first["ipv6_dst"], first["tcp_src"]) == (
        str(ipaddress.IPv6Address(a)), str(ipaddress.IPv6Address(b)), pa)   # not a reply
    back = dp.send(1, 9, tcp6(b, a, pb, pa, eth_src="02:00:00:00:00:0b",
                              eth_dst="02:00:00:00:00:0a")).outputs[0].headers
    assert (back["ipv6_src"], back["ipv6_dst"], back["tcp_src"], back["tcp_dst"]) == (
        first["ipv6_src"], first["ipv6_dst"], pa, pb)
    assert (back["eth_src"], back["eth_dst"]) == ("02:00:00:00:00:0a", "02:00:00:00:00:0b")


@pytest.mark.parametrize("hop_limit,ports_out,left", [(64, [1], 63), (2, [1], 1), (1, [], None),
                                                      (0, [], None)])
def test_dec_ttl_decrements_the_hop_limit_and_drops_at_one(hop_limit, ports_out, left):
    dp = datapath(Flow("ingress", 10, match(eth_type=L.ETH_IP6), (DecTtl(), Output(1))))
    out = dp.send(1, 9, tcp6(ttl=hop_limit))
    assert out.ports == ports_out
    if left is not None:
        assert out.outputs[0].headers["nw_ttl"] == left
    else:
        assert any(e == ("ttl expired",) for s in out.trace for e in s.events)


def test_neighbour_discovery_fields_are_matched_and_set():
    """An NS turned into an NA in place, as a responder flow does it."""
    solicit = ipv6("fe80::1", "ff02::1:ff00:1", proto=L.IPPROTO_ICMPV6, ttl=255,
                   icmpv6_type=L.ND_NS, icmpv6_code=0, nd_target="2001:db8:1::1",
                   nd_sll="02:00:00:00:01:02", nd_tll="00:00:00:00:00:00", nd_reserved=0,
                   nd_options_type=L.ND_OPT_SLL)
    dp = datapath(Flow("ingress", 10,
                       match(eth_type=L.ETH_IP6, ip_proto=L.IPPROTO_ICMPV6, icmpv6_type=L.ND_NS,
                             nd_target="2001:db8:1::1", nd_options_type=L.ND_OPT_SLL),
                       (SetField("icmpv6_type", L.ND_NA),
                        SetField("nd_reserved", L.ND_NA_FLAGS),
                        SetField("nd_options_type", L.ND_OPT_TLL),
                        SetField("nd_tll", "02:00:00:00:01:01"),
                        Move("ipv6_src", "xxreg1", 0, 0, 128),
                        SetField("ipv6_src", "2001:db8:1::1"),
                        Move("xxreg1", "ipv6_dst", 0, 0, 128), Output("in_port"))))
    got = dp.send(1, 9, solicit).outputs[0].headers
    assert (got["icmpv6_type"], got["nd_reserved"], got["nd_options_type"], got["nd_tll"]) == (
        L.ND_NA, L.ND_NA_FLAGS, L.ND_OPT_TLL, "02:00:00:00:01:01")
    assert (got["ipv6_src"], got["ipv6_dst"], got["nd_target"]) == ("2001:db8:1::1", "fe80::1",
                                                                   "2001:db8:1::1")
    assert dp.send(1, 9, {**solicit, "nd_target": "2001:db8:1::2"}).dropped


# --- conntrack ---------------------------------------------------------------------------
def ct_state_ports(commit: bool = True) -> Datapath:
    """ct in zone 5 on IPv6 packets, then out port 1 for +new, 2 for +est-rpl, 3 for
    +est+rpl, 4 for +inv."""
    state = lambda *bits: (sum(bits), CT_TRK | CT_NEW | CT_EST | CT_RPL | CT_INV)  # noqa: E731
    return datapath(
        Flow("ingress", 10, match(eth_type=L.ETH_IP6),
             (Load.field(ZONE, 5), Ct(commit, ZONE, "ct_result"))),
        Flow("ingress", 10, match(eth_type=L.ETH_IP),
             (Load.field(ZONE, 5), Ct(commit, ZONE, "ct_result"))),
        Flow("ct_result", 10, match(ct_state=state(CT_TRK, CT_NEW)), (Output(1),)),
        Flow("ct_result", 10, match(ct_state=state(CT_TRK, CT_EST)), (Output(2),)),
        Flow("ct_result", 10, match(ct_state=state(CT_TRK, CT_EST, CT_RPL)), (Output(3),)),
        Flow("ct_result", 10, match(ct_state=state(CT_TRK, CT_INV)), (Output(4),)))


def test_an_ipv6_tcp_connection_is_one_entry_found_from_both_directions():
    dp = ct_state_ports()
    assert dp.send(1, 9, tcp6()).ports == [1]
    assert dp.send(1, 9, tcp6()).ports == [2]
    assert dp.send(1, 9, reply(tcp6())).ports == [3]
    assert dp.send(1, 9, tcp6(sport=40001)).ports == [1]            # another connection
    assert dp.send(1, 9, tcp6(dst="2001:db8:10::11")).ports == [1]
    (first, *_) = dp.conntrack.entries()
    assert first.ipv6 and first.orig == (6, *(int(ipaddress.IPv6Address(a))
                                              for a in (CLIENT, SERVER)), 40000, 80)
    assert len(dp.conntrack) == 3


@settings(max_examples=60, deadline=None)
@given(a=addresses6, b=addresses6, pa=ports, pb=ports, proto=st.sampled_from([6, 17]))
def test_any_ipv6_tcp_or_udp_connection_pairs_its_two_directions(a, b, pa, pb, proto):
    assume((a, pa) != (b, pb))         # a packet to itself: either direction (OVS too)
    dp = ct_state_ports()
    there, back = ipv6(a, b, proto, pa, pb), ipv6(b, a, proto, pb, pa)
    assert dp.send(1, 9, there).ports == [1]
    assert dp.send(1, 9, back).ports == [3]
    assert len(dp.conntrack) == 1


def test_the_reply_sees_the_original_tuple_in_ct_ipv6_fields():
    orig = match(ct_nw_proto=6, ct_ipv6_src=CLIENT, ct_ipv6_dst=SERVER, ct_tp_src=40000,
                 ct_tp_dst=80)
    dp = datapath(Flow("ingress", 10, (), (Load.field(ZONE, 5), Ct(True, ZONE, "ct_result"))),
                  Flow("ct_result", 20, orig + match(ct_nw_src="0.0.0.0"), (Output(1),)))
    assert dp.send(1, 9, tcp6()).ports == [1]
    assert dp.send(1, 9, reply(tcp6())).ports == [1]
    assert dp.send(1, 9, tcp6(sport=1)).ports == []


def test_ipv4_and_ipv6_connections_of_equal_numbers_are_apart():
    """::a00:1 and 10.0.0.1 are one integer: a v4 packet never finds a v6 entry."""
    dp = ct_state_ports()
    assert dp.send(1, 9, tcp6("::a00:1", "::a00:2")).ports == [1]
    assert dp.send(1, 9, ipv4("10.0.0.2", "10.0.0.1", sport=80, dport=40000)).ports == [1]
    assert len(dp.conntrack) == 2


def test_icmpv6_echo_pairs_by_id_and_a_stray_reply_is_invalid():
    dp = ct_state_ports()
    assert dp.send(1, 9, echo(CLIENT, SERVER, ident=7)).ports == [1]
    assert dp.send(1, 9, echo(SERVER, CLIENT, False, ident=7)).ports == [3]
    assert dp.send(1, 9, echo(CLIENT, SERVER, ident=7)).ports == [2]
    assert dp.send(1, 9, echo(SERVER, CLIENT, False, ident=8)).ports == [4]   # no request
    assert dp.send(1, 9, echo(CLIENT, SERVER, ident=7, icmpv6_code=1)).ports == [4]
    assert len(dp.conntrack) == 1


@pytest.mark.parametrize("kind,ports_out", [(L.ND_NS, [4]), (L.ND_NA, [4]), (133, [4]),
                                            (143, [4]), (1, [1]), (3, [1])])
def test_icmpv6_conntrack_cannot_key_is_invalid_and_never_committed(kind, ports_out):
    dp = ct_state_ports()
    pkt = ipv6(CLIENT, SERVER, L.IPPROTO_ICMPV6, icmpv6_type=kind, icmpv6_code=0)
    assert dp.send(1, 9, pkt).ports == ports_out
    assert len(dp.conntrack) == (0 if ports_out == [4] else 1)


def test_ct_on_a_packet_that_is_not_ip_is_an_error():
    dp = ct_state_ports()
    dp.load(1, SimpleNamespace(flows=(Flow("ingress", 1, (), (Ct(True, ZONE, "x"),)),),
                               groups=()))
    with pytest.raises(InterpretError, match="not IP"):
        dp.send(1, 9, {"eth_src": 1, "eth_dst": 2, "eth_type": 0x0806})


@settings(max_examples=60, deadline=None)
@given(a=addresses6, b=addresses6, pa=ports, pb=ports)
def test_the_select_group_picks_one_bucket_for_both_directions(a, b, pa, pb):
    group = Group(1, "select", tuple(Bucket((Output(n),)) for n in range(1, 9)))
    dp = datapath(Flow("ingress", 10, (), (GroupAction(1),)), groups=(group,))
    there = dp.send(1, 99, tcp6(a, b, pa, pb)).ports
    assert len(there) == 1 and dp.send(1, 99, tcp6(b, a, pb, pa)).ports == there


def test_ipv6_connections_spread_over_the_buckets():
    group = Group(1, "select", tuple(Bucket((Output(n),)) for n in range(1, 5)))
    dp = datapath(Flow("ingress", 10, (), (GroupAction(1),)), groups=(group,))
    picked = {dp.send(1, 99, tcp6(sport=40000 + k)).ports[0] for k in range(64)}
    assert picked == {1, 2, 3, 4}


# --- the demo edge, compiled -------------------------------------------------------------
MACS = {"up1": "02:00:00:00:01:01", "up2": "02:00:00:00:02:01", "down1": "02:00:00:00:10:01"}
GATEWAY6, SERVER_MAC, BIW_A = "2001:db8:1::2", "02:00:00:00:10:0a", "02:00:00:00:a0:01"
GATEWAY_MAC = "02:00:00:00:01:02"


@pytest.fixture
def edge(service: Service) -> tuple[Service, Datapath, dict[int, str]]:
    service.learn_neighbor(service.find("interfaces", "uplink1").id, GATEWAY6, GATEWAY_MAC)
    service.learn_neighbor(service.find("interfaces", "downlink1").id, SERVER, SERVER_MAC)
    dp = Datapath()
    dp.load(1, service.pipeline(1, DEMO_PORTS))
    return service, dp, {n: name for name, n in DEMO_PORTS.items()}


def _leaves(dp: Datapath, names: dict[int, str], port: str, h: dict) -> tuple[str, dict]:
    out = dp.send(1, DEMO_PORTS[port], h)
    assert len(out.outputs) == 1 and not out.packet_ins, out.describe(names)
    return names[out.outputs[0].port], out.outputs[0].headers


def test_an_ipv6_web_connection_goes_through_the_node_both_ways(edge):
    svc, dp, names = edge
    syn = tcp6(eth_src=GATEWAY_MAC, eth_dst=MACS["up2"], tcp_flags=0x02)
    port, sent = _leaves(dp, names, "up2", syn)
    assert port == "bwa" and sent["ipv6_src"] == CLIENT and sent["ipv6_dst"] == SERVER
    port, got = _leaves(dp, names, "bwb", sent)
    assert port == "down1"
    assert (got["eth_src"], got["eth_dst"], got["nw_ttl"]) == (MACS["down1"], SERVER_MAC, 63)
    synack = tcp6(SERVER, CLIENT, 80, 40000, eth_src=SERVER_MAC, eth_dst=MACS["down1"],
                  tcp_flags=0x12)
    port, back = _leaves(dp, names, "down1", synack)
    assert port == "bwb" and back["eth_dst"] == BIW_A
    assert (back["ipv6_src"], back["ipv6_dst"], back["tcp_src"]) == (SERVER, CLIENT, 80)
    port, home = _leaves(dp, names, "bwa", back)
    assert port == "up1" and home["eth_dst"] == GATEWAY_MAC and home["ipv6_dst"] == CLIENT
    (entry,) = dp.conntrack.entries()
    rule = (entry.mark & L.CT_MARK_RULE.mask) >> L.CT_MARK_RULE.ofs
    assert entry.ipv6 and rule == svc.find("rules", "web-inspect").rule_num


def test_an_ipv6_telnet_connection_drops_and_its_reply_too(edge):
    _, dp, _ = edge
    assert dp.send(1, DEMO_PORTS["up1"], tcp6(dport=23, eth_dst=MACS["up1"])).dropped
    assert dp.send(1, DEMO_PORTS["down1"], tcp6(SERVER, CLIENT, 23, 40000,
                                                eth_dst=MACS["down1"])).dropped
