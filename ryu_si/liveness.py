"""Liveness of service nodes: probes out, replies in, up/down decisions.

Pure bookkeeping (no Ryu): the app sends a probe to every node each interval
and reports replies; ``tick`` says which nodes changed state.  A node is down
after ``multiplier`` intervals without a reply and up again at the first reply,
so detection takes at most interval x (multiplier + 1).
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
    last_sent: float = 0.0
    last_reply: float | None = None
    sent: int = 0
    replies: int = 0
    changes: int = 0
    last_change: float | None = None


@dataclass
class Liveness:
    interval: float = 0.1
    multiplier: int = 3
    nodes: dict[str, NodeState] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)

    def track(self, node_ids: set[str], now: float) -> None:
        """Follow exactly these nodes; a new one gets a grace period of one detection time."""
        for gone in set(self.nodes) - node_ids:
            del self.nodes[gone]
            self.started.pop(gone, None)
        for new in node_ids - set(self.nodes):
            self.nodes[new] = NodeState(new)
            self.started[new] = now

    def sent(self, node_id: str, now: float) -> int:
        st = self.nodes[node_id]
        st.sent += 1
        st.last_sent = now
        return st.sent

    def reply(self, node_id: str, now: float) -> None:
        st = self.nodes.get(node_id)
        if st is not None:
            st.replies += 1
            st.last_reply = now

    def tick(self, now: float) -> list[tuple[str, bool]]:
        """(node, up) for every node whose state changes now."""
        changes = []
        deadline = self.interval * self.multiplier
        for st in self.nodes.values():
            heard = st.last_reply if st.last_reply is not None else self.started[st.node_id]
            alive = now - heard <= deadline
            if alive != st.up:
                st.up, st.changes, st.last_change = alive, st.changes + 1, now
                changes.append((st.node_id, alive))
        return changes

    def force_down(self, node_id: str, now: float) -> bool:
        """Link down seen by the switch: no need to wait for missed probes."""
        st = self.nodes.get(node_id)
        if st is None or not st.up:
            return False
        st.up, st.changes, st.last_change = False, st.changes + 1, now
        st.last_reply = now - self.interval * (self.multiplier + 1)
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
