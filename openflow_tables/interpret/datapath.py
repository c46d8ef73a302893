"""Running packets through a compiled pipeline: lookups, actions, ct, groups, results."""
from __future__ import annotations

import collections
import functools
import ipaddress
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol

from openflow_tables.flow import (Conjunction, Controller, Ct, CtClear, Decap, DecTtl,
                                  EncapEthernet, EncapNsh, Flow, Group, GroupAction, Load, Move,
                                  Output, Resubmit, SetField)
from openflow_tables.interpret.conntrack import (ECHO, IPPROTO_ICMP, Conntrack, CtEntry,
                                                 IPPROTO_TCP, ct_invalid, ct_key)
from openflow_tables.interpret.packet import (CT_TUPLE6_FIELDS, CT_TUPLE_FIELDS, InterpretError,
                                              NSH_FIELDS, Packet, match_entry, read_bits,
                                              write_bits, show, to_int)
from openflow_tables.layout import (CT_EST, CT_INV, CT_NEW, CT_RPL, CT_TRK, ETH_IP, ETH_IP6,
                                    ETH_NSH, IPPROTO_ICMPV6, TABLES, TP_FIELDS)
from openflow_tables.walk import describe_walk

FIRST_TABLE = min(TABLES, key=lambda t: t.id).name
MAX_RESUBMIT_DEPTH = 64      # OVS's own limit
MAX_PASSES = 32              # recirculations of one packet before we call it a loop


class PipelineLike(Protocol):
    """``compile.Pipeline`` (not imported: it brings the model in with it)."""

    flows: tuple[Flow, ...]
    groups: tuple[Group, ...]



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
    return _Entry(f, tuple(match_entry(*m) for m in f.match), soft)


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
        write_bits(pkt, a.dst, a.ofs, a.nbits, a.value)

    def _set_field(self, pkt: Packet, a: SetField, flow: Flow) -> None:
        pkt.write(a.field, to_int(a.field, a.value))

    def _move(self, pkt: Packet, a: Move, flow: Flow) -> None:
        write_bits(pkt, a.dst, a.dst_ofs, a.nbits, read_bits(pkt, a.src, a.src_ofs, a.nbits))

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

    def _ct_clear(self, pkt: Packet, a: CtClear, flow: Flow) -> None:
        pkt.clear_ct()

    def _ct(self, pkt: Packet, a: Ct, flow: Flow) -> None:
        zone = read_bits(pkt, a.zone_field.register, a.zone_field.ofs, a.zone_field.nbits)
        if a.exec_ and not a.commit:
            raise InterpretError("ct exec without commit")
        key = ct_key(pkt.headers)
        known, reply = self.ct.lookup(zone, key)
        if ct_invalid(pkt.headers, known is not None):
            self._recirculate(pkt, a, zone, CT_TRK | CT_INV, key.blank(zone))
            return
        if a.commit:
            entry, reply, created = self.ct.commit(zone, key)
            view = _ExecView(pkt, entry)
            for x in a.exec_:
                if isinstance(x, Load):
                    write_bits(view, x.dst, x.ofs, x.nbits, x.value)
                elif isinstance(x, Move):
                    write_bits(view, x.dst, x.dst_ofs, x.nbits,
                                read_bits(view, x.src, x.src_ofs, x.nbits))
                elif isinstance(x, SetField):
                    view.write(x.field, to_int(x.field, x.value))
                else:
                    raise InterpretError(f"ct exec cannot run {x!r}")
        else:
            entry, created = known, False
        new = entry is None or created
        state = CT_TRK | (CT_NEW if new else CT_EST) | (CT_RPL if reply else 0)
        self._recirculate(pkt, a, zone, state, entry or key.blank(zone))

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
    DecTtl: _Run._dec_ttl, Ct: _Run._ct, CtClear: _Run._ct_clear, EncapNsh: _Run._encap_nsh,
    EncapEthernet: _Run._encap_ethernet, Decap: _Run._decap, Conjunction: _Run._conjunction,
}


def _set_ct_fields(pkt: Packet, zone: int, entry: CtEntry, state: int) -> None:
    """What the recirculated packet sees after a ct action (an unknown connection shows
    an empty entry with its own tuple; ct_ipv6_src/dst hold an IPv6 one's addresses)."""
    pkt.meta["ct_state"] = state
    pkt.meta["ct_zone"] = zone
    pkt.meta["ct_mark"] = entry.mark
    pkt.meta["ct_label"] = entry.label
    pkt.meta.update(zip(CT_TUPLE6_FIELDS if entry.ipv6 else CT_TUPLE_FIELDS, entry.orig))


def connection_hash(pkt: Packet) -> int:
    """A hash of the 5-tuple that both directions of a connection share."""
    h = pkt.headers
    proto = h.get("ip_proto", 0)
    sport, dport = (h.get(f, 0) for f in TP_FIELDS.get(proto, ("", "")))
    src, dst = (h.get(f"ipv6_{e}", h.get(f"ipv4_{e}", 0)) for e in ("src", "dst"))
    ends = sorted([(src, sport), (dst, dport)])
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
    """Headers of an IP packet (TCP and UDP get their ports): IPv4, or IPv6 when the
    addresses are IPv6 ones (``ttl`` is then the hop limit, flow label 0).  Addresses of
    two families are an error."""
    v6 = ip_version(src, dst) == 6
    fam = "ipv6" if v6 else "ipv4"
    h: dict[str, Any] = {"eth_src": eth_src, "eth_dst": eth_dst,
                         "eth_type": ETH_IP6 if v6 else ETH_IP, "ip_proto": proto,
                         "nw_ttl": ttl, f"{fam}_src": src, f"{fam}_dst": dst}
    if v6:
        h["ipv6_label"] = 0
    if proto in TP_FIELDS:
        h.update(zip(TP_FIELDS[proto], (sport, dport)))
    return {**h, **extra}


def ipv6(src: str, dst: str, proto: int = IPPROTO_TCP, sport: int = 0, dport: int = 0,
         **kw: Any) -> dict[str, Any]:
    """Headers of an IPv6 packet: ``ipv4`` held to IPv6 addresses (a test that means
    IPv6 says so, and an IPv4 address by mistake is an error)."""
    if ip_version(src, dst) != 6:
        raise InterpretError(f"ipv6(): {src} and {dst} are not IPv6 addresses")
    return ipv4(src, dst, proto, sport, dport, **kw)


def echo(src: str, dst: str, request: bool = True, ident: int = 0, **kw: Any
         ) -> dict[str, Any]:
    """Headers of an echo request or reply with its id: ICMP between IPv4 addresses,
    ICMPv6 between IPv6 ones (conntrack pairs a reply with the request of its id)."""
    proto = IPPROTO_ICMPV6 if ip_version(src, dst) == 6 else IPPROTO_ICMP
    type_f, code_f, req, rep = ECHO[proto]
    return ipv4(src, dst, proto, **{type_f: req if request else rep, code_f: 0,
                                    "icmp_id": ident, **kw})


def ip_version(src: str, dst: str) -> int:
    """4 or 6: the family of both addresses (different families are an error)."""
    try:
        versions = {ipaddress.ip_address(a).version for a in (src, dst)}
    except ValueError as e:
        raise InterpretError(str(e)) from e
    if len(versions) != 1:
        raise InterpretError(f"{src} and {dst} are of two IP versions")
    return versions.pop()
