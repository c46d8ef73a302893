"""Reading ofproto/trace output and comparing it with the interpreter's trace.

The texts in ``data/`` are real ``ovs-appctl ofproto/trace`` answers of the demo
edge (OVS 3.1, userspace datapath) for the packets below; the live comparison runs
in tests/integration/test_trace_live.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from ryu_si.diagnose import ofproto_trace as ot
from ryu_si.diagnose.trace import FiveTuple, trace
from tests.unit.conftest import DEMO_PORTS

DATA = Path(__file__).parent / "data"
CLIENT, SERVER = "198.51.100.10", "10.10.0.10"
CLIENT6, SERVER6 = "2001:db8:5100::10", "2001:db8:10::10"
CASES = {   # capture -> (interface the packet enters on, packet, egress OVS port)
    "redirect_up1_tcp80": ("uplink1", FiveTuple(6, CLIENT, SERVER, 40000, 80), "bwa"),
    "drop_up2_tcp23": ("uplink2", FiveTuple(6, CLIENT, SERVER, 40000, 23), None),
    "allow_down1_reply": ("downlink1", FiveTuple(6, SERVER, CLIENT, 80, 40000), "up1"),
    "redirect_up1_tcp6_80": ("uplink1", FiveTuple(6, CLIENT6, SERVER6, 40000, 80), "bwa"),
    # the gateway's IPv6 neighbour not learned yet: the controller is asked
    "miss_down1_tcp6_reply": ("downlink1", FiveTuple(6, SERVER6, CLIENT6, 80, 40000), None),
}


def reading(name: str) -> ot.Reading:
    return ot.read((DATA / f"ofproto_trace_{name}.txt").read_text())


def model_trace(service, name: str):
    iface, packet, _ = CASES[name]
    return trace(service, service.find("interfaces", iface).id, packet)


def test_read_names_tables_rules_and_passes():
    r = reading("redirect_up1_tcp80")
    assert [v.table for v in r.visits] == ["ingress", "ct", "ct_result", "orient", "dst_named",
                                          "classify",
                                          "reorient", "keep_decision", "policy"]
    assert ot.classified_rule(r) == 3 and ot.policy_hit(r) == 1
    assert len(r.datapath_actions) == 2 and r.datapath_actions[0].startswith("ct(zone=1)")
    allow = reading("allow_down1_reply")
    assert ot.classified_rule(allow) == 0           # the router's default rule
    assert allow.outputs == [DEMO_PORTS["up1"]]
    assert reading("drop_up2_tcp23").datapath_actions[-1] == "drop"
    assert ot.stops_at_select(r) and not ot.stops_at_select(allow)


def test_ipv6_walks_are_read_like_ipv4_ones():
    web = reading("redirect_up1_tcp6_80")
    assert [v.table for v in web.visits] == [v.table for v in reading("redirect_up1_tcp80").visits]
    assert ot.classified_rule(web) == 3 and ot.policy_hit(web) == 1 and ot.stops_at_select(web)
    miss = reading("miss_down1_tcp6_reply")
    assert [v.table for v in miss.visits] == ["ingress", "routing", "neighbor"]
    assert miss.outputs == [] and miss.datapath_actions[-1].startswith("userspace(")


def test_misses_and_skipped_outputs_are_read():
    text = """ 0. ip,in_port=1, priority 90, cookie 0x5103000004a9ad66
    resubmit(,5)
     5. No match.
            drop
    output:1
     >> skipping output to input port
    output:2
Datapath actions: 2"""
    r = ot.read(text)
    assert [(v.table, v.priority) for v in r.visits] == [("ingress", 90), (ot.TABLE_NAMES[5], None)]
    assert r.outputs == [2]


@pytest.mark.parametrize("name", CASES)
def test_the_switch_agrees_with_the_interpreter(service, name):
    assert ot.compare(model_trace(service, name), reading(name), DEMO_PORTS,
                      CASES[name][2]) == []


def test_a_different_rule_or_outcome_is_a_disagreement(service):
    web = model_trace(service, "redirect_up1_tcp80")
    found = ot.compare(web, reading("drop_up2_tcp23"), DEMO_PORTS, "bwa")
    assert "rule: interpreter 3, switch 2" in found
    assert any(d.startswith("tables: interpreter ingress > ct") for d in found)
    assert "output: interpreter bwa, switch OpenFlow ports []" in found
    allow = model_trace(service, "allow_down1_reply")
    found = ot.compare(allow, reading("allow_down1_reply"), DEMO_PORTS, "up2")
    assert found == [f"output: interpreter up2, switch OpenFlow ports [{DEMO_PORTS['up1']}]"]


def test_confirm_reports_what_the_switch_did(service, monkeypatch):
    text = (DATA / "ofproto_trace_drop_up2_tcp23.txt").read_text()
    monkeypatch.setattr(ot, "run", lambda bridge, flow, states: text)
    monkeypatch.setattr(ot.shutil, "which", lambda _: "/usr/bin/ovs-appctl")
    got = ot.confirm(model_trace(service, "drop_up2_tcp23"), "edge", DEMO_PORTS, None)
    assert got["agrees"] and got["rule_num"] == 2 and got["error"] is None
    assert got["command"].startswith("ovs-appctl ofproto/trace edge 'tcp,in_port=up2,")
    assert got["tables"][-1] == "transport" and got["datapath_actions"][-1] == "drop"


def test_confirm_without_a_local_bridge_says_why(service):
    got = ot.confirm(model_trace(service, "drop_up2_tcp23"), None, DEMO_PORTS, None)
    assert not got["agrees"] and "not a bridge on this host" in got["error"]


def test_each_conntrack_pass_is_resumed_with_the_state_the_interpreter_saw():
    """A transit packet is looked up again after its connection was committed: the
    switch's trace must resume that pass established, as the datapath would."""
    walk = ["   2. ct: eth_type=0x800, priority 10, pipeline",
            "      -> ct zone 1: +trk+new, tracked copy resumes in pass 1; this packet goes on",
            "      -> ct commit zone 1: +trk+new, tracked copy resumes in pass 2; this packet",
            "      -> ct zone 1: +trk+est, tracked copy resumes in pass 3; this packet goes on",
            "      -> ct zone 3: +trk+est+rpl; this packet goes on untracked"]
    assert ot.ct_next(walk) == ["trk,new", "trk,new", "trk,est"]
    assert ot.ct_next([]) == ["trk,new"]


def test_the_comparison_ends_where_the_switch_would_need_its_own_record():
    transit = ["ingress", "ct", "ct_result", "orient", "classify", "commit", "gen_check",
               "transport", "routing", "egress_si", "ct_result", "applied_to", "class_check"]
    assert ot.record_blind_at(transit) == 10
    assert ot.record_blind_at(["ingress", "ct", "ct_result", "orient", "commit",
                               "transport", "output"]) is None
