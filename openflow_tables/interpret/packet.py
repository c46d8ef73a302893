"""The interpreter's packet: header fields, registers and metadata, read and written as
OVS does (masked bit ranges, register views)."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

IP_FIELDS = frozenset({"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa", "ct_nw_src", "ct_nw_dst"})
IP6_FIELDS = frozenset({"ipv6_src", "ipv6_dst", "nd_target", "ct_ipv6_src", "ct_ipv6_dst"})
ADDR_FIELDS = IP_FIELDS | IP6_FIELDS
MAC_FIELDS = frozenset({"eth_src", "eth_dst", "arp_sha", "arp_tha", "nd_sll", "nd_tll"})
MAC_TEXT = re.compile(r"^[0-9A-Fa-f]{1,2}(:[0-9A-Fa-f]{1,2}){5}$")
# Per-packet metadata (not headers): zero until written.  A connection's original tuple
# shows in ct_nw_src/dst when it is IPv4, in ct_ipv6_src/dst when it is IPv6.
CT_TUPLE_FIELDS = ("ct_nw_proto", "ct_nw_src", "ct_nw_dst", "ct_tp_src", "ct_tp_dst")
CT_TUPLE6_FIELDS = ("ct_nw_proto", "ct_ipv6_src", "ct_ipv6_dst", "ct_tp_src", "ct_tp_dst")
CT_META = ("ct_state", "ct_zone", "ct_mark", "ct_label", *CT_TUPLE_FIELDS, "ct_ipv6_src",
           "ct_ipv6_dst")
META_FIELDS = frozenset({"in_port", "metadata", "conj_id", *CT_META})
WIDTHS: dict[str, int] = {
    "in_port": 32, "metadata": 64, "conj_id": 32,
    "ct_state": 32, "ct_zone": 16, "ct_mark": 32, "ct_label": 128, "ct_nw_proto": 8,
    "ct_nw_src": 32, "ct_nw_dst": 32, "ct_ipv6_src": 128, "ct_ipv6_dst": 128,
    "ct_tp_src": 16, "ct_tp_dst": 16,
    "eth_src": 48, "eth_dst": 48, "eth_type": 16, "ip_proto": 8, "nw_ttl": 8, "ip_dscp": 6,
    "ipv4_src": 32, "ipv4_dst": 32, "ipv6_src": 128, "ipv6_dst": 128, "ipv6_label": 20,
    "icmpv6_type": 8,
    "icmpv6_code": 8, "nd_target": 128, "nd_sll": 48, "nd_tll": 48, "nd_reserved": 32,
    "nd_options_type": 8, "tcp_src": 16, "tcp_dst": 16, "tcp_flags": 12,
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



# --- values ------------------------------------------------------------------------------
def to_int(name: str, value: Any) -> int:
    """A field value as the integer OVS holds: dotted IPv4, IPv6 text, colon MAC, or an int.
    IPv6 and MAC text both hold colons: a MAC field takes MAC text only, an IPv6 field
    IPv6 text only, and any other field (a register) reads six one- or two-digit
    groups as a MAC, other colon text as IPv6."""
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise InterpretError(f"{name}: cannot use {value!r} as a value")
    try:
        return _parse_text(name, value)
    except ValueError as e:
        raise InterpretError(f"{name}: cannot use {value!r} as a value ({e})") from e


def _parse_text(name: str, value: str) -> int:
    if name in IP6_FIELDS:
        return int(ipaddress.IPv6Address(value))
    if ":" in value:
        if name in IP_FIELDS:
            raise ValueError("colon text in an IPv4 field")
        if MAC_TEXT.match(value):
            return int("".join(f"{int(g, 16):02x}" for g in value.split(":")), 16)
        if name in MAC_FIELDS:
            raise ValueError("not a MAC address")
        return int(ipaddress.IPv6Address(value))
    if "." in value:
        return int(ipaddress.IPv4Address(value))
    return int(value, 0)


def _prefix_bits(name: str, length: int) -> int:
    """The mask a prefix length gives an address field."""
    width = WIDTHS[name]
    return ((1 << length) - 1) << (width - length)


def match_entry(name: str, value: Any, mask: Any) -> tuple[str, int, int | None]:
    """One match entry as (field, value, mask) integers; ``10.0.0.0/24`` and
    ``2001:db8::/64`` strings too, on a field of their own family."""
    if isinstance(value, str) and "/" in value and mask is None:
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError as e:
            raise InterpretError(f"{name}: bad prefix {value!r} ({e})") from e
        if name in ADDR_FIELDS and (net.version == 6) != (name in IP6_FIELDS):
            raise InterpretError(f"{name}: {value!r} is an IPv{net.version} prefix")
        value, mask = str(net.network_address), int(net.netmask)
    if isinstance(mask, str) and name in ADDR_FIELDS and mask.isdigit():
        mask = _prefix_bits(name, int(mask))
    m = None if mask is None else to_int(name, mask)
    v = to_int(name, value)
    return name, v if m is None else v & m, m


def show(name: str, value: int) -> Any:
    """A header value as people write it (dotted IPv4, IPv6 text, colon MAC, else the int)."""
    if name in IP_FIELDS:
        return str(ipaddress.IPv4Address(value))
    if name in IP6_FIELDS:
        return str(ipaddress.IPv6Address(value))
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


def read_bits(pkt: _Fields, name: str, ofs: int, nbits: int) -> int:
    value = pkt.read(name)
    if value is None:
        raise InterpretError(f"the packet has no {name} to read")
    if ofs + nbits > _width(name):
        raise InterpretError(f"{name}[{ofs}+{nbits}] exceeds its {_width(name)} bits")
    return (value >> ofs) & ((1 << nbits) - 1)


def write_bits(pkt: _Fields, name: str, ofs: int, nbits: int, value: int) -> None:
    if ofs + nbits > _width(name):
        raise InterpretError(f"{name}[{ofs}+{nbits}] exceeds its {_width(name)} bits")
    old = pkt.read(name)
    if old is None:
        raise InterpretError(f"the packet has no {name} to set")
    mask = ((1 << nbits) - 1) << ofs
    pkt.write(name, (old & ~mask) | ((value << ofs) & mask))
