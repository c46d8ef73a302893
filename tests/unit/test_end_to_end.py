"""End to end without a switch: connections through the compiled pipelines, run by the
interpreter with a connection table kept across packets and recompiles.

Each scenario is a short sequence with exact expectations (the port a packet leaves
by, the headers it leaves with, the tables it crosses), in the habit of Open vSwitch's
own system-traffic tests.  The demo edge (ryu_si/default_config.yaml): web traffic
from outside goes through the biw firewall whichever uplink ECMP picks, 8080 only
from uplink1, telnet drops.  The three-transport example: chains through the
service plane bridge, an L3 node behind a VTI.
"""
from __future__ import annotations

from importlib import resources

import pytest
import yaml

from openflow_tables import layout as L
from openflow_tables.interpret import Datapath, Result, ipv4
from ryu_si.control.service import Service
from ryu_si.control.store import Store
from ryu_si.diagnose.trace import FiveTuple, trace
from tests.unit.conftest import DEMO_PORTS

CLIENT, SERVER, SPORT = "198.51.100.7", "10.10.0.10", 40000
MACS = {"up1": "02:00:00:00:01:01", "up2": "02:00:00:00:02:01", "down1": "02:00:00:00:10:01",
        "vti1": "02:00:00:00:d0:01"}
GATEWAY = {"up1": "02:00:00:00:01:02", "up2": "02:00:00:00:02:02"}
SERVER_MAC, L3_NODE_MAC = "02:00:00:00:10:0a", "02:00:00:00:d0:02"
BIW_A, BIW_B = "02:00:00:00:a0:01", "02:00:00:00:b0:01"
SYN, ACK, SYN_ACK = 0x02, 0x10, 0x12
REUSED = ["ingress", "ct", "ct_result", "applied_to", "class_check", "gen_check", "transport"]


class Edge:
    """One router bridge (and its service plane, if any) as the datapath holds them."""

    def __init__(self, svc: Service, ports: dict[str, int], plane: dict[str, int] | None = None
                 ) -> None:
        self.svc, self.ports, self.plane = svc, ports, plane
        self.dp = Datapath()
        self.dp.load(1, svc.pipeline(1, ports))
        if plane:
            self.dp.load(2, svc.pipeline(2, plane))
        self.names = {no: name for name, no in ports.items()}

    def send(self, port: str, headers: dict, inner: tuple = ()) -> Result:
        return self.dp.send(1, self.ports[port], headers, inner)

    def leaves(self, result: Result) -> str:
        """The one port the packet left by (the walk in the message otherwise)."""
        assert len(result.outputs) == 1 and not result.packet_ins, result.describe(self.names)
        return self.names[result.outputs[0].port]

    def record(self):
        (entry,) = self.dp.conntrack.entries()
        return entry


def from_client(on: str, dport: int, flags: int, sport: int = SPORT) -> dict:
    return ipv4(CLIENT, SERVER, sport=sport, dport=dport, eth_src=GATEWAY[on],
                eth_dst=MACS[on], tcp_flags=flags)


def from_server(sport: int, flags: int, dport: int = SPORT) -> dict:
    return ipv4(SERVER, CLIENT, sport=sport, dport=dport, eth_src=SERVER_MAC,
                eth_dst=MACS["down1"], tcp_flags=flags)


def rule_of(entry) -> int:
    return (entry.mark & L.CT_MARK_RULE.mask) >> L.CT_MARK_RULE.ofs


@pytest.fixture
def demo(service) -> Edge:
    return Edge(service, DEMO_PORTS)


