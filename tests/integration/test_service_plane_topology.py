"""The service-plane topology on its own, without the controller.

Temporary static flows (one cookie, removed after each test) prove what the
three-transport tests take for granted: the svc <-> rtr patch, both sides and
counters of every chain node, the NSH service function on cn5 (SI - 1, MD
type 1 and its context headers kept, C1 programming), the VXLAN VTIs to l3n
and rnet through the userspace underlay, and TCP across both tunnels (MTU).
"""
from __future__ import annotations

import re

import pytest
from scapy.contrib.nsh import NSH
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from mininet_topos import lab as harness
from mininet_topos import nsh_sf
from mininet_topos.lab import flow_packets, ofctl, pick_sport, ping, run_transfer, wait_counters

COOKIE = "0x7e59"
EDGE, SP = "edge", "sp"
SPI = 42
SVC_MAC = "02:00:00:00:5c:01"      # the router's service-plane interface (three_transports.yaml)


@pytest.fixture(scope="module")
def sp(integration_prerequisites):
    """The topology module (importable only where Mininet is)."""
    from mininet_topos import service_plane
    return service_plane


@pytest.fixture(scope="module")
def net(sp, of_port):
    """A fresh full network.  Leftovers of a 'crashed run' are planted first:
    start_full() must remove them (and nothing else)."""
    harness.sh("ovs-vsctl", "--may-exist", "add-br", sp.UL_BRIDGE, "--", "set", "bridge",
               sp.UL_BRIDGE, "datapath_type=netdev")
    harness.sh("ip", "link", "add", "cn1a", "type", "veth", "peer", "name", "cn1-a", check=False)
    net = sp.start_full(controller_port=of_port)
    try:
        yield net
    finally:
        sp.stop_full(net)
    assert leftovers(sp) == []


def leftovers(sp) -> list[str]:
    """Bridges, root-namespace links and processes of the topology still there."""
    bridges = set(harness.sh("ovs-vsctl", "list-br").split()) & set(sp.FOOTPRINT.bridges)
    links = {line.split()[1].rstrip(":").split("@")[0]
             for line in harness.sh("ip", "-o", "link").splitlines()}
    return (sorted(bridges) + sorted(links & set(sp.FOOTPRINT.links + sp.FOOTPRINT.bridges))
            + [f"pid {p}" for p in harness.edge.topology_netns_pids(sp.FOOTPRINT.host_intfs)]
            + ([str(sp.SF_DIR)] if sp.SF_DIR.exists() else []))


def add(bridge: str, *flows: str) -> None:
    for flow in flows:
        ofctl("add-flow", bridge, f"cookie={COOKIE},{flow}")


def packets(bridge: str, priority: int) -> int:
    """n_packets of this test's flow with that (unique) priority."""
    return flow_packets(bridge, 0, f"priority={priority},")


def arp_reply(port: str, ip: str, mac: str) -> str:
    """Answer ARP requests for the router address ``ip`` on ``port``."""
    return (f"priority=300,arp,in_port={port},arp_op=1,arp_tpa={ip},"
            "actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],"
            f"set_field:{mac}->eth_src,set_field:2->arp_op,"
            "move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],"
            f"set_field:{mac}->arp_sha,set_field:{ip}->arp_spa,IN_PORT")


def route(in_port: str, dst: str, out_port: str, src_mac: str, dst_mac: str,
          priority: int) -> str:
    return (f"priority={priority},ip,in_port={in_port},nw_dst={dst},"
            f"actions=set_field:{src_mac}->eth_src,set_field:{dst_mac}->eth_dst,"
            f"dec_ttl,output:{out_port}")


@pytest.fixture
def flows(net, sp):
    """Static flows of this test (edge answers ARP for down1's router
    address); all are removed afterwards."""
    down1 = harness.edge.PORT["down1"]
    add(EDGE, arp_reply("down1", down1.router_ip, down1.router_mac))
    try:
        yield net
    finally:
        for bridge in (EDGE, SP):
            ofctl("del-flows", bridge, f"cookie={COOKIE}/-1")
            assert not [f for f in harness.dump_flows(bridge) if f"cookie={COOKIE}" in f]


def srv_to_service_plane() -> None:
    """srv's pings toward the clients leave edge by svc into sp (port rtr)."""
    add(EDGE, "priority=200,ip,in_port=down1,actions=output:svc")


def ping_clients(net, count: int = 3) -> None:
    """``count`` echo requests from srv to cli; nobody is expected to answer."""
    ping(net, "srv", harness.edge.CLI_IP, count=count, timeout=0.5)


