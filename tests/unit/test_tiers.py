"""A provider router and two tenants' routers on one bridge (ryu_si/examples/tenants.yaml),
walked through the compiled pipeline by the interpreter: each router classifies with its
own rules in its own zone (FIG. 24), a packet crosses a link with nothing of the router it
left, and the checks refuse links that cannot work."""
from __future__ import annotations

from importlib import resources

import pytest
import yaml

from openflow_tables import layout as L
from openflow_tables.flow import Load
from openflow_tables.interpret import Datapath, Result, ipv4
from ryu_si.control.service import Service
from ryu_si.control.store import Store
from ryu_si.diagnose.trace import FiveTuple, trace
from si_model.validate import ValidationError

PORTS = {"up1": 1, "up2": 2, "ta1": 3, "bwa": 4, "bwb": 5, "tb1": 6, "fwa": 7, "fwb": 8,
         "lba": 9, "lbb": 10, "ta2": 11}
NAMES = {no: name for name, no in PORTS.items()}
CLIENT, SERVER_A, SERVER_B, SPORT = "198.51.100.10", "10.20.0.10", "10.30.0.10", 40000
ROUTER_MAC = {"up1": "02:00:00:00:01:01", "up2": "02:00:00:00:02:01", "ta1": "02:00:00:00:20:01",
              "tb1": "02:00:00:00:30:01"}
GATEWAY = {"up1": "02:00:00:00:01:02", "up2": "02:00:00:00:02:02"}
SYN, ACK, SYN_ACK = 0x02, 0x10, 0x12


def tenants_doc() -> dict:
    return yaml.safe_load(resources.files("ryu_si").joinpath("examples/tenants.yaml").read_text())


class Edge:
    def __init__(self, svc: Service) -> None:
        self.svc, self.dp = svc, Datapath()
        self.dp.load(1, svc.pipeline(1, PORTS))

    def send(self, port: str, headers: dict) -> Result:
        return self.dp.send(1, PORTS[port], headers)

    def leaves(self, result: Result) -> str:
        assert len(result.outputs) == 1 and not result.packet_ins, result.describe(NAMES)
        return NAMES[result.outputs[0].port]

    def through_biw(self, result: Result, a: str, b: str) -> Result:
        """The node bridges the frame to its other side."""
        out = self.leaves(result)
        assert out in (a, b), result.describe(NAMES)
        return self.send(b if out == a else a, result.outputs[0].headers)

    def zones(self) -> dict[int, int]:
        """zone -> records in it."""
        out: dict[int, int] = {}
        for e in self.dp.conntrack.entries():
            out[e.zone] = out.get(e.zone, 0) + 1
        return out


@pytest.fixture
def edge(tmp_path) -> Edge:
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    svc.replace_config(tenants_doc())
    return Edge(svc)


def from_client(on: str, dst: str, dport: int, flags: int) -> dict:
    return ipv4(CLIENT, dst, sport=SPORT, dport=dport, eth_src=GATEWAY[on],
                eth_dst=ROUTER_MAC[on], tcp_flags=flags)


def from_server_a(dport: int, flags: int) -> dict:
    return ipv4(SERVER_A, CLIENT, sport=dport, dport=SPORT, eth_src="02:00:00:00:20:0a",
                eth_dst=ROUTER_MAC["ta1"], tcp_flags=flags)


def zone_of(svc: Service, name: str) -> int:
    return svc.find("routers", name).ct_zone


def test_each_tier_classifies_with_its_own_rules_in_its_own_zone(edge):
    """Outside -> tenant A's server, port 80: the t0's IDS at the uplink, then tenant A's
    firewall at tenant A's uplink (the link); one record in each router's zone; the reply
    reuses both, in the reverse order, and leaves by the uplink."""
    svc = edge.svc
    first = edge.send("up1", from_client("up1", SERVER_A, 80, SYN))
    at_t1 = edge.through_biw(first, "bwa", "bwb")                 # the provider's IDS
    assert "cross" in at_t1.tables(), at_t1.describe(NAMES)
    served = edge.through_biw(at_t1, "fwa", "fwb")                # tenant A's firewall
    assert edge.leaves(served) == "ta1"
    out = served.outputs[0].headers
    assert (out["ipv4_dst"], out["nw_ttl"]) == (SERVER_A, 62)     # two router hops
    assert edge.zones() == {zone_of(svc, "t0"): 1, zone_of(svc, "tenant-a"): 1}
    reply = edge.send("ta1", from_server_a(80, SYN_ACK))
    back_at_t0 = edge.through_biw(reply, "fwa", "fwb")
    assert edge.leaves(back_at_t0) in ("bwa", "bwb")
    home = edge.through_biw(back_at_t0, "bwa", "bwb")
    assert edge.leaves(home) == "up1" and home.outputs[0].headers["ipv4_dst"] == CLIENT
    assert edge.zones() == {zone_of(svc, "t0"): 1, zone_of(svc, "tenant-a"): 1}


