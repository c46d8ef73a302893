"""Neutral flows and groups as ``ovs-ofctl -O OpenFlow13`` text.

The text is what golden tests, the generated docs and a person at a shell
compare with ``ovs-ofctl dump-flows``, so it is deterministic and is accepted
as is by ``ovs-ofctl add-flow`` / ``add-group``.  Field names are the ones
ovs-ofctl reads: OXM names in matches, NXM names for bit ranges in actions.
"""
from __future__ import annotations

import ipaddress
import re

from openflow_tables.flow import (
    Action,
    Bucket,
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
    MatchValue,
    Move,
    Output,
    Resubmit,
    SetField,
)
from openflow_tables.layout import CT_EST, CT_INV, CT_NEW, CT_REL, CT_RPL, CT_TRK, table_id

# Match / set_field names where ovs-ofctl does not take the OXM spelling.
OFCTL_NAMES = {"ipv4_src": "nw_src", "ipv4_dst": "nw_dst"}
# Fields written in decimal when unmasked (counts and codes, not bit patterns).
DECIMAL_FIELDS = frozenset({"in_port", "ip_proto", "tcp_src", "tcp_dst", "udp_src", "udp_dst",
                            "arp_op", "conj_id", "nsh_mdtype", "nsh_si", "nsh_ttl",
                            "icmpv6_type", "icmpv6_code", "nd_options_type"})
# ct_state flag bits (ovs-fields(7)); trk first because every other flag needs it.
CT_STATE_FLAGS = (("trk", CT_TRK), ("new", CT_NEW), ("est", CT_EST), ("rel", CT_REL),
                  ("rpl", CT_RPL), ("inv", CT_INV), ("snat", 0x40), ("dnat", 0x80))
CT_STATE_ALL = 0xFF

# Fields that actions read or write as bit ranges: NXM/OXM name and width.
SUBFIELDS: dict[str, tuple[str, int]] = {
    "metadata": ("OXM_OF_METADATA", 64),
    "ct_mark": ("NXM_NX_CT_MARK", 32),
    "ct_label": ("NXM_NX_CT_LABEL", 128),
    "eth_src": ("NXM_OF_ETH_SRC", 48),
    "eth_dst": ("NXM_OF_ETH_DST", 48),
    "ipv4_src": ("NXM_OF_IP_SRC", 32),
    "ipv4_dst": ("NXM_OF_IP_DST", 32),
    "ipv6_src": ("NXM_NX_IPV6_SRC", 128),
    "ipv6_dst": ("NXM_NX_IPV6_DST", 128),
    "tcp_src": ("NXM_OF_TCP_SRC", 16),
    "tcp_dst": ("NXM_OF_TCP_DST", 16),
    "udp_src": ("NXM_OF_UDP_SRC", 16),
    "udp_dst": ("NXM_OF_UDP_DST", 16),
    "arp_spa": ("NXM_OF_ARP_SPA", 32),
    "arp_tpa": ("NXM_OF_ARP_TPA", 32),
    "arp_sha": ("NXM_NX_ARP_SHA", 48),
    "arp_tha": ("NXM_NX_ARP_THA", 48),
    "nsh_spi": ("NXOXM_NSH_SPI", 24),
    "nsh_si": ("NXOXM_NSH_SI", 8),
    "nsh_c2": ("NXOXM_NSH_C2", 32),
}
_REGISTER = re.compile(r"(xx)?reg(\d+)$")


def _subfield_info(field: str) -> tuple[str, int]:
    """NXM name and width in bits of a field used as a bit range (reg3, xxreg1, ct_label...)."""
    m = _REGISTER.match(field)
    if m:
        return (f"NXM_NX_XXREG{m.group(2)}", 128) if m.group(1) else (f"NXM_NX_REG{m.group(2)}", 32)
    if field in SUBFIELDS:
        return SUBFIELDS[field]
    raise ValueError(f"{field!r} cannot be used as a bit range in an action")


def subfield(field: str, ofs: int, nbits: int) -> str:
    """``NXM_NX_REG3[0..23]``, ``NXM_NX_CT_MARK[31]``; ``NXM_NX_XXREG1[]`` for a whole field."""
    name, width = _subfield_info(field)
    if not (0 <= ofs and 0 < nbits and ofs + nbits <= width):
        raise ValueError(f"{field}[{ofs}+{nbits}] exceeds its {width} bits")
    if ofs == 0 and nbits == width:
        return f"{name}[]"
    if nbits == 1:
        return f"{name}[{ofs}]"
    return f"{name}[{ofs}..{ofs + nbits - 1}]"