# --- the demo edge -----------------------------------------------------------------------
def test_web_goes_through_the_node_both_ways_and_keeps_it_after_an_ecmp_move(demo):
    out = demo.send("up2", from_client("up2", 80, SYN))
    assert demo.leaves(out) == "bwa"                      # the biw node's side A
    sent = out.outputs[0].headers
    up = {n: demo.svc.find("interfaces", n).num for n in ("uplink1", "uplink2")}
    # the source MAC says where it was classified (uplink2), forward direction
    assert (sent["eth_src"], sent["eth_dst"]) == (L.service_tag_mac(False, up["uplink2"]), BIW_B)
    back = demo.send("bwb", sent)                         # the node bridges it to side B
    assert demo.leaves(back) == "down1"
    got = back.outputs[0].headers
    assert (got["eth_src"], got["eth_dst"], got["nw_ttl"]) == (MACS["down1"], SERVER_MAC, 63)
    reply = demo.send("down1", from_server(80, SYN_ACK))
    assert demo.leaves(reply) == "bwb"                    # the reverse direction: side B
    assert (reply.outputs[0].headers["eth_src"], reply.outputs[0].headers["eth_dst"]) == (
        L.service_tag_mac(True, up["uplink1"]), BIW_A)      # classified at its egress
    home = demo.send("bwa", reply.outputs[0].headers)
    assert demo.leaves(home) == "up1"                     # the route to the clients
    assert home.outputs[0].headers["eth_dst"] == GATEWAY["up1"]
    # ECMP moves the client's side to uplink1: the connection keeps its node, and the
    # decision comes from the record (no classification, no new pick of a node).
    ack = demo.send("up1", from_client("up1", 80, ACK))
    assert demo.leaves(ack) == "bwa" and ack.tables() == REUSED, ack.describe(demo.names)
    assert rule_of(demo.record()) == demo.svc.find("rules", "web-inspect").rule_num


def test_claim_1_a_rule_applied_at_both_uplinks_reuses_the_record_after_a_move(demo):
    """The record's rule is applied at the new interface, and nothing there outranks it:
    the packet takes the stored decision without being classified again."""
    assert demo.leaves(demo.send("up1", from_client("up1", 80, SYN))) == "bwa"
    label = demo.record().label
    moved = demo.send("up2", from_client("up2", 80, ACK))
    assert demo.leaves(moved) == "bwa" and moved.tables() == REUSED, moved.describe(demo.names)
    assert demo.record().label == label


def test_claim_2_a_rule_applied_at_uplink1_only_is_reclassified_at_uplink2(demo):
    """The record's rule is not applied at the new interface: the packet is classified
    there (the default rule: routed straight to the server), and the record follows."""
    assert demo.leaves(demo.send("up1", from_client("up1", 8080, SYN))) == "bwa"
    assert rule_of(demo.record()) == demo.svc.find("rules", "alt-web-uplink1").rule_num
    moved = demo.send("up2", from_client("up2", 8080, ACK))
    assert demo.leaves(moved) == "down1", moved.describe(demo.names)
    tables = moved.tables()
    assert tables[:5] == ["ingress", "ct", "ct_result", "applied_to", "orient"]
    classify = next(s for s in moved.trace if s.table == "classify")
    assert L.cookie_owner(classify.flow.cookie) == ("router", 1)      # the default rule
    assert rule_of(demo.record()) == L.DEFAULT_RULE_NUM
    again = demo.send("up1", from_client("up1", 8080, ACK))           # back on uplink1
    assert demo.leaves(again) == "bwa", again.describe(demo.names)


@pytest.mark.parametrize("uplink", ["up1", "up2"])
def test_telnet_drops_at_either_uplink_and_stays_dropped(demo, uplink):
    first = demo.send(uplink, from_client(uplink, 23, SYN))
    assert first.dropped and first.tables()[-1] == "transport", first.describe(demo.names)
    assert rule_of(demo.record()) == demo.svc.find("rules", "no-telnet").rule_num
    again = demo.send(uplink, from_client(uplink, 23, SYN))
    assert again.dropped and again.tables() == REUSED
    assert demo.send("down1", from_server(23, SYN_ACK)).dropped     # nor its reply


def test_other_traffic_is_routed_and_an_invalid_packet_drops(demo):
    ssh = demo.send("up2", from_client("up2", 22, SYN))
    assert demo.leaves(ssh) == "down1" and ssh.outputs[0].headers["nw_ttl"] == 63
    bogus = demo.send("up2", from_client("up2", 22, SYN | 0x01, sport=40001))   # SYN+FIN
    assert bogus.dropped and bogus.tables() == ["ingress", "ct", "ct_result"]


