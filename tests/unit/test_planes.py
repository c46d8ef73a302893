"""Service planes as objects (FIG. 26-27), in ryu_si/examples/tenants.yaml: the t0's own
plane, one it shares with tenant A, tenant B's own; the scrubber sn serves two planes.
Walked through both bridges by the interpreter: each tenant's packets travel on its own
plane's paths (the plane's number is the top byte of their SPIs, in the NSH header and
in the source MAC a proxied node sees), and the checks refuse what a plane does not
allow."""
from __future__ import annotations

import dataclasses

import pytest

from openflow_tables import layout as L
from openflow_tables.interpret import Datapath, Result, ipv4
from ryu_si.control.service import Service
from ryu_si.control.store import Store
from si_model import model as m
from si_model.paths import SpiTable, plane_of
from si_model.validate import ValidationError
from tests.unit.test_tiers import (CLIENT, GATEWAY, PORTS, ROUTER_MAC, SERVER_A, SERVER_B,
                                   SPORT, SYN, tenants_doc)

ROUTER_PORTS = {**PORTS, "svc": 12}
PLANE_PORTS = {"rtr": 1, "pna": 2, "pnb": 3, "sna": 4, "snb": 5}
PLANE_NAMES = {no: name for name, no in PLANE_PORTS.items()}
ROUTER_NAMES = {no: name for name, no in ROUTER_PORTS.items()}


class Edge:
    def __init__(self, svc: Service) -> None:
        self.svc, self.dp = svc, Datapath()
        self.dp.load(1, svc.pipeline(1, ROUTER_PORTS))
        self.dp.load(2, svc.pipeline(2, PLANE_PORTS))

    def plane(self, name: str) -> int:
        return self.svc.find("service-planes", name).num

    def through_plane(self, sent) -> tuple[list[tuple[str, int]], Result]:
        """Carry the NSH frame over the plane bridge, each proxied node bridging it to
        its other side; (node port, plane number in the source MAC it got) per hop, and
        what the router bridge does with the frame back."""
        seen = []
        result = self.dp.send(2, PLANE_PORTS["rtr"], sent.headers, sent.inner)
        for _ in range(4):
            (out,) = result.outputs
            name = PLANE_NAMES[out.port]
            if name == "rtr":
                return seen, self.dp.send(1, ROUTER_PORTS["svc"], out.headers, out.inner)
            seen.append((name, int(out.headers["eth_src"].split(":")[1], 16)))
            other = name[:-1] + ("b" if name.endswith("a") else "a")
            result = self.dp.send(2, PLANE_PORTS[other], out.headers)
        raise AssertionError(f"no way back after {seen}")


@pytest.fixture
def edge(tmp_path) -> Edge:
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    svc.replace_config(tenants_doc())
    return Edge(svc)


def client(dst: str, dport: int, sport: int = SPORT) -> dict:
    return ipv4(CLIENT, dst, sport=sport, dport=dport, eth_src=GATEWAY["up1"],
                eth_dst=ROUTER_MAC["up1"], tcp_flags=SYN)


def test_each_plane_numbers_its_own_paths(edge):
    """A chain's SPIs carry its plane's number; each plane counts from 1; the node that
    serves two planes is on a path of each, under two SPIs."""
    svc = edge.svc
    spis = {}
    for chain in svc.model.all("chains"):
        (path,) = svc.paths[chain.id]
        tag = edge.plane(svc.model.get("service-planes", chain.plane).name)
        assert plane_of(path.spi) == plane_of(path.reverse_spi) == tag
        spis[chain.name] = path
    assert {p.spi & 0xFFFF for p in spis.values()} == {1}
    assert spis["a-scrub"].hops == spis["b-scrub"].hops
    assert spis["a-scrub"].spi != spis["b-scrub"].spi


@pytest.mark.parametrize("dst, dport, plane, node", [
    (SERVER_A, 9001, "shared-a", "sn"),       # tenant A's rule, on the plane it shares
    (SERVER_B, 9002, "plane-b", "sn"),        # tenant B's, same node, its own plane
    (SERVER_A, 9000, "provider", "pn"),       # the t0's rule, on its own plane
])
def test_a_connection_travels_on_its_routers_plane_only(edge, dst, dport, plane, node):
    out = edge.dp.send(1, ROUTER_PORTS["up1"], client(dst, dport))
    (sent,) = out.outputs
    assert ROUTER_NAMES[sent.port] == "svc", out.describe(ROUTER_NAMES)
    assert plane_of(sent.nsh[0]) == edge.plane(plane)
    seen, home = edge.through_plane(sent)
    assert seen == [(f"{node}a", edge.plane(plane))]
    (delivered,) = home.outputs
    assert delivered.headers["ipv4_dst"] == dst and "resume" in home.tables()


def test_the_plane_bridge_hands_a_plane_only_to_its_nodes(edge):
    """Every hop flow of the plane bridge delivers an SPI's packets to a node serving that
    SPI's plane; the router takes back only the paths of planes its routers use."""
    model = edge.svc.model
    nodes = {n.num: n for n in model.all("service-nodes")}
    hops = [f for f in edge.svc.pipeline(2, PLANE_PORTS).table("sp_forward")
            if L.cookie_owner(f.cookie)[0] in L.NODE_DIRECTION_COOKIES.values()]
    assert len(hops) == 2 * 3
    for f in hops:
        spi = dict((k, v) for k, v, _ in f.match)["nsh_spi"]
        node = nodes[L.cookie_owner(f.cookie)[1]]
        assert plane_of(spi) in m.node_planes(model, node), (spi, node.name)


