"""Neutral flows and groups as Ryu OpenFlow 1.3 messages (with Nicira extensions).

Also the normal form of a match (``match_key``): a match built here and the
same match parsed from a flow-stats reply must compare equal, although OVS
sends fields in its own order, drops full masks and Ryu gives addresses as
strings.  Ryu 4.34 quirks handled here: masked ``OFPActionSetField`` on
ct_label fails, so partial writes use NXAST_REG_LOAD / REG_MOVE, whose value
is 64 bits at most (wider loads are split, low bits first, as ovs-ofctl does);
``NXActionConjunction`` counts clauses from 0.
"""
from __future__ import annotations

import functools
import zlib
from collections.abc import Iterable
from typing import Any

from ryu.lib.pack_utils import msg_pack_into
from ryu.ofproto import nicira_ext
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from openflow_tables import layout as L
from openflow_tables.flow import (
    Action,
    Conjunction,
    Controller,
    Ct,
    CtClear,
    Decap,
    DecTtl,
    EncapEthernet,
    EncapNsh,
    Flow,
    Group,
    GroupAction,
    Load,
    Move,
    Output,
    Resubmit,
    SetField,
)
from ryu_si.datapath import nd_fields

FLOW_COMMANDS = {"add": ofp.OFPFC_ADD, "modify_strict": ofp.OFPFC_MODIFY_STRICT,
                 "delete_strict": ofp.OFPFC_DELETE_STRICT}
GROUP_COMMANDS = {"add": ofp.OFPGC_ADD, "modify": ofp.OFPGC_MODIFY}   # delete: group_delete
GROUP_TYPES = {"select": ofp.OFPGT_SELECT, "all": ofp.OFPGT_ALL, "ff": ofp.OFPGT_FF}
OWN_COOKIE = L.COOKIE_APP << L.COOKIE_APP_SHIFT   # the app tag alone: "one of ours"
CT_COMMIT = 1             # NX_CT_F_COMMIT
CT_NO_RECIRC = 0xFF       # NX_CT_RECIRC_NONE
NXAST_RAW_DECAP = 47
REG_LOAD_BITS = 64        # NXAST_REG_LOAD carries a 64-bit value
nd_fields.register()      # OVS's ND extension fields, unknown to Ryu 4.34


# --- match ------------------------------------------------------------------
def _normal_field(name: str, user_value) -> tuple | None:
    """(name, value-or-(value, mask)) in Ryu's user form, masked bits cleared,
    a full mask dropped; None for a fully wildcarded field."""
    num, value, mask = ofp.oxm_from_user(name, user_value)
    if mask is not None:
        if not any(mask):
            return None
        value = bytes(v & m for v, m in zip(value, mask))
        if all(m == 0xFF for m in mask):
            mask = None
    return ofp.oxm_to_user(num, value, mask)


def _key(table_id: int, priority: int, user_fields: Iterable[tuple[str, Any]]) -> tuple:
    fields = (_normal_field(nd_fields.ryu_name(name), uv) for name, uv in user_fields)
    return table_id, priority, tuple(sorted(f for f in fields if f is not None))


def match_key(table_id: int, priority: int, ofpmatch: parser.OFPMatch) -> tuple:
    """What OpenFlow identifies a flow by, in one hashable form whatever produced the match."""
    return _key(table_id, priority, ofpmatch.items())


@functools.lru_cache(maxsize=1 << 19)   # a 50,000-rule pipeline holds ~220,000 flows
def flow_key(flow: Flow) -> tuple:
    """The flow's ``match_key``, from its own fields: building an OFPMatch first would
    normalise every field twice (218,571 flows: 6.6 s instead of 16.5 s).  Cached:
    every push keys the whole desired pipeline."""
    return _key(L.table_id(flow.table), flow.priority,
                ((name, value if mask is None else (value, mask))
                 for name, value, mask in flow.match))


# --- actions ------------------------------------------------------------------
def _load(a: Load) -> list:
    pieces = []
    for lo in range(a.ofs, a.ofs + a.nbits, REG_LOAD_BITS):
        n = min(REG_LOAD_BITS, a.ofs + a.nbits - lo)
        value = (a.value >> (lo - a.ofs)) & ((1 << n) - 1)
        pieces.append(parser.NXActionRegLoad(ofs_nbits=nicira_ext.ofs_nbits(lo, lo + n - 1),
                                             dst=a.dst, value=value))
    return pieces


def _move(a: Move) -> list:
    return [parser.NXActionRegMove(src_field=a.src, dst_field=a.dst, n_bits=a.nbits,
                                   src_ofs=a.src_ofs, dst_ofs=a.dst_ofs)]


def _output(a: Output) -> list:
    return [parser.OFPActionOutput(ofp.OFPP_IN_PORT if a.port == "in_port" else a.port)]


def _ct(a: Ct) -> list:
    z = a.zone_field
    return [parser.NXActionCT(flags=CT_COMMIT if a.commit else 0, zone_src=z.register,
                              zone_ofs_nbits=nicira_ext.ofs_nbits(z.ofs, z.ofs + z.nbits - 1),
                              recirc_table=L.table_id(a.table) if a.table else CT_NO_RECIRC,
                              alg=0, actions=actions(a.exec_))]