def test_the_trace_answer_is_the_walk_of_the_first_packet(demo):
    """``POST /trace`` reads the same interpreter walk the datapath runs here."""
    for port, iface, dport in (("up2", "uplink2", 80), ("up1", "uplink1", 8080),
                               ("up2", "uplink2", 23), ("up2", "uplink2", 22)):
        answer = trace(demo.svc, demo.svc.find("interfaces", iface).id,
                       FiveTuple(6, CLIENT, SERVER, SPORT + dport, dport))
        walk = demo.send(port, from_client(port, dport, SYN, sport=SPORT + dport))
        assert answer["tables"] == walk.tables()
        left = demo.leaves(walk) if walk.outputs else None
        assert answer["egress"] == {"bwa": "biw-a", "down1": "downlink1", None: None}[left]


# --- the three-transport example ---------------------------------------------------------
ROUTER_PORTS = {"up1": 1, "up2": 2, "down1": 3, "bwa": 4, "bwb": 5, "svc": 6, "vti1": 7,
                "vti2": 8}
PLANE_PORTS = {"rtr": 1, **{f"cn{n}{side}": 2 * n + k for n in range(1, 5)
                            for k, side in enumerate("ab")}, "cn5": 10}


@pytest.fixture
def transports(tmp_path) -> Edge:
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    svc.replace_config(yaml.safe_load(
        resources.files("ryu_si").joinpath("examples/three_transports.yaml").read_text()))
    return Edge(svc, ROUTER_PORTS, PLANE_PORTS)


def walk_chain(edge: Edge, sent) -> tuple[list[str], object]:
    """Carry an NSH frame through the service plane as the nodes would: a plain node
    bridges the frame to its other side; an NSH-aware one takes one off the SI."""
    names = {no: name for name, no in PLANE_PORTS.items()}
    hops: list[str] = []
    result = edge.dp.send(2, PLANE_PORTS["rtr"], sent.headers, sent.inner)
    while len(hops) < 8:
        (out,) = result.outputs
        hop = names[out.port]
        if hop == "rtr":
            return hops, out
        hops.append(hop)
        if hop[-1] in "ab":
            other = hop[:-1] + ("b" if hop[-1] == "a" else "a")
            result = edge.dp.send(2, PLANE_PORTS[other], out.headers)
        else:
            result = edge.dp.send(2, out.port,
                                  {**out.headers, "nsh_si": out.headers["nsh_si"] - 1},
                                  out.inner)
    raise AssertionError(f"no way back to the router after {hops}")


def test_a_chain_goes_through_the_service_plane_both_ways(transports):
    edge, svc = transports, transports.svc
    out = edge.send("up1", from_client("up1", 5201, SYN))
    assert edge.leaves(out) == "svc", out.describe(edge.names)
    (sent,) = out.outputs
    chain = svc.model.by_name("chains", "fw-ids-dpi")
    path = next(p for p in svc.paths[chain.id] if p.spi == sent.nsh[0])
    assert sent.nsh[1] == L.NSH_FIRST_SI and sent.inner[0]["tcp_dst"] == 5201
    hops, back = walk_chain(edge, sent)
    assert len(hops) == len(path.hops) == 3 and back.nsh == (path.spi, L.NSH_FIRST_SI - 3)
    home = edge.send("svc", back.headers, back.inner)
    assert edge.leaves(home) == "down1" and home.outputs[0].headers["ipv4_dst"] == SERVER
    reply = edge.send("down1", from_server(5201, SYN_ACK))
    assert edge.leaves(reply) == "svc", reply.describe(edge.names)
    assert reply.outputs[0].nsh == (path.reverse_spi, L.NSH_FIRST_SI)
    hops_back, back = walk_chain(edge, reply.outputs[0])
    assert [h[:3] for h in hops_back] == [h[:3] for h in reversed(hops)]
    home = edge.send("svc", back.headers, back.inner)
    assert edge.leaves(home) == "up1" and home.outputs[0].headers["ipv4_dst"] == CLIENT