# --- match ------------------------------------------------------------------
def ct_state_flags(value: int, mask: int | None) -> str:
    """(value, mask) bits as ``+trk+est-rpl``; only the masked bits are named."""
    mask = CT_STATE_ALL if mask is None else mask
    return "".join(("+" if value & bit else "-") + name
                   for name, bit in CT_STATE_FLAGS if mask & bit)


def _netmask(mask: str) -> str:
    """A contiguous netmask (dotted or IPv6) as its prefix length, as ovs-ofctl prints it."""
    try:
        bits = int(ipaddress.ip_address(mask))
    except ValueError:
        return mask
    width = 128 if ":" in mask else 32
    ones = bin(bits).count("1")
    return str(ones) if bits == ((1 << ones) - 1) << (width - ones) else mask


def format_value(field: str, value: MatchValue, mask: MatchValue | None = None) -> str:
    """One field value (and mask) the way ovs-ofctl reads and prints it."""
    if isinstance(value, str):
        if mask is None:
            return value
        return f"{value}/{_netmask(mask) if field.startswith(('ipv4', 'ipv6')) else mask}"
    if mask is not None:
        return f"{value:#x}/{mask:#x}"
    return str(value) if field in DECIMAL_FIELDS else f"{value:#x}"


def render_match_field(name: str, value: MatchValue, mask: MatchValue | None) -> str:
    if name == "ct_state":
        return f"ct_state={ct_state_flags(value, mask)}"
    return f"{OFCTL_NAMES.get(name, name)}={format_value(name, value, mask)}"


# --- actions ------------------------------------------------------------------
def _load(a: Load) -> str:
    return f"load:{a.value:#x}->{subfield(a.dst, a.ofs, a.nbits)}"


def _set_field(a: SetField) -> str:
    return f"set_field:{format_value(a.field, a.value)}->{OFCTL_NAMES.get(a.field, a.field)}"


def _move(a: Move) -> str:
    return f"move:{subfield(a.src, a.src_ofs, a.nbits)}->{subfield(a.dst, a.dst_ofs, a.nbits)}"


def _output(a: Output) -> str:
    return "IN_PORT" if a.port == "in_port" else f"output:{a.port}"


def _ct(a: Ct) -> str:
    z = a.zone_field
    parts = ["commit"] if a.commit else []
    parts.append(f"zone={subfield(z.register, z.ofs, z.nbits)}")
    if a.table:
        parts.append(f"table={table_id(a.table)}")
    if a.exec_:
        parts.append(f"exec({render_actions(a.exec_)})")
    return f"ct({','.join(parts)})"


_ACTIONS = {
    Load: _load,
    SetField: _set_field,
    Move: _move,
    Output: _output,
    GroupAction: lambda a: f"group:{a.group_id}",
    Resubmit: lambda a: f"resubmit(,{table_id(a.table)})",
    Ct: _ct,
    Conjunction: lambda a: f"conjunction({a.id},{a.clause}/{a.n_clauses})",
    DecTtl: lambda a: "dec_ttl",
    CtClear: lambda a: "ct_clear",
    Controller: lambda a: f"CONTROLLER:{a.max_len}",
    EncapNsh: lambda a: "encap(nsh(md_type=1))",
    EncapEthernet: lambda a: "encap(ethernet)",
    Decap: lambda a: "decap()",
}


def render_action(action: Action) -> str:
    return _ACTIONS[type(action)](action)


def render_actions(actions: tuple) -> str:
    return ",".join(render_action(a) for a in actions)


# --- flows and groups ---------------------------------------------------------
def render_flow(flow: Flow, cookie: int | None = None) -> str:
    """``add-flow`` text; ``cookie`` overrides the flow's (e.g. with its digest, as installed)."""
    cookie = flow.cookie if cookie is None else cookie
    head = [f"table={table_id(flow.table)}", f"cookie={cookie:#x}", f"priority={flow.priority}"]
    head += [render_match_field(*item) for item in flow.match]
    acts = [render_actions(flow.actions)] if flow.actions else []
    if flow.goto:
        acts.append(f"goto_table:{table_id(flow.goto)}")
    return f"{','.join(head)} actions={','.join(acts) or 'drop'}"


def _bucket(group: Group, b: Bucket) -> str:
    weight = f"weight:{b.weight}," if group.type == "select" else ""
    return f"bucket={weight}actions={render_actions(b.actions) or 'drop'}"


def render_group(group: Group) -> str:
    """``add-group`` text (bucket weights only for select groups, where they mean something)."""
    return ",".join([f"group_id={group.group_id}", f"type={group.type}",
                     *(_bucket(group, b) for b in group.buckets)])
