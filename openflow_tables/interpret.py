"""Run a compiled pipeline on packets, with conntrack, as Open vSwitch would: no switch.

Tests ask "where does this packet go, and what does conntrack hold after it?"
of the compiler's own neutral flows, so an invariant over thousands of packet
sequences can be checked in seconds.  The semantics follow ovs-fields(7) and
ovs-actions(7) where the pipeline depends on them:

* **Lookup**: the highest-priority flow whose every match entry matches (masked
  compare); a field the packet does not have (tcp_dst of a UDP packet) never
  matches.  A table miss drops, as OVS does from OpenFlow 1.3 on: ``Table.miss``
  in the layout is documentation, nothing installs it.  Two different flows of
  one top priority that both match are an error here (OVS picks one arbitrarily).
* **Conjunctive matches** as OVS's classifier: flows whose actions are all
  ``conjunction`` are soft matches; from the highest priority down, while above
  the best ordinary flow, a priority whose soft matches cover every clause of a
  conjunction ``id`` makes the lookup again with ``conj_id=id`` (ordinary flows
  only).  The first id completed wins (soft flows taken in priority, then
  listing, order; OVS takes them in an arbitrary order).
* **Instructions**: apply-actions, then goto_table.  ``resubmit`` runs the named
  table on the same packet (its changes stay) and then the remaining actions.
* **ct** looks the packet up in the zone held by ``zone_field``.  An entry is
  keyed by its original tuple and found from either direction.  Unknown
  connection: ``+trk+new``, ct_mark/ct_label 0, the ct_nw_* tuple is the
  packet's own.  Known: ``+trk+est`` (``+rpl`` in the reply direction), the
  entry's ct_mark/ct_label, the ct_nw_* tuple of its ORIGINAL direction.  (No TCP
  window tracking: every packet of a known entry is ``+est``, where OVS may still
  say ``+new`` before it has seen a reply; no flow of this pipeline matches new or
  est.)  ``+trk+inv`` for a TCP packet whose ``tcp_flags`` OVS's conntrack refuses
  (SYN with RST or FIN, neither ACK nor RST without SYN, FIN/PSH/URG without ACK)
  or that would open a connection with SYN+ACK; a packet given without
  ``tcp_flags`` is valid; an invalid packet is never committed.
  ``commit`` creates the entry (original direction = this packet's)
  and runs ``exec``: its writes to ct_mark/ct_label are masked writes onto the
  entry's current values.  With ``table=`` a copy of the packet (registers and
  header changes kept, as recirculation does) is queued to resume at that
  table with the ct fields set; it runs after the current pass ends.  The
  packet that executed the ct action goes on with its remaining actions
  *untracked*: ct_state and the other ct fields cleared (ovs-actions(7): "the
  original instance of the packet will continue processing the current actions
  list as an untracked packet"), so values committed by exec are visible only
  to the recirculated copy.
* **Groups**: ``select`` picks one bucket per connection with highest-random-
  weight hashing (score = hash(connection, bucket index) & 0xffff times the
  bucket's weight, as OVS's default selection scores buckets) over a hash of
  the 5-tuple that is symmetric (both directions pick the same bucket); ``all``
  runs every bucket, ``indirect`` its one bucket, ``ff`` its first (no port
  liveness here).  Each bucket acts on a copy of the packet.  The walk records
  every group with its bucket set and the bucket(s) taken (``GroupPick``); a
  select group's pick is marked not ``predicted``: the pipeline's select groups
  use OVS's own datapath hash, so the switch may take any bucket of the set (the
  interpreter's pick is stable per connection, as the switch's is).
* **Output** to the packet's own in_port is skipped (OVS sends there only with
  ``in_port``/IN_PORT).  ``dec_ttl`` on a TTL of 0 or 1 ends the pass (the
  packet is dropped).  ``controller`` records a packet-in and goes on.
* **NSH**: ``encap(nsh)`` keeps the frame as the inner packet and makes the NSH
  header (spi 0, si 255) the visible one; ``encap(ethernet)`` adds an outer
  Ethernet header (eth_type 0x894f) over it; ``decap()`` removes the outermost
  header.  An output records the visible headers and the inner frames, so a
  chain redirect is observable as ``Sent.nsh``.
* **Tunnels**: none to model.  The pipeline sets no tunnel field: a VTI is an
  OVS port like any other, and the service plane is reached by a port.
* **The walk**: ``Result.trace`` holds one ``Step`` per lookup (table, flow,
  pass, resubmit depth, the packet as the lookup saw it, and what its actions
  did that a reader needs: outputs, groups, ct, packet-ins), and
  ``Result.describe`` prints it table by table in the spirit of ``ofproto/trace``.
  ``Bridge.matching`` lists every flow of a table a packet matches, winner first
  (what ``ryu_si.diagnose.trace`` reports as the rules that cover a connection).
"""
from __future__ import annotations