def test_an_ecmp_move_at_the_t0_keeps_both_decisions(edge):
    """The client's next packet arrives on uplink2: the t0's record is reused (claim 1:
    its rule is applied there too), the tenant's is untouched: still its firewall."""
    first = edge.send("up1", from_client("up1", SERVER_A, 80, SYN))
    edge.through_biw(edge.through_biw(first, "bwa", "bwb"), "fwa", "fwb")
    records = {e.zone: (e.mark, e.label) for e in edge.dp.conntrack.entries()}
    moved = edge.send("up2", from_client("up2", SERVER_A, 80, ACK))
    assert "classify" not in moved.tables()                       # reused at the t0
    at_t1 = edge.through_biw(moved, "bwa", "bwb")
    assert edge.leaves(edge.through_biw(at_t1, "fwa", "fwb")) == "ta1"
    assert {e.zone: (e.mark, e.label) for e in edge.dp.conntrack.entries()} == records


def test_a_tenant_rule_holds_at_its_uplink_only(edge):
    """Telnet: the t0 routes it (no rule of its own), tenant B drops it at its uplink;
    tenant A has no such rule and delivers it."""
    to_b = edge.send("up1", from_client("up1", SERVER_B, 23, SYN))
    assert to_b.dropped and "cross" in to_b.tables(), to_b.describe(NAMES)
    to_a = edge.send("up1", from_client("up1", SERVER_A, 23, SYN))
    assert edge.leaves(to_a) == "ta1"


def test_tenants_reach_each_other_through_the_t0(edge):
    """Tenant A's server to tenant B's: out of A by its uplink, across the t0, into B
    by B's uplink, where B's rules apply (telnet dropped, anything else delivered)."""
    ok = edge.send("ta1", ipv4(SERVER_A, SERVER_B, sport=SPORT, dport=8081,
                               eth_src="02:00:00:00:20:0a", eth_dst=ROUTER_MAC["ta1"],
                               tcp_flags=SYN))
    assert edge.leaves(ok) == "tb1" and ok.outputs[0].headers["nw_ttl"] == 61
    telnet = edge.send("ta1", ipv4(SERVER_A, SERVER_B, sport=SPORT + 1, dport=23,
                                   eth_src="02:00:00:00:20:0a", eth_dst=ROUTER_MAC["ta1"],
                                   tcp_flags=SYN))
    assert telnet.dropped


def test_the_t0_derives_routes_to_the_tenants_and_they_default_to_the_t0(edge):
    """The t0 reaches each tenant's downlink prefix over the link to it; each tenant
    sends everything else (0.0.0.0/0, no ipv4_dst match) to the t0."""
    links = {edge.svc.find("interfaces", n).num: n
             for n in ("t0-to-a", "t0-to-b", "a-uplink", "b-uplink")}
    got = set()
    for f in edge.svc.pipeline(1, PORTS).table("routing"):
        for a in f.actions:
            if isinstance(a, Load) and a == Load.field(L.EGRESS_IFACE, a.value) \
                    and a.value in links:
                got.add((links[a.value], {k: (v, m) for k, v, m in f.match}.get("ipv4_dst")))
    mask = "255.255.255.0"
    assert got == {("t0-to-a", ("10.20.0.0", mask)), ("t0-to-a", ("10.21.0.0", mask)),
                   ("t0-to-b", ("10.30.0.0", mask)), ("a-uplink", None), ("b-uplink", None)}


