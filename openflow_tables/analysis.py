"""Facts about a compiled pipeline that matter for performance (reported, tested)."""
from __future__ import annotations

from openflow_tables.flow import Flow


def mask_shape(f: Flow) -> tuple:
    """The fields and masks of a flow's match: OVS keeps one classifier subtable per shape."""
    return tuple((name, mask) for name, _, mask in f.match)


def subtables(flows: list[Flow], table: str) -> int:
    """How many distinct match shapes (OVS classifier subtables) a table holds."""
    return len({mask_shape(f) for f in flows if f.table == table})
