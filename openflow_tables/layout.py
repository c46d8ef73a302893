"""The one place that says where everything lives in the datapath.

Tables (id, name, purpose, the next tables they may jump to, the fields their
flows may match and write), the per-packet register layout of each bridge, the
bit layout of ct_mark and ct_label, and the constants the stages share
(ethertypes, ct_state bits, cookies).  The compiler, the Ryu app, the docs
generator and the tests all read these declarations; nothing else hard-codes a
table number, a bit offset or a packing.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

# --- the bridges ------------------------------------------------------------
# A router bridge runs the router pipeline; a service plane bridge (the patent's
# logical service forwarding element) runs the NSH forwarding and proxy tables.
# Registers are per packet and per bridge: a field of one bridge may reuse the
# bits of a field of the other, never of its own (tests/unit/test_layout.py).
ROUTER_BRIDGE = "router"
PLANE_BRIDGE = "service_plane"
BRIDGES = (ROUTER_BRIDGE, PLANE_BRIDGE)
ON_ROUTER = (ROUTER_BRIDGE,)
ON_PLANE = (PLANE_BRIDGE,)

# --- ethertypes, IP protocols and ct_state bits the pipeline matches -------
ETH_IP, ETH_ARP, ETH_NSH, ETH_IP6 = 0x0800, 0x0806, 0x894F, 0x86DD
ETH_IPS = (ETH_IP, ETH_IP6)          # what the router routes and classifies
IPPROTO_ICMPV6 = 58
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129
ND_NS, ND_NA = 135, 136               # Neighbor Solicitation / Advertisement (RFC 4861)
ND_OPT_SLL, ND_OPT_TLL = 1, 2         # source / target link-layer address options
# NA flags in the top bits of nd_reserved: Router, Solicited, Override.
ND_NA_FLAGS = 0xE0000000
TP_FIELDS: dict[int, tuple[str, str]] = {6: ("tcp_src", "tcp_dst"), 17: ("udp_src", "udp_dst")}
TP_PORTS = tuple(f for pair in TP_FIELDS.values() for f in pair)
CT_NEW, CT_EST, CT_REL, CT_RPL, CT_INV, CT_TRK = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

# --- registers and their aliases ---------------------------------------------
# Width of every field that flows read and write as bits.  xregN is reg2N:reg2N+1
# and xxregN is reg4N..reg4N+3, the first register the most significant.
WORDS: dict[str, tuple[str, ...]] = {
    **{f"xreg{n}": (f"reg{2 * n}", f"reg{2 * n + 1}") for n in range(8)},
    **{f"xxreg{n}": tuple(f"reg{4 * n + k}" for k in range(4)) for n in range(4)},
}
WIDTHS: dict[str, int] = {
    "metadata": 64, "ct_mark": 32, "ct_label": 128, "nsh_c2": 32,
    **{f"reg{n}": 32 for n in range(16)},
    **{name: 32 * len(words) for name, words in WORDS.items()},
}


def storage_bits(name: str, mask: int | None = None) -> dict[str, int]:
    """Where bits ``mask`` (all of them when None) of ``name`` are stored: an xreg or
    xxreg splits into its 32-bit registers, so a field named on xxreg1 and one named on
    reg7 meet.  A header field has no bit layout here: it is one name, all bits (-1)."""
    width = WIDTHS.get(name)
    if width is None:
        return {name: -1}
    mask = (1 << width) - 1 if mask is None else mask
    if mask >> width:
        raise ValueError(f"mask {mask:#x} is wider than {name} ({width} bits)")
    words = WORDS.get(name)
    if words is None:
        return {name: mask} if mask else {}
    out = {}
    for k, reg in enumerate(reversed(words)):      # the last register holds bits 0..31
        part = (mask >> (32 * k)) & 0xFFFFFFFF
        if part:
            out[reg] = part
    return out


@dataclass(frozen=True)
class Field:
    """A named bit range of a register, ct_mark or ct_label, on the bridges it lives on.

    ``within`` is the field this one is a part of (SPI and SI of a service path
    header, the decision's parts of xxreg1).  The bridges and the containing field are
    left out of repr and equality: flows carry fields (a ct() zone) and their digests
    hash the repr, which should not change when the layout is annotated."""

    name: str
    register: str
    ofs: int
    nbits: int
    doc: str
    bridges: tuple[str, ...] = field(repr=False, compare=False)
    within: Field | None = field(default=None, repr=False, compare=False)

    @property
    def mask(self) -> int:
        return ((1 << self.nbits) - 1) << self.ofs

    def value(self, v: int) -> int:
        """``v`` shifted into place (checked against the field's width)."""
        if not 0 <= v < (1 << self.nbits):
            raise ValueError(f"{self.name}: {v} does not fit in {self.nbits} bits")
        return v << self.ofs

    @property
    def bits(self) -> dict[str, int]:
        """The field's bits in the storage they live in (see ``storage_bits``)."""
        return storage_bits(self.register, self.mask)

    def part(self, name: str, ofs: int, nbits: int, doc: str) -> Field:
        """A part of this field, ``ofs`` counted from the field's own bit 0."""
        if ofs + nbits > self.nbits:
            raise ValueError(f"{name} does not fit in {self.name}")
        return Field(name, self.register, self.ofs + ofs, nbits, doc, self.bridges, self)


# --- NSH service path header: SPI<<8 | SI ------------------------------------
SPI_BITS, SI_BITS = 24, 8
NSH_FIRST_SI = 255   # the router sends SI 255; each hop takes one off


def path_header(spi: int, si: int) -> int:
    """SPI and SI packed as NSH's service path header carries them (RFC 8300): the
    value of FWD_DATA and REV_DATA for a chain decision and of SP_NSH on the plane."""
    if not (0 <= spi < 1 << SPI_BITS and 0 <= si < 1 << SI_BITS):
        raise ValueError(f"SPI {spi} / SI {si} out of range")
    return spi << SI_BITS | si


def _path_header_parts(header: Field, prefix: str) -> tuple[Field, Field]:
    """The SPI and SI parts of a field that holds a service path header."""
    return (header.part(f"{prefix}_spi", SI_BITS, SPI_BITS, f"SPI of {header.name}"),
            header.part(f"{prefix}_si", 0, SI_BITS, f"SI of {header.name}"))


# --- per-packet registers of a router bridge ---------------------------------
# metadata holds the router number; the registers hold the rest.
ROUTER = Field("router", "metadata", 0, 16, "router number (one pipeline slice per router)",
               ON_ROUTER)
IN_IFACE = Field("in_iface", "reg0", 0, 16, "interface number the packet entered on", ON_ROUTER)
FLAGS_SERVICED = Field("serviced", "reg1", 0, 1,
                       "packet came back from a service node: never classify it again",
                       ON_ROUTER)
FLAGS_SI_DONE = Field("si_done", "reg1", 1, 1,
                      "packet has been through service insertion at this router", ON_ROUTER)
FLAGS_EGRESS = Field("egress_si", "reg1", 2, 1,
                     "classification happens at the egress interface (routed already)",
                     ON_ROUTER)
FLAGS_KEPT = Field("kept", "reg1", 3, 1,
                   "re-classification kept the record's decision: re-commit it as it is",
                   ON_ROUTER)
FLAGS_NAT_BACK = Field("nat_back", "reg1", 4, 1,
                       "back from the reverse path of a chain with a NAT node: checked "
                       "against the rules of the interface it entered by, not sent again",
                       ON_ROUTER)
FLAGS_TRANSIT = Field("transit", "reg1", 5, 1,
                      "classified again at its egress: its decision where it entered was "
                      "carried out, the egress interface is of another class (not recorded)",
                      ON_ROUTER)
FLAGS_REUSED = Field("reused", "reg1", 6, 1,
                     "the decision comes from a record that holds here (class_check hit)",
                     ON_ROUTER)
SI_IFACE = Field("si_iface", "reg2", 0, 16,
                 "interface the packet is classified at (ingress or egress)", ON_ROUTER)
SI_CLASS = Field("si_class", "reg2", 16, 7,
                 "class of the interface the packet is classified at: interfaces of a "
                 "router with the same applied_to sets share a class", ON_ROUTER)
DONE_CLASS = Field("done_class", "reg2", 24, 7,
                   "transit: class of the interface whose decision was carried out before "
                   "its egress (where it entered)", ON_ROUTER)
RULE_NUM = Field("rule_num", "reg3", 0, 24, "rule number of the decision", ON_ROUTER)
# (Its doc is part of the repr that ct() flows are digested with: changing it
# re-sends those flows.)
CT_ZONE = Field("ct_zone", "reg8", 0, 16, "the router's conntrack zone", ON_ROUTER)
EGRESS_IFACE = Field("egress_iface", "reg9", 0, 16, "egress interface chosen by routing",
                     ON_ROUTER)
NEXT_HOP = Field("next_hop", "reg10", 0, 32, "next hop IPv4 chosen by routing", ON_ROUTER)
# An IPv6 next hop does not fit in reg10: IPv6 routing loads NEXT_HOP_V6_DIRECT (the
# destination itself is the neighbour: the neighbor table matches ipv6_dst) or the
# next hop's number (si_model.model.ipv6_next_hops), both inside 0.0.0.0/8, which no
# IPv4 next hop or neighbour may use (si_model.validate).
NEXT_HOP_V6_DIRECT = 1
NEXT_HOP_V6_LIMIT = 1 << 24
SWAP_SCRATCH = Field("swap_scratch", "reg11", 0, 32,
                     "orient/reorient: holds one address or port while it is swapped", ON_ROUTER)
# The connection's destination port and its protocol, copied by orient into registers
# for classify: OVS looks a subtable up stage by stage (registers and metadata first,
# then Ethernet, IP, transport) and un-wildcards the fields of every stage it reached,
# so a rule's port checked with the registers turns a packet for another port away
# before its addresses are looked at: no address bits in that packet's megaflow.
CLASSIFY_TP_DST = Field("classify_tp_dst", "reg9", 16, 16,
                        "classify: the connection's destination port (original direction)",
                        ON_ROUTER)
CLASSIFY_PROTO = Field("classify_proto", "reg8", 16, 8,
                       "classify: the IP protocol whose port classify_tp_dst holds (0: none)",
                       ON_ROUTER)
CLASSIFY_DST_NAMED = Field("classify_dst_named", "reg8", 24, 1,
                           "classify: the connection's destination (original direction) is "
                           "inside a destination prefix of a rule whose source no port keys",
                           ON_ROUTER)

# The applied_to memberships of the classification interface: word k holds slices of
# pairwise disjoint applied_to sets, each slice the value of the one set of it that the
# interface belongs to (si_model.set_codes).
APPLIED_TO: tuple[Field, ...] = tuple(
    Field(f"applied_to_{k}", f"reg{12 + k}", 0, 32,
          f"applied_to word {k} of the classification interface: slices, each the value "
          f"of the one set of that slice it belongs to (0: none)", ON_ROUTER)
    for k in range(4))
APPLIED_TO_REGS: tuple[str, ...] = tuple(f.register for f in APPLIED_TO)
APPLIED_TO_BITS = 32 * len(APPLIED_TO_REGS)


def applied_to_slice(word: int, ofs: int, width: int, value: int) -> tuple[str, int, int]:
    """Register, value and mask that match ``value`` in a slice of applied_to word ``word``."""
    if not (0 <= word < len(APPLIED_TO_REGS) and 0 < width and ofs + width <= 32
            and 0 <= value < 1 << width):
        raise ValueError(f"applied_to slice {word}:{ofs}+{width}={value} out of range")
    return APPLIED_TO_REGS[word], value << ofs, ((1 << width) - 1) << ofs


# --- the decision: xxreg1 (reg4..reg7) is copied whole into ct_label --------
# xxreg1 = reg4 (bits 96-127) : reg5 (64-95) : reg6 (32-63) : reg7 (0-31).
DECISION = Field("decision", "xxreg1", 0, 128,
                 "the decision, stored in ct_label bit for bit and restored from it", ON_ROUTER)


def _decision_part(name: str, register: str, ofs: int, nbits: int, doc: str) -> Field:
    return Field(name, register, ofs, nbits, doc, DECISION.bridges, DECISION)


TRANSPORT = _decision_part("transport", "reg7", 0, 4,
                           "transport of the decision (TRANSPORT_* below)")
RULE_ACTION = _decision_part("rule_action", "reg7", 4, 2,
                             "action of the rule that made the decision (ACTION_* below)")
GEN_CLASSIFY = _decision_part("classify_gen", "reg7", 8, 8,
                              "classification generation: bumped by every rule, applied_to or "
                              "interface edit, so open connections are classified again")
POLICY_NUM = _decision_part("policy_num", "reg7", 16, 16, "policy number of a redirect decision")
FWD_DATA = _decision_part("fwd_data", "reg6", 0, 32,
                          "forward-direction data: service node number (biw/l3) or SPI<<8|SI")
FWD_SPI, FWD_SI = _path_header_parts(FWD_DATA, "fwd")
REV_DATA = _decision_part("rev_data", "reg5", 0, 32, "reverse-direction data, same encoding")
REV_SPI, REV_SI = _path_header_parts(REV_DATA, "rev")
GEN_TRANSPORT = _decision_part("transport_gens", "reg4", 0, 32,
                               "the four generations that say a record's node, path or flow "
                               "programming may be stale (loaded as one)")
GEN_FLOW_PROGRAM = GEN_TRANSPORT.part("flow_program_gen", 0, 8, "flow-programming generation")
GEN_BFD = GEN_TRANSPORT.part("bfd_gen", 8, 8, "biw node liveness generation")
GEN_SPI_FAIL = GEN_TRANSPORT.part("spi_fail_gen", 16, 8, "chain path liveness generation")
GEN_SN = GEN_TRANSPORT.part("sn_gen", 24, 8, "L3 node liveness generation")
GENERATIONS: tuple[Field, ...] = (GEN_FLOW_PROGRAM, GEN_BFD, GEN_SPI_FAIL, GEN_SN)

TRANSPORT_NONE = 0   # allow: route without service
TRANSPORT_DROP = 1
TRANSPORT_BIW = 2
TRANSPORT_CHAIN = 3
TRANSPORT_L3 = 4
# The record of a connection as a NAT node sent it on (its addresses rewritten): its
# replies go back into the reverse path it came out of, whatever interface they enter.
TRANSPORT_NAT_LEG = 5
TRANSPORT_CODES = {"biw": TRANSPORT_BIW, "l3": TRANSPORT_L3, "chain": TRANSPORT_CHAIN}
ACTION_ALLOW = 1
ACTION_DROP = 2
ACTION_REDIRECT = 3
RULE_ACTION_CODES = {"allow": ACTION_ALLOW, "drop": ACTION_DROP, "redirect": ACTION_REDIRECT}
DEFAULT_RULE_NUM = 0   # every router's lowest rule: allow, no service, applied everywhere

# --- ct_mark and ct_label of a router bridge's records ------------------------
CT_MARK_TAG = Field("si_tag", "ct_mark", 31, 1,
                    "record made by service insertion (other features may share conntrack)",
                    ON_ROUTER)
CT_MARK_RULE = Field("ct_rule", "ct_mark", 0, 24, "rule number that made the record", ON_ROUTER)
CT_MARK_CLASS = Field("ct_class", "ct_mark", 24, 7,
                      "class of the interface the record was classified at", ON_ROUTER)
MAX_CLASSES = 1 << CT_MARK_CLASS.nbits   # interface classes per router
CT_LABEL_DECISION = Field("ct_decision", "ct_label", 0, 128,
                          "the decision registers (xxreg1) bit for bit", ON_ROUTER)
# ct_label mirrors xxreg1: label bits 96-127 = reg4 (generations), 64-95 = reg5
# (reverse data), 32-63 = reg6 (forward data), 0-31 = reg7.
CT_LABEL_OFFSETS: dict[str, int] = {
    reg: 32 * (len(WORDS[DECISION.register]) - 1 - k)
    for k, reg in enumerate(WORDS[DECISION.register])}


@functools.lru_cache(maxsize=None)
def in_label(f: Field) -> Field:
    """Where a part of the decision sits in ct_label (ct_label mirrors xxreg1)."""
    if f == DECISION:
        return CT_LABEL_DECISION
    if f.within is None:
        raise ValueError(f"{f.name} is not part of the decision")
    inside = in_label(f.within)
    return Field(f"ct_label.{f.name}", "ct_label", CT_LABEL_OFFSETS[f.register] + f.ofs,
                 f.nbits, f"{f.name}, as the record stores it", inside.bridges, inside)


# --- NSH context header C2: the router interface a packet entered by --------
# The router writes it at every encapsulation; NSH-aware nodes keep it and the proxy
# carries it across a plain node, so what comes back knows where it came in.
NSH_IFACE = Field("nsh_iface", "nsh_c2", 0, 16,
                  "C2: the router interface the packet entered by", BRIDGES)

# --- per-packet registers of a service plane bridge ---------------------------
SP_CONTEXT = Field("sp_context", "reg0", 0, 16,
                   "service plane: C2 of a packet while its NSH is stripped", ON_PLANE)
SP_PATH = Field("sp_path", "reg1", 0, SPI_BITS,
                "service plane: SPI of a packet handed to an NSH-unaware node", ON_PLANE)
SP_NODE = Field("sp_node", "reg2", 0, 32,
                "service plane: the NSH-unaware node a packet is handed to", ON_PLANE)
SP_WAY = Field("sp_way", "reg3", 0, 1,
               "service plane: 1 on a reverse path (the node gets it on side B)", ON_PLANE)

# --- the proxy's frames to and from an NSH-unaware node -----------------------
# The proxy keeps nothing per connection: the frame it hands a plain node carries,
# in its Ethernet source address, what the proxy needs back.  A transparent node keeps
# that address even when it NATs (a Linux bridge with br_netfilter rewrites the
# destination MAC of a packet whose destination it changes, never the source), where
# a lookup by 5-tuple would miss.  02 : SPI (3 bytes) : C2's interface (2 bytes).
# A path passes a node once, so (node, side, SPI) gives the SI.
PROXY_MAC_OUI = 0x02
PROXY_SPI_SHIFT = 16
PROXY_MAC_MASK = "ff:ff:ff:ff:00:00"
PROXY_CONTEXT_BITS = 16


# A frame handed to a bump-in-the-wire node carries, in its source MAC (the node's
# bridge keeps it), the interface it was classified at: what comes back is routed on
# by that interface's router (a child using its parent's node too) knowing where its
# decision was made, so its egress classifies it only if its rules differ there.
# 02:5d:0e:0d : interface (2 bytes), d = 1 on the reply direction (the node's bridge
# learns each direction's addresses on its own side).
SERVICE_TAG_OUI = 0x025D0E00
SERVICE_TAG_MASK = "ff:ff:ff:ff:00:00"


def service_tag_mac(reply: bool, iface_num: int = 0) -> str:
    """Source MAC of a frame a biw node serves for a decision made at ``iface_num``
    (0: the fixed part the datapath fills in)."""
    if not 0 <= iface_num <= SI_IFACE.mask:
        raise ValueError(f"interface {iface_num} out of range")
    return mac_text((SERVICE_TAG_OUI | int(reply)) << 16 | iface_num)


# A NAT leg's reply handed to a bump-in-the-wire node that NATs: the interface the reply
# entered by rides in the source MAC (the node restores the client's addresses, and the
# router checks the reply there, as C2 says for a chain).  02:5e:00:01 : interface.
NAT_RETURN_MAC = "02:5e:00:01:00:00"
NAT_RETURN_MASK = "ff:ff:ff:ff:00:00"


def mac_text(value: int) -> str:
    return ":".join(f"{(value >> (8 * k)) & 0xFF:02x}" for k in reversed(range(6)))


def proxy_mac(spi: int) -> str:
    """Source MAC of a proxied frame of path ``spi`` (context bits zero)."""
    if not 0 <= spi < 1 << SPI_BITS:
        raise ValueError(f"SPI {spi} out of range")
    return mac_text(PROXY_MAC_OUI << 40 | spi << PROXY_SPI_SHIFT)


FIELDS: tuple[Field, ...] = (
    ROUTER, IN_IFACE, FLAGS_SERVICED, FLAGS_SI_DONE, FLAGS_EGRESS, FLAGS_KEPT, SI_IFACE,
    SI_CLASS, RULE_NUM, DECISION, TRANSPORT, RULE_ACTION, GEN_CLASSIFY, POLICY_NUM,
    FWD_DATA, FWD_SPI, FWD_SI, REV_DATA, REV_SPI, REV_SI, GEN_TRANSPORT, *GENERATIONS,
    CT_ZONE, EGRESS_IFACE, NEXT_HOP, SWAP_SCRATCH, *APPLIED_TO,
    FLAGS_NAT_BACK, CT_MARK_TAG, CT_MARK_CLASS, CT_MARK_RULE, CT_LABEL_DECISION,
    NSH_IFACE, SP_CONTEXT, SP_PATH, SP_NODE, SP_WAY,
)

# Liveness probes: UDP from PROBE_SRC to PROBE_DST that must come back through a node.
PROBE_SRC = "169.254.255.2"
PROBE_DST = "169.254.255.1"
PROBE_PORT = 47474   # not a well-known port: Ryu would parse 3784 as BFD
PLANE_MAC = "02:00:00:00:5c:ff"   # the service plane switch is not an L2 host: any MAC does

# --- cookies: every flow names the object it came from ----------------------
# 63..56 app tag | 55..48 object kind | 47..24 object number | 23..0 content digest.
# The digest (added when a flow is sent) lets reconciliation tell from a flow
# dump alone whether an installed flow still has the wanted actions.
COOKIE_APP = 0x51  # "SI": flows the controller owns
COOKIE_APP_SHIFT = 56
COOKIE_KIND_SHIFT = 48
COOKIE_NUM_SHIFT = 24
COOKIE_APP_MASK = 0xFF << COOKIE_APP_SHIFT
COOKIE_DIGEST_MASK = (1 << COOKIE_NUM_SHIFT) - 1


@dataclass(frozen=True)
class CookieKind:
    code: int
    name: str


COOKIE_KINDS: dict[str, CookieKind] = {k.name: k for k in (
    CookieKind(1, "pipeline"), CookieKind(2, "router"), CookieKind(3, "interface"),
    CookieKind(4, "route"), CookieKind(5, "neighbor"), CookieKind(6, "rule"),
    CookieKind(7, "policy"), CookieKind(8, "service_node"), CookieKind(9, "generation"),
    CookieKind(10, "flow_program"), CookieKind(11, "path"),
    # The one flow that hands a data packet to a service node, per direction: /stats
    # counts each packet once per node and direction from these alone.
    CookieKind(12, "node_forward"), CookieKind(13, "node_reverse"),
    CookieKind(14, "service_plane"),     # a plane's path ends on the plane bridge (by tag)
)}
NODE_DIRECTION_COOKIES = {"forward": "node_forward", "reverse": "node_reverse"}


def cookie(kind: str, num: int = 0) -> int:
    """Cookie naming the object a flow came from (digest bits left zero)."""
    return ((COOKIE_APP << COOKIE_APP_SHIFT) | (COOKIE_KINDS[kind].code << COOKIE_KIND_SHIFT)
            | ((num & 0xFFFFFF) << COOKIE_NUM_SHIFT))


def cookie_owner(value: int) -> tuple[str, int] | None:
    """(kind, object number) of one of our cookies, for stats and debugging."""
    if value >> COOKIE_APP_SHIFT != COOKIE_APP:
        return None
    code = (value >> COOKIE_KIND_SHIFT) & 0xFF
    kind = next((k.name for k in COOKIE_KINDS.values() if k.code == code), None)
    return (kind, (value >> COOKIE_NUM_SHIFT) & 0xFFFFFF) if kind else None


PIPELINE_COOKIE = cookie("pipeline")   # flows of the pipeline itself, no model object
# Numbers of the pipeline's packet-in flows (cookie("pipeline", n)): the reason a
# packet reaches the controller.
PIPELINE_ARP_LEARN = 1
PIPELINE_ARP_MISS = 2
PIPELINE_FLOW_PROGRAM = 3
PIPELINE_PROBE = 4


# --- tables -----------------------------------------------------------------
NSH_PATH = ("nsh_mdtype", "nsh_spi", "nsh_si", "nsh_c1")
IP_ADDRS = ("ipv4_src", "ipv4_dst", "ipv6_src", "ipv6_dst")
IP_FIVE_TUPLE = ("ip_proto", *IP_ADDRS, *TP_PORTS)
ND_FIELDS = ("icmpv6_type", "nd_target", "nd_options_type", "nd_tll", "nd_reserved")
ARP_REPLY = ("eth_src", "eth_dst", "arp_op", "arp_sha", "arp_tha", "arp_spa", "arp_tpa")


def _bits_of(declared: tuple) -> dict[str, int]:
    """Storage name -> the bits the declarations cover (-1: a header field, whole)."""
    out: dict[str, int] = {}
    for d in declared:
        for name, mask in (d.bits if isinstance(d, Field) else {d: -1}).items():
            out[name] = out.get(name, 0) | mask
    return out


@dataclass(frozen=True, eq=False)
class Table:
    """One OpenFlow table: its place, name, the bridges it is on, the tables its flows
    may go to, and the fields they may match and write (Faucet's valve_table habit:
    ``flow.flow`` refuses a flow that uses anything else).  Each table is one object,
    compared by identity: the flow builder caches its answers per table."""

    id: int
    name: str
    purpose: str
    next_tables: tuple[str, ...] = ()
    miss: str = "drop"
    bridges: tuple[str, ...] = ON_ROUTER
    # Layout fields, or header and metadata fields by their OXM names: what its
    # flows may match, and what they (and the groups they send to) may write.
    match: tuple[Field | str, ...] = ()
    sets: tuple[Field | str, ...] = ()
    # Address fields whose prefixes OVS's classifier tracks in this table (at most three;
    # OVS's default, when none are set, is nw_src and nw_dst): a lookup then un-wildcards
    # only the prefix bits its flows need, where IPv6 addresses would otherwise go into
    # the datapath's flow whole and every new IPv6 connection would miss it.  A table
    # that sets its own keeps the IPv4 default beside them: measured, dropping it from
    # ingress took IPv4 cold connections from 0.5 to 2.3 upcalls each (docs/benchmarks.md).
    prefixes: tuple[str, ...] = ()

    @functools.cached_property
    def match_bits(self) -> dict[str, int]:
        return _bits_of(self.match)

    @functools.cached_property
    def set_bits(self) -> dict[str, int]:
        return _bits_of(self.sets)


TABLES: tuple[Table, ...] = (
    Table(0, "ingress",
          "Map in_port to router, interface number, conntrack zone and role; "
          "service-facing ports (biw sides, VTIs toward L3 nodes, NSH back from the "
          "service plane, decapsulated) mark packets serviced; ARP goes to the ARP stage; "
          "downlink traffic is routed first; unknown ports drop. On a service plane "
          "bridge: NSH from the router or an NSH-aware node goes to sp_forward, plain "
          "frames back from an NSH-unaware node get their NSH header back from their "
          "source MAC (the path) and the side they return on (the SI). A path through a "
          "NAT node: what comes back at the end of the forward path is looked up in the "
          "router's zone (nat_leg), and the end of the reverse path goes to nat_back.",
          ("arp", "ct", "routing", "sp_forward", "nat_leg", "nat_back", "resume", "nd"),
          bridges=BRIDGES,
          match=("in_port", "eth_type", "eth_dst", "eth_src", *NSH_PATH, "ip_proto",
                 "icmpv6_type", "ipv6_dst"), prefixes=("nw_src", "nw_dst", "ipv6_dst"),
          sets=(ROUTER, IN_IFACE, CT_ZONE, FLAGS_SERVICED, FLAGS_SI_DONE, FLAGS_NAT_BACK,
                SI_IFACE, SI_CLASS, *APPLIED_TO, TRANSPORT, FWD_DATA, REV_DATA, SP_CONTEXT,
                "nsh_spi", "nsh_si", NSH_IFACE)),
    Table(1, "arp",
          "Answer ARP requests for the router's own interface addresses in the "
          "datapath; send ARP replies addressed to the router to the controller "
          "(neighbor learning, the only ARP that leaves the datapath).",
          (),
          match=(ROUTER, IN_IFACE, "eth_type", "arp_op", "arp_tpa"), sets=ARP_REPLY),
    Table(2, "ct",
          "Send IPv4 that is not yet serviced through conntrack in the router's zone "
          "(one zone per router: one connection store shared by all its interfaces).",
          ("ct_result",),
          match=("eth_type", FLAGS_SERVICED), sets=(FLAGS_SI_DONE,)),
    Table(3, "ct_result",
          "Invalid packets drop; records made by service insertion (tag bit in "
          "ct_mark) under the current classification generation go to the applied_to "
          "check; anything else (new connections, records made before a rule or "
          "applied_to edit) is classified. A reply to the record of a connection as a "
          "NAT node sent it on goes back into that node's reverse path (transport).",
          ("applied_to", "orient", "transport"),
          match=("ct_state", CT_MARK_TAG, in_label(GEN_CLASSIFY), in_label(TRANSPORT)),
          sets=(DECISION, RULE_NUM)),
    Table(4, "applied_to",
          "Reuse a stored decision only if the record's rule is applied at the "
          "interface the packet is classified at: (ct_mark rule, the rule's "
          "applied_to set code) hit goes on to the class check; a miss re-classifies "
          "(patent claim 2).",
          ("class_check", "orient"), miss="orient",
          match=(ROUTER, CT_MARK_TAG, CT_MARK_RULE, *APPLIED_TO)),
    Table(5, "class_check",
          "The record's rule is applied here; reuse it only if it is also what this "
          "interface's rules give the connection: the interface class the record was "
          "classified at (ct_mark) must carry every applied_to set this interface "
          "carries (then no rule of this interface can outrank the record's). A hit "
          "restores the decision from ct_label; a miss re-classifies.",
          ("gen_check", "orient"), miss="orient",
          match=(ROUTER, CT_MARK_CLASS, SI_CLASS), sets=(DECISION, RULE_NUM, FLAGS_REUSED)),
    Table(6, "orient",
          "Rules classify connections, not packets: a reply-direction packet (ct_state "
          "+rpl) has its addresses and ports swapped into the connection's original "
          "direction for the classify lookup (conntrack's original tuple, without NAT), "
          "so a reply never classifies on its own swapped headers; its Ethernet "
          "addresses too, so eth_src/eth_dst are those of the connection's original "
          "direction on the wire at this interface. TCP and UDP have their "
          "destination port (of that direction) and protocol copied into registers, "
          "where classify checks them before any address, and dst_named says whether "
          "the destination is one that rules with a source and a destination name.",
          ("classify", "dst_named"), miss="classify",
          match=("ct_state", "eth_type", "ip_proto"),
          sets=("eth_src", "eth_dst", *IP_ADDRS, *TP_PORTS, SWAP_SCRATCH, CLASSIFY_TP_DST,
                CLASSIFY_PROTO)),
    Table(7, "classify",
          "Service insertion rules. A rule matches its applied_to set's code "
          "(interfaces carry the codes of every set they are in), so "
          "flows grow with rules, not rules x interfaces. A destination port is "
          "matched in the registers orient loaded. Multi-valued fields use "
          "conjunctive matches (a port list with one other list: every combination, "
          "when that costs at most twice the flows). The highest priority wins; the default rule "
          "(priority 0) allows without service.",
          ("reorient",),
          match=(ROUTER, "eth_src", "eth_dst", "eth_type", *IP_FIVE_TUPLE, *APPLIED_TO,
                 CLASSIFY_TP_DST, CLASSIFY_PROTO, CLASSIFY_DST_NAMED, "conj_id"),
          sets=(RULE_NUM, RULE_ACTION, POLICY_NUM, TRANSPORT),
          prefixes=("nw_src", "nw_dst", "ipv6_src")),
    Table(8, "reorient",
          "Swap a reply-direction packet's addresses and ports back.",
          ("keep_decision",), miss="keep_decision",
          match=("ct_state", "eth_type", "ip_proto"),
          sets=("eth_src", "eth_dst", *IP_ADDRS, *TP_PORTS, SWAP_SCRATCH)),
    Table(9, "keep_decision",
          "A re-classification that gives the record's own rule (same action, same "
          "policy) keeps the stored decision: its service path or node, and what flow "
          "programming made of it. Anything else takes the new rule's decision.",
          ("policy", "commit"),
          match=(ROUTER, CT_MARK_TAG, CT_MARK_RULE, in_label(RULE_ACTION), in_label(POLICY_NUM),
                 RULE_NUM, RULE_ACTION),
          sets=(DECISION, RULE_NUM, FLAGS_KEPT)),
    Table(10, "policy",
          "A redirect rule's policy selects a service node with a select group "
          "(stable per connection); a policy with no live node follows its "
          "failure policy (pass: route unserviced, fail: drop).",
          ("commit",),
          match=(POLICY_NUM,), sets=(TRANSPORT, FWD_DATA, REV_DATA)),
    Table(11, "commit",
          "Commit the decision to conntrack: ct_mark = tag + interface class + rule "
          "number, ct_label = transport, rule action, classification generation, "
          "forward/reverse data, policy, generations. A kept decision keeps its "
          "transport generations (revalidated next). A transit packet's egress "
          "decision is not recorded: it is carried out (transport), unless it keeps "
          "the record's decision, which may be the one already carried out "
          "(transit_done).",
          ("gen_check", "transport", "transit_done"),
          match=("eth_type", FLAGS_KEPT, FLAGS_TRANSIT),
          sets=(GEN_CLASSIFY, GEN_TRANSPORT, CT_LABEL_DECISION, CT_MARK_TAG, CT_MARK_CLASS,
                CT_MARK_RULE)),
    Table(12, "gen_check",
          "Records stamped with the current generations take the fast path (one "
          "lookup); stale ones are revalidated by this packet: flow programming first, "
          "then the failed set, else they are re-stamped. At a transit packet's egress, "
          "a record that holds there may be the decision already carried out "
          "(transit_done).",
          ("transport", "flow_program", "transit_done"),
          match=(TRANSPORT, RULE_ACTION, *GENERATIONS, FLAGS_TRANSIT, FLAGS_REUSED),
          sets=(FLAGS_KEPT,)),
    Table(13, "flow_program",
          "Flow-programming instructions, one flow per direction of each programmed "
          "connection: drop, accept (skip the rest of the chain), reroute (a new "
          "SPI, or another biw or L3 node; back through the policy when that target "
          "is gone), skip (one chain node: the record's path, by its forward SPI, "
          "becomes that path without the node). The decision is re-committed, so the "
          "next packets take the fast path; a zero-byte packet-in tells the "
          "controller the instruction was carried out.",
          ("revalidate", "commit", "policy"),
          match=(ROUTER, "eth_type", *IP_FIVE_TUPLE, TRANSPORT, FWD_SPI),
          sets=(TRANSPORT, FWD_DATA, REV_DATA)),
    Table(14, "revalidate",
          "A record whose service node failed is sent through its policy again (a "
          "live node); one whose path failed moves to that path's first backup that "
          "is up (the policy when none is); a redirect that fell back to its failure "
          "policy tries its policy again; anything else is re-committed with the "
          "current generations.",
          ("policy", "commit"),
          match=(TRANSPORT, RULE_ACTION, FWD_DATA), sets=(TRANSPORT, FWD_DATA, REV_DATA)),
    Table(15, "transport",
          "Send the packet the way the decision says: biw forward out side A, "
          "reverse out side B; chain: NSH into the service plane; l3: routed out the "
          "node's VTI; allow continues to routing (or back to egress_si, which lets it "
          "out, when the packet was classified at its egress); drop drops. C2 of NSH "
          "says which interface the packet entered by. A packet already back from the "
          "reverse path its decision names (nat_back) is routed.",
          ("routing", "neighbor", "egress_si"),
          match=("ct_state", ROUTER, TRANSPORT, FWD_DATA, REV_DATA, FLAGS_EGRESS,
                 FLAGS_NAT_BACK),
          sets=("eth_src", "eth_dst", "nsh_spi", "nsh_si", NSH_IFACE, EGRESS_IFACE,
                NEXT_HOP)),
    Table(16, "routing",
          "Longest-prefix match per router: egress interface and next hop. Liveness "
          "probes that came back through a service node go to the controller.",
          ("neighbor",),
          match=(ROUTER, "eth_type", "ip_proto", "ipv4_dst", "ipv6_dst", "udp_dst",
                 FLAGS_SERVICED),
          sets=(EGRESS_IFACE, NEXT_HOP), prefixes=("nw_dst", "ipv6_dst")),
    Table(17, "neighbor",
          "Next hop IPv4 to MAC (static and learned neighbors); a miss asks the "
          "controller to resolve it (ARP miss). Before egress classification, so a "
          "rule's eth_dst sees the frame as it will leave.",
          ("egress_si",),
          match=(EGRESS_IFACE, NEXT_HOP, "eth_type", "ipv6_dst"), sets=("eth_dst",),
          prefixes=("nw_src", "nw_dst", "ipv6_dst")),
    Table(18, "egress_si",
          "Traffic routed out of a classifying interface is classified there, at its "
          "egress, with the Ethernet header it will leave with, unless it was "
          "classified at an interface of the same class (the same rules). Traffic not "
          "classified yet goes through the router's zone like ingress traffic (the "
          "record is made here); transit traffic, classified where it entered (in this "
          "pass, or before a service that said where: C2, the biw source MAC), is "
          "looked up in the router's zone and classified without a record (transit). "
          "What came back from a service that does not say where it was classified "
          "(an L3 node, a NAT node) leaves.",
          ("ct", "output", "ct_result"),
          match=("eth_type", FLAGS_SERVICED, FLAGS_SI_DONE, FLAGS_NAT_BACK, EGRESS_IFACE,
                 SI_CLASS),
          sets=("eth_src", SI_IFACE, SI_CLASS, *APPLIED_TO, FLAGS_EGRESS, FLAGS_TRANSIT,
                FLAGS_REUSED, FLAGS_KEPT, DONE_CLASS)),
    Table(19, "output",
          "Rewrite the source MAC to the egress interface, decrement TTL, output; a "
          "router link's frame takes the far end's MAC and crosses (cross).",
          ("cross",),
          match=("eth_type", EGRESS_IFACE), sets=("eth_src", "eth_dst", "nw_ttl")),
    # --- the service plane bridge (the patent's logical service forwarding element)
    Table(20, "sp_forward",
          "Service plane: each hop by exact match on (SPI, SI). NSH-aware nodes get the "
          "NSH frame; an NSH-unaware node's frame is stripped of NSH (sp_to_node); the "
          "final SI goes back toward the routers (sp_return). A plane's number is its "
          "SPIs' top byte: one plane's packets match none of another's hops.",
          ("sp_to_node", "sp_return"), bridges=ON_PLANE,
          match=("eth_type", *NSH_PATH), sets=(SP_CONTEXT, SP_PATH, SP_NODE, SP_WAY)),
    Table(21, "sp_to_node",
          "The plain frame to an NSH-unaware node, out side A (forward) or B (reverse), "
          "its source MAC carrying the SPI and C2 (proxy_mac): what comes back on the "
          "other side tells the proxy its hop.",
          (), bridges=ON_PLANE,
          match=("eth_type", SP_NODE, SP_WAY), sets=("eth_src", "eth_dst")),
    # --- a router bridge again: the two ends of a path through a NAT node
    Table(22, "nat_leg",
          "End of the forward path through a NAT node, looked up in the router's zone: "
          "a tuple the router has never seen is the connection as the node sent it on; "
          "it is recorded (its replies go back through the node, ct_result) and routed.",
          ("routing", "nat_leg"), bridges=ON_ROUTER,
          match=("eth_type", "ct_state", IN_IFACE, "ip_proto", "ipv4_dst", "udp_dst"),
          sets=(ROUTER, CT_ZONE, CT_LABEL_DECISION)),
    Table(23, "nat_back",
          "End of the reverse path through a NAT node: the node has restored the "
          "addresses the router recorded, so the packet is checked as if it had just "
          "entered by the interface C2 names: that interface's applied_to codes, then "
          "the router's zone and ct_result (reuse or classify again).",
          ("ct_result",), bridges=ON_ROUTER,
          match=("eth_type", IN_IFACE), sets=(ROUTER, SI_IFACE, SI_CLASS, *APPLIED_TO, CT_ZONE)),
    Table(24, "cross",
          "Over a router link (T0 and T1 on one bridge): the packet enters the router at "
          "the link's far end as if by a port: that router's number, zone and own "
          "registers, no conntrack state of the router it left; classified there when "
          "that end classifies (a T1's uplink), else routed.",
          ("ct", "routing"), bridges=ON_ROUTER,
          match=(ROUTER, "eth_type", EGRESS_IFACE),
          sets=(ROUTER, IN_IFACE, CT_ZONE, FLAGS_SERVICED, FLAGS_SI_DONE, FLAGS_EGRESS,
                FLAGS_KEPT, FLAGS_NAT_BACK, SI_IFACE, SI_CLASS, *APPLIED_TO, RULE_NUM, DECISION,
                EGRESS_IFACE, NEXT_HOP, SWAP_SCRATCH)),
    Table(25, "resume",
          "Back from a service path or a biw node: the router that classified the "
          "packet (the interface C2 or the source MAC named, now in_iface) routes it on, "
          "serviced, knowing where it was classified (its egress classifies it again "
          "only if its rules differ there); a t1 using its parent's service plane or "
          "node gets its packets back this way.",
          ("routing",), bridges=ON_ROUTER, match=(IN_IFACE,),
          sets=(ROUTER, CT_ZONE, FLAGS_SI_DONE, SI_IFACE, SI_CLASS)),
    Table(26, "sp_return",
          "Service plane: a path's end (or a flow-programming signal) goes back to the "
          "router bridge link it came from, chosen by the interface C2 names when "
          "several routers' links share the plane bridge; probes to the first link.",
          (), bridges=ON_PLANE, match=("eth_type", NSH_IFACE)),
    Table(27, "transit_done",
          "At a transit packet's egress, the router's record holds there (or its rule "
          "won again). If the record also holds where the packet entered (its class "
          "carries every applied_to set of that interface's class, done_class), its "
          "decision is the one carried out there: the packet leaves. Otherwise the "
          "record is another packet's (replies made it at this egress since): carried "
          "out now.",
          ("gen_check", "transport", "output"), bridges=ON_ROUTER,
          match=(ROUTER, CT_MARK_CLASS, DONE_CLASS, FLAGS_REUSED), sets=(FLAGS_REUSED,)),
    Table(28, "nd",
          "IPv6 neighbour discovery and echo for the router's own addresses, in the "
          "datapath as ARP is: a Neighbor Solicitation for an interface's address "
          "(global or link-local) becomes the Advertisement in place and goes back; an "
          "echo request to one (ingress sends only those here) becomes the reply; "
          "Advertisements go to the controller (neighbour learning); other "
          "solicitations drop.",
          ("nd_reply",), bridges=ON_ROUTER,
          match=(ROUTER, IN_IFACE, "eth_type", "ip_proto", "ipv6_src", "ipv6_dst",
                 "icmpv6_type", "nd_target", "nd_options_type"),
          sets=("eth_src", "eth_dst", "ipv6_src", "ipv6_dst", "icmpv6_type", "nd_reserved",
                "nd_options_type", "nw_ttl")),
    Table(29, "nd_reply",
          "The Advertisement made of a Solicitation that carried the sender's link-layer "
          "address: that option, a target link-layer address now, takes the interface's "
          "MAC, and the Advertisement goes back. (OVS lets a flow write nd_tll only when "
          "its match says the packet is an Advertisement: the nd flow that makes it one "
          "cannot, and setting nd_sll there leaves the sender's MAC in the option.)",
          (), bridges=ON_ROUTER,
          match=(IN_IFACE, "eth_type", "ip_proto", "icmpv6_type", "nd_options_type"),
          sets=("nd_tll",)),
    Table(30, "dst_named",
          "Resubmitted to by orient: a destination inside a destination prefix of a rule "
          "that matches a source but no port sets classify_dst_named, which that rule's "
          "classify flows match in OVS's register stage. Any other destination turns "
          "those rules away before their source prefixes are looked at, so new "
          "connections from new sources share a megaflow. One flow per prefix, longest "
          "first; a miss leaves the bit clear.",
          (), match=(ROUTER, "eth_type", "ipv4_dst", "ipv6_dst"), sets=(CLASSIFY_DST_NAMED,),
          prefixes=("nw_dst", "ipv6_dst")),
)

TABLE_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}


def table_id(name: str) -> int:
    return TABLE_BY_NAME[name].id


def flow_table_names_args(bridge: str) -> list[str]:
    """``ovs-vsctl`` arguments that name every table in OVS (readable dump-flows) and set
    the address prefixes its classifier tracks."""
    args: list[str] = []
    for t in TABLES:
        prefixes = [f"prefixes={','.join(t.prefixes)}"] if t.prefixes else []
        args += ["--", f"--id=@t{t.id}", "create", "Flow_Table", f"name={t.name}", *prefixes]
    args += ["--", "set", "Bridge", bridge] + [f"flow_tables:{t.id}=@t{t.id}" for t in TABLES]
    return args
