"""ovs-ofctl text of neutral flows and groups: golden strings, one per construct."""
from __future__ import annotations

import pytest

from openflow_tables import layout as L
from openflow_tables.flow import (
    Bucket,
    Conjunction,
    Controller,
    Ct,
    DecTtl,
    Flow,
    Group,
    GroupAction,
    Load,
    Move,
    Output,
    Resubmit,
    SetField,
    fields,
    flow,
    match,
)
from openflow_tables.ofctl_render import (
    ct_state_flags,
    render_action,
    render_flow,
    render_group,
    subfield,
)

PIPE = L.PIPELINE_COOKIE
T = L.table_id


@pytest.mark.parametrize("value, mask, text", [
    (0x22, 0x22, "+trk+est"),
    (0x20, 0x30, "+trk-inv"),
    (0x00, 0x08, "-rpl"),
    (0x21, 0x2B, "+trk+new-est-rpl"),
    (0x20, None, "+trk-new-est-rel-rpl-inv-snat-dnat"),
])
def test_ct_state_names_masked_bits_trk_first(value, mask, text):
    assert ct_state_flags(value, mask) == text


@pytest.mark.parametrize("field, ofs, nbits, text", [
    ("reg3", 0, 24, "NXM_NX_REG3[0..23]"),
    ("reg4", 0, 32, "NXM_NX_REG4[]"),
    ("ct_mark", 31, 1, "NXM_NX_CT_MARK[31]"),
    ("ct_label", 32, 32, "NXM_NX_CT_LABEL[32..63]"),
    ("ct_label", 0, 128, "NXM_NX_CT_LABEL[]"),
    ("metadata", 0, 16, "OXM_OF_METADATA[0..15]"),
    ("xxreg1", 0, 128, "NXM_NX_XXREG1[]"),
    ("eth_src", 0, 48, "NXM_OF_ETH_SRC[]"),
    ("arp_spa", 0, 32, "NXM_OF_ARP_SPA[]"),
    ("ipv4_dst", 0, 32, "NXM_OF_IP_DST[]"),
])
def test_subfields_use_the_names_ovs_ofctl_reads(field, ofs, nbits, text):
    assert subfield(field, ofs, nbits) == text


@pytest.mark.parametrize("field, ofs, nbits", [("reg3", 16, 24), ("ct_mark", 0, 0),
                                               ("tcp_dst", 8, 16), ("vlan_vid", 0, 12)])
def test_subfield_refuses_bits_outside_the_field(field, ofs, nbits):
    with pytest.raises(ValueError):
        subfield(field, ofs, nbits)


@pytest.mark.parametrize("action, text", [
    (Load.field(L.RULE_NUM, 7), "load:0x7->NXM_NX_REG3[0..23]"),
    (Load("ct_mark", 1, 31, 1), "load:0x1->NXM_NX_CT_MARK[31]"),
    (Load.field(L.ROUTER, 2), "load:0x2->OXM_OF_METADATA[0..15]"),
    (SetField("eth_src", "02:00:00:00:01:01"), "set_field:02:00:00:00:01:01->eth_src"),
    (SetField("arp_op", 2), "set_field:2->arp_op"),
    (SetField("ipv4_dst", "10.0.0.1"), "set_field:10.0.0.1->nw_dst"),
    (SetField("nsh_spi", 0x11), "set_field:0x11->nsh_spi"),
    (Move("ct_label", "xxreg1", 0, 0, 128), "move:NXM_NX_CT_LABEL[]->NXM_NX_XXREG1[]"),
    (Move("reg7", "ct_label", 0, 96, 32), "move:NXM_NX_REG7[]->NXM_NX_CT_LABEL[96..127]"),
    (Move("tcp_src", "reg11", 0, 0, 16), "move:NXM_OF_TCP_SRC[]->NXM_NX_REG11[0..15]"),
    (Output(3), "output:3"),
    (Output("in_port"), "IN_PORT"),
    (GroupAction(4), "group:4"),
    (Resubmit("commit"), f"resubmit(,{T('commit')})"),
    (Conjunction(10, 1, 2), "conjunction(10,1/2)"),
    (DecTtl(), "dec_ttl"),
    (Controller(), "CONTROLLER:65535"),
    (Ct(False, L.CT_ZONE, "ct_result"), f"ct(zone=NXM_NX_REG8[0..15],table={T('ct_result')})"),
    (Ct(True, L.CT_ZONE, "gen_check", (Move("reg3", "ct_mark", 0, 0, 24),
                                        Load("ct_mark", 1, 31, 1))),
     (f"ct(commit,zone=NXM_NX_REG8[0..15],table={T('gen_check')},"
      "exec(move:NXM_NX_REG3[0..23]->NXM_NX_CT_MARK[0..23],load:0x1->NXM_NX_CT_MARK[31]))")),
])
def test_each_action(action, text):
    assert render_action(action) == text