import collections
import functools
import ipaddress
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, NamedTuple, Protocol

from openflow_tables.flow import (Conjunction, Controller, Ct, Decap, DecTtl, EncapEthernet,
                                  EncapNsh, Flow, Group, GroupAction, Load, Move, Output,
                                  Resubmit, SetField)
from openflow_tables.layout import (CT_EST, CT_INV, CT_NEW, CT_RPL, CT_TRK, ETH_IP, ETH_NSH,
                                    TABLES, TP_FIELDS)
from openflow_tables.walk import describe_walk

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
FIRST_TABLE = min(TABLES, key=lambda t: t.id).name
MAX_RESUBMIT_DEPTH = 64      # OVS's own limit
MAX_PASSES = 32              # recirculations of one packet before we call it a loop

IP_FIELDS = frozenset({"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa", "ct_nw_src", "ct_nw_dst"})
MAC_FIELDS = frozenset({"eth_src", "eth_dst", "arp_sha", "arp_tha"})
# Per-packet metadata (not headers): zero until written.
CT_TUPLE_FIELDS = ("ct_nw_proto", "ct_nw_src", "ct_nw_dst", "ct_tp_src", "ct_tp_dst")
CT_META = ("ct_state", "ct_zone", "ct_mark", "ct_label", *CT_TUPLE_FIELDS)
META_FIELDS = frozenset({"in_port", "metadata", "conj_id", *CT_META})
WIDTHS: dict[str, int] = {
    "in_port": 32, "metadata": 64, "conj_id": 32,
    "ct_state": 32, "ct_zone": 16, "ct_mark": 32, "ct_label": 128, "ct_nw_proto": 8,
    "ct_nw_src": 32, "ct_nw_dst": 32, "ct_tp_src": 16, "ct_tp_dst": 16,
    "eth_src": 48, "eth_dst": 48, "eth_type": 16, "ip_proto": 8, "nw_ttl": 8, "ip_dscp": 6,
    "ipv4_src": 32, "ipv4_dst": 32, "tcp_src": 16, "tcp_dst": 16, "tcp_flags": 12,
    "udp_src": 16, "udp_dst": 16, "icmp_type": 8, "icmp_code": 8, "icmp_id": 16,
    "arp_op": 16, "arp_spa": 32, "arp_tpa": 32, "arp_sha": 48, "arp_tha": 48,
    "nsh_flags": 8, "nsh_ttl": 6, "nsh_mdtype": 8, "nsh_np": 8, "nsh_spi": 24, "nsh_si": 8,
    "nsh_c1": 32, "nsh_c2": 32, "nsh_c3": 32, "nsh_c4": 32,
}
NSH_FIELDS = ("nsh_flags", "nsh_ttl", "nsh_mdtype", "nsh_np", "nsh_spi", "nsh_si",
              "nsh_c1", "nsh_c2", "nsh_c3", "nsh_c4")
# Register views -> (first 32-bit register, how many): xxreg1 = reg4..reg7, reg4 the
# most significant; xreg1 = reg2:reg3.
REGISTERS: dict[str, tuple[int, int]] = {
    **{f"reg{n}": (n, 1) for n in range(16)},
    **{f"xreg{n}": (2 * n, 2) for n in range(8)},
    **{f"xxreg{n}": (4 * n, 4) for n in range(4)},
}


class InterpretError(Exception):
    """The pipeline did something OVS would refuse or loop on (a compiler bug)."""


class PipelineLike(Protocol):
    """``compile.Pipeline`` (not imported: it brings the model in with it)."""

    flows: tuple[Flow, ...]
    groups: tuple[Group, ...]


# --- values ------------------------------------------------------------------------------
def to_int(name: str, value: Any) -> int:
    """A field value as the integer OVS holds (dotted IPv4, colon MAC, or an int)."""
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise InterpretError(f"{name}: cannot use {value!r} as a value")
    if ":" in value:
        return int(value.replace(":", ""), 16)
    if "." in value:
        return int(ipaddress.IPv4Address(value))
    return int(value, 0)


def _match_entry(name: str, value: Any, mask: Any) -> tuple[str, int, int | None]:
    """One match entry as (field, value, mask) integers; ``10.0.0.0/24`` strings too."""
    if isinstance(value, str) and "/" in value and mask is None:
        net = ipaddress.IPv4Network(value, strict=False)
        value, mask = str(net.network_address), int(net.netmask)
    if isinstance(mask, str) and name in IP_FIELDS and "." not in mask:
        mask = int(ipaddress.IPv4Network(f"0.0.0.0/{mask}").netmask)
    m = None if mask is None else to_int(name, mask)
    v = to_int(name, value)
    return name, v if m is None else v & m, m