@pytest.mark.parametrize("change, field", [
    (lambda d: d["interfaces"][-2].update(peer="t0-to-a"), "peer"),       # taken by tenant-a
    (lambda d: d["interfaces"][-2].update(peer="uplink1"), "peer"),       # not a link
    (lambda d: d["interfaces"][-2].update(port="x"), "port"),             # a link has none
    (lambda d: d["interfaces"][-2].pop("peer"), "peer"),                  # a t1's end names it
    (lambda d: d["interfaces"][5].update(peer="a-uplink"), "peer"),       # on the t0's end
    (lambda d: d["routers"][2].update(dpid=3), "peer"),                   # another bridge
    (lambda d: d["routers"][2].update(parent="tenant-a"), "parent"),      # t1 under a t1
    (lambda d: d["routers"][0].update(parent="tenant-a"), "parent"),      # a t0 with a parent
])
def test_links_that_cannot_work_are_refused_naming_the_field(tmp_path, change, field):
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    doc = tenants_doc()
    change(doc)
    with pytest.raises(ValidationError) as e:
        svc.replace_config(doc)
    assert e.value.field.rsplit(".", 1)[-1] == field and 400 <= e.value.status < 500


def test_a_router_with_a_link_or_children_cannot_be_deleted(edge):
    svc = edge.svc
    before = svc.model.copy()
    for kind, name in (("routers", "t0"), ("interfaces", "t0-to-a")):
        with pytest.raises(ValidationError) as e:
            svc.delete(kind, name)
        assert e.value.status == 409
    assert svc.model.objects == before.objects


def test_a_rule_redirects_only_to_what_its_router_reaches(tmp_path):
    """Tenant B pointing at tenant A's firewall, or at a chain of a service plane it is not
    attached to: refused (422, naming the policy), nothing stored."""
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    svc.replace_config(tenants_doc())
    before = svc.model.copy()
    for extra in ({"policies": [{"name": "deep", "chain": "x"}],
                   "chains": [{"name": "x", "profiles": ["dpi"], "plane": "provider"}]}, {}):
        doc = tenants_doc()
        for kind, items in extra.items():
            doc.setdefault(kind, []).extend(items)
        policy = "deep" if extra else "tenant-a-fw"
        doc["rules"].append({"name": "b-steal", "router": "tenant-b", "priority": 50,
                             "action": "redirect", "policy": policy,
                             "match": {"ip_proto": "tcp"}, "applied_to": ["b-uplink"]})
        with pytest.raises(ValidationError) as e:
            svc.replace_config(doc)
        assert (e.value.field.rsplit(".", 1)[-1], e.value.status) == ("policy", 422)
    assert svc.model.objects == before.objects


def test_outside_to_tenant_b_uses_the_t0s_ids_and_comes_back_to_tenant_b(edge):
    """FIG. 31: tenant B's rule sends port 8080 to the t0's IDS; the frame carries tenant
    B's interface in its source MAC, so what the node hands back is routed on by tenant B
    (not the t0, whose route would send it into tenant B again), both ways."""
    svc = edge.svc
    first = edge.send("up1", from_client("up1", SERVER_B, 8080, SYN))
    assert edge.leaves(first) == "bwa", first.describe(NAMES)
    b_up = svc.find("interfaces", "b-uplink").num
    assert first.outputs[0].headers["eth_src"] == L.service_tag_mac(False, b_up)
    home = edge.through_biw(first, "bwa", "bwb")
    assert edge.leaves(home) == "tb1" and "cross" not in home.tables()
    reply = edge.send("tb1", ipv4(SERVER_B, CLIENT, sport=8080, dport=SPORT,
                                  eth_src="02:00:00:00:30:0a", eth_dst=ROUTER_MAC["tb1"],
                                  tcp_flags=SYN_ACK))
    assert edge.leaves(reply) == "bwb"
    assert reply.outputs[0].headers["eth_src"] == L.service_tag_mac(True, b_up)
    out = edge.through_biw(reply, "bwa", "bwb")
    assert edge.leaves(out) == "up1" and out.outputs[0].headers["ipv4_dst"] == CLIENT
    assert edge.zones() == {zone_of(svc, "t0"): 1, zone_of(svc, "tenant-b"): 1}


def test_tenant_a_to_tenant_b_uses_the_t0s_ids_at_tenant_bs_uplink(edge):
    """FIG. 30: from tenant A's server, across the t0, classified at tenant B's uplink,
    through the t0's IDS, delivered by tenant B."""
    syn = edge.send("ta1", ipv4(SERVER_A, SERVER_B, sport=SPORT, dport=8080,
                                eth_src="02:00:00:00:20:0a", eth_dst=ROUTER_MAC["ta1"],
                                tcp_flags=SYN))
    assert edge.leaves(syn) == "bwa", syn.describe(NAMES)
    home = edge.through_biw(syn, "bwa", "bwb")
    assert edge.leaves(home) == "tb1" and home.outputs[0].headers["ipv4_src"] == SERVER_A


