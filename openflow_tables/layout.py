"""The one place that says where everything lives in the datapath.

Tables (id, name, purpose, the next tables they may jump to), the per-packet
register layout, and the bit layout of ct_mark and ct_label.  The compiler, the
Ryu app, the docs generator and the tests all read these declarations; nothing
else hard-codes a table number or a bit offset.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    """One OpenFlow table: its place, name and the tables its flows may go to."""

    id: int
    name: str
    purpose: str
    next_tables: tuple[str, ...] = ()
    miss: str = "drop"


TABLES: tuple[Table, ...] = (
    Table(0, "ingress",
          "Map in_port to router, interface number, conntrack zone and role; "
          "service-facing ports (biw sides, VTIs toward L3 nodes, NSH back from the "
          "service plane, decapsulated) mark packets serviced; ARP goes to the ARP stage; "
          "downlink traffic is routed first; unknown ports drop. On a service plane "
          "bridge: NSH from the router or an NSH-aware node goes to sp_forward, plain "
          "frames back from an NSH-unaware node go through its proxy zone.",
          ("arp", "ct", "routing", "sp_forward", "sp_proxy_in")),
    Table(1, "arp",
          "Answer ARP requests for the router's own interface addresses in the "
          "datapath; send ARP replies addressed to the router to the controller "
          "(neighbor learning, the only ARP that leaves the datapath).",
          ()),
    Table(2, "ct",
          "Send IPv4 that is not yet serviced through conntrack in the router's zone "
          "(one zone per router: one connection store shared by all its interfaces).",
          ("ct_result",)),
    Table(3, "ct_result",
          "Invalid packets drop; records made by service insertion (tag bit in "
          "ct_mark) under the current classification generation go to the applied_to "
          "check; anything else (new connections, records made before a rule or "
          "applied_to edit) is classified.",
          ("applied_to", "orient")),
    Table(4, "applied_to",
          "Reuse a stored decision only if the record's rule is applied at the "
          "interface the packet is classified at: (ct_mark rule, interface "
          "applied_to bits) hit goes on to the class check; a miss re-classifies "
          "(patent claim 2).",
          ("class_check", "orient"), miss="orient"),
    Table(5, "class_check",
          "The record's rule is applied here; reuse it only if it is also what this "
          "interface's rules give the connection: the interface class the record was "
          "classified at (ct_mark) must carry every applied_to set this interface "
          "carries (then no rule of this interface can outrank the record's). A hit "
          "restores the decision from ct_label; a miss re-classifies.",
          ("gen_check", "orient"), miss="orient"),
    Table(6, "orient",
          "Rules classify connections, not packets: a reply-direction packet (ct_state "
          "+rpl) has its addresses and ports swapped into the connection's original "
          "direction for the classify lookup (conntrack's original tuple, without NAT), "
          "so a reply never classifies on its own swapped headers.",
          ("classify",), miss="classify"),
    Table(7, "classify",
          "Service insertion rules. A rule matches the applied_to-set bit it "
          "belongs to (interfaces carry the bits of every set they are in), so "
          "flows grow with rules, not rules x interfaces. Multi-valued fields use "
          "conjunctive matches. The highest priority wins; the default rule "
          "(priority 0) allows without service.",
          ("reorient",)),
    Table(8, "reorient",
          "Swap a reply-direction packet's addresses and ports back.",
          ("keep_decision",), miss="keep_decision"),
    Table(9, "keep_decision",
          "A re-classification that gives the record's own rule (same action, same "
          "policy) keeps the stored decision: its service path or node, and what flow "
          "programming made of it. Anything else takes the new rule's decision.",
          ("policy", "commit")),
    Table(10, "policy",
          "A redirect rule's policy selects a service node with a select group "
          "(stable per connection); a policy with no live node follows its "
          "failure policy (pass: route unserviced, fail: drop).",
          ("commit",)),
    Table(11, "commit",
          "Commit the decision to conntrack: ct_mark = tag + interface class + rule "
          "number, ct_label = transport, rule action, classification generation, "
          "forward/reverse data, policy, generations. A kept decision keeps its "
          "transport generations (revalidated next).",
          ("gen_check",)),
    Table(12, "gen_check",
          "Records stamped with the current generations take the fast path (one "
          "lookup); stale ones are revalidated by this packet: flow programming first, "
          "then the failed set, else they are re-stamped.",
          ("transport", "flow_program")),
    Table(13, "flow_program",
          "Flow-programming instructions, one flow per direction of each programmed "
          "connection: drop, accept (skip the rest of the chain), reroute (a new "
          "SPI). The decision is re-committed, so the next packets take the fast path; "
          "a zero-byte packet-in tells the controller the instruction was carried out.",
          ("revalidate", "commit")),
    Table(14, "revalidate",
          "A record whose service node or path is in the failed set is sent through "
          "its policy again (a live node or the backup path); anything else is "
          "re-committed with the current generations.",
          ("policy", "commit")),
    Table(15, "transport",
          "Send the packet the way the decision says: biw forward out side A, "
          "reverse out side B; chain: NSH into the service plane; l3: routed out the "
          "node's VTI; allow continues to routing (or output when the packet was "
          "classified at its egress); drop drops.",
          ("routing", "neighbor")),
    Table(16, "routing",
          "Longest-prefix match per router: egress interface and next hop. Liveness "
          "probes that came back through a service node go to the controller.",
          ("egress_si",)),
    Table(17, "egress_si",
          "Traffic routed out of a classifying interface that has not been "
          "through service insertion yet is classified there, at its egress.",
          ("ct", "neighbor")),
    Table(18, "neighbor",
          "Next hop IPv4 to MAC (static and learned neighbors); a miss asks the "
          "controller to resolve it (ARP miss).",
          ("output",)),
    Table(19, "output",
          "Rewrite the source MAC to the egress interface, decrement TTL, output.",
          ()),
    # --- the service plane bridge (the patent's logical service forwarding element)
    Table(20, "sp_forward",
          "Service plane: each hop by exact match on (SPI, SI). NSH-aware nodes get the "
          "NSH frame; NSH-unaware nodes go through their proxy (SPI/SI saved, NSH "
          "stripped); the final SI goes back to the router.",
          ("sp_proxy_ct",)),
    Table(21, "sp_proxy_ct",
          "Proxy toward an NSH-unaware node, after decapsulation: look the plain packet "
          "up in the node's conntrack zone to learn its direction.",
          ("sp_proxy_out",)),
    Table(22, "sp_proxy_out",
          "Proxy toward an NSH-unaware node: remember SPI and the next SI in the node's "
          "conntrack zone (per direction), send the plain frame out side A (forward) "
          "or B (reverse).",
          ()),
    Table(23, "sp_proxy_in",
          "Proxy back from an NSH-unaware node: restore SPI/SI from the node's zone, "
          "re-encapsulate and forward to the next hop.",
          ("sp_forward",)),
)

TABLE_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}


def table_id(name: str) -> int:
    return TABLE_BY_NAME[name].id


@dataclass(frozen=True)
class Field:
    """A named bit range of a register, ct_mark or ct_label."""

    name: str
    register: str
    ofs: int
    nbits: int
    doc: str

    @property
    def mask(self) -> int:
        return ((1 << self.nbits) - 1) << self.ofs

    def value(self, v: int) -> int:
        """``v`` shifted into place (checked against the field's width)."""
        if not 0 <= v < (1 << self.nbits):
            raise ValueError(f"{self.name}: {v} does not fit in {self.nbits} bits")
        return v << self.ofs


# --- per-packet registers -------------------------------------------------
# metadata holds the router number; the registers hold the rest.
ROUTER = Field("router", "metadata", 0, 16, "router number (one pipeline slice per router)")
IN_IFACE = Field("in_iface", "reg0", 0, 16, "interface number the packet entered on")
FLAGS_SERVICED = Field("serviced", "reg1", 0, 1,
                       "packet came back from a service node: never classify it again")
FLAGS_SI_DONE = Field("si_done", "reg1", 1, 1,
                      "packet has been through service insertion at this router")
FLAGS_EGRESS = Field("egress_si", "reg1", 2, 1,
                     "classification happens at the egress interface (routed already)")
FLAGS_KEPT = Field("kept", "reg1", 3, 1,
                   "re-classification kept the record's decision: re-commit it as it is")
SI_IFACE = Field("si_iface", "reg2", 0, 16,
                 "interface the packet is classified at (ingress or egress)")
SWAP_SCRATCH = Field("swap_scratch", "reg11", 0, 32,
                     "orient/reorient: holds one address or port while it is swapped")
SI_CLASS = Field("si_class", "reg2", 16, 7,
                 "class of the interface the packet is classified at: interfaces of a "
                 "router with the same applied_to sets share a class")
# On the service plane bridge the same registers carry the proxy's state.
SP_NSH = Field("sp_nsh", "reg0", 0, 32, "service plane: SPI<<8 | next SI of a proxied packet")
SP_NODE = Field("sp_node", "reg2", 0, 32, "service plane: the proxied node's number")
RULE_NUM = Field("rule_num", "reg3", 0, 24, "rule number of the decision")
EGRESS_IFACE = Field("egress_iface", "reg9", 0, 16, "egress interface chosen by routing")
NEXT_HOP = Field("next_hop", "reg10", 0, 32, "next hop IPv4 chosen by routing")
CT_ZONE = Field("ct_zone", "reg8", 0, 16, "the router's conntrack zone")

# The applied_to bits of the classification interface: bit b is set when the
# interface belongs to the b-th distinct applied_to set of its router.
APPLIED_TO_REGS: tuple[str, ...] = ("reg12", "reg13", "reg14", "reg15")
APPLIED_TO_BITS = 32 * len(APPLIED_TO_REGS)


def applied_to_bit(bit: int) -> tuple[str, int]:
    """Register and single-bit mask that hold applied_to-set bit ``bit``."""
    if not 0 <= bit < APPLIED_TO_BITS:
        raise ValueError(f"applied_to bit {bit} out of range")
    return APPLIED_TO_REGS[bit // 32], 1 << (bit % 32)


# --- the decision: xxreg1 (reg4..reg7) is copied whole into ct_label --------
# xxreg1 = reg4 (bits 96-127) : reg5 (64-95) : reg6 (32-63) : reg7 (0-31).
DECISION_REG = "xxreg1"
TRANSPORT = Field("transport", "reg7", 0, 4, "transport of the decision (TRANSPORT_* below)")
RULE_ACTION = Field("rule_action", "reg7", 4, 2,
                    "action of the rule that made the decision (ACTION_* below)")
GEN_CLASSIFY = Field("classify_gen", "reg7", 8, 8,
                     "classification generation: bumped by every rule, applied_to or "
                     "interface edit, so open connections are classified again")
POLICY_NUM = Field("policy_num", "reg7", 16, 16, "policy number of a redirect decision")
FWD_DATA = Field("fwd_data", "reg6", 0, 32,
                 "forward-direction data: service node number (biw/l3) or SPI<<8|SI")
REV_DATA = Field("rev_data", "reg5", 0, 32, "reverse-direction data, same encoding")
GEN_FLOW_PROGRAM = Field("flow_program_gen", "reg4", 0, 8, "flow-programming generation")
GEN_BFD = Field("bfd_gen", "reg4", 8, 8, "biw node liveness generation")
GEN_SPI_FAIL = Field("spi_fail_gen", "reg4", 16, 8, "chain path liveness generation")
GEN_SN = Field("sn_gen", "reg4", 24, 8, "L3 node liveness generation")
GENERATIONS: tuple[Field, ...] = (GEN_FLOW_PROGRAM, GEN_BFD, GEN_SPI_FAIL, GEN_SN)
GENERATIONS_REG = "reg4"

TRANSPORT_NONE = 0   # allow: route without service
TRANSPORT_DROP = 1
TRANSPORT_BIW = 2
TRANSPORT_CHAIN = 3
TRANSPORT_L3 = 4
ACTION_ALLOW = 1
ACTION_DROP = 2
ACTION_REDIRECT = 3
NSH_FIRST_SI = 255   # the router sends SI 255; each hop takes one off

# Liveness probes: UDP from PROBE_SRC to PROBE_DST that must come back through a node.
PROBE_SRC = "169.254.255.2"
PROBE_DST = "169.254.255.1"
PROBE_PORT = 47474   # not a well-known port: Ryu would parse 3784 as BFD

# --- ct_mark --------------------------------------------------------------
CT_MARK_TAG = Field("si_tag", "ct_mark", 31, 1,
                    "record made by service insertion (other features may share conntrack)")
CT_MARK_RULE = Field("rule_num", "ct_mark", 0, 24, "rule number that made the record")
CT_MARK_CLASS = Field("ct_class", "ct_mark", 24, 7,
                      "class of the interface the record was classified at")
MAX_CLASSES = 1 << CT_MARK_CLASS.nbits   # interface classes per router

# ct_label mirrors xxreg1 bit for bit: label bits 96-127 = reg4 (generations),
# 64-95 = reg5 (reverse data), 32-63 = reg6 (forward data), 0-31 = reg7.
CT_LABEL_OFFSETS: dict[str, int] = {"reg4": 96, "reg5": 64, "reg6": 32, "reg7": 0}

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
)}


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


REGISTER_FIELDS: tuple[Field, ...] = (
    ROUTER, IN_IFACE, FLAGS_SERVICED, FLAGS_SI_DONE, FLAGS_EGRESS, FLAGS_KEPT, SI_IFACE,
    SI_CLASS, RULE_NUM, TRANSPORT, RULE_ACTION, GEN_CLASSIFY, POLICY_NUM, FWD_DATA, REV_DATA,
    *GENERATIONS, CT_ZONE, EGRESS_IFACE, NEXT_HOP, SWAP_SCRATCH,
    SP_NSH, SP_NODE,
)
CT_FIELDS: tuple[Field, ...] = (CT_MARK_TAG, CT_MARK_CLASS, CT_MARK_RULE)


def flow_table_names_args(bridge: str) -> list[str]:
    """``ovs-vsctl`` arguments that name every table in OVS (readable dump-flows)."""
    args: list[str] = []
    for t in TABLES:
        args += ["--", f"--id=@t{t.id}", "create", "Flow_Table", f"name={t.name}"]
    args += ["--", "set", "Bridge", bridge] + [f"flow_tables:{t.id}=@t{t.id}" for t in TABLES]
    return args
