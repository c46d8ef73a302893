"""Neutral flow and group objects, checked against the table declarations.

The compiler builds these; ``render_ofctl`` turns them into ``ovs-ofctl`` text
(golden tests, docs, debugging) and ``ryu_si.datapath.ryu_render`` into Ryu
messages.  Objects are frozen and hashable so whole pipelines can be diffed as
sets.
"""
from __future__ import annotations

import ipaddress

import functools
from dataclasses import dataclass
from typing import Union

from openflow_tables.layout import ETH_IPS, TABLE_BY_NAME, WIDTHS, Field, Table, storage_bits

MatchValue = Union[int, str, tuple]


# --- actions ---------------------------------------------------------------
@dataclass(frozen=True)
class Load:
    """Write a constant into a bit range (``load:`` / NXAST_REG_LOAD)."""

    dst: str
    value: int
    ofs: int = 0
    nbits: int = 32

    @classmethod
    def field(cls, f: Field, value: int) -> "Load":
        return cls(f.register, value, f.ofs, f.nbits)


@dataclass(frozen=True)
class SetField:
    """Set a whole header field (MACs, IPs, ARP op, NSH fields)."""

    field: str
    value: MatchValue


@dataclass(frozen=True)
class Move:
    src: str
    dst: str
    src_ofs: int = 0
    dst_ofs: int = 0
    nbits: int = 32

    @classmethod
    def field(cls, f: Field, dst: str, dst_ofs: int = 0) -> "Move":
        """Copy layout field ``f`` into ``dst`` from bit ``dst_ofs`` on."""
        return cls(f.register, dst, f.ofs, dst_ofs, f.nbits)


@dataclass(frozen=True)
class Output:
    port: Union[int, str]  # a port number, or "in_port"


@dataclass(frozen=True)
class GroupAction:
    group_id: int


@dataclass(frozen=True)
class Resubmit:
    table: str


@dataclass(frozen=True)
class Ct:
    """``ct(commit?, zone=<reg bits>, table=<t>?, exec(...))``; no table: no recirculation."""

    commit: bool
    zone_field: Field
    table: str | None
    exec_: tuple = ()


@dataclass(frozen=True)
class EncapNsh:
    """``encap(nsh(md_type=1))``: the frame becomes the NSH payload (set SPI/SI next)."""


@dataclass(frozen=True)
class EncapEthernet:
    """``encap(ethernet)``: an outer Ethernet header around NSH."""


@dataclass(frozen=True)
class Decap:
    """``decap()``: remove the outermost header (twice to get from Ethernet+NSH to the frame)."""


@dataclass(frozen=True)
class Conjunction:
    id: int
    clause: int   # 1-based, as ovs-ofctl writes it
    n_clauses: int


@dataclass(frozen=True)
class DecTtl:
    pass


@dataclass(frozen=True)
class CtClear:
    """Forget the packet's conntrack state (a packet crossing to another router's zone)."""


@dataclass(frozen=True)
class Controller:
    """Packet-in to the controller; ``reason`` is carried as the cookie of the flow."""

    max_len: int = 0xFFFF


Action = Union[Load, SetField, Move, Output, GroupAction, Resubmit, Ct, Conjunction,
               DecTtl, CtClear, Controller, EncapNsh, EncapEthernet, Decap]


# --- flows and groups --------------------------------------------------------
@dataclass(frozen=True)
class Flow:
    table: str
    priority: int
    match: tuple = ()            # sorted ((field, value, mask|None), ...)
    actions: tuple = ()          # apply-actions
    goto: str | None = None      # goto_table instruction
    cookie: int = 0

    def key(self) -> tuple:
        """What OpenFlow identifies a flow by: a second flow with the same key replaces it."""
        return (self.table, self.priority, self.match)

    def __hash__(self) -> int:
        """Computed once: every compile and push puts each flow of a pipeline (tens of
        thousands, mostly the same objects from the compiler's caches) in dicts several
        times, and hashing the nested match and action tuples anew dominated a change."""
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.table, self.priority, self.match, self.actions, self.goto,
                      self.cookie))
            object.__setattr__(self, "_hash", h)
        return h


@dataclass(frozen=True)
class Bucket:
    actions: tuple
    weight: int = 1


@dataclass(frozen=True)
class Group:
    group_id: int
    type: str               # "select" | "all" | "ff"
    buckets: tuple = ()
    cookie: int = 0         # not sent (groups have no cookie); names the owner for diffs


class FlowError(ValueError):
    """A flow that its table declaration does not allow (a compiler bug)."""


def prefix_match(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> MatchValue:
    """A prefix as a match value: the address alone for a host, (address, mask) for a
    shorter prefix, None (no match entry) for a default route or 'any'."""
    if net.prefixlen == 0:
        return None
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net.network_address), str(net.netmask)