def show(name: str, value: int) -> Any:
    """A header value as people write it (dotted IPv4, colon MAC, else the int)."""
    if name in IP_FIELDS:
        return str(ipaddress.IPv4Address(value))
    if name in MAC_FIELDS:
        return ":".join(f"{value:012x}"[i:i + 2] for i in range(0, 12, 2))
    return value


def _width(name: str) -> int:
    if name in REGISTERS:
        return 32 * REGISTERS[name][1]
    if name not in WIDTHS:
        raise InterpretError(f"unknown field {name!r}")
    return WIDTHS[name]


# --- the packet --------------------------------------------------------------------------
@dataclass
class Packet:
    """Headers, registers and metadata of one packet in flight (all integers)."""

    headers: dict[str, int]
    meta: dict[str, int]
    regs: list[int] = field(default_factory=lambda: [0] * 16)
    inner: list[dict[str, int]] = field(default_factory=list)   # frames under NSH

    def copy(self) -> "Packet":
        return Packet(dict(self.headers), dict(self.meta), list(self.regs),
                      [dict(h) for h in self.inner])

    def read(self, name: str) -> int | None:
        """The field's value; None for a header the packet does not carry."""
        view = REGISTERS.get(name)
        if view is not None:
            first, n = view
            value = 0
            for r in self.regs[first:first + n]:
                value = (value << 32) | r
            return value
        if name in META_FIELDS:
            return self.meta.get(name, 0)
        return self.headers.get(name)

    def write(self, name: str, value: int) -> None:
        value &= (1 << _width(name)) - 1
        view = REGISTERS.get(name)
        if view is not None:
            first, n = view
            for k in range(n):
                self.regs[first + k] = (value >> (32 * (n - 1 - k))) & 0xFFFFFFFF
        elif name in ("ct_mark", "ct_label"):
            raise InterpretError(f"{name} can be written only in ct(commit, exec(...))")
        elif name in META_FIELDS:
            self.meta[name] = value
        elif name in self.headers:
            self.headers[name] = value
        else:
            raise InterpretError(f"the packet has no {name} to set")

    def clear_ct(self) -> None:
        """Untracked again, as the packet that executed a ct action goes on."""
        for name in CT_META:
            self.meta.pop(name, None)

    def registers(self) -> dict[str, int]:
        return {"metadata": self.meta.get("metadata", 0),
                **{f"reg{n}": v for n, v in enumerate(self.regs)}}

    def visible(self) -> dict[str, Any]:
        return {k: show(k, v) for k, v in self.headers.items()}


class _Fields(Protocol):
    """A packet, or the view ct exec actions have of it."""

    def read(self, name: str) -> int | None: ...

    def write(self, name: str, value: int) -> None: ...


def _read_bits(pkt: _Fields, name: str, ofs: int, nbits: int) -> int:
    value = pkt.read(name)
    if value is None:
        raise InterpretError(f"the packet has no {name} to read")
    if ofs + nbits > _width(name):
        raise InterpretError(f"{name}[{ofs}+{nbits}] exceeds its {_width(name)} bits")
    return (value >> ofs) & ((1 << nbits) - 1)


def _write_bits(pkt: _Fields, name: str, ofs: int, nbits: int, value: int) -> None:
    if ofs + nbits > _width(name):
        raise InterpretError(f"{name}[{ofs}+{nbits}] exceeds its {_width(name)} bits")
    old = pkt.read(name)
    if old is None:
        raise InterpretError(f"the packet has no {name} to set")
    mask = ((1 << nbits) - 1) << ofs
    pkt.write(name, (old & ~mask) | ((value << ofs) & mask))


# --- conntrack ---------------------------------------------------------------------------
Tuple5 = tuple[int, int, int, int, int]   # ip_proto, source, destination, tp_src, tp_dst


@dataclass
class CtEntry:
    """One connection: its original-direction tuple and what was committed to it."""

    zone: int
    orig: Tuple5          # as the ct_nw_* / ct_tp_* fields show it
    mark: int = 0
    label: int = 0

    def read(self, name: str) -> int:
        return self.mark if name == "ct_mark" else self.label


class CtKey(NamedTuple):
    """How conntrack finds a packet's connection."""

    mine: Tuple5      # this packet's direction
    other: Tuple5     # the opposite direction
    shown: Tuple5     # what ct_nw_*/ct_tp_* show if this packet starts the connection


