"""Diffing desired against installed flows, match keys and what Switch sends (no switch)."""
from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
from ryu.ofproto import nicira_ext, ofproto_parser, ofproto_v1_3
from ryu.ofproto import ofproto_v1_3_parser as parser
from ryu.ofproto.ofproto_protocol import ProtocolDesc

from openflow_tables import layout as L
from ryu_si.datapath import ryu_render as R
from openflow_tables.flow import (
    Bucket,
    Conjunction,
    Ct,
    Flow,
    FlowError,
    Group,
    Load,
    Output,
    Resubmit,
    flow,
    match,
)
from ryu_si.control.service import Service
from ryu_si.control.store import Store
from ryu_si.datapath import nd_fields
from ryu_si.datapath import switch as S
from tests.unit.conftest import compile_for
from tests.unit.test_compile_transports import EDGE_PORTS, PLANE_PORTS, three_transports

RULE = L.cookie("rule", 7)


def _flow(priority: int = 10, port: int = 1, out: int = 2, cookie: int = RULE):
    return flow("ingress", priority, match(in_port=port, eth_type=0x800), [Output(out)],
                goto="ct", cookie=cookie)


# --- diff -----------------------------------------------------------------------
def test_diff_sends_missing_and_changed_and_deletes_unwanted():
    installed = {"same": 1, "changed": 2, "stale": 3}
    desired = {"same": 1, "changed": 20, "new": 4}
    assert S.diff(installed, desired) == (["changed", "new"], ["stale"])


def test_diff_of_equal_sets_is_empty():
    assert S.diff({"a": 1}, {"a": 1}) == ([], [])
    assert S.diff({}, {}) == ([], [])


# --- cookies ----------------------------------------------------------------------
def test_final_cookie_keeps_the_owner_and_adds_a_24_bit_digest():
    f = _flow()
    c = S.final_cookie(f)
    assert c & ~L.COOKIE_DIGEST_MASK == RULE
    assert c & L.COOKIE_DIGEST_MASK == _digest(f) and _digest(f) != 0
    assert L.cookie_owner(c) == ("rule", 7)
    assert R.encode(f).body[:8] == c.to_bytes(8, "big")      # and the flow-mod carries it


def _digest(f) -> int:
    return S.final_cookie(f) & L.COOKIE_DIGEST_MASK


def test_digest_follows_content_not_identity():
    assert _digest(_flow()) == _digest(_flow())
    assert _digest(_flow(out=3)) != _digest(_flow())
    assert _digest(_flow(priority=11)) != _digest(_flow())
    assert _digest(_flow(cookie=L.cookie("rule", 8))) == _digest(_flow())


# --- match keys ----------------------------------------------------------------------
def _ofp_match(f) -> parser.OFPMatch:
    """The match as Ryu builds it from the flow's fields."""
    return parser.OFPMatch(**{name: value if mask is None else (value, mask)
                              for name, value, mask in f.match})


def _from_wire(m: parser.OFPMatch) -> parser.OFPMatch:
    """The match as a flow-stats reply would carry it back."""
    buf = bytearray()
    m.serialize(buf, 0)
    return parser.OFPMatch.parser(bytes(buf), 0)


def test_match_key_of_a_built_match_equals_the_parsed_one():
    f = Flow("classify", 100, match(metadata=(1, 0xFFFF), eth_type=0x800, ip_proto=6,
                                    ipv4_src=("10.0.0.0", "255.255.255.0"),
                                    tcp_dst=(0x400, 0xFC00), ct_label=(1 << 100, 1 << 100),
                                    ct_state=(0x22, 0x22), eth_dst="02:00:00:00:0A:01"),
             goto="reorient")   # every match kind, whatever classify declares
    built, table = _ofp_match(f), L.table_id("classify")
    assert (R.match_key(table, 100, built) == R.match_key(table, 100, _from_wire(built))
            == R.flow_key(f))


