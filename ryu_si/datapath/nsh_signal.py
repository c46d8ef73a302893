"""Flow-programming signals carried in NSH context header C1 by NSH-aware nodes.

C1 = action code (1 drop, 2 accept, 3 drop_message, 4 reroute, 5 skip: this node,
the rest of the chain stays), C2 = the new SPI for reroute.  The inner frame names the
flow: an IPv4 or IPv6 (past its extension headers) TCP or UDP packet.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ryu.lib.packet import ipv4, ipv6, packet, tcp, udp

from si_model.flowprog import ACTION_CODES

ETH_LEN = 14
IPPROTO_TCP, IPPROTO_UDP = 6, 17
NSH_MD1_LEN = 24   # base (4) + service path (4) + four 4-byte context headers


@dataclass(frozen=True)
class Signal:
    spi: int
    si: int
    action: str
    new_spi: int
    inner: bytes

    def instruction(self, node: str | None = None) -> dict:
        """The REST body of the instruction the signal asks for (``node``: the node that
        sent it, which a skip names)."""
        pkt = packet.Packet(self.inner)
        ip = pkt.get_protocol(ipv4.ipv4) or pkt.get_protocol(ipv6.ipv6)
        l4 = pkt.get_protocol(tcp.tcp) or pkt.get_protocol(udp.udp)
        if ip is None or l4 is None:
            return {}
        fam = "ipv6" if isinstance(ip, ipv6.ipv6) else "ipv4"
        body = {"ip_proto": IPPROTO_TCP if isinstance(l4, tcp.tcp) else IPPROTO_UDP,
                f"{fam}_src": ip.src, f"{fam}_dst": ip.dst,
                "tp_src": l4.src_port, "tp_dst": l4.dst_port, "action": self.action}
        if self.action == "reroute":
            return {**body, "spi": self.new_spi}
        return {**body, "node": node} if self.action == "skip" and node else body

    def cleared(self, frame: bytes) -> bytes:
        """The signalling frame with C1 zeroed: it goes on along its path."""
        at = ETH_LEN + 8
        return frame[:at] + bytes(4) + frame[at + 4:]


def parse(frame: bytes) -> Signal | None:
    """Ethernet + NSH MD type 1 with a known action code in C1, else None."""
    if len(frame) < ETH_LEN + NSH_MD1_LEN or frame[12:14] != b"\x89\x4f":
        return None
    nsh = frame[ETH_LEN:ETH_LEN + NSH_MD1_LEN]
    if nsh[2] & 0x0F != 1:
        return None
    path, c1, c2 = struct.unpack_from("!III", nsh, 4)
    action = ACTION_CODES.get(c1)
    if action is None:
        return None
    return Signal(path >> 8, path & 0xFF, action, c2 & 0xFFFFFF,
                  frame[ETH_LEN + NSH_MD1_LEN:])