def ct_key(h: Mapping[str, int]) -> CtKey:
    """TCP and UDP by ports; ICMP echo by its id (request and reply pair up); any
    other protocol by its addresses alone."""
    if h.get("eth_type") != ETH_IP or "ipv4_src" not in h:
        raise InterpretError("ct on a packet that is not IPv4 (OVS requires ip in the match)")
    proto, src, dst = h.get("ip_proto", 0), h["ipv4_src"], h["ipv4_dst"]
    if proto in TP_FIELDS:
        sport, dport = (h.get(f, 0) for f in TP_FIELDS[proto])
        mine = (proto, src, dst, sport, dport)
        return CtKey(mine, (proto, dst, src, dport, sport), mine)
    if proto == IPPROTO_ICMP and h.get("icmp_type") in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY):
        ident, req = h.get("icmp_id", 0), int(h["icmp_type"] == ICMP_ECHO_REQUEST)
        return CtKey((proto, src, dst, ident, req), (proto, dst, src, ident, 1 - req),
                     (proto, src, dst, h["icmp_type"], h.get("icmp_code", 0)))
    return CtKey((proto, src, dst, 0, 0), (proto, dst, src, 0, 0), (proto, src, dst, 0, 0))


TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


def tcp_invalid(h: Mapping[str, int], known: bool) -> bool:
    """What OVS's userspace conntrack calls +inv by the TCP flags alone (conntrack-tcp.c:
    ``tcp_invalid_flags``, and ``tcp_valid_new`` for a packet that would open a
    connection).  A packet given without ``tcp_flags`` passes."""
    flags = h.get("tcp_flags")
    if flags is None or h.get("ip_proto") != IPPROTO_TCP:
        return False
    if flags & TCP_SYN:
        if flags & (TCP_RST | TCP_FIN):
            return True
    elif not flags & (TCP_ACK | TCP_RST):
        return True
    if not flags & TCP_ACK and flags & (TCP_FIN | TCP_PSH | TCP_URG):
        return True
    return not known and flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK


class Conntrack:
    """The datapath's connection table: it outlives packets and pipeline recompiles."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, Tuple5], tuple[CtEntry, bool]] = {}

    def lookup(self, zone: int, key: CtKey) -> tuple[CtEntry | None, bool]:
        """The connection's entry, and whether the packet travels in its reply direction."""
        return self._by_key.get((zone, key.mine), (None, False))

    def commit(self, zone: int, key: CtKey) -> tuple[CtEntry, bool, bool]:
        """(entry, reply direction, created): the connection's entry, made if absent with
        this packet's direction as the original one."""
        entry, reply = self.lookup(zone, key)
        if entry is not None:
            return entry, reply, False
        entry = CtEntry(zone, key.shown)
        self._by_key[(zone, key.mine)] = (entry, False)
        self._by_key[(zone, key.other)] = (entry, True)
        return entry, False, True

    def entries(self, zone: int | None = None) -> list[CtEntry]:
        return [e for e, reply in self._by_key.values()
                if not reply and (zone is None or e.zone == zone)]

    def clear(self) -> None:
        self._by_key.clear()

    def flush_zone(self, zone: int) -> None:
        """Forget every connection of one zone (what NXT_CT_FLUSH_ZONE asks of OVS)."""
        self._by_key = {k: v for k, v in self._by_key.items() if k[0] != zone}

    def __len__(self) -> int:
        return len(self._by_key) // 2


@dataclass
class _ExecView:
    """What ``ct(commit, exec(...))`` actions see: the entry's ct_mark and ct_label,
    the packet's other fields (read only)."""

    pkt: Packet
    entry: CtEntry

    def read(self, name: str) -> int | None:
        return self.entry.read(name) if name in ("ct_mark", "ct_label") else self.pkt.read(name)

    def write(self, name: str, value: int) -> None:
        if name == "ct_mark":
            self.entry.mark = value & 0xFFFFFFFF
        elif name == "ct_label":
            self.entry.label = value & ((1 << 128) - 1)
        else:
            raise InterpretError(f"ct exec may only set ct_mark or ct_label, not {name}")


# --- results -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Sent:
    """A packet that left the bridge: its port and headers (inner frames under NSH)."""

    port: int
    headers: dict[str, Any]
    inner: tuple[dict[str, Any], ...] = ()

    @property
    def nsh(self) -> tuple[int, int] | None:
        """(SPI, SI) when the packet left with an NSH header."""
        if "nsh_spi" not in self.headers:
            return None
        return self.headers["nsh_spi"], self.headers["nsh_si"]


@dataclass(frozen=True)
class PacketIn:
    """A packet sent to the controller: from which table and flow (the cookie says why)."""

    table: str
    cookie: int
    max_len: int
    headers: dict[str, Any]
    registers: dict[str, int]