@pytest.mark.parametrize("a, b", [
    ({"reg0": (1, 0xFFFFFFFF)}, {"reg0": 1}),                        # full mask dropped
    ({"reg0": (0x13, 0x3)}, {"reg0": (0x3, 0x3)}),                    # value masked
    ({"eth_type": 0x800, "ipv4_src": ("10.0.0.0", "255.255.255.0")},
     {"ipv4_src": "10.0.0.0/24", "eth_type": 0x800}),                 # CIDR, other order
    ({"eth_src": "02:00:00:00:0A:01"}, {"eth_src": "02:00:00:00:0a:01"}),
    ({"reg1": (0, 0)}, {}),                                           # wildcarded entirely
])
def test_match_key_normalises_forms_ovs_may_return(a, b):
    assert R.match_key(0, 1, parser.OFPMatch(**a)) == R.match_key(0, 1, parser.OFPMatch(**b))


def test_two_different_flows_on_one_key_are_refused():
    with pytest.raises(FlowError):
        S.flows_by_key([_flow(out=2), _flow(out=3)])
    assert len(S.flows_by_key([_flow(), _flow()])) == 1


# --- what gets sent -------------------------------------------------------------------
DP = ProtocolDesc(ofproto_v1_3.OFP_VERSION)


def test_wide_loads_are_split_in_64_bit_pieces_low_first():
    value = (0xAB << 64) | 0x0123456789ABCDEF
    pieces = R.actions((Load("xxreg1", value, 0, 128),))
    assert [(p.dst, p.ofs_nbits, p.value) for p in pieces] == [
        ("xxreg1", nicira_ext.ofs_nbits(0, 63), 0x0123456789ABCDEF),
        ("xxreg1", nicira_ext.ofs_nbits(64, 127), 0xAB)]


def test_nicira_actions_carry_ovs_conventions():
    conj, ct = R.actions((Conjunction(10, 2, 3), Ct(True, L.CT_ZONE, "gen_check",
                                                     (Load("ct_mark", 1, 31, 1),))))
    assert (conj.clause, conj.n_clauses, conj.id) == (1, 3, 10)   # 0-based clause
    assert (ct.flags, ct.zone_src, ct.recirc_table) == (1, "reg8", L.table_id("gen_check"))
    assert ct.zone_ofs_nbits == nicira_ext.ofs_nbits(0, 15)


def _flow_mod(body: bytes) -> parser.OFPFlowMod:
    return _parse(R.header(ofproto_v1_3.OFPT_FLOW_MOD, len(body), 1) + body)[0]


def test_delete_only_touches_flows_with_our_tag():
    add = _flow_mod(R.encode(_flow()).body)
    delete = _flow_mod(R.delete_by_key(R.flow_key(_flow())))
    assert (add.command, add.cookie, add.cookie_mask) == (ofproto_v1_3.OFPFC_ADD,
                                                         S.final_cookie(_flow()), 0)
    assert (delete.command, delete.cookie, delete.cookie_mask) == (
        ofproto_v1_3.OFPFC_DELETE_STRICT, R.OWN_COOKIE, L.COOKIE_APP_MASK)
    assert (delete.out_port, delete.out_group) == (ofproto_v1_3.OFPP_ANY, ofproto_v1_3.OFPG_ANY)
    assert delete.instructions == [] and delete.match.items() == add.match.items()