# ------------------------------------------------------------------ contract

def test_bridges_and_ports_match_the_contract(net, sp):
    get = lambda *a: harness.sh("ovs-vsctl", "get", *a).strip().strip('"')
    assert get("Bridge", SP, "datapath_type") == "netdev"
    assert get("Bridge", SP, "fail_mode") == "secure"
    assert get("Bridge", SP, "protocols") == "[OpenFlow13]"
    assert get("Bridge", SP, "other_config:datapath-id") == "0000000000000002"
    assert harness.sh("ovs-vsctl", "get-controller", SP) == \
        harness.sh("ovs-vsctl", "get-controller", EDGE) != ""
    assert get("Bridge", sp.UL_BRIDGE, "fail_mode") == "standalone"
    assert get("Bridge", sp.UL_BRIDGE, "datapath_type") == "netdev"
    assert harness.sh("ovs-vsctl", "get-controller", sp.UL_BRIDGE) == ""
    assert f"inet {sp.UL_IP}/24" in harness.sh("ip", "-4", "addr", "show", "dev", sp.UL_BRIDGE)
    for bridge, ports in sp.OFPORTS.items():
        for port, ofport in ports.items():
            assert get("Interface", port, "ofport") == str(ofport), (bridge, port)
    assert get("Interface", "svc", "options:peer") == "rtr"
    assert get("Interface", "rtr", "options:peer") == "svc"
    for vti, remote, key in (("vti1", "192.168.200.2", "100"), ("vti2", "192.168.200.3", "200")):
        assert get("Interface", vti, "type") == "vxlan"
        assert get("Interface", vti, "options:remote_ip") == remote
        assert get("Interface", vti, "options:key") == key
    for name in sp.SP_HOSTS:
        for intf in net[name].intfNames():
            if intf != "lo":
                features = harness.edge.run(net[name], "ethtool", "-k", intf)
                assert "tx-checksumming: off" in features, (name, intf)
    assert "mtu 1450" in harness.edge.run(net["srv"], "ip", "link", "show", "srv-eth0")


@pytest.mark.parametrize("host,key,local,mac,addr", [
    ("l3n", 100, "192.168.200.2", "02:00:00:00:d0:02", "169.254.10.2/30"),
    ("rnet", 200, "192.168.200.3", "02:00:00:00:d1:02", "169.254.20.2/30")])
def test_tunnel_hosts(net, host, key, local, mac, addr):
    run = lambda *a: harness.edge.run(net[host], *a)
    link = run("ip", "-d", "addr", "show", "vxlan0")
    assert f"vxlan id {key} remote 192.168.200.1 local {local} " in link
    assert "dstport 4789" in link and "mtu 1450" in link
    assert f"link/ether {mac}" in link and f"inet {addr}" in link
    if host == "l3n":
        assert run("sysctl", "-n", "net.ipv4.ip_forward").strip() == "1"
        assert run("sysctl", "-n", "net.ipv4.conf.all.rp_filter").strip() == "0"
        assert "default via 169.254.10.1 dev vxlan0" in run("ip", "route")
    else:
        assert "inet 203.0.113.10/32" in run("ip", "addr", "show", "dev", "lo")
        assert "10.10.0.0/24 via 169.254.20.1 dev vxlan0 src 203.0.113.10" in run("ip", "route")


# --------------------------------------------------------------- chain nodes

@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("node", ["cn1", "cn2", "cn3", "cn4"])
def test_chain_node_bridges_its_sides_and_counts(flows, sp, node, direction):
    """Forward enters on cnNa and leaves on cnNb; reverse the other way."""
    net = flows
    into, out = (f"{node}a", f"{node}b") if direction == "forward" else (f"{node}b", f"{node}a")
    srv_to_service_plane()
    add(SP, f"priority=200,ip,in_port=rtr,actions=output:{into}",
        f"priority=201,ip,in_port={out},actions=drop")
    before = sp.chain_counters(net)
    ping_clients(net)
    after = sp.chain_counters(net)
    growth = {n: (after[n][0] - before[n][0], after[n][1] - before[n][1]) for n in after}
    expected = {n: (0, 0) for n in sp.CHAIN_NODES}
    expected[node] = (3, 0) if direction == "forward" else (0, 3)
    assert growth == expected
    wait_counters()
    assert packets(SP, 200) == 3     # came over the patch link
    assert packets(SP, 201) == 3     # and out of the node's other side