@dataclass(frozen=True)
class GroupPick:
    """A group a flow ran: its bucket set and the buckets taken.  ``predicted`` is False
    for a select group: the switch hashes on its own, so it may take any bucket."""

    group_id: int
    type: str
    buckets: int
    taken: tuple[int, ...]
    predicted: bool


@dataclass
class Step:
    """One table lookup: the flow that matched (None: a miss), in which pass and at
    which resubmit depth, the packet as the lookup saw it, and what the flow's actions
    did that a reader needs: ``events`` in order, each ("output", port), ("output
    skipped: in_port", port), ("controller", cookie), ("group", GroupPick), ("ct", zone,
    commit, state, pass the copy resumes in or None) or ("ttl expired",)."""

    table: str
    flow: Flow | None
    recirc: int = 0
    depth: int = 0
    packet: Packet | None = field(default=None, repr=False)
    events: list[tuple] = field(default_factory=list)

    @property
    def groups(self) -> list[GroupPick]:
        return [e[1] for e in self.events if e[0] == "group"]


@dataclass
class Result:
    """Everything one packet did, recirculations included."""

    outputs: list[Sent] = field(default_factory=list)
    packet_ins: list[PacketIn] = field(default_factory=list)
    trace: list[Step] = field(default_factory=list)
    registers: dict[str, int] = field(default_factory=dict)   # at the end of the last pass

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.outputs]

    @property
    def dropped(self) -> bool:
        return not self.outputs and not self.packet_ins

    def tables(self) -> list[str]:
        return [s.table for s in self.trace]

    def describe(self, port_names: Mapping[int, str] | None = None) -> str:
        """The walk table by table, as a person reads it: each pass with the state
        it starts in, each lookup with its table number, flow (priority, the object
        its cookie names, match) and actions, then what those actions did."""
        return describe_walk(self.trace, port_names or {})


# --- the bridge --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Entry:
    flow: Flow
    match: tuple[tuple[str, int, int | None], ...]
    soft: bool                     # conjunction actions only: a clause of a conjunctive match


@functools.lru_cache(maxsize=1 << 16)
def _entry(f: Flow) -> _Entry:
    """A flow ready for lookups (cached: a recompile gives mostly the same flows)."""
    soft = bool(f.actions) and all(isinstance(a, Conjunction) for a in f.actions)
    return _Entry(f, tuple(_match_entry(*m) for m in f.match), soft)


def _matches(entry: _Entry, pkt: Packet) -> bool:
    for name, value, mask in entry.match:
        have = pkt.read(name)
        if have is None:
            if mask == 0:
                continue
            return False
        if (have if mask is None else have & mask) != value:
            return False
    return True


class Bridge:
    """One switch's tables and groups, indexed for lookups.

    ``ties``: what to do when two different flows of one priority both match (OVS picks
    either): "error" (tests: the compiler must not leave such overlaps) or "first"
    (take the one listed first, as a trace of an overlapping config does: the
    compiler lists rules by rule number)."""

    def __init__(self, pipeline: PipelineLike, ties: str = "error") -> None:
        tables: dict[str, list[_Entry]] = collections.defaultdict(list)
        for f in pipeline.flows:
            tables[f.table].append(_entry(f))
        self.tables = {t: sorted(es, key=lambda e: -e.flow.priority) for t, es in tables.items()}
        self.groups = {g.group_id: g for g in pipeline.groups}
        self.ties = ties

    def send(self, conntrack: Conntrack, in_port: int, headers: Mapping[str, Any],
             inner: Iterable[Mapping[str, Any]] = ()) -> Result:
        """Run one packet that arrives on ``in_port``, with ``conntrack`` as the
        connection table.  ``inner`` (outermost first) gives the frames under NSH."""
        pkt = Packet({k: to_int(k, v) for k, v in headers.items()}, {"in_port": in_port},
                     inner=[{k: to_int(k, v) for k, v in h.items()} for h in reversed(
                         list(inner))])
        return _Run(self, conntrack).run(pkt, FIRST_TABLE)

    def lookup(self, table: str, pkt: Packet) -> Flow | None:
        """The flow OVS's classifier picks for this packet (conjunctive matches included)."""
        entries = self.tables.get(table, [])
        hard, soft = self._hard(entries, pkt, self.ties)
        hard_pri = hard.priority if hard else -1
        for pri in sorted({e.flow.priority for e in soft if e.flow.priority > hard_pri},
                          reverse=True):
            for conj in _complete_conjunctions([e for e in soft if e.flow.priority == pri])[:1]:
                pkt.meta["conj_id"] = conj
                try:
                    found, _ = self._hard(entries, pkt, self.ties, with_soft=False)
                finally:
                    pkt.meta.pop("conj_id")
                if found is not None:
                    return found
        return hard

    def matching(self, table: str, pkt: Packet) -> list[Flow]:
        """Every flow of ``table`` the packet matches, highest priority first: ordinary
        flows, and the ``conj_id`` flow of each conjunction the packet completes."""
        entries = self.tables.get(table, [])
        soft = [e for e in entries if e.soft and _matches(e, pkt)]
        done = {(pri, conj) for pri in {e.flow.priority for e in soft}
                for conj in _complete_conjunctions([e for e in soft if e.flow.priority == pri])}
        out = []
        for e in entries:
            conj = next((v for name, v, _ in e.match if name == "conj_id"), None)
            if e.soft or (conj is not None and (e.flow.priority, conj) not in done):
                continue
            if conj is not None:
                pkt.meta["conj_id"] = conj
            try:
                if _matches(e, pkt):
                    out.append(e.flow)
            finally:
                pkt.meta.pop("conj_id", None)
        return out

    @staticmethod
    def _hard(entries: list[_Entry], pkt: Packet, ties: str, with_soft: bool = True
              ) -> tuple[Flow | None, list[_Entry]]:
        """The best ordinary flow, and the soft matches above or beside it."""
        soft: list[_Entry] = []
        best: Flow | None = None
        for e in entries:
            if best is not None and e.flow.priority < best.priority:
                break
            if not _matches(e, pkt):
                continue
            if e.soft:
                if with_soft:
                    soft.append(e)
            elif best is None:
                best = e.flow
            elif (e.flow.actions, e.flow.goto) != (best.actions, best.goto) and ties == "error":
                raise InterpretError(f"two flows of priority {best.priority} in {best.table} "
                                     f"match one packet and act differently: {best} / {e.flow}")
        return best, soft


