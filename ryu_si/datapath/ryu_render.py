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
import socket
import struct
import zlib
from collections.abc import Iterable
from typing import Any, NamedTuple

from ryu.lib import type_desc
from ryu.lib.pack_utils import msg_pack_into
from ryu.ofproto import nicira_ext
from ryu.ofproto import ofproto_common as ofp_common
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import oxm_fields
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

FLOW_COMMANDS = {"add": ofp.OFPFC_ADD, "delete_strict": ofp.OFPFC_DELETE_STRICT}
GROUP_COMMANDS = {"add": ofp.OFPGC_ADD, "modify": ofp.OFPGC_MODIFY}   # delete: group_delete
GROUP_TYPES = {"select": ofp.OFPGT_SELECT, "all": ofp.OFPGT_ALL, "ff": ofp.OFPGT_FF}
OWN_COOKIE = L.COOKIE_APP << L.COOKIE_APP_SHIFT   # the app tag alone: "one of ours"
CT_COMMIT = 1             # NX_CT_F_COMMIT
CT_NO_RECIRC = 0xFF       # NX_CT_RECIRC_NONE
NXAST_RAW_DECAP = 47
REG_LOAD_BITS = 64        # NXAST_REG_LOAD carries a 64-bit value
OFP_HEADER = struct.Struct(ofp.OFP_HEADER_PACK_STR)
FLOW_MOD_AFTER_COOKIE = struct.Struct("!" + ofp.OFP_FLOW_MOD_PACK_STR0[2:])  # cookie: "!Q"
MATCH_HEADER = struct.Struct("!HH")                       # ofp_match: type, length
APPLY_ACTIONS = struct.Struct(ofp.OFP_INSTRUCTION_ACTIONS_PACK_STR)
GOTO_TABLE = struct.Struct(ofp.OFP_INSTRUCTION_GOTO_TABLE_PACK_STR)
OXM_HEADER = struct.Struct("!I")
COOKIE = struct.Struct("!Q")                              # a flow-mod body starts with it
BUNDLE_ADD = struct.Struct("!II" + ofp.ONF_BUNDLE_ADD_MSG_PACK_STR[1:])  # + id, flags
nd_fields.register()      # OVS's ND extension fields, unknown to Ryu 4.34
FAMILIES = {type_desc.IPv4Addr: socket.AF_INET, type_desc.IPv6Addr: socket.AF_INET6}
ADDRESS_FIELDS = {f.name: FAMILIES[f.type] for f in ofp.oxm_types   # OXM class: no experimenter
                  if isinstance(f, oxm_fields.OpenFlowBasic) and f.type in FAMILIES}


# --- match ------------------------------------------------------------------
@functools.lru_cache(maxsize=1 << 19)   # prefixes are many, the other fields few
def _field(name: str, value, mask) -> tuple[tuple | None, tuple, bytes]:
    """One match field, normalised: (name, value-or-(value, mask)) in Ryu's user form,
    masked bits cleared, a full mask dropped (None: fully wildcarded); then its place in
    a match (``nd_fields.wire_rank``) and its encoding.  Cached: a pipeline repeats most
    fields in thousands of flows.  Addresses, most of the rest (a prefix each), are
    converted here: through Ryu (netaddr) each took ~10 us, 2 s for 50,000 rules."""
    name = nd_fields.ryu_name(name)
    family = ADDRESS_FIELDS.get(name)
    if family is None or not isinstance(value, str) or "/" in value:
        family = None
        num, value, mask = ofp.oxm_from_user(name, value if mask is None else (value, mask))
    else:
        num, value, mask = ofp.oxm_from_user_header(name), _packed(family, value), \
            _packed(family, mask)
    if mask is not None:
        if not any(mask):
            return None, (), b""
        value = bytes(v & m for v, m in zip(value, mask))
        if all(m == 0xFF for m in mask):
            mask = None
    if family is None:
        buf = bytearray()
        ofp.oxm_serialize(num, value, mask, buf, 0)
        return ofp.oxm_to_user(num, value, mask), nd_fields.wire_rank(name), bytes(buf)
    user = socket.inet_ntop(family, value)
    return ((name, user if mask is None else (user, socket.inet_ntop(family, mask))),
            nd_fields.wire_rank(name), _oxm_basic(num, value, mask))


def _packed(family: int, address: str | None) -> bytes | None:
    return None if address is None else socket.inet_pton(family, address)


def _oxm_basic(num: int, value: bytes, mask: bytes | None) -> bytes:
    """A field of a class without experimenter id on the wire, as ``oxm_serialize``."""
    payload = value if mask is None else value + mask
    return OXM_HEADER.pack(num << 9 | (mask is not None) << 8 | len(payload)) + payload


def _fields(user_fields: Iterable[tuple[str, Any]]) -> Iterable[tuple[str, Any, Any]]:
    """(name, value, mask) of fields in Ryu's user form, as a Flow's match holds them."""
    return ((name, *(uv if isinstance(uv, tuple) else (uv, None))) for name, uv in user_fields)


def _key(table_id: int, priority: int, fields: Iterable[tuple[str, Any, Any]]) -> tuple:
    normal = (_field(*f)[0] for f in fields)
    return table_id, priority, tuple(sorted(f for f in normal if f is not None))


