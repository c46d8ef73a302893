"""Chains on the service plane, L3 nodes behind VTIs, biw — compiled without a switch."""
from __future__ import annotations

from importlib import resources

import pytest
import yaml

from openflow_tables import layout as L
from openflow_tables.flow import (Controller, Ct, Decap, EncapNsh, Load, Move, Output, Resubmit,
                                  SetField)
from ryu_si.control.service import Service
from ryu_si.control.store import Store
from si_model.validate import ValidationError
from tests.unit.conftest import compile_for

EDGE_PORTS = {"up1": 1, "up2": 2, "down1": 3, "bwa": 4, "bwb": 5, "svc": 6, "vti1": 7, "vti2": 8}
PLANE_PORTS = {"rtr": 1, "cn1a": 2, "cn1b": 3, "cn2a": 4, "cn2b": 5, "cn3a": 6, "cn3b": 7,
               "cn4a": 8, "cn4b": 9, "cn5": 10}


def three_transports() -> dict:
    text = resources.files("ryu_si").joinpath("examples/three_transports.yaml").read_text()
    return yaml.safe_load(text)


@pytest.fixture
def svc(tmp_path) -> Service:
    s = Service(Store(str(tmp_path / "si.sqlite")))
    s.replace_config(three_transports())
    return s


def _chain(svc, name):
    return svc.model.by_name("chains", name)


def _match(f) -> dict:
    return {k: v for k, v, _ in f.match}


def test_paths_cover_each_profile_and_prefer_one_host(svc):
    paths = svc.paths[_chain(svc, "fw-ids-dpi").id]
    assert paths and all(len(p.hops) == 3 for p in paths)
    names = [[svc.model.get("service-nodes", h).name for h in p.hops] for p in paths]
    assert names[0] == ["cn1", "cn2", "cn3"]          # all on h1: fewest host crossings
    assert all(p.reverse_hops == tuple(reversed(p.hops)) for p in paths)
    assert len({p.spi for p in paths} | {p.reverse_spi for p in paths}) == 2 * len(paths)


def test_chain_policy_is_a_select_group_over_paths(svc):
    pipe = compile_for(svc, EDGE_PORTS)
    deep = svc.model.by_name("policies", "deep")
    (grp,) = [g for g in pipe.groups if g.group_id == deep.num]
    spis = {p.spi for p in svc.paths[_chain(svc, "fw-ids-dpi").id]}
    loaded = {a.value for b in grp.buckets for a in b.actions
              if getattr(a, "dst", "") == L.FWD_DATA.register}
    assert loaded == {(s << 8) | 255 for s in spis}


def test_router_encapsulates_once_per_direction_and_accepts_final_si(svc):
    pipe = compile_for(svc, EDGE_PORTS)
    chain_out = [f for f in pipe.table("transport") if any(isinstance(a, EncapNsh)
                                                             for a in f.actions)]
    assert len(chain_out) == 3 and all(f.actions[-1] == Output(6) for f in chain_out)
    codes = sorted((_match(f)[L.TRANSPORT.register] & L.TRANSPORT.mask, _match(f)["ct_state"])
                   for f in chain_out)
    assert codes == [(L.TRANSPORT_CHAIN, 0), (L.TRANSPORT_CHAIN, L.CT_RPL),
                     (L.TRANSPORT_NAT_LEG, L.CT_RPL)]       # a NAT leg's replies: reverse
    c2 = Move.field(L.SI_IFACE, L.NSH_IFACE.register, L.NSH_IFACE.ofs)
    assert all(c2 in f.actions for f in chain_out)          # C2: where it was classified
    back = [f for f in pipe.table("ingress")
            if _match(f).get("eth_type") == 0x894F and f.priority == 95]
    n_paths = sum(len(v) for v in svc.paths.values())
    assert len(back) == 2 * n_paths + len(svc.probe_spis)      # + one probe path per node
    c2 = Move.field(L.NSH_IFACE, L.IN_IFACE.register, L.IN_IFACE.ofs)
    for f in back:
        assert Decap() in f.actions
        if _match(f)["nsh_spi"] in svc.probe_spis.values():       # a probe: trapped here
            assert f.goto == "routing"
        else:                               # data: the router that classified it routes it
            assert f.actions[0] == c2 and f.actions[-1] == Resubmit("resume")
    deep = svc.paths[_chain(svc, "fw-ids-dpi").id][0]
    assert any(_match(f)["nsh_spi"] == deep.spi and _match(f)["nsh_si"] == 252 for f in back)


