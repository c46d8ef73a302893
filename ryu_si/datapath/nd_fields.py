"""Open vSwitch's neighbour discovery fields as Ryu 4.34 must send them.

A Neighbor Advertisement is made in the datapath out of the Solicitation it answers
(openflow_tables.stages.nd): its flags (the reserved word) and the type of its
link-layer option are written, and a flow matches that type.  OVS has both fields since
2.11 in the Ericsson OXM class (ovs-fields(7): ERICOXM_OF_ICMPV6_ND_RESERVED (1),
ERICOXM_OF_ICMPV6_ND_OPTIONS_TYPE (2)), a 32-bit header like NXM's, and names them so
in its flow dumps too.  Ryu knows neither: ``register`` adds them to its OpenFlow 1.3
field registry under OVS's names.

Two more things differ from what Ryu does on its own:
- Ryu's ``nd_target``/``nd_sll``/``nd_tll`` are the old NXM fields, which OVS dumps as
  the OXM ones (``ipv6_nd_*``): a flow sent by the NXM name would never be recognised in
  a dump (``ryu_name``).
- Ryu orders a match's fields by number, which puts the Ericsson class before
  eth_type, ip_proto and icmpv6_type; OVS checks each field's prerequisites against the
  fields before it and refuses such a match (OFPBMC_BAD_PREREQ): ``wire_rank``.
"""
from __future__ import annotations

import functools

from ryu.lib import type_desc
from ryu.ofproto import ofproto_v1_3, oxm_fields

ERICOXM_OF = 0x1000   # the OXM class OVS gives these fields
RYU_NAMES = {"nd_target": "ipv6_nd_target", "nd_sll": "ipv6_nd_sll", "nd_tll": "ipv6_nd_tll"}


class EricssonOxm(oxm_fields._OxmClass):
    """A field of OVS's Ericsson OXM class."""

    _class = ERICOXM_OF


FIELDS = (EricssonOxm("nd_reserved", 1, type_desc.Int4),
          EricssonOxm("nd_options_type", 2, type_desc.Int1))


def register() -> None:
    """Add the fields to Ryu's OpenFlow 1.3 registry (once) and rebuild its lookups,
    which are made from the field list when the module is generated."""
    known = {f.name for f in ofproto_v1_3.oxm_types}
    missing = [f for f in FIELDS if f.name not in known]
    if missing:
        ofproto_v1_3.oxm_types.extend(missing)
        oxm_fields.generate(ofproto_v1_3.__name__)


def ryu_name(name: str) -> str:
    """The Ryu name of a field for the header OVS uses for it in OpenFlow 1.3."""
    return RYU_NAMES.get(name, name)


@functools.lru_cache(maxsize=None)
def wire_rank(name: str) -> tuple[bool, int, str]:
    """Where a field goes in a match: Ryu's order (by number; the fields of one
    experimenter class share one, then by name), the Ericsson class after the rest, so
    prerequisites come first, as OVS reads them."""
    num = ofproto_v1_3.oxm_from_user_header(name)
    num = num[0] if isinstance(num, tuple) else num
    return num >> 7 == ERICOXM_OF, num, name