def test_an_l3_node_is_reached_over_its_vti_both_ways(transports):
    edge = transports
    out = edge.send("up1", from_client("up1", 5203, SYN))
    assert edge.leaves(out) == "vti1", out.describe(edge.names)
    to_node = out.outputs[0].headers
    assert (to_node["eth_src"], to_node["eth_dst"]) == (MACS["vti1"], L3_NODE_MAC)
    routed = edge.send("vti1", {**to_node, "eth_src": L3_NODE_MAC, "eth_dst": MACS["vti1"]})
    assert edge.leaves(routed) == "down1", routed.describe(edge.names)
    reply = edge.send("down1", from_server(5203, SYN_ACK))
    assert edge.leaves(reply) == "vti1", reply.describe(edge.names)
    back = {**reply.outputs[0].headers, "eth_src": L3_NODE_MAC, "eth_dst": MACS["vti1"]}
    home = edge.send("vti1", back)
    assert edge.leaves(home) == "up1" and home.outputs[0].headers["ipv4_dst"] == CLIENT


def test_a_kept_decision_stale_in_its_transport_is_revalidated_once(transports):
    """A liveness event of the record's transport, then a rule edit: the next packet is
    re-classified to the same rule (kept decision, transport generations as stored), so
    it is stale in its transport; revalidation commits it current and it goes on."""
    svc = transports.svc
    assert transports.leaves(transports.send("up1", from_client("up1", 80, SYN))) == "bwa"
    svc.set_node_state(svc.find("service-nodes", "fw2").id, False)
    rule = svc.find("rules", "web-inspect")
    svc.update("rules", rule.id, {"priority": 101})
    transports.dp.load(1, svc.pipeline(1, ROUTER_PORTS))     # conntrack stays
    for _ in range(2):
        assert transports.leaves(transports.send("up1", from_client("up1", 80, ACK))) == "bwa"


def test_a_connection_routed_unserviced_while_no_node_lived_is_serviced_when_one_is_back(
        transports):
    """failure_policy pass: with fw1 down the web connection is routed without service;
    once fw1 is back, its next packet goes through the policy again and reaches fw1."""
    svc = transports.svc
    fw1 = svc.find("service-nodes", "fw1").id
    svc.set_node_state(fw1, False)
    transports.dp.load(1, svc.pipeline(1, ROUTER_PORTS))
    assert transports.leaves(transports.send("up1", from_client("up1", 80, SYN))) == "down1"
    assert transports.leaves(transports.send("up1", from_client("up1", 80, ACK))) == "down1"
    svc.set_node_state(fw1, True)
    transports.dp.load(1, svc.pipeline(1, ROUTER_PORTS))
    assert transports.leaves(transports.send("up1", from_client("up1", 80, ACK))) == "bwa"


# --- a NAT node in a chain ---------------------------------------------------------------
NAT_ADDR, NAT_PORT = "198.51.100.200", 61000      # routed out uplink1, like the client


def _snat(h: dict) -> dict:
    return {**h, "ipv4_src": NAT_ADDR, "tcp_src": NAT_PORT}


def _unsnat(h: dict) -> dict:
    return {**h, "ipv4_dst": CLIENT, "tcp_dst": SPORT}


def walk_nat_chain(edge: Edge, sent, node: str, rewrite) -> object:
    """walk_chain, with ``node`` (plain) rewriting the inner packet as it bridges it."""
    names = {no: name for name, no in PLANE_PORTS.items()}
    result = edge.dp.send(2, PLANE_PORTS["rtr"], sent.headers, sent.inner)
    for _ in range(8):
        (out,) = result.outputs
        hop = names[out.port]
        if hop == "rtr":
            return out
        if hop[-1] in "ab":
            other = hop[:-1] + ("b" if hop[-1] == "a" else "a")
            frame = rewrite(out.headers) if hop[:-1] == node else out.headers
            result = edge.dp.send(2, PLANE_PORTS[other], frame)
        else:
            result = edge.dp.send(2, out.port,
                                  {**out.headers, "nsh_si": out.headers["nsh_si"] - 1},
                                  out.inner)
    raise AssertionError("no way back to the router")


