"""Liveness of service nodes: probes out, replies in, up/down decisions.

Pure bookkeeping (no Ryu).  Each round the app calls ``tick`` and then sends
one probe per node.  A node is down when its last ``multiplier`` probes are all
unanswered, and up again at the first answer.  Counting probes rather than
wall time means a controller that is briefly late sends fewer probes instead
of declaring healthy nodes dead; detection takes interval x multiplier to
interval x (multiplier + 1).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

PROBE_MAGIC = b"RSIP"
PROBE_FORMAT = "!4sI40s"          # magic, sequence, node id (a UUID, ascii, padded)


@dataclass
class NodeState:
    node_id: str
    up: bool = True
    sent: int = 0                   # sequence number of the last probe sent
    replied: int = 0                # highest sequence number answered
    floor: int = 0                  # after a link-down, only answers above this count
    last_sent: float = 0.0
    last_reply: float | None = None
    replies: int = 0
    changes: int = 0
    last_change: float | None = None

    def alive(self, multiplier: int) -> bool:
        return self.sent - self.replied < multiplier and self.replied >= self.floor


@dataclass
class Liveness:
    interval: float = 0.1
    multiplier: int = 3
    nodes: dict[str, NodeState] = field(default_factory=dict)

    def track(self, node_ids: set[str]) -> None:
        """Follow exactly these nodes (a new one starts up, with no probe missed)."""
        for gone in set(self.nodes) - node_ids:
            del self.nodes[gone]
        for new in node_ids - set(self.nodes):
            self.nodes[new] = NodeState(new)

    def sent(self, node_id: str, now: float) -> int:
        st = self.nodes[node_id]
        st.sent += 1
        st.last_sent = now
        return st.sent

    def reply(self, node_id: str, seq: int, now: float) -> None:
        st = self.nodes.get(node_id)
        if st is not None and seq <= st.sent:
            st.replies += 1
            st.replied = max(st.replied, seq)
            st.last_reply = now

    def tick(self, now: float) -> list[tuple[str, bool]]:
        """(node, up) for every node whose state changes now (call before sending)."""
        changes = []
        for st in self.nodes.values():
            alive = st.alive(self.multiplier)
            if alive != st.up:
                st.up, st.changes, st.last_change = alive, st.changes + 1, now
                changes.append((st.node_id, alive))
        return changes

    def force_down(self, node_id: str, now: float) -> bool:
        """Link down seen by the switch: down now, up only when a later probe is answered."""
        st = self.nodes.get(node_id)
        if st is None or not st.up:
            return False
        st.up, st.changes, st.last_change = False, st.changes + 1, now
        st.floor = st.sent + 1
        return True

    def view(self) -> dict[str, dict]:
        return {n: {"up": s.up, "last_reply": s.last_reply, "last_sent": s.last_sent,
                    "sent": s.sent, "replies": s.replies, "changes": s.changes,
                    "last_change": s.last_change} for n, s in self.nodes.items()}


def probe_payload(node_id: str, seq: int) -> bytes:
    return struct.pack(PROBE_FORMAT, PROBE_MAGIC, seq, node_id.encode()[:40])


def parse_probe(payload: bytes) -> tuple[str, int] | None:
    """(node id, sequence) of one of our probes, or None."""
    if len(payload) < struct.calcsize(PROBE_FORMAT):
        return None
    magic, seq, raw = struct.unpack_from(PROBE_FORMAT, payload)
    return (raw.rstrip(b"\0").decode(errors="replace"), seq) if magic == PROBE_MAGIC else None