def _complete_conjunctions(soft: list[_Entry]) -> list[int]:
    """The conjunction ids whose clauses the soft matches of one priority all cover, in
    the order the soft matches complete them."""
    clauses: dict[int, set[int]] = {}
    done: list[int] = []
    for e in soft:
        for c in e.flow.actions:
            got = clauses.setdefault(c.id, set())
            got.add(c.clause)
            if len(got) == c.n_clauses and c.id not in done:
                done.append(c.id)
    return done


# --- running a packet --------------------------------------------------------------------
class _Stop(Exception):
    """The pass ends here (dec_ttl on an expiring TTL)."""


class _Run:
    """One packet's trip through a bridge, recirculations included."""

    def __init__(self, bridge: Bridge, conntrack: Conntrack) -> None:
        self.bridge = bridge
        self.ct = conntrack
        self.result = Result()
        self.queue: collections.deque[tuple[Packet, str]] = collections.deque()
        self.passes = 0
        self.depth = 0
        self.current: list[Step] = []     # the steps whose actions are running, innermost last

    def run(self, pkt: Packet, table: str) -> Result:
        self.queue.append((pkt, table))
        while self.queue:
            if self.passes >= MAX_PASSES:
                raise InterpretError(f"more than {MAX_PASSES} recirculations: a loop?\n"
                                     + self.result.describe())
            pkt, table = self.queue.popleft()
            try:
                self.tables(pkt, table)
            except _Stop:
                pass
            self.result.registers = pkt.registers()
            self.passes += 1
        return self.result

    def tables(self, pkt: Packet, table: str | None) -> None:
        """Look up ``table``, apply, go to the next one until a flow has no goto."""
        while table is not None:
            flow = self.bridge.lookup(table, pkt)
            step = Step(table, flow, self.passes, self.depth, pkt.copy())
            self.result.trace.append(step)
            if flow is None:
                return
            self.current.append(step)
            try:
                self.actions(pkt, flow.actions, flow)
            finally:
                self.current.pop()
            table = flow.goto

    def note(self, *event: Any) -> None:
        self.current[-1].events.append(event)

    def actions(self, pkt: Packet, actions: Iterable, flow: Flow) -> None:
        for a in actions:
            handler = _HANDLERS.get(type(a))
            if handler is None:
                raise InterpretError(f"{flow.table}: cannot execute {a!r}")
            handler(self, pkt, a, flow)

    # --- one handler per action ---
    def _load(self, pkt: Packet, a: Load, flow: Flow) -> None:
        _write_bits(pkt, a.dst, a.ofs, a.nbits, a.value)

    def _set_field(self, pkt: Packet, a: SetField, flow: Flow) -> None:
        pkt.write(a.field, to_int(a.field, a.value))

    def _move(self, pkt: Packet, a: Move, flow: Flow) -> None:
        _write_bits(pkt, a.dst, a.dst_ofs, a.nbits, _read_bits(pkt, a.src, a.src_ofs, a.nbits))

    def _output(self, pkt: Packet, a: Output, flow: Flow) -> None:
        in_port = pkt.meta["in_port"]
        if a.port != "in_port" and a.port == in_port:
            self.note("output skipped: in_port", a.port)
            return
        port = in_port if a.port == "in_port" else a.port
        self.note("output", port)
        self.result.outputs.append(Sent(port, pkt.visible(),
                                        tuple({k: show(k, v) for k, v in h.items()}
                                              for h in reversed(pkt.inner))))

    def _controller(self, pkt: Packet, a: Controller, flow: Flow) -> None:
        self.note("controller", flow.cookie)
        self.result.packet_ins.append(PacketIn(flow.table, flow.cookie, a.max_len,
                                               pkt.visible(), pkt.registers()))

    def _resubmit(self, pkt: Packet, a: Resubmit, flow: Flow) -> None:
        if self.depth >= MAX_RESUBMIT_DEPTH:
            raise InterpretError(f"resubmit deeper than {MAX_RESUBMIT_DEPTH}: a loop?")
        self.depth += 1
        try:
            self.tables(pkt, a.table)
        finally:
            self.depth -= 1

    def _group(self, pkt: Packet, a: GroupAction, flow: Flow) -> None:
        g = self.bridge.groups.get(a.group_id)
        if g is None:
            raise InterpretError(f"{flow.table}: group {a.group_id} does not exist")
        taken = _buckets(g, pkt)
        self.note("group", GroupPick(g.group_id, g.type, len(g.buckets), taken,
                                     g.type != "select"))
        for n in taken:
            self.actions(pkt.copy(), g.buckets[n].actions, flow)

    def _dec_ttl(self, pkt: Packet, a: DecTtl, flow: Flow) -> None:
        ttl = pkt.read("nw_ttl")
        if ttl is None:
            raise InterpretError("dec_ttl on a packet without an IP TTL")
        if ttl <= 1:
            self.note("ttl expired")
            raise _Stop()
        pkt.write("nw_ttl", ttl - 1)

    def _ct(self, pkt: Packet, a: Ct, flow: Flow) -> None:
        zone = _read_bits(pkt, a.zone_field.register, a.zone_field.ofs, a.zone_field.nbits)
        if a.exec_ and not a.commit:
            raise InterpretError("ct exec without commit")
        key = ct_key(pkt.headers)
        known, reply = self.ct.lookup(zone, key)
        if tcp_invalid(pkt.headers, known is not None):
            self._recirculate(pkt, a, zone, CT_TRK | CT_INV, CtEntry(zone, key.shown))
            return
        if a.commit:
            entry, reply, created = self.ct.commit(zone, key)
            view = _ExecView(pkt, entry)
            for x in a.exec_:
                if isinstance(x, Load):
                    _write_bits(view, x.dst, x.ofs, x.nbits, x.value)
                elif isinstance(x, Move):
                    _write_bits(view, x.dst, x.dst_ofs, x.nbits,
                                _read_bits(view, x.src, x.src_ofs, x.nbits))
                elif isinstance(x, SetField):
                    view.write(x.field, to_int(x.field, x.value))
                else:
                    raise InterpretError(f"ct exec cannot run {x!r}")
        else:
            entry, created = known, False
        new = entry is None or created
        state = CT_TRK | (CT_NEW if new else CT_EST) | (CT_RPL if reply else 0)
        self._recirculate(pkt, a, zone, state, entry or CtEntry(zone, key.shown))

    def _recirculate(self, pkt: Packet, a: Ct, zone: int, state: int, entry: CtEntry) -> None:
        """Queue the tracked copy (ct with ``table``); the packet itself goes on untracked."""
        resumes = None
        if a.table is not None:
            copy = pkt.copy()
            _set_ct_fields(copy, zone, entry, state)
            self.queue.append((copy, a.table))
            resumes = self.passes + len(self.queue)
        self.note("ct", zone, a.commit, state, resumes)
        pkt.clear_ct()

    def _encap_nsh(self, pkt: Packet, a: EncapNsh, flow: Flow) -> None:
        pkt.inner.append(pkt.headers)
        pkt.headers = {"nsh_flags": 0, "nsh_ttl": 63, "nsh_mdtype": 1, "nsh_np": 3,
                       "nsh_spi": 0, "nsh_si": 255, "nsh_c1": 0, "nsh_c2": 0, "nsh_c3": 0,
                       "nsh_c4": 0}

    def _encap_ethernet(self, pkt: Packet, a: EncapEthernet, flow: Flow) -> None:
        if "nsh_spi" not in pkt.headers or "eth_type" in pkt.headers:
            raise InterpretError("encap(ethernet) on a packet that is not bare NSH")
        pkt.headers = {"eth_src": 0, "eth_dst": 0, "eth_type": ETH_NSH, **pkt.headers}

    def _decap(self, pkt: Packet, a: Decap, flow: Flow) -> None:
        h = pkt.headers
        if "nsh_spi" in h and "eth_type" in h:
            pkt.headers = {k: v for k, v in h.items() if k in NSH_FIELDS}
        elif "nsh_spi" in h and pkt.inner:
            pkt.headers = pkt.inner.pop()
        else:
            raise InterpretError("decap() of a packet with no NSH header")

    def _conjunction(self, pkt: Packet, a: Conjunction, flow: Flow) -> None:
        raise InterpretError(f"{flow.table}: conjunction mixed with other actions: {flow}")