def _ryu_flow_mod(f, cookie: int, xid: int) -> bytes:
    """A flow-mod as Ryu's own objects encode it: what ``R.flow_mod`` must send."""
    table, priority, fields = R.flow_key(f)
    inst = ([parser.OFPInstructionActions(ofproto_v1_3.OFPIT_APPLY_ACTIONS, R.actions(f.actions))]
            if f.actions else [])
    inst += [parser.OFPInstructionGotoTable(L.table_id(f.goto))] if f.goto else []
    msg = parser.OFPFlowMod(DP, cookie=cookie, table_id=table, priority=priority,
                            out_port=ofproto_v1_3.OFPP_ANY, out_group=ofproto_v1_3.OFPG_ANY,
                            match=parser.OFPMatch(_ordered_fields=sorted(  # stable: by name
                                fields, key=lambda uv: nd_fields.wire_rank(uv[0]))),  # in a rank
                            instructions=inst)
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def test_flow_mods_encode_to_the_bytes_ryu_would_send(service, tmp_path):
    """Every action kind, and every match field the demo edge, the three-transport
    example (both of its bridges) and a conjunctive rule use."""
    service.create("rules", {"name": "multi", "priority": 300, "action": "allow",
                             "applied_to": ["uplink1"],
                             "match": {"ip_proto": "tcp", "ipv4_src": ["1.0.0.0/8", "2.0.0.0/8"],
                                       "ipv4_dst": ["10.1.0.0/16", "10.2.0.0/16"]}})
    transports = Service(Store(str(tmp_path / "transports.sqlite")))
    transports.replace_config(three_transports())
    flows = (compile_for(service).flows + compile_for(transports, EDGE_PORTS).flows
             + compile_for(transports, PLANE_PORTS, dpid=2).flows)
    assert {type(a) for f in flows for a in f.actions} == set(R._ACTIONS)
    assert {nd_fields.ryu_name(name) for f in flows for name, _, _ in f.match} >= set(
        R.ADDRESS_FIELDS) - {"arp_spa"}             # and every address field but one
    for xid, f in enumerate(flows):
        cookie = S.final_cookie(f)
        body = R.encode(f).body
        assert R.header(ofproto_v1_3.OFPT_FLOW_MOD, len(body), xid) + body == \
            _ryu_flow_mod(f, cookie, xid), f


def test_a_bundled_message_is_the_onf_bundle_add_ryu_would_send():
    inner = parser.OFPFlowMod(DP, cookie=5, table_id=3, priority=7,
                              match=parser.OFPMatch(in_port=1))
    outer = parser.ONFBundleAddMsg(DP, 9, 3, inner, [])
    outer.set_xid(77)
    outer.serialize()
    body = R.body(inner)
    assert R.bundled_header(9, 3, ofproto_v1_3.OFPT_FLOW_MOD, len(body), 77) + body == \
        bytes(outer.buf)


def _parse(buf: bytes) -> list:
    """The messages in a stream of them, as Ryu objects (bundle-adds and group-mods
    decoded here: Ryu parses neither)."""
    msgs, o = [], ofproto_v1_3
    while buf:
        version, msg_type, length, xid = ofproto_parser.header(buf)
        one, buf = buf[:length], buf[length:]
        if msg_type == o.OFPT_GROUP_MOD:
            msg = parser.OFPGroupMod(DP, *struct.unpack_from("!HBxI", one, 8))
        elif msg_type == o.OFPT_EXPERIMENTER:
            bundle_id, flags = struct.unpack_from("!I2xH", one, 16)
            msg = parser.ONFBundleAddMsg(DP, bundle_id, flags, _parse(one[24:])[0], [])
        else:
            msg = ofproto_parser.msg(DP, version, msg_type, length, xid, one)
        msg.xid = xid
        msgs.append(msg)
    return msgs


class FakeDatapath(ProtocolDesc):
    """Records flow-mods and group-mods instead of sending them."""

    def __init__(self) -> None:
        super().__init__(ofproto_v1_3.OFP_VERSION)
        self.id, self.xid, self.sent = 1, 0, []

    @property
    def changes(self) -> list:
        """The flow-mods and group-mods sent, out of their bundle wrappers."""
        return [m.message if isinstance(m, parser.ONFBundleAddMsg) else m for m in self.sent
                if not isinstance(m, parser.ONFBundleCtrlMsg)]

    def bundles(self) -> list[tuple[int, int]]:
        """(bundle id, control type) of every bundle message, in order."""
        return [(m.bundle_id, m.type) for m in self.sent if isinstance(m, parser.ONFBundleCtrlMsg)]

    def set_xid(self, msg) -> int:
        self.xid += 1
        msg.set_xid(self.xid)
        return self.xid

    def send_msg(self, msg) -> bool:
        msg.serialize()
        self.sent.append(msg)
        return True

    def send(self, buf: bytes) -> bool:
        self.sent += _parse(buf)
        return True


