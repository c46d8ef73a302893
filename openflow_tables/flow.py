"""Neutral flow and group objects, checked against the table declarations.

The compiler builds these; ``render_ofctl`` turns them into ``ovs-ofctl`` text
(golden tests, docs, debugging) and ``ryu_si.ryu_render`` into Ryu
messages.  Objects are frozen and hashable so whole pipelines can be diffed as
sets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from openflow_tables.layout import TABLE_BY_NAME, Field

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
class Controller:
    """Packet-in to the controller; ``reason`` is carried as the cookie of the flow."""

    max_len: int = 0xFFFF


Action = Union[Load, SetField, Move, Output, GroupAction, Resubmit, Ct, Conjunction,
               DecTtl, Controller, EncapNsh, EncapEthernet, Decap]


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
    """Build a flow, refusing jumps the table does not declare."""
    decl = TABLE_BY_NAME.get(table)
    if decl is None:
        raise FlowError(f"unknown table {table!r}")
    targets = [goto] if goto else []
    targets += [a.table for a in actions if isinstance(a, (Resubmit, Ct)) and a.table]
    for t in targets:
        if t not in decl.next_tables:
            raise FlowError(f"table {table!r} may not go to {t!r}")
    if goto and TABLE_BY_NAME[goto].id <= decl.id:
        raise FlowError(f"goto_table from {table!r} back to {goto!r}: OpenFlow only goes "
                        "forward; use Resubmit")
    if not 0 <= priority <= 0xFFFF:
        raise FlowError(f"priority {priority} out of range")
    return Flow(table, priority, match_, tuple(actions), goto, cookie)


def check_group_targets(group: Group, from_table: str) -> None:
    """Buckets resubmit like the flow that sends to the group; check the same way."""
    decl = TABLE_BY_NAME[from_table]
    for b in group.buckets:
        for a in b.actions:
            if isinstance(a, Resubmit) and a.table not in decl.next_tables:
                raise FlowError(f"group {group.group_id}: {from_table!r} may not go to {a.table!r}")


def fields(*pairs: tuple[Field, int]) -> dict[str, tuple[int, int]]:
    """Masked register matches for layout fields, merging fields that share a register."""
    out: dict[str, tuple[int, int]] = {}
    for f, v in pairs:
        val, mask = out.get(f.register, (0, 0))
        out[f.register] = (val | f.value(v), mask | f.mask)
    return out