_HANDLERS = {
    Load: _Run._load, SetField: _Run._set_field, Move: _Run._move, Output: _Run._output,
    Controller: _Run._controller, Resubmit: _Run._resubmit, GroupAction: _Run._group,
    DecTtl: _Run._dec_ttl, Ct: _Run._ct, EncapNsh: _Run._encap_nsh,
    EncapEthernet: _Run._encap_ethernet, Decap: _Run._decap, Conjunction: _Run._conjunction,
}


def _set_ct_fields(pkt: Packet, zone: int, entry: CtEntry, state: int) -> None:
    """What the recirculated packet sees after a ct action (an unknown connection shows
    an empty entry with its own tuple)."""
    pkt.meta["ct_state"] = state
    pkt.meta["ct_zone"] = zone
    pkt.meta["ct_mark"] = entry.mark
    pkt.meta["ct_label"] = entry.label
    pkt.meta.update(zip(CT_TUPLE_FIELDS, entry.orig))


def connection_hash(pkt: Packet) -> int:
    """A hash of the 5-tuple that both directions of a connection share."""
    h = pkt.headers
    proto = h.get("ip_proto", 0)
    sport, dport = (h.get(f, 0) for f in TP_FIELDS.get(proto, ("", "")))
    ends = sorted([(h.get("ipv4_src", 0), sport), (h.get("ipv4_dst", 0), dport)])
    return zlib.crc32(repr((proto, ends)).encode())


