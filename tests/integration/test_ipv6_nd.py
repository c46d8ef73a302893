"""IPv6 neighbour discovery end to end: real OVS, Mininet hosts, the controller.

No host and no router has a static IPv6 neighbour: srv finds the router by a
solicitation the datapath answers, and the router finds srv and ext by solicitations
the controller sends when its neighbour table misses them, learning their
advertisements.
"""
from __future__ import annotations

import re
import time

import pytest

from mininet_topos import lab as harness
from ryu_si.control.config import default_document
from si_model import model as m
from si_model.document import model_from_document

pytestmark = pytest.mark.integration
LEARN_TIMEOUT_S = 10.0
DEFAULT_MODEL = model_from_document(default_document(), m.Model(), {})   # the controller's


def port(name: str):
    return harness.edge.PORT[name]


def host_neighbours(net, host: str) -> dict[str, tuple[str, str]]:
    """The host's IPv6 neighbour cache: address -> (MAC, state)."""
    out = harness.edge.run(net[host], "ip", "-6", "neigh", "show")
    return {f[0]: (f[f.index("lladdr") + 1], f[-1]) for f in map(str.split, out.splitlines())
            if "lladdr" in f}


def neighbour_flows() -> list[str]:
    return harness.dump_flows(table="neighbor")


def learned(ip_match: str, mac: str) -> bool:
    return any(ip_match in f and f"set_field:{mac}->eth_dst" in f for f in neighbour_flows())


def wait_learned(ip_match: str, mac: str) -> None:
    deadline = time.monotonic() + LEARN_TIMEOUT_S
    while not learned(ip_match, mac):
        assert time.monotonic() < deadline, f"{ip_match} -> {mac} never learned:\n" + \
            "\n".join(neighbour_flows())
        time.sleep(0.2)


def nd_packets(match: str) -> int:
    """Packets of the nd flows whose text contains ``match``."""
    return sum(int(re.search(r"n_packets=(\d+)", f).group(1))
               for f in harness.dump_flows(table="nd") if match in f)


def test_no_static_ipv6_neighbours_anywhere(controller, edge_net):
    status, body = controller.rest("GET", "neighbors")
    assert status == 200, body
    assert not [n for n in body if ":" in n["ip"]]
    for host in ("srv", "ext"):
        assert not [a for a, (_mac, state) in host_neighbours(edge_net, host).items()
                    if state == "PERMANENT"]


def test_srv_resolves_and_pings_the_routers_global_address(controller, edge_net):
    down1 = port("down1")
    answered = nd_packets(f"nd_target={down1.router_ip6}")
    assert harness.ping(edge_net, "srv", down1.router_ip6) == 3
    mac, state = host_neighbours(edge_net, "srv")[down1.router_ip6]
    assert mac == down1.router_mac and state in ("REACHABLE", "STALE", "DELAY", "PROBE")
    harness.wait_counters()
    assert nd_packets(f"nd_target={down1.router_ip6}") > answered   # the datapath answered


def test_srv_pings_the_routers_link_local_address(controller, edge_net):
    down1 = port("down1")
    link_local = m.link_local(down1.router_mac)
    assert harness.ping(edge_net, "srv", f"{link_local}%{down1.intf}") == 3
    assert host_neighbours(edge_net, "srv")[link_local][0] == down1.router_mac


def ping_from(net, host: str, src: str, dst: str, count: int = 3) -> int:
    """Echo replies ``host`` receives pinging ``dst`` from its address ``src``."""
    out = harness.edge.run(net[host], "ping", "-6", "-n", "-c", str(count), "-i", "0.2",
                           "-W", "2", "-I", src, dst, check=False)
    got = re.search(r"(\d+) received", out)
    return int(got.group(1)) if got else 0


def test_the_router_resolves_srv_and_routes_ext_to_it(controller, edge_net):
    """The first request misses srv (solicited, learned); the first reply misses ext's
    up2 address (a neighbour on a connected prefix, the destination itself)."""
    down1, up2 = port("down1"), port("up2")
    ext, srv = up2.ip6.split("/")[0], harness.edge.SRV_IP6
    assert not learned(f"ipv6_dst={ext}", up2.mac)
    ping_from(edge_net, "ext", ext, srv, count=1)
    wait_learned(f"ipv6_dst={srv}", down1.mac)
    ping_from(edge_net, "ext", ext, srv, count=1)
    wait_learned(f"ipv6_dst={ext}", up2.mac)
    assert ping_from(edge_net, "ext", ext, srv) == 3


def test_a_route_next_hop_is_resolved_by_its_number(controller, edge_net):
    """Replies to cli go by the clients6 route's next hop, ext's up1 address: a numbered
    next hop the router solicits and learns like any neighbour."""
    down1, up1, srv = port("down1"), port("up1"), harness.edge.SRV_IP6
    number = m.ipv6_next_hops(DEFAULT_MODEL)[up1.ip6.split("/")[0]]
    assert not learned(f"reg10={number:#x}", up1.mac)
    harness.ping(edge_net, "cli", srv, count=1)        # misses srv, unless it is known
    wait_learned(f"ipv6_dst={srv}", down1.mac)
    harness.ping(edge_net, "cli", srv, count=1)        # the reply misses the next hop
    wait_learned(f"reg10={number:#x}", up1.mac)
    assert harness.ping(edge_net, "cli", srv) == 3
