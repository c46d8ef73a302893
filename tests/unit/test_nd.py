"""IPv6 neighbour discovery and echo: the router's own addresses answered in the datapath
(the nd stage), advertisements learned and missed next hops solicited (the controller)."""
from __future__ import annotations

import ipaddress
import time
from types import SimpleNamespace

import pytest
from ryu.lib.packet import ethernet, icmpv6, ipv6, packet, tcp

from openflow_tables import layout as L
from openflow_tables.flow import Controller, Output, SetField
from ryu_si.app import ServiceInsertionApp
from ryu_si.datapath import neighbors as N
from ryu_si.datapath import next_hop
from ryu_si.datapath.neighbors import Neighbors
from si_model import model as m
from tests.unit.conftest import DEMO_PORTS, compile_for

ROUTER_V6 = {"uplink1": "2001:db8:1::1", "uplink2": "2001:db8:2::1",
             "downlink1": "2001:db8:10::1"}
SRV = "2001:db8:10::10"


def own_addresses(service) -> dict[str, tuple[str, ...]]:
    return {i.name: m.ipv6_addresses(i) for i in service.model.all("interfaces") if i.ipv6}


def entries(flow) -> dict:
    return {name: value for name, value, _ in flow.match}


def iface_num(flow) -> int | None:
    """The interface number a flow matches (None: any)."""
    value = entries(flow).get(L.IN_IFACE.register)
    return None if value is None else (value & L.IN_IFACE.mask) >> L.IN_IFACE.ofs


def sets(flow) -> dict:
    return {a.field: a.value for a in flow.actions if isinstance(a, SetField)}


# --- the nd stage ------------------------------------------------------------------------
def test_every_own_address_is_answered_with_the_interfaces_mac(service):
    pipe = compile_for(service)
    reply_mac = {iface_num(f): sets(f)["nd_tll"] for f in pipe.table("nd_reply") if f.priority}
    for name, addrs in own_addresses(service).items():
        iface = service.find("interfaces", name)
        assert addrs == (ROUTER_V6[name], m.link_local(iface.mac))
        assert reply_mac[iface.num] == iface.mac
        for own in addrs:
            answers = [f for f in pipe.table("nd")
                       if entries(f).get("nd_target") == own and iface_num(f) == iface.num]
            assert len(answers) == 2                    # with and without the sender's MAC
            for f in answers:
                assert sets(f) | {"nd_options_type": L.ND_OPT_TLL} == {
                    "eth_src": iface.mac, "ipv6_src": own, "nw_ttl": 255,
                    "icmpv6_type": L.ND_NA, "nd_reserved": L.ND_NA_FLAGS,
                    "nd_options_type": L.ND_OPT_TLL}
            with_sll, without = sorted(answers, key=lambda f: -f.priority)
            assert entries(with_sll)["nd_options_type"] == L.ND_OPT_SLL
            assert with_sll.goto == "nd_reply" and Output("in_port") not in with_sll.actions
            assert "nd_options_type" not in entries(without)
            assert without.actions[-1] == Output("in_port")


def test_solicitations_for_other_addresses_and_dad_are_not_answered(service):
    pipe = compile_for(service)
    own = {a for addrs in own_addresses(service).values() for a in addrs}
    targets = {entries(f).get("nd_target") for f in pipe.table("nd")} - {None}
    assert targets == own
    dad = [f for f in pipe.table("nd") if entries(f).get("ipv6_src") == "::"]
    assert len(dad) == 1 and dad[0].actions == () and dad[0].goto is None
    assert entries(dad[0])["icmpv6_type"] == L.ND_NS
    assert dad[0].priority > max(f.priority for f in pipe.table("nd") if "nd_target" in entries(f))


def test_echo_requests_to_own_addresses_are_answered_and_advertisements_learned(service):
    pipe = compile_for(service)
    for name, addrs in own_addresses(service).items():
        iface = service.find("interfaces", name)
        for own in addrs:
            here = [f for f in pipe.table("nd") if iface_num(f) == iface.num
                    and entries(f).get("ipv6_dst") == own]
            by_type = {entries(f)["icmpv6_type"]: f for f in here}
            echo = by_type[L.ICMPV6_ECHO_REQUEST]
            assert sets(echo) == {"eth_src": iface.mac, "ipv6_src": own, "nw_ttl": 64,
                                  "icmpv6_type": L.ICMPV6_ECHO_REPLY}
            assert echo.actions[-1] == Output("in_port")
            na = by_type[L.ND_NA]
            assert na.actions == (Controller(),)
            assert na.cookie == L.cookie("pipeline", L.PIPELINE_ARP_LEARN)