def test_two_routers_with_links_of_their_own_share_a_plane_bridge(tmp_path):
    """A second t0 on another router bridge links to the same plane bridge: a path's end
    goes back by the link of the router owning the interface C2 names."""
    doc = tenants_doc()
    doc["routers"].append({"name": "t0b", "tier": "t0", "dpid": 3, "service_plane_dpid": 2,
                           "service_plane_port": "rtr2"})
    doc["interfaces"] += [
        {"name": "b0-up", "router": "t0b", "port": "xup", "role": "uplink",
         "ip": "10.0.9.1/24", "mac": "02:00:00:00:09:01"},
        {"name": "b0-svc", "router": "t0b", "port": "xsvc", "role": "service",
         "service_plane": True, "mac": "02:00:00:00:09:5e"}]
    doc["service-planes"][0]["routers"].append("t0b")
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    svc.replace_config(doc)
    dp = Datapath()
    dp.load(2, svc.pipeline(2, {**PLANE_PORTS, "rtr2": 6}))
    (path,) = svc.paths[svc.find("chains", "provider-dpi").id]
    for iface, port in (("b0-up", 6), ("uplink1", 1)):
        c2 = svc.find("interfaces", iface).num
        back = dp.send(2, PLANE_PORTS["pnb"], ipv4(
            CLIENT, SERVER_A, sport=SPORT, dport=9000, eth_dst="02:00:5e:00:00:0b",
            eth_src=L.mac_text(int(L.proxy_mac(path.spi).replace(":", ""), 16) | c2)))
        assert [o.port for o in back.outputs] == [port], back.describe()


def test_spis_are_numbered_per_plane_and_survive_a_restart():
    table = SpiTable()
    assert [table.allocate("a"), table.allocate("b", 3), table.allocate("c", 3)] == [
        1, 3 << 16 | 1, 3 << 16 | 2]
    again = SpiTable.from_dict(table.to_dict())
    assert again.allocate("b", 3) == 3 << 16 | 1 and again.allocate("d", 3) == 3 << 16 | 3
    assert again.allocate("e") == 2


def _with(change) -> dict:
    doc = tenants_doc()
    change(doc)
    return doc


def _find(doc: dict, kind: str, name: str) -> dict:
    return next(o for o in doc[kind] if o["name"] == name)


@pytest.mark.parametrize("change, field, status", [
    # tenant B's rule on a chain of a plane it is not attached to
    (lambda d: _find(d, "rules", "b-scrub-9002").update(policy="a-scrubbed"), "policy", 422),
    (lambda d: _find(d, "service-planes", "plane-b").update(routers=["nobody"]), "routers",
     422),
    (lambda d: _find(d, "service-planes", "plane-b").update(routers=["tenant-b", "tenant-b"]),
     "routers", 400),
    (lambda d: _find(d, "service-nodes", "lb").update(planes=["plane-b"]), "planes", 400),
    (lambda d: _find(d, "chains", "b-scrub").update(plane="nowhere"), "plane", 422),
])
def test_what_a_plane_does_not_allow_is_refused_naming_the_field(tmp_path, change, field,
                                                                 status):
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    svc.replace_config(tenants_doc())
    before = svc.model.copy()
    with pytest.raises(ValidationError) as e:
        svc.replace_config(_with(change))
    assert (e.value.field.rsplit(".", 1)[-1], e.value.status) == (field, status)
    assert svc.model.objects == before.objects


def test_a_plane_in_use_cannot_be_deleted(edge):
    with pytest.raises(ValidationError) as e:
        edge.svc.delete("service-planes", "plane-b")
    assert e.value.status == 409
    assert dataclasses.asdict(edge.svc.find("service-planes", "plane-b"))["routers"]


def test_only_the_planes_of_its_routers_come_back_by_a_service_interface(tmp_path):
    """A plane no router behind t0-svc is attached to (its node pn shared with the
    provider plane): its paths exist on the plane bridge, and none comes back to t0."""
    doc = tenants_doc()
    doc["service-planes"].append({"name": "elsewhere", "routers": []})
    _find(doc, "service-nodes", "pn")["planes"].append("elsewhere")
    doc["chains"].append({"name": "far", "profiles": ["dpi"], "plane": "elsewhere"})
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    svc.replace_config(doc)
    far = svc.paths[svc.find("chains", "far").id][0].spi
    tags = {svc.find("service-planes", p).num for p in ("provider", "shared-a", "plane-b")}
    matches = [dict((k, v) for k, v, _ in f.match)
               for f in svc.pipeline(1, ROUTER_PORTS).table("ingress") if f.priority == 95]
    back = {mt["nsh_spi"] for mt in matches if mt.get("in_port") == 12}
    data = back - set(svc.probe_spis.values())
    assert {plane_of(s) for s in data} == tags and far not in back
    planes = {dict((k, v) for k, v, _ in f.match).get("nsh_spi")
              for f in svc.pipeline(2, PLANE_PORTS).table("sp_forward")}
    assert far in planes