class NXActionEncapNshMd1(parser.NXAction):
    """``encap(nsh(md_type=1))``: Ryu 4.34's own NXActionEncapNsh does not serialise."""

    _subtype = nicira_ext.NXAST_RAW_ENCAP
    NEW_PKT_TYPE = 0x0001894F          # (namespace 1, ethertype NSH)
    PROP_NSH_MDTYPE = (4, 1, 5, 1)     # class OFPPPC_NSH, type MD_TYPE, length 5, md_type 1

    def serialize_body(self) -> bytearray:
        data = bytearray()
        msg_pack_into("!HIHBBB3x", data, 0, 0, self.NEW_PKT_TYPE, *self.PROP_NSH_MDTYPE)
        return data


class NXActionDecapNext(parser.NXAction):
    """``decap()``: Ryu 4.34 has no decap action at all."""

    _subtype = NXAST_RAW_DECAP
    NEW_PKT_TYPE = 0x0001FFFE          # PT_USE_NEXT_PROTO: the inner header says what follows

    def serialize_body(self) -> bytearray:
        data = bytearray()
        msg_pack_into("!2xI", data, 0, self.NEW_PKT_TYPE)
        return data


_ACTIONS = {
    Load: _load,
    SetField: lambda a: [parser.OFPActionSetField(**{nd_fields.ryu_name(a.field): a.value})],
    Move: _move,
    Output: _output,
    GroupAction: lambda a: [parser.OFPActionGroup(a.group_id)],
    Resubmit: lambda a: [parser.NXActionResubmitTable(table_id=L.table_id(a.table))],
    Ct: _ct,
    Conjunction: lambda a: [parser.NXActionConjunction(clause=a.clause - 1,
                                                       n_clauses=a.n_clauses, id_=a.id)],
    DecTtl: lambda a: [parser.OFPActionDecNwTtl()],
    CtClear: lambda a: [parser.NXActionCTClear()],
    Controller: lambda a: [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, a.max_len)],
    EncapNsh: lambda a: [NXActionEncapNshMd1()],
    EncapEthernet: lambda a: [parser.NXActionEncapEther()],
    Decap: lambda a: [NXActionDecapNext()],
}


def actions(acts: tuple[Action, ...]) -> list:
    """Ryu actions for neutral ones (one neutral action may become several)."""
    return [ryu_action for a in acts for ryu_action in _ACTIONS[type(a)](a)]


def instructions(flow: Flow) -> list:
    out = []
    if flow.actions:
        out.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions(flow.actions)))
    if flow.goto:
        out.append(parser.OFPInstructionGotoTable(L.table_id(flow.goto)))
    return out


# --- flow-mods ------------------------------------------------------------------
def _flow_mod(datapath, key: tuple, command: str, cookie: int, inst: list) -> parser.OFPFlowMod:
    """Modify and delete act only on flows carrying our app tag (cookie_mask)."""
    table, priority, fields = key
    return parser.OFPFlowMod(
        datapath, cookie=cookie, cookie_mask=0 if command == "add" else L.COOKIE_APP_MASK,
        table_id=table, command=FLOW_COMMANDS[command], priority=priority,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
        match=parser.OFPMatch(_ordered_fields=nd_fields.in_wire_order(fields)),
        instructions=inst)


def flow_mod(datapath, flow: Flow, command: str, cookie: int) -> parser.OFPFlowMod:
    """``command``: add | modify_strict | delete_strict.

    OpenFlow 1.3 modify never changes a flow's cookie, so a flow whose content
    (and so cookie digest) changed is re-sent with add, which replaces it.
    """
    inst = [] if command == "delete_strict" else instructions(flow)
    return _flow_mod(datapath, flow_key(flow), command, cookie, inst)


def delete_by_key(datapath, key: tuple) -> parser.OFPFlowMod:
    """delete_strict of one of our flows known only by its ``match_key`` (e.g. from a dump)."""
    return _flow_mod(datapath, key, "delete_strict", OWN_COOKIE, [])


# --- groups -------------------------------------------------------------------------
def buckets(group: Group) -> list:
    """Weights mean something only in select groups; OVS wants 0 elsewhere."""
    return [parser.OFPBucket(weight=b.weight if group.type == "select" else 0,
                             watch_port=ofp.OFPP_ANY, watch_group=ofp.OFPG_ANY,
                             actions=actions(b.actions)) for b in group.buckets]


def group_mod(datapath, group: Group, command: str) -> parser.OFPGroupMod:
    """``command``: add | modify | delete."""
    if command == "delete":
        return group_delete(datapath, group.group_id)
    return parser.OFPGroupMod(datapath, GROUP_COMMANDS[command], GROUP_TYPES[group.type],
                              group.group_id, buckets(group))


def group_delete(datapath, group_id: int) -> parser.OFPGroupMod:
    """Delete a group known only by its id (e.g. from a group-desc reply)."""
    return parser.OFPGroupMod(datapath, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, group_id, [])


def _fingerprint(group_type: int, group_buckets: list) -> int:
    buf = bytearray()
    for b in group_buckets:
        b.serialize(buf, len(buf))
    return zlib.crc32(bytes([group_type]) + bytes(buf))


def group_fingerprint(group: Group) -> int:
    """Hash of the group as encoded on the wire: groups have no cookie to carry a digest."""
    return _fingerprint(GROUP_TYPES[group.type], buckets(group))


def desc_fingerprint(desc: parser.OFPGroupDescStats) -> int:
    """The same hash for a group read back from the switch (group-desc reply)."""
    return _fingerprint(desc.type, desc.buckets)