def test_a_tenant_rule_may_use_a_chain_of_its_parents_service_plane(tmp_path):
    """A t1 without a service plane of its own redirects to its parent's chain: NSH with
    C2 naming the t1's uplink, and the end of the path hands the packet to the t1."""
    from tests.unit.test_end_to_end import PLANE_PORTS, walk_chain
    doc = yaml.safe_load(resources.files("ryu_si").joinpath(
        "examples/three_transports.yaml").read_text())
    doc["routers"].append({"name": "t1", "tier": "t1", "parent": "edge", "dpid": 1})
    doc["interfaces"] += [
        {"name": "e-t1", "router": "edge", "role": "router_link", "mac": "02:00:00:00:70:01"},
        {"name": "t1-up", "router": "t1", "role": "router_link", "peer": "e-t1",
         "mac": "02:00:00:00:71:01"},
        {"name": "t1-down", "router": "t1", "port": "t1d", "role": "downlink",
         "ip": "10.40.0.1/24", "mac": "02:00:00:00:72:01"}]
    doc["neighbors"].append({"name": "t1-srv", "ip": "10.40.0.10", "mac": "02:00:00:00:72:0a",
                             "interface": "t1-down"})
    doc["rules"].append({"name": "t1-deep", "router": "t1", "priority": 100,
                         "action": "redirect", "policy": "deep",
                         "match": {"ip_proto": "tcp", "tp_dst": 5300}, "applied_to": ["t1-up"]})
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    svc.replace_config(doc)
    ports = {"up1": 1, "up2": 2, "down1": 3, "bwa": 4, "bwb": 5, "svc": 6, "vti1": 7,
             "vti2": 8, "bw2a": 9, "bw2b": 10, "t1d": 11}
    names = {no: name for name, no in ports.items()}

    class _Edge:
        dp = Datapath()

    e = _Edge()
    e.dp.load(1, svc.pipeline(1, ports))
    e.dp.load(2, svc.pipeline(2, PLANE_PORTS))
    out = e.dp.send(1, 1, ipv4(CLIENT, "10.40.0.10", sport=SPORT, dport=5300,
                               eth_src=GATEWAY["up1"], eth_dst=ROUTER_MAC["up1"], tcp_flags=SYN))
    (sent,) = out.outputs
    assert names[sent.port] == "svc" and sent.headers["nsh_c2"] == svc.find(
        "interfaces", "t1-up").num, out.describe(names)
    _hops, back = walk_chain(e, sent)
    home = e.dp.send(1, 6, back.headers, back.inner)
    assert [names[o.port] for o in home.outputs] == ["t1d"], home.describe(names)
    assert "resume" in home.tables()


VIP, POOL_2 = "10.20.0.100", "10.21.0.10"


def test_a_load_balancer_at_a_vip_gets_the_servers_replies_back(edge):
    """FIG. 32: tenant A's lb (a biw node that NATs) rewrites the VIP to a pool server;
    the router records the rewritten connection as it comes back, so the server's reply
    (from its own address) goes back into lb, which restores the VIP: the client only
    sees the VIP.  The reply is then checked where it entered tenant A (its uplink)."""
    svc = edge.svc
    syn = edge.send("up1", from_client("up1", VIP, 8443, SYN))
    assert edge.leaves(syn) == "lba", syn.describe(NAMES)
    dnat = {**syn.outputs[0].headers, "ipv4_dst": POOL_2}
    to_server = edge.send("lbb", dnat)
    assert edge.leaves(to_server) == "ta2" and "nat_leg" in to_server.tables()
    reply = edge.send("ta2", ipv4(POOL_2, CLIENT, sport=8443, dport=SPORT,
                                  eth_src="02:00:00:00:21:0a", eth_dst="02:00:00:00:21:01",
                                  tcp_flags=SYN_ACK))
    assert edge.leaves(reply) == "lbb", reply.describe(NAMES)
    uplink = svc.find("interfaces", "a-uplink")
    assert reply.outputs[0].headers["eth_src"] == L.mac_text(
        int(L.NAT_RETURN_MAC.replace(":", ""), 16) | uplink.num)
    undone = {**reply.outputs[0].headers, "ipv4_src": VIP}
    home = edge.send("lba", undone)
    assert edge.leaves(home) == "up1", home.describe(NAMES)
    assert home.outputs[0].headers["ipv4_src"] == VIP and "nat_back" in home.tables()
    zones = edge.zones()
    assert zones[zone_of(svc, "tenant-a")] == 2        # the client's record and the lb's leg
    assert zones[zone_of(svc, "t0")] == 1