def match_key(table_id: int, priority: int, ofpmatch: parser.OFPMatch) -> tuple:
    """What OpenFlow identifies a flow by, in one hashable form whatever produced the match."""
    return _key(table_id, priority, _fields(ofpmatch.items()))


def flow_key(flow: Flow) -> tuple:
    """The flow's ``match_key`` (see ``encode``)."""
    return encode(flow).key


def _match_bytes(placed: Iterable[tuple[tuple, bytes]]) -> bytes:
    """The OXM match of encoded fields, put in wire order, padded to 8 bytes."""
    body = b"".join(b for _, b in sorted(placed))
    length = MATCH_HEADER.size + len(body)
    return MATCH_HEADER.pack(ofp.OFPMT_OXM, length) + body + bytes(-length % 8)


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


# --- flow-mods, encoded here ------------------------------------------------------
# Ryu's OFPFlowMod costs ~100 us a flow to build and serialise (a 50,000-rule pipeline:
# ~30 s).  A flow-mod is encoded here instead, from cached pieces: each match field and
# each action recurs across many flows and is encoded once, by Ryu, to the same bytes.


@functools.lru_cache(maxsize=1 << 18)
def _action_bytes(action: Action) -> bytes:
    """One neutral action on the wire (each Ryu action padded to the length it declares)."""
    buf = bytearray()
    for a in _ACTIONS[type(action)](action):
        end = len(buf)
        a.serialize(buf, end)
        buf += bytes(end + a.len - len(buf))
    return bytes(buf)


def instruction_bytes(flow: Flow) -> bytes:
    out = b""
    if flow.actions:
        acts = b"".join(_action_bytes(a) for a in flow.actions)
        out = APPLY_ACTIONS.pack(ofp.OFPIT_APPLY_ACTIONS, APPLY_ACTIONS.size + len(acts)) + acts
    if flow.goto:
        out += GOTO_TABLE.pack(ofp.OFPIT_GOTO_TABLE, GOTO_TABLE.size, L.table_id(flow.goto))
    return out


def _after_cookie(table: int, priority: int, match: bytes, command: str, inst: bytes) -> bytes:
    """A flow-mod's body (what follows the OpenFlow header) after its cookie.  Modify and
    delete act only on flows carrying our app tag (cookie_mask)."""
    return FLOW_MOD_AFTER_COOKIE.pack(0 if command == "add" else L.COOKIE_APP_MASK, table,
                                      FLOW_COMMANDS[command], 0, 0, priority, ofp.OFP_NO_BUFFER,
                                      ofp.OFPP_ANY, ofp.OFPG_ANY, 0) + match + inst


class Encoded(NamedTuple):
    key: tuple          # the flow's match_key
    cookie: int         # its own cookie, plus a 24-bit digest of the rest of its flow-mod
    body: bytes         # the body of its flow-mod add, carrying that cookie


@functools.lru_cache(maxsize=1 << 19)   # 50,000 rules x 64 interfaces: ~294,000 flows
def encode(flow: Flow) -> Encoded:
    """Key, cookie and flow-mod of a flow, from one pass over its fields (not an
    OFPMatch's: that would normalise every field twice).  The digest makes a flow dump
    say which installed flows are current.  Add, never modify: OpenFlow 1.3 modify keeps
    the old cookie (and so the old digest).  Cached: every push keys the whole desired
    pipeline, a switch that reconnects is sent the same bytes, and the compiler hands
    back the same Flow objects for what did not change."""
    table, fields = L.table_id(flow.table), [_field(*f) for f in flow.match]
    key = (table, flow.priority, tuple(sorted(n for n, _, _ in fields if n is not None)))
    rest = _after_cookie(table, flow.priority, _match_bytes((r, b) for _, r, b in fields), "add",
                         instruction_bytes(flow))
    cookie = (flow.cookie & ~L.COOKIE_DIGEST_MASK) | (zlib.crc32(rest) & L.COOKIE_DIGEST_MASK)
    return Encoded(key, cookie, COOKIE.pack(cookie) + rest)


def delete_by_key(key: tuple) -> bytes:
    """The flow-mod body deleting (strict) one of our flows known only by its
    ``match_key`` (e.g. from a dump)."""
    table, priority, fields = key
    match = _match_bytes(_field(*f)[1:] for f in _fields(fields))
    return COOKIE.pack(OWN_COOKIE) + _after_cookie(table, priority, match, "delete_strict", b"")


def header(msg_type: int, body_len: int, xid: int) -> bytes:
    """The OpenFlow 1.3 header of a message with a body this long."""
    return OFP_HEADER.pack(ofp.OFP_VERSION, msg_type, OFP_HEADER.size + body_len, xid)


def bundled_header(bundle_id: int, flags: int, msg_type: int, body_len: int, xid: int) -> bytes:
    """What goes before a message's body to make it an ONF bundle-add carrying it: both
    headers carry one xid (the extension says so)."""
    inner = BUNDLE_ADD.pack(ofp_common.ONF_EXPERIMENTER_ID, ofp.ONF_ET_BUNDLE_ADD_MESSAGE,
                            bundle_id, flags) + header(msg_type, body_len, xid)
    return header(ofp.OFPT_EXPERIMENTER, len(inner) + body_len, xid) + inner


def body(msg) -> bytes:
    """A Ryu message's body (what follows its header)."""
    msg.serialize()
    return bytes(msg.buf[OFP_HEADER.size:])


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
