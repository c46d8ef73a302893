"""Facts about a compiled pipeline that matter for performance (reported, tested)."""
from __future__ import annotations

from openflow_tables.flow import Flow

# OVS keeps one transport source and destination field whatever the protocol: a TCP and
# a UDP port match of one mask are one classifier subtable.
_TRANSPORT = {f"{proto}_{end}": f"tp_{end}" for proto in ("tcp", "udp", "sctp")
              for end in ("src", "dst")}


def mask_shape(f: Flow) -> tuple:
    """The fields and masks of a flow's match: OVS keeps one classifier subtable per shape."""
    return tuple(sorted((_TRANSPORT.get(name, name), mask) for name, _, mask in f.match))


def subtables(flows: list[Flow], table: str) -> int:
    """How many distinct match shapes (OVS classifier subtables) a table holds."""
    return len({mask_shape(f) for f in flows if f.table == table})
