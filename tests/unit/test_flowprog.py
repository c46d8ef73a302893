"""Flow-programming instructions by IPv4 or IPv6 5-tuple: the REST body, the in-band NSH
signal, the stored form, the flows and a connection that carries one out."""
from __future__ import annotations

import struct

import pytest
from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator, validate
from jsonschema.exceptions import ValidationError as SchemaError
from ryu.lib.packet import ethernet, ipv4, ipv6, packet, tcp, udp

from openflow_tables import layout as L
from openflow_tables.interpret import Datapath, ipv6 as headers6
from ryu_si.api.openapi import document
from ryu_si.datapath.nsh_signal import parse as parse_signal
from si_model import flowprog
from si_model.validate import ValidationError
from tests.unit.conftest import DEMO_PORTS, compile_for

CLIENT, SERVER = "198.51.100.7", "10.10.0.10"
CLIENT6, SERVER6 = "2001:db8:5100::7", "2001:db8:10::10"
V4 = {"ip_proto": "tcp", "ipv4_src": CLIENT, "ipv4_dst": SERVER, "tp_src": 40000,
      "tp_dst": 80, "action": "drop"}
V6 = {"ip_proto": "tcp", "ipv6_src": CLIENT6, "ipv6_dst": SERVER6, "tp_src": 40000,
      "tp_dst": 80, "action": "drop"}
ROUTERS = {"edge": "r1"}


def parse(body: dict) -> flowprog.Instruction:
    return flowprog.parse(body, 1, ROUTERS, {})


def without(body: dict, *fields: str) -> dict:
    return {k: v for k, v in body.items() if k not in fields}


def test_an_instruction_is_of_one_family_and_says_which():
    v6 = parse({**V6, "ipv6_src": "2001:DB8:5100:0::7"})
    assert (v6.family, v6.src, v6.dst, v6.ipv4_src, v6.ipv4_dst) == (6, CLIENT6, SERVER6,
                                                                    None, None)
    assert v6.directions() == ((CLIENT6, SERVER6, 40000, 80), (SERVER6, CLIENT6, 80, 40000))
    v4 = parse(V4)
    assert (v4.family, v4.src, v4.dst, v4.ipv6_src, v4.ipv6_dst) == (4, CLIENT, SERVER, None,
                                                                    None)
    assert v4.directions()[1] == (SERVER, CLIENT, 80, 40000)


@pytest.mark.parametrize("body,field", [
    ({**without(V6, "ipv6_dst"), "ipv4_dst": SERVER}, "ipv4_dst"),
    ({**without(V4, "ipv4_dst"), "ipv6_dst": SERVER6}, "ipv6_dst"),
    ({**V4, "ipv6_src": CLIENT6, "ipv6_dst": SERVER6}, "ipv6_src"),
    ({**V6, "ipv4_src": CLIENT}, "ipv4_src"),
    (without(V6, "ipv6_src"), "ipv6_src"),
    (without(V6, "ipv6_src", "ipv6_dst"), "ipv4_src"),
    ({**V6, "ipv6_dst": SERVER}, "ipv6_dst"),
    ({**V4, "ipv4_src": CLIENT6}, "ipv4_src"),
    ({**V6, "ipv6_src": "2001:db8::/64"}, "ipv6_src"),
    ({**V6, "ipv6_src": 42}, "ipv6_src"),
    ({**V6, "ip_proto": "icmpv6"}, "ip_proto"),
])
def test_a_family_mix_or_a_bad_address_is_a_400_naming_the_field(body, field):
    with pytest.raises(ValidationError) as e:
        parse(body)
    assert (e.value.field, e.value.status) == (field, 400), e.value.message


def test_a_null_address_field_is_absent():
    assert parse({**V6, "ipv4_src": None, "ipv4_dst": None}).family == 6


def test_the_stored_form_reads_back_and_an_older_ipv4_one_too():
    v6 = parse(V6)
    assert flowprog.Instruction(**v6.to_dict()) == v6
    old = {k: v for k, v in parse(V4).to_dict().items() if not k.startswith("ipv6")}
    back = flowprog.Instruction(**old)
    assert (back.family, back.src, back.dst) == (4, CLIENT, SERVER)


def test_the_schemas_take_either_family_and_refuse_a_mix(service):
    doc = document()

    def check(instance, schema, cls=OAS30WriteValidator):
        validate(instance, {"components": doc["components"],
                            "$ref": f"#/components/schemas/{schema}"}, cls=cls)

    for body in (V4, V6):
        check(body, "FlowProgrammingRequest")
        check(parse(body).to_dict(), "FlowProgrammingInstruction", OAS30ReadValidator)
    for bad in ({**V4, **V6}, without(V6, "ipv6_dst"), without(V6, "ipv6_src", "ipv6_dst")):
        with pytest.raises(SchemaError):
            check(bad, "FlowProgrammingRequest")
    assert set(doc["components"]["schemas"]["FlowProgrammingRequest"]["properties"]) == set(
        flowprog.FIELDS)


