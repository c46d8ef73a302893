"""The interpreter's connection table: entries found from either direction, kept across
packets and pipeline recompiles, as OVS's userspace conntrack keeps them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple

from openflow_tables.interpret.packet import InterpretError
from openflow_tables.layout import ETH_IP, TP_FIELDS

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8


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
