"""The interpreter's connection table: entries found from either direction, kept across
packets and pipeline recompiles, as OVS's userspace conntrack keeps them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple

from openflow_tables.interpret.packet import InterpretError
from openflow_tables.layout import (ETH_IP, ETH_IP6, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST,
                                    IPPROTO_ICMPV6, TP_FIELDS)

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
# Echo request and reply types by protocol: ICMP, ICMPv6.
ECHO = {IPPROTO_ICMP: ("icmp_type", "icmp_code", ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY),
        IPPROTO_ICMPV6: ("icmpv6_type", "icmpv6_code", ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY)}
ICMPV6_ERRORS = (1, 2, 3, 4)   # destination unreachable, too big, time exceeded, parameter
IP6_KEY = 0x600       # keeps IPv6 connections apart from IPv4 ones of equal numbers


# --- conntrack ---------------------------------------------------------------------------
Tuple5 = tuple[int, int, int, int, int]   # ip_proto, source, destination, tp_src, tp_dst


@dataclass
class CtEntry:
    """One connection: its original-direction tuple and what was committed to it."""

    zone: int
    orig: Tuple5          # as the ct_nw_* (ct_ipv6_*) / ct_tp_* fields show it
    mark: int = 0
    label: int = 0
    ipv6: bool = False

    def read(self, name: str) -> int:
        return self.mark if name == "ct_mark" else self.label


class CtKey(NamedTuple):
    """How conntrack finds a packet's connection."""

    mine: Tuple5      # this packet's direction
    other: Tuple5     # the opposite direction
    shown: Tuple5     # what ct_nw_*/ct_tp_* show if this packet starts the connection
    ipv6: bool = False

    def blank(self, zone: int) -> CtEntry:
        """The entry a connection this packet would start has before anything is committed."""
        return CtEntry(zone, self.shown, ipv6=self.ipv6)


def ct_key(h: Mapping[str, int]) -> CtKey:
    """TCP and UDP by ports; ICMP and ICMPv6 echo by its id (request and reply pair up);
    any other protocol by its addresses alone.  IPv4 and IPv6 alike."""
    fam = {ETH_IP: "ipv4", ETH_IP6: "ipv6"}.get(h.get("eth_type"))
    if fam is None or f"{fam}_src" not in h:
        raise InterpretError("ct on a packet that is not IP (OVS requires ip or ipv6 in the "
                             "match)")
    proto, src, dst = h.get("ip_proto", 0), h[f"{fam}_src"], h[f"{fam}_dst"]
    v6 = fam == "ipv6"
    tag = IP6_KEY if v6 else 0
    if proto in TP_FIELDS:
        sport, dport = (h.get(f, 0) for f in TP_FIELDS[proto])
        shown = (proto, src, dst, sport, dport)
        return CtKey((proto | tag, src, dst, sport, dport), (proto | tag, dst, src, dport, sport),
                     shown, v6)
    echo = ECHO.get(proto)
    if echo and v6 == (proto == IPPROTO_ICMPV6) and h.get(echo[0]) in echo[2:]:
        type_f, code_f, request, _reply = echo
        ident, req = h.get("icmp_id", 0), int(h[type_f] == request)
        return CtKey((proto | tag, src, dst, ident, req), (proto | tag, dst, src, ident, 1 - req),
                     (proto, src, dst, h[type_f], h.get(code_f, 0)), v6)
    return CtKey((proto | tag, src, dst, 0, 0), (proto | tag, dst, src, 0, 0),
                 (proto, src, dst, 0, 0), v6)


def ct_invalid(h: Mapping[str, int], known: bool) -> bool:
    """Whether OVS's userspace conntrack calls the packet +inv: TCP by its flags
    (``tcp_invalid``), ICMPv6 by its type (``icmpv6_invalid``)."""
    return tcp_invalid(h, known) or icmpv6_invalid(h, known)


def icmpv6_invalid(h: Mapping[str, int], known: bool) -> bool:
    """ICMPv6 conntrack cannot key, or that would open a connection it cannot (conntrack.c
    ``extract_l4_icmp6``, conntrack-icmp.c ``icmp6_valid_new``): neither an echo nor an
    error (neighbour discovery, router solicitations and advertisements, MLD), an echo
    with a code, an echo reply to no request.  Errors are keyed by their addresses here
    (the interpreter has no embedded packet).  A packet given without ``icmpv6_type``
    passes."""
    kind = h.get("icmpv6_type")
    if kind is None or h.get("eth_type") != ETH_IP6 or h.get("ip_proto") != IPPROTO_ICMPV6:
        return False
    if kind in (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY):
        return h.get("icmpv6_code", 0) != 0 or (kind == ICMPV6_ECHO_REPLY and not known)
    return kind not in ICMPV6_ERRORS


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
        entry = key.blank(zone)
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
