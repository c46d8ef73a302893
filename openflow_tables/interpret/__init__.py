"""Run a compiled pipeline on packets, with conntrack, as Open vSwitch would: no switch.

Tests ask "where does this packet go, and what does conntrack hold after it?"
of the compiler's own neutral flows, so an invariant over thousands of packet
sequences can be checked in seconds.  The semantics follow ovs-fields(7) and
ovs-actions(7) where the pipeline depends on them:

* **Lookup**: the highest-priority flow whose every match entry matches (masked
  compare); a field the packet does not have (tcp_dst of a UDP packet) never
  matches.  A table miss drops, as OVS does from OpenFlow 1.3 on: ``Table.miss``
  in the layout is documentation, nothing installs it.  Two different flows of
  one top priority that both match are an error here (OVS picks one arbitrarily).
* **Conjunctive matches** as OVS's classifier: flows whose actions are all
  ``conjunction`` are soft matches; from the highest priority down, while above
  the best ordinary flow, a priority whose soft matches cover every clause of a
  conjunction ``id`` makes the lookup again with ``conj_id=id`` (ordinary flows
  only).  The first id completed wins (soft flows taken in priority, then
  listing, order; OVS takes them in an arbitrary order).
* **Instructions**: apply-actions, then goto_table.  ``resubmit`` runs the named
  table on the same packet (its changes stay) and then the remaining actions.
* **ct** looks the packet up in the zone held by ``zone_field``.  An entry is
  keyed by its original tuple and found from either direction.  Unknown
  connection: ``+trk+new``, ct_mark/ct_label 0, the ct_nw_* tuple is the
  packet's own.  Known: ``+trk+est`` (``+rpl`` in the reply direction), the
  entry's ct_mark/ct_label, the ct_nw_* tuple of its ORIGINAL direction (ct_ipv6_src
  and ct_ipv6_dst for an IPv6 connection).  IPv4 and IPv6 (``eth_type`` 0x0800 or
  0x86dd; ct on anything else is an error, as OVS requires ip or ipv6 in the match) are
  keyed alike: TCP and UDP by ports, an ICMP or ICMPv6 echo by its id (``icmp_id``,
  request and reply pair up), anything else by its addresses.  (No TCP
  window tracking: every packet of a known entry is ``+est``, where OVS may still
  say ``+new`` before it has seen a reply; no flow of this pipeline matches new or
  est.)  ``+trk+inv`` for a TCP packet whose ``tcp_flags`` OVS's conntrack refuses
  (SYN with RST or FIN, neither ACK nor RST without SYN, FIN/PSH/URG without ACK)
  or that would open a connection with SYN+ACK; a packet given without
  ``tcp_flags`` is valid.  ``+trk+inv`` too for ICMPv6 OVS cannot key (neither an
  echo nor an error: neighbour discovery, RS/RA, MLD), an ICMPv6 echo with a code, and
  an ICMPv6 echo reply to no request (an ICMP one, as before, is ``+new``); an invalid
  packet is never committed.
  ``commit`` creates the entry (original direction = this packet's)
  and runs ``exec``: its writes to ct_mark/ct_label are masked writes onto the
  entry's current values.  With ``table=`` a copy of the packet (registers and
  header changes kept, as recirculation does) is queued to resume at that
  table with the ct fields set; it runs after the current pass ends.  The
  packet that executed the ct action goes on with its remaining actions
  *untracked*: ct_state and the other ct fields cleared (ovs-actions(7): "the
  original instance of the packet will continue processing the current actions
  list as an untracked packet"), so values committed by exec are visible only
  to the recirculated copy.
* **Groups**: ``select`` picks one bucket per connection with highest-random-
  weight hashing (score = hash(connection, bucket index) & 0xffff times the
  bucket's weight, as OVS's default selection scores buckets) over a hash of
  the 5-tuple that is symmetric (both directions pick the same bucket); ``all``
  runs every bucket, ``indirect`` its one bucket, ``ff`` its first (no port
  liveness here).  Each bucket acts on a copy of the packet.  The walk records
  every group with its bucket set and the bucket(s) taken (``GroupPick``); a
  select group's pick is marked not ``predicted``: the pipeline's select groups
  use OVS's own datapath hash, so the switch may take any bucket of the set (the
  interpreter's pick is stable per connection, as the switch's is).
* **Output** to the packet's own in_port is skipped (OVS sends there only with
  ``in_port``/IN_PORT).  ``dec_ttl`` on a TTL (an IPv6 hop limit: ``nw_ttl`` holds
  either) of 0 or 1 ends the pass (the packet is dropped).  ``controller`` records a packet-in and goes on.
* **NSH**: ``encap(nsh)`` keeps the frame as the inner packet and makes the NSH
  header (spi 0, si 255) the visible one; ``encap(ethernet)`` adds an outer
  Ethernet header (eth_type 0x894f) over it; ``decap()`` removes the outermost
  header.  An output records the visible headers and the inner frames, so a
  chain redirect is observable as ``Sent.nsh``.
* **Tunnels**: none to model.  The pipeline sets no tunnel field: a VTI is an
  OVS port like any other, and the service plane is reached by a port.
* **Fields**: IPv6 addresses (``ipv6_src``, ``ipv6_dst``, ``nd_target``) are 128-bit
  integers, given as IPv6 text or ``2001:db8::/64`` prefixes; MAC text (six groups)
  and IPv6 text are told apart by their shape, and a field refuses text of another
  kind.  Moves and loads take any bit range of them (``ipv6_src[32..63]``).
* **Packets**: ``ipv4`` builds the headers of a TCP, UDP or other IP packet (IPv6 from
  IPv6 addresses), ``ipv6`` the same held to IPv6, ``echo`` an ICMP or ICMPv6 echo.
* **The walk**: ``Result.trace`` holds one ``Step`` per lookup (table, flow,
  pass, resubmit depth, the packet as the lookup saw it, and what its actions
  did that a reader needs: outputs, groups, ct, packet-ins), and
  ``Result.describe`` prints it table by table in the spirit of ``ofproto/trace``.
  ``Bridge.matching`` lists every flow of a table a packet matches, winner first
  (what ``ryu_si.diagnose.trace`` reports as the rules that cover a connection).
"""
from __future__ import annotations

from openflow_tables.interpret.conntrack import Conntrack, CtEntry
from openflow_tables.interpret.datapath import (Bridge, Datapath, GroupPick, PacketIn, Result,
                                                Sent, Step, echo, ip_version, ipv4, ipv6)
from openflow_tables.interpret.packet import InterpretError, Packet

__all__ = ["Bridge", "Conntrack", "CtEntry", "Datapath", "GroupPick", "InterpretError",
           "Packet", "PacketIn", "Result", "Sent", "Step", "echo", "ip_version", "ipv4", "ipv6"]