def test_service_plane_forwards_each_hop_and_proxies_plain_nodes(svc):
    """A plain node gets the frame on side A (forward) with its hop in the source MAC,
    and the frame it returns on side B gets NSH back with the next SI and C2."""
    pipe = compile_for(svc, PLANE_PORTS, dpid=2)
    path = svc.paths[_chain(svc, "fw-ids-dpi").id][0]
    fwd = {(_match(f)["nsh_spi"], _match(f)["nsh_si"]): f for f in pipe.table("sp_forward")
           if "nsh_spi" in _match(f)}
    back = {(_match(f)["in_port"], (v, mask)): f for f in pipe.table("ingress")
            for k, v, mask in f.match if k == "eth_src"}
    for k, node_id in enumerate(path.hops):
        node = svc.model.get("service-nodes", node_id)
        hop = fwd[(path.spi, 255 - k)]
        assert hop.goto == "sp_to_node" and Decap() in hop.actions
        assert Load.field(L.SP_PATH, path.spi) in hop.actions
        ret = back[(PLANE_PORTS[node.port_b], (L.proxy_mac(path.spi), L.PROXY_MAC_MASK))]
        assert SetField("nsh_si", 254 - k) in ret.actions and ret.actions[-1] == Resubmit(
            "sp_forward")
    assert fwd[(path.spi, 252)].goto == "sp_return"              # back to the router,
    assert [f.actions for f in pipe.table("sp_return")] == [(Output(1),)]   # its only link
    assert len(pipe.table("sp_to_node")) == 2 * 4 * 2 + 1          # 4 plain nodes, 2 sides, 2 families
    assert not [f for f in pipe.table("ingress") if any(isinstance(a, Ct) for a in f.actions)]
    aware = svc.model.by_name("service-nodes", "cn5")
    aware_hops = [f for (spi, si), f in fwd.items() if f.actions == (Output(10),)]
    assert aware_hops, "the NSH-aware node gets NSH frames as they are"
    assert aware.nsh_aware


def test_router_switch_has_no_plane_flows_and_plane_has_no_router_flows(svc):
    edge = compile_for(svc, EDGE_PORTS)
    plane = compile_for(svc, PLANE_PORTS, dpid=2)
    assert not edge.table("sp_forward")
    assert not plane.table("classify") and not plane.groups


def test_l3_node_is_reached_by_routing_out_of_its_vti(svc):
    pipe = compile_for(svc, EDGE_PORTS)
    node = svc.model.by_name("service-nodes", "l3n")
    flows = [f for f in pipe.table("transport")
             if f.cookie in (L.cookie("node_forward", node.num), L.cookie("node_reverse", node.num))]
    vti = svc.model.by_name("interfaces", "vti-l3")
    assert len(flows) == 2     # one per direction, so /stats counts each
    assert all(f.goto == "neighbor" and f.actions[0].value == vti.num for f in flows)


def test_vti_toward_a_node_marks_serviced_and_vti_toward_a_network_classifies(svc):
    pipe = compile_for(svc, EDGE_PORTS)
    ip_in = {_match(f)["in_port"]: f for f in pipe.table("ingress")
             if _match(f).get("eth_type") == 0x0800}
    assert ip_in[7].goto == "routing" and any(getattr(a, "dst", "") == "reg1"
                                              for a in ip_in[7].actions)
    assert ip_in[8].goto == "ct"