def test_ingress_sends_nd_and_echo_to_own_addresses_only_from_ipv6_interfaces(service):
    service.update("interfaces", "uplink2", {"ipv6": None})
    pipe = compile_for(service)
    to_nd = [f for f in pipe.table("ingress") if f.goto == "nd"]
    ports = {DEMO_PORTS[service.find("interfaces", n).port] for n in own_addresses(service)}
    assert {entries(f)["in_port"] for f in to_nd} == ports == {1, 3}
    for f in to_nd:
        e = entries(f)
        iface = next(i for i in service.model.all("interfaces")
                     if i.port and DEMO_PORTS[i.port] == e["in_port"])
        assert (e["eth_type"], e["ip_proto"]) == (L.ETH_IP6, L.IPPROTO_ICMPV6)
        assert e["icmpv6_type"] in (L.ND_NS, L.ND_NA) or (
            e["icmpv6_type"] == L.ICMPV6_ECHO_REQUEST and e["ipv6_dst"] in m.ipv6_addresses(iface))
        assert f.priority > max(g.priority for g in pipe.table("ingress")
                                if g.goto in ("ct", "routing"))


# --- the controller ----------------------------------------------------------------------
def app_for(service, sent: list) -> SimpleNamespace:
    """What the packet-in handler uses of the app; packets out are recorded."""
    sw = SimpleNamespace(datapath=SimpleNamespace(id=1),
                         packet_out=lambda data, actions: sent.append((data, actions)))
    app = SimpleNamespace(service=service, ports={1: dict(DEMO_PORTS)}, switches={1: sw},
                          _foreign_cookies=set())
    app.neighbors = Neighbors(service, app.ports,
                              lambda dpid: service.pipeline(dpid, app.ports[dpid]))
    return app


def packet_in(cookie: int, in_port: int, data: bytes, **match) -> SimpleNamespace:
    return SimpleNamespace(msg=SimpleNamespace(cookie=cookie, datapath=SimpleNamespace(id=1),
                                               match={"in_port": in_port, **match}, data=data))


def advertisement(target: str, to: str, mac: str | None) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="02:00:00:00:10:01", src="02:00:00:00:10:0a",
                                       ethertype=L.ETH_IP6))
    pkt.add_protocol(ipv6.ipv6(src=target, dst=to, nxt=L.IPPROTO_ICMPV6, hop_limit=255))
    option = icmpv6.nd_option_tla(hw_src=mac) if mac else None
    pkt.add_protocol(icmpv6.icmpv6(type_=L.ND_NA, data=icmpv6.nd_neighbor(
        res=4 | 2, dst=target, option=option)))
    pkt.serialize()
    return bytes(pkt.data)


def routed(dst: str) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="02:00:00:00:01:01", src="02:00:00:00:01:02",
                                       ethertype=L.ETH_IP6))
    pkt.add_protocol(ipv6.ipv6(src="2001:db8:5100::7", dst=dst, nxt=6, hop_limit=63))
    pkt.add_protocol(tcp.tcp(src_port=40000, dst_port=22, bits=tcp.TCP_SYN))
    pkt.serialize()
    return bytes(pkt.data)


LEARN = L.cookie("pipeline", L.PIPELINE_ARP_LEARN) | 0x42
MISS = L.cookie("pipeline", L.PIPELINE_ARP_MISS) | 0x42


@pytest.mark.parametrize("tll", ["02:00:00:00:10:0b", None])
def test_an_advertisement_to_the_router_is_learned(service, tll):
    app = app_for(service, [])
    ServiceInsertionApp._packet_in(app, packet_in(LEARN, DEMO_PORTS["down1"], advertisement(
        "2001:0db8:10:0::10", "2001:db8:10::1", tll)))
    down1 = service.find("interfaces", "downlink1")
    assert service.learned_neighbors == {(down1.id, SRV): tll or "02:00:00:00:10:0a"}


def miss_registers(service, iface: str, hop: int) -> dict:
    return {"metadata": service.find("routers", "edge").num,
            L.EGRESS_IFACE.register: service.find("interfaces", iface).num,
            L.NEXT_HOP.register: hop}