def _buckets(g: Group, pkt: Packet) -> tuple[int, ...]:
    """The indices of the buckets the packet takes."""
    if not g.buckets:
        return ()
    if g.type == "select":
        basis = connection_hash(pkt)
        scores = [((zlib.crc32(f"{basis}:{n}".encode()) & 0xFFFF) * b.weight, -n)
                  for n, b in enumerate(g.buckets)]
        return (-max(scores)[1],)
    if g.type == "all":
        return tuple(range(len(g.buckets)))
    return (0,)          # indirect; ff without port liveness


# --- the datapath ------------------------------------------------------------------------
class Datapath:
    """Bridges by dpid sharing one conntrack, as OVS's userspace datapath does.

    Load a bridge's compiled pipeline with ``load`` (again after every recompile:
    conntrack entries stay) and send packets in with ``send``."""

    def __init__(self, conntrack: Conntrack | None = None) -> None:
        self.conntrack = conntrack if conntrack is not None else Conntrack()
        self.bridges: dict[int, Bridge] = {}

    def load(self, dpid: int, pipeline: PipelineLike) -> Bridge:
        self.bridges[dpid] = Bridge(pipeline)
        return self.bridges[dpid]

    def send(self, dpid: int, in_port: int, headers: Mapping[str, Any],
             inner: Iterable[Mapping[str, Any]] = ()) -> Result:
        """Run one packet that arrives on ``in_port`` of bridge ``dpid``.

        ``inner`` (outermost first) gives the frames under an NSH header."""
        bridge = self.bridges.get(dpid)
        if bridge is None:
            raise InterpretError(f"no pipeline loaded for dpid {dpid}")
        return bridge.send(self.conntrack, in_port, headers, inner)


def ipv4(src: str, dst: str, proto: int = IPPROTO_TCP, sport: int = 0, dport: int = 0,
         eth_src: str = "02:00:00:00:00:01", eth_dst: str = "02:00:00:00:00:02",
         ttl: int = 64, **extra: Any) -> dict[str, Any]:
    """Headers of an IPv4 packet (TCP and UDP get their ports)."""
    h: dict[str, Any] = {"eth_src": eth_src, "eth_dst": eth_dst, "eth_type": ETH_IP,
                         "ip_proto": proto, "nw_ttl": ttl, "ipv4_src": src, "ipv4_dst": dst}
    if proto in TP_FIELDS:
        h.update(zip(TP_FIELDS[proto], (sport, dport)))
    return {**h, **extra}