def test_spis_are_stable_across_restart(tmp_path):
    path = str(tmp_path / "si.sqlite")
    a = Service(Store(path))
    a.replace_config(three_transports())
    before = {c: [(p.hops, p.spi, p.reverse_spi) for p in ps] for c, ps in a.paths.items()}
    a.store.close()
    b = Service(Store(path))
    assert {c: [(p.hops, p.spi, p.reverse_spi) for p in ps] for c, ps in b.paths.items()} == before


def test_path_admin_down_leaves_the_group(svc):
    chain = _chain(svc, "fw-only")
    first = svc.paths[chain.id][0]
    svc.set_path_admin_state(first.spi, "down")
    pipe = compile_for(svc, EDGE_PORTS)
    fw = svc.model.by_name("policies", "fw")
    (grp,) = [g for g in pipe.groups if g.group_id == fw.num]
    loaded = {a.value >> 8 for b in grp.buckets for a in b.actions
              if getattr(a, "dst", "") == L.FWD_DATA.register}
    assert first.spi not in loaded and loaded


def _compatible(a, b) -> bool:
    """Can one packet match both flows?  Fields present in both must agree where both care."""
    ma = {k: (v, m) for k, v, m in a.match}
    mb = {k: (v, m) for k, v, m in b.match}
    for k in ma.keys() & mb.keys():
        (va, xa), (vb, xb) = ma[k], mb[k]
        if isinstance(va, int) and isinstance(vb, int):
            both = (xa if xa is not None else -1) & (xb if xb is not None else -1)
            if (va ^ vb) & both:
                return False
        elif (va, xa) != (vb, xb):
            return False
    return True


@pytest.mark.parametrize("dpid,ports", [(1, EDGE_PORTS), (2, PLANE_PORTS)])
def test_no_two_flows_of_one_priority_overlap_with_different_actions(svc, dpid, ports):
    """OVS picks arbitrarily between overlapping flows of equal priority: never rely on it."""
    flows = compile_for(svc, ports, dpid=dpid).flows
    by_slot: dict = {}
    for f in flows:
        by_slot.setdefault((f.table, f.priority), []).append(f)
    for group in by_slot.values():
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if (a.actions, a.goto) != (b.actions, b.goto):
                    assert not _compatible(a, b), (a, b)


def test_a_reroute_is_one_flow_per_direction_that_reports_then_recommits(svc):
    """The instruction's flows say "carried out" with a zero-byte packet-in (flow counters
    can be credited with packets that never went through them), load the new path for
    both directions and commit it; once executed they leave the pipeline."""
    fw = next(p for p in svc.paths.values() for p in p if p.chain == _chain(svc, "fw-only").id)
    ins = svc.program({"ip_proto": "tcp", "ipv4_src": "198.51.100.10",
                       "ipv4_dst": "10.10.0.10", "tp_src": 40000, "tp_dst": 5202,
                       "action": "reroute", "spi": fw.spi})
    flows = [f for f in compile_for(svc, EDGE_PORTS).table("flow_program")
             if f.cookie == L.cookie("flow_program", ins.num)]
    assert sorted((_match(f)["ipv4_src"], _match(f)["tcp_src"]) for f in flows) == [
        ("10.10.0.10", 5202), ("198.51.100.10", 40000)]
    for f in flows:
        assert f.actions[0] == Controller(max_len=0)
        assert f.actions[-1] == Resubmit("commit")
        assert Load.field(L.FWD_DATA, fw.spi << 8 | 255) in f.actions
    svc.executed({ins.num})
    assert not [f for f in compile_for(svc, EDGE_PORTS).table("flow_program")
                if f.cookie == L.cookie("flow_program", ins.num)]


def _instruction(action: str, **extra) -> dict:
    return {"ip_proto": "tcp", "ipv4_src": "198.51.100.10", "ipv4_dst": "10.10.0.10",
            "tp_src": 40000, "tp_dst": 80, "action": action, **extra}