@pytest.fixture
def switch(monkeypatch):
    """A Switch on a FakeDatapath; the ofctl service answers barriers and empty dumps."""
    requests = []

    def send_msg(app, msg, reply_cls=None, reply_multi=False):
        requests.append(msg)
        if isinstance(msg, parser.ONFBundleCtrlMsg) and app.refuse:
            app.refuse -= 1
            raise S.ofctl_exception.OFError(result=[SimpleNamespace(type=0xFFFF, code=3003)])
        return [SimpleNamespace(body=app.dump.get(type(msg), []))] if reply_multi else msg

    monkeypatch.setattr(S.ofctl_api, "send_msg", send_msg)
    app = SimpleNamespace(dump={}, requests=requests, refuse=0)
    return S.Switch(app, FakeDatapath())


def _kinds(msgs) -> list[str]:
    o = ofproto_v1_3
    flows = {o.OFPFC_ADD: "flow-add", o.OFPFC_DELETE_STRICT: "flow-del"}
    groups = {o.OFPGC_ADD: "group-add", o.OFPGC_MODIFY: "group-mod", o.OFPGC_DELETE: "group-del"}
    return [(groups if isinstance(m, parser.OFPGroupMod) else flows)[m.command] for m in msgs]


GROUP = Group(1, "select", (Bucket((Load.field(L.FWD_DATA, 3), Resubmit("commit"))),))


def test_push_sends_only_the_difference_in_one_bundle(switch):
    o = ofproto_v1_3
    flows = [_flow(priority=p) for p in range(10, 20)]
    switch.push(flows, [GROUP])
    dp = switch.datapath
    assert _kinds(dp.changes) == ["group-add"] + ["flow-add"] * 10
    assert dp.bundles() == [(1, o.ONF_BCT_OPEN_REQUEST)]
    assert all(m.bundle_id == 1 and m.flags == o.ONF_BF_ATOMIC | o.ONF_BF_ORDERED
               for m in dp.sent[1:])
    commit = switch.app.requests[-1]            # sent through ofctl: it waits for the answer
    assert (commit.bundle_id, commit.type) == (1, o.ONF_BCT_COMMIT_REQUEST)

    dp.sent.clear()
    switch.push(flows[1:] + [_flow(priority=30)], [])
    assert _kinds(dp.changes) == ["flow-add", "flow-del", "group-del"]
    assert dp.bundles() == [(2, o.ONF_BCT_OPEN_REQUEST)]
    assert (switch.counters.flow_mods_last, switch.counters.flow_mods_total) == (2, 12)
    assert (switch.counters.group_mods_last, switch.counters.group_mods_total) == (1, 2)

    dp.sent.clear()
    requests = len(switch.app.requests)
    switch.push(flows[1:] + [_flow(priority=30)], [])
    assert dp.sent == [] and len(switch.app.requests) == requests


def _installed_on_switch(flows: list) -> list:
    return [SimpleNamespace(table_id=0, priority=f.priority, match=_from_wire(_ofp_match(f)),
                            cookie=S.final_cookie(f)) for f in flows]


def test_reconcile_reads_our_flows_and_groups_then_fixes_them_in_one_bundle(switch):
    current, stale, changed = _flow(priority=10), _flow(priority=11), _flow(priority=12, out=9)
    desc = parser.OFPGroupDescStats(ofproto_v1_3.OFPGT_SELECT, 1, R.buckets(GROUP))
    switch.app.dump = {parser.OFPFlowStatsRequest: _installed_on_switch([current, stale, changed]),
                       parser.OFPGroupDescStatsRequest: [desc]}
    switch.reconcile([current, _flow(priority=12)], [GROUP])
    request = switch.app.requests[0]
    assert (request.cookie, request.cookie_mask) == (R.OWN_COOKIE, L.COOKIE_APP_MASK)
    changes = switch.datapath.changes
    assert _kinds(changes) == ["flow-add", "flow-del"]
    assert changes[0].priority == 12 and changes[1].priority == 11
    assert len(switch.datapath.bundles()) == 1
    assert switch.counters.last_resync is not None


def test_a_switch_without_our_flows_gets_its_first_install_unbundled(switch):
    switch.reconcile([_flow(priority=p) for p in range(10, 13)], [])
    assert _kinds(switch.datapath.sent) == ["flow-add"] * 3
    assert isinstance(switch.app.requests[-1], parser.OFPBarrierRequest)