@pytest.fixture
def nat_edge(transports) -> Edge:
    svc = transports.svc
    svc.update("service-nodes", svc.find("service-nodes", "cn3").id, {"nat": True})
    return Edge(svc, ROUTER_PORTS, PLANE_PORTS)


def test_a_chain_node_that_snats_is_proxied_both_ways(nat_edge):
    """cn3 (dpi, on every fw-ids-dpi path) source-NATs.  The plane finds each hop by the
    source MAC, the router records the rewritten connection at the end of the forward
    path, the server's reply to the NAT address goes back into the reverse path, and the
    client gets its own addresses back."""
    edge = nat_edge
    out = edge.send("up1", from_client("up1", 5201, SYN))
    back = walk_nat_chain(edge, out.outputs[0], "cn3", _snat)
    home = edge.send("svc", back.headers, back.inner)
    assert edge.leaves(home) == "down1", home.describe(edge.names)
    assert home.outputs[0].headers["ipv4_src"] == NAT_ADDR
    assert "nat_leg" in home.tables()
    reply = edge.send("down1", {**from_server(5201, SYN_ACK), "ipv4_dst": NAT_ADDR,
                                "tcp_dst": NAT_PORT})
    assert edge.leaves(reply) == "svc", reply.describe(edge.names)
    (sent,) = reply.outputs
    up1 = edge.svc.find("interfaces", "uplink1")
    assert sent.headers["nsh_c2"] == up1.num                    # classified at its egress
    back = walk_nat_chain(edge, sent, "cn3", _unsnat)
    home = edge.send("svc", back.headers, back.inner)
    assert edge.leaves(home) == "up1", home.describe(edge.names)
    assert (home.outputs[0].headers["ipv4_dst"], home.outputs[0].headers["tcp_dst"]) == (
        CLIENT, SPORT)
    assert "nat_back" in home.tables()
    assert len(edge.dp.conntrack.entries()) == 2               # the client's and the node's
    again = edge.send("up1", from_client("up1", 5201, ACK))
    back = walk_nat_chain(edge, again.outputs[0], "cn3", _snat)
    assert edge.leaves(edge.send("svc", back.headers, back.inner)) == "down1"


def test_a_reply_back_from_a_nat_node_meets_the_rules_where_it_entered(nat_edge):
    """After the node restores the client's addresses, the reply is checked at the
    interface it entered by: a drop rule applied there (and not to the client's side)
    drops it, as it would drop a reply that never went through a NAT node."""
    edge, svc = nat_edge, nat_edge.svc
    out = edge.send("up1", from_client("up1", 5201, SYN))
    back = walk_nat_chain(edge, out.outputs[0], "cn3", _snat)
    edge.send("svc", back.headers, back.inner)
    svc.create("rules", {"name": "no-5201-out-up1", "router": "edge", "priority": 200,
                         "action": "drop", "match": {"ip_proto": "tcp", "tp_dst": 5201},
                         "applied_to": ["uplink1"]})
    edge.dp.load(1, svc.pipeline(1, ROUTER_PORTS))
    edge.dp.load(2, svc.pipeline(2, PLANE_PORTS))
    reply = edge.send("down1", {**from_server(5201, SYN_ACK), "ipv4_dst": NAT_ADDR,
                                "tcp_dst": NAT_PORT})
    assert edge.leaves(reply) == "svc", reply.describe(edge.names)   # the NAT leg's record
    back = walk_nat_chain(edge, reply.outputs[0], "cn3", _unsnat)
    home = edge.send("svc", back.headers, back.inner)
    assert home.dropped and "nat_back" in home.tables(), home.describe(edge.names)