def test_a_reroute_to_a_node_loads_that_node_for_both_directions(svc):
    """FIG. 13's "change next hop" for a biw or L3 connection."""
    ins = svc.program(_instruction("reroute", node="l3n"))
    l3n = svc.find("service-nodes", "l3n")
    flows = [f for f in compile_for(svc, EDGE_PORTS).table("flow_program")
             if f.cookie == L.cookie("flow_program", ins.num)]
    assert len(flows) == 2
    for f in flows:
        assert Load.field(L.TRANSPORT, L.TRANSPORT_L3) in f.actions
        assert Load.field(L.FWD_DATA, l3n.num) in f.actions
        assert Load.field(L.REV_DATA, l3n.num) in f.actions
    svc.set_node_state(l3n.id, False)        # the node died before a packet came:
    flows = [f for f in compile_for(svc, EDGE_PORTS).table("flow_program")  # the record
             if f.cookie == L.cookie("flow_program", ins.num)]              # as it is
    assert all(f.goto == "revalidate" and len(f.actions) == 1 for f in flows)
    with pytest.raises(ValidationError) as e:            # and a new one is refused
        svc.program(_instruction("reroute", node="l3n", tp_src=40001))
    assert (e.value.field, e.value.status) == ("node", 409)


@pytest.mark.parametrize("body,field", [
    (_instruction("drop_message"), "action"),
    (_instruction("reroute"), "spi"),
    (_instruction("reroute", spi=1, node="l3n"), "spi"),
    (_instruction("accept", node="l3n"), "node"),
    (_instruction("reroute", node="cn1"), "node"),
    (_instruction("reroute", node="nosuch"), "node"),
    (_instruction("reroute", spi=999999), "spi")])
def test_a_bad_instruction_names_its_field_and_moves_no_generation(svc, body, field):
    gens = svc.generations
    with pytest.raises(ValidationError) as e:
        svc.program(body)
    assert e.value.field == field and svc.generations == gens and not svc.instructions


def test_a_failed_path_moves_its_connections_to_its_first_live_backup(svc):
    chain = _chain(svc, "fw-only")
    first, second = svc.paths[chain.id][:2]
    assert first.backups[0] == second.spi
    svc.set_node_state(first.hops[0], False)
    assert first.spi in svc.failed_paths
    reval = [f for f in compile_for(svc, EDGE_PORTS).table("revalidate")
             if f.cookie == L.cookie("path", first.spi)]
    assert len(reval) == 1
    assert Load.field(L.FWD_DATA, L.path_header(second.spi, L.NSH_FIRST_SI)) in reval[0].actions
    assert Load.field(L.REV_DATA, L.path_header(second.reverse_spi, L.NSH_FIRST_SI)) \
        in reval[0].actions
    svc.set_node_state(second.hops[0], False)     # the backup fails too: the policy again
    reval = [f for f in compile_for(svc, EDGE_PORTS).table("revalidate")
             if f.cookie == L.cookie("path", first.spi)]
    assert list(reval[0].actions) == [Resubmit("policy")]


def test_a_skip_moves_each_path_through_the_node_to_that_path_without_it(svc):
    """FIG. 13's "skip this node, keep the rest of the chain"."""
    chain = _chain(svc, "fw-ids-dpi")
    dpi = svc.find("service-nodes", "cn3")
    through = [p for p in svc.paths[chain.id] if dpi.id in p.hops]
    assert through
    ins = svc.program(_instruction("skip", node="cn3", tp_dst=5201))
    pipe = compile_for(svc, EDGE_PORTS)
    flows = [f for f in pipe.table("flow_program") if f.cookie == L.cookie("flow_program", ins.num)]
    assert len(flows) == 2 * len(through) + 2          # both directions, + nothing-to-skip
    for p in through:
        skip = svc.skips[(p.spi, frozenset({dpi.id}))]
        assert skip.hops == tuple(h for h in p.hops if h != dpi.id)
        assert skip.reverse_hops == tuple(h for h in p.reverse_hops if h != dpi.id)
        moved = [f for f in flows if Load.field(L.FWD_DATA, L.path_header(skip.spi, 255))
                 in f.actions]
        assert len(moved) == 2
        assert all(Load.field(L.REV_DATA, L.path_header(skip.reverse_spi, 255)) in f.actions
                   for f in moved)
    plane = compile_for(svc, PLANE_PORTS, dpid=2)
    forwarded = {(_match(f)["nsh_spi"], _match(f)["nsh_si"]) for f in plane.table("sp_forward")
                 if "nsh_spi" in _match(f)}
    for p in through:
        skip = svc.skips[(p.spi, frozenset({dpi.id}))]
        assert {(skip.spi, 255 - k) for k in range(len(skip.hops) + 1)} <= forwarded