# ------------------------------------------------------------ NSH service fn

def nsh_to_cn5(sp) -> str:
    """IPv4 from rtr -> NSH MD type 1 (SPI 42, SI 255, C2..C4 set) -> cn5."""
    cn5_mac = sp.SF_PORT.mac
    return ("priority=200,ip,in_port=rtr,actions=encap(nsh(md_type=1)),"
            f"set_field:{SPI}->nsh_spi,set_field:255->nsh_si,set_field:0x11->nsh_c2,"
            "set_field:0x22->nsh_c3,set_field:0x33->nsh_c4,encap(ethernet),"
            f"set_field:{SVC_MAC}->eth_src,set_field:{cn5_mac}->eth_dst,output:cn5")


@pytest.mark.parametrize("program,c1", [(None, 0), ("reroute", 4)])
def test_nsh_sf_returns_frames_with_si_decremented(flows, sp, program, c1):
    net = flows
    cn5_mac = sp.SF_PORT.mac
    if program:
        net[sp.SF_NODE].start_sf({SPI: program})
    try:
        srv_to_service_plane()
        add(SP, nsh_to_cn5(sp),
            # The frame as it must come back: SI - 1, MD type 1, C1 as
            # programmed, C2..C4 untouched, Ethernet addresses swapped.
            f"priority=201,in_port=cn5,dl_type=0x894f,nsh_mdtype=1,nsh_spi={SPI},"
            f"nsh_si=254,nsh_c1={c1},nsh_c2=0x11,nsh_c3=0x22,nsh_c4=0x33,"
            f"dl_src={cn5_mac},dl_dst={SVC_MAC},actions=drop",
            "priority=150,in_port=cn5,actions=drop")    # anything else from cn5
        ping_clients(net)
        wait_counters()
        assert packets(SP, 200) == 3
        assert (packets(SP, 201), packets(SP, 150)) == (3, 0)
        stats = sp.sf_stats(net)
        assert stats["paths"][f"{SPI}:255"] == {"forward": 3, "reverse": 0, "other": 0}
        assert stats["programmed"] == (3 if program else 0)
        assert stats["pid"] == net[sp.SF_NODE].sf.pid
    finally:
        if program:
            net[sp.SF_NODE].start_sf()


def test_nsh_sf_rewrites_only_the_header():
    """SI - 1, swapped MACs, C1 programmed, the carried frame byte for byte;
    a reply counts as reverse; SI 0 is dropped."""
    inner = (Ether(src="02:00:00:00:10:0a", dst="02:00:00:00:10:01")
             / IP(src="10.10.0.10", dst="198.51.100.10") / TCP(sport=40000, dport=80)
             / Raw(b"x" * 64))
    ctx = bytes.fromhex("00000000" "00000011" "00000022" "00000033")
    frame = (Ether(src="02:00:00:00:5c:01", dst="02:00:00:5c:05:01")
             / NSH(mdtype=1, spi=SPI, si=255, context_header=ctx) / inner)
    sf = nsh_sf.ServiceFunction({SPI: (nsh_sf.ACTIONS["drop_message"], None)})
    raw = bytes(frame)
    out = Ether(bytes(sf.handle(Ether(raw))))
    assert (out.src, out.dst) == ("02:00:00:5c:05:01", "02:00:00:00:5c:01")
    assert (out[NSH].spi, out[NSH].si, out[NSH].mdtype, out[NSH].length) == (SPI, 254, 1, 6)
    assert bytes(out[NSH].context_header) == bytes.fromhex("00000003") + ctx[4:]
    assert bytes(out)[14 + 24:] == raw[14 + 24:]
    reply = (Ether() / NSH(spi=43, si=254) / Ether()
             / IP(src="198.51.100.10", dst="10.10.0.10") / TCP(sport=80, dport=40000))
    assert sf.handle(Ether(bytes(reply))) is not None
    assert sf.handle(Ether(bytes(Ether() / NSH(spi=43, si=0) / Ether() / ICMP()))) is None
    snap = sf.snapshot("x")
    assert snap["paths"] == {f"{SPI}:255": {"forward": 1, "reverse": 0, "other": 0},
                             "43:254": {"forward": 0, "reverse": 1, "other": 0},
                             "43:0": {"forward": 0, "reverse": 0, "other": 1}}
    assert (snap["packets"], snap["dropped"], snap["programmed"]) == (3, 1, 1)


def test_nsh_sf_rejects_a_bad_program():
    with pytest.raises(SystemExit):
        nsh_sf.main(["--iface", "x", "--stats", "/dev/null", "--program", "42:explode"])