def test_a_first_install_opens_the_entry_table_last(switch, service):
    """Unbundled, the first install sends table 0 (where packets enter) after every other
    table, so a half-installed pipeline forwards nothing."""
    pipe = compile_for(service)
    switch.reconcile(pipe.flows, pipe.groups)
    tables = [m.table_id for m in switch.datapath.changes if isinstance(m, parser.OFPFlowMod)]
    entry = [n for n, t in enumerate(tables) if t == 0]
    assert entry and len(tables) == len(pipe.flows)
    assert entry == list(range(len(tables) - len(entry), len(tables)))


def test_a_refused_bundle_is_redone_flow_by_flow_from_what_the_switch_holds(switch):
    base = [_flow(priority=p) for p in range(10, 13)]
    switch.push(base, [])
    switch.app.refuse = 1                           # the switch refuses the next bundle
    switch.app.dump = {parser.OFPFlowStatsRequest: _installed_on_switch(base)}
    switch.datapath.sent.clear()
    switch.push(base[1:] + [_flow(priority=20)], [])
    dp = switch.datapath
    assert len(dp.bundles()) == 1                    # the refused one, then plain messages
    plain = dp.sent[dp.sent.index(next(m for m in dp.sent[1:]
                                       if not isinstance(m, parser.ONFBundleAddMsg))):]
    assert _kinds(plain) == ["flow-add", "flow-del"]
    assert [m.priority for m in plain] == [20, 10]
    assert isinstance(switch.app.requests[-1], parser.OFPBarrierRequest)


def test_an_error_names_the_flow_and_the_next_push_retries_it(switch):
    f = _flow()
    switch.push([f], [])
    xid = switch.datapath.changes[0].xid
    assert xid == switch.datapath.sent[1].xid       # the bundle wrapper carries it
    switch.record_error(SimpleNamespace(xid=xid, type=4, code=9))
    error = switch.errors[-1]
    assert (error["type"], error["code"], error["command"]) == (4, 9, "add")
    assert error["what"].startswith("table=0,cookie=0x5106000007") and "in_port=1" in error["what"]
    assert switch.health()["errors_total"] == 1

    switch.datapath.sent.clear()
    switch.push([f], [])
    assert _kinds(switch.datapath.changes) == ["flow-add"]


def test_a_push_cut_short_is_sent_whole_by_the_next_one(switch, monkeypatch):
    """An uncommitted bundle is gone with its connection: nothing of it counts as sent."""
    base = [_flow(priority=p) for p in range(10, 13)]
    switch.push(base, [])
    more = base + [_flow(priority=p) for p in range(20, 23)]
    real_send = switch.datapath.send
    monkeypatch.setattr(switch.datapath, "send",     # the connection drops after the first
                        lambda buf: real_send(buf[:struct.unpack_from("!H", buf, 2)[0]])
                        and False)                    # message of a write
    with pytest.raises(ConnectionError):
        switch.push(more, [])
    assert len(switch.datapath.changes) == 3 + 1      # one of the new flows was in the bundle
    monkeypatch.setattr(switch.datapath, "send", real_send)
    switch.datapath.sent.clear()
    switch.push(more, [])
    assert sorted(m.priority for m in switch.datapath.changes) == [20, 21, 22]


def test_a_late_error_for_a_replaced_flow_does_not_keep_its_successor(switch):
    f, g1, g2 = _flow(priority=10), _flow(priority=11, out=2), _flow(priority=11, out=3)
    switch.push([f, g1], [])
    g1_xid = next(m.xid for m in switch.datapath.changes if m.priority == 11)
    switch.push([f, g2], [])                          # g2 replaces g1 (same match)
    switch.record_error(SimpleNamespace(xid=g1_xid, type=4, code=9))   # g1's, late
    switch.datapath.sent.clear()
    switch.push([f], [])                              # g2 leaves the pipeline
    changes = switch.datapath.changes
    assert [(k, m.priority) for k, m in zip(_kinds(changes), changes)] == [("flow-del", 11)]
