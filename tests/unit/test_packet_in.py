"""The app's packet-in handling: a cookie that is not ours is logged and ignored, and an
ARP miss asks for the next hop the compiled routing chose (no switch: the handler is
called with the messages Ryu would hand it)."""
from __future__ import annotations

import ipaddress
import logging
from types import SimpleNamespace

import pytest
from ryu.lib.packet import ethernet, ipv4, packet, tcp

from openflow_tables import layout as L
from ryu_si.datapath import next_hop
from ryu_si.datapath.neighbors import Neighbors
from ryu_si.app import ServiceInsertionApp
from tests.unit.conftest import DEMO_PORTS

CLIENT = "198.51.100.7"


def app_for(service) -> SimpleNamespace:
    """What the handler uses of the app: its service, switches, ports and neighbours; ARP
    requests are recorded instead of sent."""
    app = SimpleNamespace(service=service, ports={1: dict(DEMO_PORTS)}, _foreign_cookies=set(),
                          asked=[], switches={1: SimpleNamespace(datapath=SimpleNamespace(id=1))})
    app._foreign_packet_in = ServiceInsertionApp._foreign_packet_in.__get__(app)
    app.neighbors = Neighbors(service, app.ports,
                              lambda dpid: service.pipeline(dpid, app.ports[dpid]))
    app.neighbors._request = lambda sw, iface, target: app.asked.append((iface.name, target))
    return app


def packet_in(cookie: int, in_port: int = 2, data: bytes = b"", **match) -> SimpleNamespace:
    return SimpleNamespace(msg=SimpleNamespace(cookie=cookie, datapath=SimpleNamespace(id=1),
                                               match={"in_port": in_port, **match}, data=data))


def frame(dst: str, src: str = CLIENT, eth_dst: str = "02:00:00:00:02:01") -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=eth_dst, src="02:00:00:00:02:02"))
    pkt.add_protocol(ipv4.ipv4(src=src, dst=dst, proto=6, ttl=64))
    pkt.add_protocol(tcp.tcp(src_port=40000, dst_port=22, bits=tcp.TCP_SYN))
    pkt.serialize()
    return bytes(pkt.data)


ARP_MISS = L.cookie("pipeline", L.PIPELINE_ARP_MISS) | 0x123456     # with a digest


@pytest.mark.parametrize("cookie", [0, 0xDEADBEEF, 0x42 << 56])
def test_a_packet_in_whose_cookie_is_not_ours_is_logged_and_ignored(service, cookie, caplog):
    app = app_for(service)
    with caplog.at_level(logging.DEBUG, logger="ryu_si.app"):
        ServiceInsertionApp._packet_in(app, packet_in(cookie))
        ServiceInsertionApp._packet_in(app, packet_in(cookie))
    seen = [(r.levelno, r.fields) for r in caplog.records
            if getattr(r, "event", None) == "packet_in_ignored"]
    assert seen == [(logging.WARNING, {"dpid": "0000000000000001", "cookie": f"{cookie:#x}",
                                       "reason": "the cookie is not ours"}),
                    (logging.DEBUG, seen[1][1])]
    assert app.asked == []


def test_an_arp_miss_reads_the_routing_registers_the_packet_in_carries(service):
    app = app_for(service)
    up1 = service.find("interfaces", "uplink1")
    regs = {"metadata": service.find("routers", "edge").num, "reg9": up1.num,
            "reg10": int(ipaddress.IPv4Address("10.0.1.2"))}
    ServiceInsertionApp._packet_in(app, packet_in(ARP_MISS, data=frame(CLIENT), **regs))
    assert app.asked == [("uplink1", "10.0.1.2")]
    ServiceInsertionApp._packet_in(app, packet_in(ARP_MISS, data=frame(CLIENT), **regs))
    assert len(app.asked) == 1                       # asked again only after ARP_RETRY_S


def test_without_registers_the_interpreter_runs_the_missed_packet(service):
    app = app_for(service)
    ServiceInsertionApp._packet_in(app, packet_in(ARP_MISS, in_port=DEMO_PORTS["up2"],
                                                  data=frame("10.10.0.99")))
    assert app.asked == [("downlink1", "10.10.0.99")]


def test_the_next_hop_is_the_routers_own_not_another_routers_longer_prefix(service):
    """Another router holds a longer prefix of the same address and a service interface
    in it; the miss on this router's switch is resolved on this router's downlink."""
    service.create("routers", {"name": "edge2", "dpid": 2})
    service.create("interfaces", {"name": "down2", "router": "edge2", "port": "d2",
                                  "role": "downlink", "ip": "10.10.0.65/26",
                                  "mac": "02:00:00:00:20:01"})
    service.create("interfaces", {"name": "svc2", "router": "edge2", "port": "s2",
                                  "role": "service", "ip": "10.10.0.97/27",
                                  "mac": "02:00:00:00:20:02"})
    app = app_for(service)
    ServiceInsertionApp._packet_in(app, packet_in(ARP_MISS, in_port=DEMO_PORTS["up2"],
                                                  data=frame("10.10.0.99")))
    assert app.asked == [("downlink1", "10.10.0.99")]
    other = service.find("routers", "edge2")
    assert next_hop.from_registers(service.model, {
        "metadata": other.num, "reg9": service.find("interfaces", "down2").num,
        "reg10": int(ipaddress.IPv4Address("10.10.0.99"))})[0].name == "down2"


def test_a_packet_the_pipeline_does_not_miss_asks_nothing(service):
    app = app_for(service)
    ServiceInsertionApp._packet_in(app, packet_in(ARP_MISS, in_port=DEMO_PORTS["up2"],
                                                  data=frame("10.10.0.10")))   # a known neighbor
    ServiceInsertionApp._packet_in(app, packet_in(ARP_MISS, data=b"\x00" * 20))
    assert app.asked == []