# ------------------------------------------------------------------- tunnels

def l3n_loop(sp) -> list[str]:
    """Everything IP goes through l3n: down1/up1/up2 -> vti1; what l3n routes
    back arrives on vti1 and goes to srv (down1) or to the clients (up1)."""
    vti, down1, up1 = sp.VTI["vti1"], harness.edge.PORT["down1"], harness.edge.PORT["up1"]
    to_l3n = (f"actions=set_field:{vti.router_mac}->eth_src,set_field:{vti.mac}->eth_dst,"
              "dec_ttl,output:vti1")
    return [arp_reply(vti.port, vti.router_ip, vti.router_mac),
            *(arp_reply(u, harness.edge.PORT[u].router_ip, harness.edge.PORT[u].router_mac)
              for u in ("up1", "up2")),
            f"priority=200,ip,in_port=down1,{to_l3n}",
            f"priority=201,ip,in_port=up1,{to_l3n}",
            f"priority=202,ip,in_port=up2,{to_l3n}",
            route("vti1", harness.edge.SERVER_NET, "down1", down1.router_mac, down1.mac, 203),
            route("vti1", sp.CLIENT_NET, "up1", up1.router_mac, up1.mac, 204)]


def test_l3_node_routes_back_through_vti1(flows, sp):
    net = flows
    add(EDGE, *l3n_loop(sp))
    servers0, clients0 = sp.l3_counters(net)
    assert ping(net, "srv", harness.edge.CLI_IP, count=3) == 3
    servers, clients = sp.l3_counters(net)
    assert (servers - servers0, clients - clients0) == (3, 3)
    wait_counters()
    assert packets(EDGE, 200) == 3                          # srv -> vti1
    assert packets(EDGE, 204) == 3                          # back on vti1 -> clients
    assert packets(EDGE, 201) + packets(EDGE, 202) == 3     # replies -> vti1
    assert packets(EDGE, 203) == 3                          # back on vti1 -> srv


def test_remote_network_reaches_edge_through_vti2(flows, sp):
    net = flows
    vti = sp.VTI["vti2"]
    add(EDGE, arp_reply(vti.port, vti.router_ip, vti.router_mac),
        "priority=200,icmp,in_port=vti2,nw_src=169.254.20.2,nw_dst=169.254.20.1,actions=drop")
    harness.edge.run(net["rnet"], "ip", "neigh", "flush", "dev", "vxlan0")
    assert ping(net, "rnet", vti.router_ip, count=2, timeout=0.5) == 0   # edge does not answer
    neigh = harness.edge.run(net["rnet"], "ip", "neigh", "show", vti.router_ip)
    assert re.search(rf"lladdr {vti.router_mac} (REACHABLE|STALE|DELAY)", neigh), neigh
    wait_counters()
    # The ARP request came in on vti2 (and the reply went back: rnet knows the MAC).
    assert flow_packets(EDGE, 0, "arp,in_port=vti2,") >= 1
    assert packets(EDGE, 200) == 2


@pytest.mark.parametrize("via", ["l3n", "rnet"])
def test_tcp_crosses_the_tunnel_intact(flows, sp, via):
    """Full-size segments both ways: the tunnel's inner MTU (1450) and srv's
    MTU keep them inside the underlay's 1500."""
    net = flows
    if via == "l3n":
        add(EDGE, *l3n_loop(sp))
        transfer = run_transfer(net, pick_sport(net, 5203, "up1"), 5203, chunks=20,
                                interval=0.01, echo_bytes=4096)
    else:
        vti, down1 = sp.VTI["vti2"], harness.edge.PORT["down1"]
        add(EDGE, arp_reply(vti.port, vti.router_ip, vti.router_mac),
            route("vti2", harness.edge.SERVER_NET, "down1", down1.router_mac, down1.mac, 200),
            route("down1", "203.0.113.0/24", "vti2", vti.router_mac, vti.mac, 201))
        transfer = run_transfer(net, 41000, 5204, chunks=20, interval=0.01, echo_bytes=4096,
                                client="rnet", dst=harness.edge.SRV_IP)
    result = transfer.wait(timeout=30)
    assert result["result"] == "ok", result
    assert result["bytes"] == 20 * 8192 and result["reply_bytes"] > 20 * 1450
    assert result["server"][-1]["event"] == "done"
    if via == "rnet":
        assert result["server"][-1]["peer"][0] == sp.REMOTE_CLIENT_IP