def test_a_nat_node_of_the_parent_is_not_a_tenants_service(tmp_path):
    """What a parent's biw node hands back to a child carries no record of a rewritten
    tuple: a NAT node serves its own router only (422)."""
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    doc = tenants_doc()
    next(n for n in doc["service-nodes"] if n["name"] == "ids")["nat"] = True
    with pytest.raises(ValidationError) as e:
        svc.replace_config(doc)
    assert (e.value.field.rsplit(".", 1)[-1], e.value.status) == ("policy", 422)


def test_a_trace_lists_each_tiers_classification(edge):
    """The trace of telnet from outside to tenant B crosses the t0 (no rule of its own:
    the default, allowed) into tenant B, whose rule drops it at its uplink; the one to
    tenant A on port 9001 is allowed by the t0 and redirected by tenant A."""
    svc = edge.svc
    up1 = svc.find("interfaces", "uplink1").id
    telnet = trace(svc, up1, FiveTuple(6, CLIENT, SERVER_B, SPORT, 23))
    assert [(t["router"], t["classified_at"], t["rule"]["name"], t["outcome"])
            for t in telnet["tiers"]] == [("t0", "uplink1", "default", "allow"),
                                          ("tenant-b", "b-uplink", "b-no-telnet", "drop")]
    assert telnet["egress"] is None
    scrub = trace(svc, up1, FiveTuple(6, CLIENT, SERVER_A, SPORT, 9001))
    assert [(t["router"], t["rule"]["name"], t["outcome"]) for t in scrub["tiers"]] == [
        ("t0", "default", "allow"), ("tenant-a", "a-scrub-9001", "redirect")]


CLIENT6, SERVER_A6 = "2001:db8:5100::10", "2001:db8:20::10"


@pytest.fixture
def dual_edge(tmp_path) -> Edge:
    """The tenants' edge with IPv6 on the t0's uplink and tenant A's downlink."""
    doc = tenants_doc()
    ipv6 = {"uplink1": "2001:db8:1::1/64", "a-down": "2001:db8:20::1/64"}
    for i in doc["interfaces"]:
        if i["name"] in ipv6:
            i["ipv6"] = ipv6[i["name"]]
    doc["routes"].append({"name": "clients6", "router": "t0", "prefix": "2001:db8:5100::/64",
                          "next_hop": "2001:db8:1::2", "interface": "uplink1"})
    doc["neighbors"] += [
        {"name": "ext-up1-6", "ip": "2001:db8:1::2", "mac": GATEWAY["up1"], "interface": "uplink1"},
        {"name": "tsa6", "ip": SERVER_A6, "mac": "02:00:00:00:20:0a", "interface": "a-down"}]
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    svc.replace_config(doc)
    return Edge(svc)


def test_ipv6_crosses_the_tiers_with_both_routers_rules_and_zones(dual_edge):
    """The IPv6 image of the first tier test: the t0 reaches tenant A's IPv6 prefix over
    the link (a derived route), tenant A sends IPv6 back to the t0 by its derived ::/0;
    both routers' redirect rules (family-less, port 80) service it, each in its zone."""
    edge, svc = dual_edge, dual_edge.svc
    first = edge.send("up1", ipv4(CLIENT6, SERVER_A6, sport=SPORT, dport=80,
                                  eth_src=GATEWAY["up1"], eth_dst=ROUTER_MAC["up1"],
                                  tcp_flags=SYN))
    served = edge.through_biw(edge.through_biw(first, "bwa", "bwb"), "fwa", "fwb")
    assert edge.leaves(served) == "ta1"
    out = served.outputs[0].headers
    assert (out["ipv6_dst"], out["nw_ttl"]) == (SERVER_A6, 62)    # two router hops
    assert edge.zones() == {zone_of(svc, "t0"): 1, zone_of(svc, "tenant-a"): 1}
    reply = edge.send("ta1", ipv4(SERVER_A6, CLIENT6, sport=80, dport=SPORT,
                                  eth_src="02:00:00:00:20:0a", eth_dst=ROUTER_MAC["ta1"],
                                  tcp_flags=SYN_ACK))
    home = edge.through_biw(edge.through_biw(reply, "fwa", "fwb"), "bwa", "bwb")
    assert edge.leaves(home) == "up1"
    assert home.outputs[0].headers["ipv6_dst"] == CLIENT6
    assert edge.zones() == {zone_of(svc, "t0"): 1, zone_of(svc, "tenant-a"): 1}