def test_flow_with_masked_matches_and_goto():
    reg, value, mask = L.applied_to_slice(1, 1, 1, 1)
    f = flow("classify", 100,
             match(metadata=(1, 0xFFFF), eth_type=0x800, ip_proto=6,
                   ipv4_src=("10.0.0.0", "255.255.255.0"), ipv4_dst="192.0.2.7",
                   tcp_dst=(0x400, 0xFC00), **{reg: (value, mask)}),
             [Load.field(L.RULE_NUM, 7)], goto="reorient", cookie=L.cookie("rule", 7))
    assert render_flow(f) == (
        f"table={T('classify')},cookie=0x5106000007000000,priority=100,eth_type=0x800,"
        "ip_proto=6,nw_dst=192.0.2.7,nw_src=10.0.0.0/24,metadata=0x1/0xffff,reg13=0x2/0x2,"
        "tcp_dst=0x400/0xfc00 actions=load:0x7->NXM_NX_REG3[0..23],"
        f"goto_table:{T('reorient')}")


def test_conntrack_fields_and_128_bit_label():
    f = Flow("ct_result", 20, match(ct_state=(0x22, 0x22), ct_mark=(1 << 31, 1 << 31),
                                    ct_label=(1 << 100, 0xF << 100)), goto="applied_to",
             cookie=PIPE)   # label bits of no table's declaration: only the rendering counts
    assert render_flow(f) == (
        f"table={T('ct_result')},cookie=0x5101000000000000,priority=20,"
        "ct_label=0x10000000000000000000000000/"
        "0xf0000000000000000000000000,ct_mark=0x80000000/0x80000000,ct_state=+trk+est "
        f"actions=goto_table:{T('applied_to')}")


def test_arp_nsh_and_conj_id_fields():
    arp = flow("arp", 100, match(eth_type=0x806, arp_op=1, arp_tpa="10.0.1.1",
                                 **fields((L.IN_IFACE, 1))), [Output("in_port")], cookie=PIPE)
    nsh = Flow("transport", 40, match(eth_type=0x894F, nsh_mdtype=1, nsh_spi=0x10, nsh_si=255,
                                      nsh_c1=5), (Output(5),))
    conj = Flow("classify", 90, match(conj_id=7), (DecTtl(),))
    assert render_flow(arp) == ("table=1,cookie=0x5101000000000000,priority=100,arp_op=1,"
                                "arp_tpa=10.0.1.1,eth_type=0x806,reg0=0x1/0xffff actions=IN_PORT")
    assert render_flow(nsh) == (f"table={T('transport')},cookie=0x0,priority=40,"
                                "eth_type=0x894f,nsh_c1=0x5,"
                                "nsh_mdtype=1,nsh_si=255,nsh_spi=0x10 actions=output:5")
    assert render_flow(conj) == (f"table={T('classify')},cookie=0x0,priority=90,conj_id=7 "
                                 "actions=dec_ttl")


def test_no_actions_and_no_goto_is_drop_and_cookie_can_be_overridden():
    f = flow("ingress", 0, (), cookie=PIPE)
    assert render_flow(f) == "table=0,cookie=0x5101000000000000,priority=0 actions=drop"
    installed = render_flow(f, cookie=0x5101000000ABCDEF)
    assert installed.startswith("table=0,cookie=0x5101000000abcdef,")


def test_goto_alone():
    f = flow("applied_to", 0, (), goto="orient")
    assert render_flow(f) == (f"table={T('applied_to')},cookie=0x0,priority=0 "
                              f"actions=goto_table:{T('orient')}")


def test_select_group_shows_weights_all_group_does_not():
    to_commit = (Load.field(L.FWD_DATA, 3), Resubmit("commit"))
    C = T("commit")
    select = Group(1, "select", (Bucket(to_commit, 1), Bucket(to_commit, 3)))
    every = Group(2, "all", (Bucket((Output(3),)), Bucket(())))
    assert render_group(select) == (
        f"group_id=1,type=select,bucket=weight:1,actions=load:0x3->NXM_NX_REG6[],resubmit(,{C}),"
        f"bucket=weight:3,actions=load:0x3->NXM_NX_REG6[],resubmit(,{C})")
    assert render_group(every) == ("group_id=2,type=all,bucket=actions=output:3,"
                                   "bucket=actions=drop")