def match(**fields: MatchValue) -> tuple:
    """Canonical match tuple. ``reg12=(value, mask)`` makes a masked match."""
    items = []
    for name, v in fields.items():
        if v is None:
            continue
        if isinstance(v, tuple):
            items.append((name, v[0], v[1]))
        else:
            items.append((name, v, None))
    return tuple(sorted(items))


def flow(table: str, priority: int, match_: tuple, actions: tuple | list = (),
         goto: str | None = None, cookie: int = 0) -> Flow:
    """Build a flow, refusing jumps, matches and writes the table does not declare."""
    decl = _declaration(table)
    if goto:
        _check_target(decl, goto)
        if TABLE_BY_NAME[goto].id <= decl.id:
            raise FlowError(f"goto_table from {table!r} back to {goto!r}: OpenFlow only goes "
                            "forward; use Resubmit")
    for name, _, mask in match_:
        _check_bits(decl, "match", name, mask)
    _check_actions(decl, actions)
    if any(isinstance(a, Ct) for a in actions) and not any(
            ("eth_type", t, None) in match_ for t in ETH_IPS):
        raise FlowError(f"{table!r}: ct() needs eth_type=0x800 or 0x86dd in the flow's match "
                        "(OVS checks its prerequisites against the match, the outer header "
                        "after a decap)")
    if not 0 <= priority <= 0xFFFF:
        raise FlowError(f"priority {priority} out of range")
    return Flow(table, priority, match_, tuple(actions), goto, cookie)


def group(table: str, group_id: int, type_: str, buckets: tuple | list,
          cookie: int = 0) -> Group:
    """Build a group that flows of ``table`` send packets to.  Its buckets' actions run
    as part of that flow's, so the table's declaration checks them the same way: where
    they resubmit and what they write."""
    decl = _declaration(table)
    for b in buckets:
        try:
            _check_actions(decl, b.actions)
        except FlowError as e:
            raise FlowError(f"group {group_id} of {table!r}: {e}") from None
    return Group(group_id, type_, tuple(buckets), cookie)


def _declaration(table: str) -> Table:
    decl = TABLE_BY_NAME.get(table)
    if decl is None:
        raise FlowError(f"unknown table {table!r}")
    return decl


def _check_target(decl: Table, target: str) -> None:
    if target not in decl.next_tables:
        raise FlowError(f"table {decl.name!r} may not go to {target!r}")


def _check_bits(decl: Table, what: str, name: str, mask: object) -> None:
    """Refuse ``name`` (bits ``mask`` of it, for a register) unless the table declares
    it.  Masks of header fields (an IP netmask) do not matter: declared is whole."""
    refusal = _refusal(decl, what, name, mask if isinstance(mask, int) and name in WIDTHS
                       else None)
    if refusal:
        raise FlowError(refusal)


@functools.lru_cache(maxsize=1 << 14)
def _refusal(decl: Table, what: str, name: str, mask: int | None) -> str | None:
    """Why ``decl`` may not ``what`` ("match" or "write") bits ``mask`` of ``name``, or
    None.  Cached: the answer depends on the shape of a match or write, not on its
    value, and a compile asks the same few shapes for tens of thousands of flows."""
    allowed = decl.match_bits if what == "match" else decl.set_bits
    try:
        bits = storage_bits(name, mask)
    except ValueError as e:
        return f"table {decl.name!r}: {e}"
    for storage, m in bits.items():
        undeclared = m & ~allowed.get(storage, 0)
        if undeclared:
            where = f" ({storage} bits {undeclared:#x})" if undeclared > 0 else ""
            return f"table {decl.name!r} may not {what} {name!r}{where}"
    return None


def _check_actions(decl: Table, actions: tuple | list) -> None:
    """Jumps (resubmit, ct recirculation) and writes (loads, moves, set-field, ct exec,
    dec_ttl) of ``actions``, checked against ``decl``."""
    for a in actions:
        if isinstance(a, (Resubmit, Ct)) and a.table:
            _check_target(decl, a.table)
        if isinstance(a, Ct):
            _check_actions(decl, a.exec_)
        elif isinstance(a, Load):
            _check_bits(decl, "write", a.dst, ((1 << a.nbits) - 1) << a.ofs)
        elif isinstance(a, Move):
            _check_bits(decl, "write", a.dst, ((1 << a.nbits) - 1) << a.dst_ofs)
        elif isinstance(a, SetField):
            _check_bits(decl, "write", a.field, None)
        elif isinstance(a, DecTtl):
            _check_bits(decl, "write", "nw_ttl", None)


def fields(*pairs: tuple[Field, int]) -> dict[str, tuple[int, int]]:
    """Masked register matches for layout fields, merging fields that share a register."""
    out: dict[str, tuple[int, int]] = {}
    for f, v in pairs:
        val, mask = out.get(f.register, (0, 0))
        out[f.register] = (val | f.value(v), mask | f.mask)
    return out