def test_a_second_skip_takes_another_node_off_the_derived_path(svc):
    chain = _chain(svc, "fw-ids-dpi")
    ids, dpi = (svc.find("service-nodes", n).id for n in ("cn2", "cn3"))
    svc.program(_instruction("skip", node="cn3", tp_dst=5201))
    ins = svc.program(_instruction("skip", node="cn2", tp_dst=5201))
    flows = [f for f in compile_for(svc, EDGE_PORTS).table("flow_program")
             if f.cookie == L.cookie("flow_program", ins.num)]
    for p in (p for p in svc.paths[chain.id] if {ids, dpi} <= p.node_ids):
        once, twice = svc.skips[(p.spi, frozenset({dpi}))], svc.skips[(p.spi, frozenset({ids, dpi}))]
        assert twice.hops == tuple(h for h in p.hops if h not in (ids, dpi))
        moved = [f for f in flows if dict((k, v) for k, v, _ in f.match).get(L.FWD_SPI.register)
                 is not None and Load.field(L.FWD_DATA, L.path_header(twice.spi, 255)) in f.actions]
        spis = {(v >> L.FWD_SPI.ofs) & 0xFFFFFF for f in moved for k, v, _ in f.match
                if k == L.FWD_SPI.register}
        assert spis == {once.spi}                 # from the path that already skips cn3


def test_a_skip_path_outlives_its_path_while_its_own_nodes_live(svc):
    chain = _chain(svc, "fw-ids-dpi")
    ids = svc.find("service-nodes", "cn2").id
    svc.program(_instruction("skip", node="cn2", tp_dst=5201))
    derived = {k: v for k, v in svc.skips.items() if k[1] == frozenset({ids})}
    assert derived
    svc.set_node_state(ids, False)            # the skipped node fails: its paths go down
    assert all(svc.skips.get(k) == v for k, v in derived.items())
    assert not set(svc.failed_paths) & {v.spi for v in derived.values()}


def test_an_executed_skip_keeps_its_paths_across_a_restart(tmp_path):
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    svc.replace_config(three_transports())
    ins = svc.program(_instruction("skip", node="cn3", tp_dst=5201))
    svc.executed({ins.num})
    skips = dict(svc.skips)
    again = Service(Store(str(tmp_path / "si.sqlite")))
    assert skips and again.skips == skips


def test_a_path_taken_down_by_an_operator_drains_to_its_backup(svc):
    """Its flows leave the service plane, so its open connections must move (they would
    be lost in the plane): like a failed path, to a backup, with one generation bump."""
    first, second = svc.paths[_chain(svc, "fw-only").id][:2]
    gens = svc.generations
    svc.set_path_admin_state(first.spi, "down")
    assert svc.generations.spi_fail == gens.spi_fail + 1
    reval = [f for f in compile_for(svc, EDGE_PORTS).table("revalidate")
             if f.cookie == L.cookie("path", first.spi)]
    assert Load.field(L.FWD_DATA, L.path_header(second.spi, L.NSH_FIRST_SI)) in reval[0].actions
    svc.set_path_admin_state(first.spi, "up")
    assert first.spi not in svc.failed_paths


def test_a_path_a_change_removes_drains_to_its_backup(svc):
    chain = _chain(svc, "fw-only")
    first, second = svc.paths[chain.id][:2]
    gens = svc.generations
    svc.update("service-nodes", first.hops[0], {"admin_state": "down"})
    assert first.spi in svc.failed_paths and svc.generations.spi_fail == gens.spi_fail + 1
    assert svc.context(1, EDGE_PORTS).backup_of(first.spi).spi == second.spi