def solicited(sent: list) -> list[tuple[str, str, str, str, str, int]]:
    """(eth dst, eth src, ipv6 src, ipv6 dst, target, port) of each solicitation sent."""
    out = []
    for data, (action,) in sent:
        pkt = packet.Packet(data)
        eth, ip, icmp = (pkt.get_protocol(c) for c in (ethernet.ethernet, ipv6.ipv6,
                                                        icmpv6.icmpv6))
        assert (icmp.type_, ip.hop_limit) == (L.ND_NS, 255)
        assert icmp.data.option.hw_src == eth.src
        out.append((eth.dst, eth.src, ip.src, ip.dst, icmp.data.dst, action.port))
    return out


def test_a_missed_neighbour_that_is_the_destination_is_solicited_once_a_second(service):
    sent: list = []
    app = app_for(service, sent)
    regs = miss_registers(service, "downlink1", L.NEXT_HOP_V6_DIRECT)
    ServiceInsertionApp._packet_in(app, packet_in(MISS, DEMO_PORTS["up1"], routed(SRV), **regs))
    ServiceInsertionApp._packet_in(app, packet_in(MISS, DEMO_PORTS["up1"], routed(SRV), **regs))
    assert solicited(sent) == [("33:33:ff:00:00:10", "02:00:00:00:10:01", "2001:db8:10::1",
                                "ff02::1:ff00:10", SRV, DEMO_PORTS["down1"])]
    app.neighbors._asked = {k: t - N.ARP_RETRY_S for k, t in app.neighbors._asked.items()}
    ServiceInsertionApp._packet_in(app, packet_in(MISS, DEMO_PORTS["up1"], routed(SRV), **regs))
    assert len(sent) == 2


def test_a_missed_route_next_hop_is_solicited_by_its_number(service):
    sent: list = []
    app = app_for(service, sent)
    number = m.ipv6_next_hops(service.model)["2001:db8:1::2"]
    assert 2 <= number < L.NEXT_HOP_V6_LIMIT
    ServiceInsertionApp._packet_in(app, packet_in(MISS, DEMO_PORTS["down1"],
                                                  routed("2001:db8:5100::7"),
                                                  **miss_registers(service, "uplink1", number)))
    assert solicited(sent) == [("33:33:ff:00:00:02", "02:00:00:00:01:01", "2001:db8:1::1",
                                "ff02::1:ff00:2", "2001:db8:1::2", DEMO_PORTS["up1"])]


def test_a_packet_routed_to_another_of_the_routers_addresses_solicits_nothing(service):
    """An echo request to downlink1's address entering by uplink1 is routed to downlink1's
    prefix and misses its neighbour there: the router would be soliciting itself."""
    sent: list = []
    app = app_for(service, sent)
    regs = miss_registers(service, "downlink1", L.NEXT_HOP_V6_DIRECT)
    ServiceInsertionApp._packet_in(app, packet_in(MISS, DEMO_PORTS["up1"],
                                                  routed(ROUTER_V6["downlink1"]), **regs))
    assert sent == []


def test_a_link_local_next_hop_is_solicited_from_the_link_local_address(service):
    up1 = service.find("interfaces", "uplink1")
    data = N.solicitation(up1, "fe80::1:2")
    ip = packet.Packet(data).get_protocol(ipv6.ipv6)
    assert (ip.src, ip.dst) == (m.link_local(up1.mac), "ff02::1:ff01:2")


def test_next_hop_numbers_read_back_as_addresses(service):
    model = service.model
    assert next_hop.address(model, int(ipaddress.IPv4Address("10.0.1.2")), None) == "10.0.1.2"
    assert next_hop.address(model, L.NEXT_HOP_V6_DIRECT, SRV) == SRV
    assert next_hop.address(model, 0, SRV) is None
    assert next_hop.address(model, L.NEXT_HOP_V6_LIMIT - 1, SRV) is None   # no such route
    for hop, number in m.ipv6_next_hops(model).items():
        assert next_hop.address(model, number, SRV) == hop


def test_ipv6_frames_give_the_interpreter_their_headers():
    h = next_hop.frame_headers(routed(SRV))
    assert {k: h[k] for k in ("eth_type", "ip_proto", "nw_ttl", "ipv6_src", "ipv6_dst",
                              "tcp_dst")} == {
        "eth_type": L.ETH_IP6, "ip_proto": 6, "nw_ttl": 63, "ipv6_src": "2001:db8:5100::7",
        "ipv6_dst": SRV, "tcp_dst": 22}
    assert "ipv4_dst" not in h