def test_a_newer_instruction_supersedes_only_its_own_connection(service):
    first = service.program(V6)
    v4 = service.program(V4)
    again = service.program({**V6, "ipv6_src": SERVER6, "ipv6_dst": CLIENT6, "tp_src": 80,
                             "tp_dst": 40000, "action": "accept"})   # the reply direction
    assert (first.state, v4.state, again.state) == ("superseded", "pending", "pending")


def test_an_ipv6_instruction_compiles_to_ipv6_flows_both_ways(service):
    ins = service.program(V6)
    flows = [f for f in compile_for(service).table("flow_program")
             if f.cookie == L.cookie("flow_program", ins.num)]
    got = sorted(({k: v for k, v, _ in f.match}.get("ipv6_src"),
                  {k: v for k, v, _ in f.match}.get("eth_type")) for f in flows)
    assert got == [(SERVER6, L.ETH_IP6), (CLIENT6, L.ETH_IP6)]


def test_an_ipv6_connection_carries_out_its_drop_and_reports_it(service):
    """Through the demo edge's compiled pipeline: the connection goes through the node
    until its instruction, then its next packet reports it to the controller and drops."""
    dp = Datapath()
    dp.load(1, service.pipeline(1, DEMO_PORTS))
    service.learn_neighbor(service.find("interfaces", "downlink1").id, SERVER6,
                           "02:00:00:00:10:0a")
    syn = headers6(CLIENT6, SERVER6, sport=40000, dport=80, eth_src="02:00:00:00:01:02",
                   eth_dst="02:00:00:00:01:01", tcp_flags=0x02)
    assert dp.send(1, DEMO_PORTS["up1"], syn).ports == [DEMO_PORTS["bwa"]]
    ins = service.program(V6)
    dp.load(1, service.pipeline(1, DEMO_PORTS))
    ack = dp.send(1, DEMO_PORTS["up1"], {**syn, "tcp_flags": 0x10})
    assert ack.ports == [] and "flow_program" in ack.tables(), ack.describe()
    assert [p.cookie for p in ack.packet_ins] == [L.cookie("flow_program", ins.num)]


# --- in-band: the NSH signal of an NSH-aware node ----------------------------------------
def signal_frame(c1: int, *layers) -> bytes:
    """Ethernet + NSH MD type 1 (SPI 77, SI 254, C1) around an inner Ethernet frame."""
    inner = packet.Packet()
    for layer in layers:
        inner.add_protocol(layer)
    inner.serialize()
    nsh = struct.pack("!BBBBIIIII", 0x0F, 0xC6, 0x01, 0x03, (77 << 8) | 254, c1, 0, 0, 0)
    return bytes.fromhex("020000005cff" "020000005c01" "894f") + nsh + bytes(inner.data)


def eth(ethertype: int) -> ethernet.ethernet:
    return ethernet.ethernet(dst="02:00:00:00:01:01", src="02:00:00:00:10:0a",
                             ethertype=ethertype)


def test_an_ipv6_signal_names_its_connection_past_extension_headers():
    hop_by_hop = ipv6.hop_opts(nxt=6, data=[ipv6.option(type_=1, len_=4, data=bytes(4))])
    frame = signal_frame(1, eth(0x86DD), ipv6.ipv6(src=SERVER6, dst=CLIENT6, nxt=0,
                                                   ext_hdrs=[hop_by_hop]),
                         tcp.tcp(src_port=80, dst_port=40000))
    body = parse_signal(frame).instruction()
    assert body == {"ip_proto": 6, "ipv6_src": SERVER6, "ipv6_dst": CLIENT6, "tp_src": 80,
                    "tp_dst": 40000, "action": "drop"}
    assert parse(body).directions()[1] == (CLIENT6, SERVER6, 40000, 80)
    udp6 = signal_frame(2, eth(0x86DD), ipv6.ipv6(src=SERVER6, dst=CLIENT6, nxt=17),
                        udp.udp(src_port=53, dst_port=4000))
    assert parse_signal(udp6).instruction()["ip_proto"] == 17


def test_a_signal_without_tcp_or_udp_names_nothing():
    ping6 = signal_frame(1, eth(0x86DD), ipv6.ipv6(src=SERVER6, dst=CLIENT6, nxt=58))
    assert parse_signal(ping6).instruction() == {}
    v4 = signal_frame(1, eth(0x0800), ipv4.ipv4(src=SERVER, dst=CLIENT, proto=6),
                      tcp.tcp(src_port=80, dst_port=40000))
    assert parse(parse_signal(v4).instruction()).family == 4
