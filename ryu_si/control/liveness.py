"""Liveness of service nodes: probes out, replies in, up/down decisions.

Pure bookkeeping (no Ryu).  Each round the app calls ``tick``, sends one probe per
node, and starts the next round ``interval`` after those probes left
(``next_round``).  A node is down when its last ``multiplier`` probes are all
unanswered, and up again at the first answer.  Counting probes rather than wall
time means a controller that is briefly late sends fewer probes instead of
declaring healthy nodes dead.  How long a silent failure can take to be declared
is ``Liveness.detection_time`` (about (multiplier + 1) x interval, not
multiplier x interval: see there).
"""
from __future__ import annotations

import math
import struct
from collections import deque
from dataclasses import dataclass, field

PROBE_MAGIC = b"RSIP"
PROBE_FORMAT = "!4sI40s"          # magic, sequence, node id (a UUID, ascii, padded)
WINDOW_ROUNDS = 100               # rounds whose timing the reported detection time covers
RTT_WINDOW = 16                   # latest probes per node whose send time is kept


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
    sent_at: dict[int, float] = field(default_factory=dict, repr=False)   # seq -> time

    def alive(self, multiplier: int) -> bool:
        return self.sent - self.replied < multiplier and self.replied >= self.floor


@dataclass
class Liveness:
    interval: float = 0.1
    multiplier: int = 3
    nodes: dict[str, NodeState] = field(default_factory=dict)
    ticks: deque[float] = field(init=False, repr=False)   # when the last rounds ticked

    def __post_init__(self) -> None:
        self.ticks = deque(maxlen=WINDOW_ROUNDS + self.multiplier + 1)

    def next_round(self, probes_sent_at: float) -> float:
        """When the next round ticks: one interval after this round's probes left, so
        every probe gets a full interval to come back before it can count as missed,
        and a round that also pushed a state change (a compile) delays the next one by
        its probe sending only, not by the push (pushes come after the probes)."""
        return probes_sent_at + self.interval

    def detection_time(self) -> float:
        """The longest a silent failure can go undeclared, in seconds.

        Rounds tick at T_1 < T_2 < ...; round r sends probe r at S_r >= T_r, and
        T_{r+1} = S_r + interval + (how late the controller woke up).  Say probe j is
        the last one to get through the node before it fails at F (so S_j <= F).  The
        tick of round r sees r - 1 probes sent and j answered; the node is declared at
        the first tick with r - 1 - j >= multiplier, T_{j+M+1} (M = multiplier).
        Hence

            detection = T_{j+M+1} - F <= T_{j+M+1} - T_j
                      = (M + 1) x interval + the lateness and probe-sending
                        time of the M + 1 rounds j .. j + M,

        reached when F falls just after probe j passed; a failure just before probe
        j + 1 passes is declared one round sooner, after about M x interval.  Waiting
        for a probe costs nothing extra: a probe sent in round r counts as missed at
        the tick of round r + 1, at least one interval later (an answer that comes
        later still counts, at a later tick).  The lateness is whatever the
        controller's other work (REST, compiles, packet-ins) makes it, so the answer
        is measured: the longest T_{k+M+1} - T_k over the last WINDOW_ROUNDS rounds,
        and (M + 1) x interval before enough rounds have run.  Rounded up to the ms."""
        span = self.multiplier + 1
        t = self.ticks
        measured = [t[k + span] - t[k] for k in range(len(t) - span)]
        return math.ceil(max([span * self.interval, *measured]) * 1000 - 1e-6) / 1000

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
        st.sent_at[st.sent] = now
        st.sent_at.pop(st.sent - RTT_WINDOW, None)
        return st.sent

    def reply(self, node_id: str, seq: int, now: float) -> float | None:
        """Count an answer; its round trip, if the probe is one of the node's latest
        RTT_WINDOW and was not answered before (a duplicate is not timed twice)."""
        st = self.nodes.get(node_id)
        if st is None or seq > st.sent:
            return None
        st.replies += 1
        st.replied = max(st.replied, seq)
        st.last_reply = now
        sent_at = st.sent_at.pop(seq, None)
        return None if sent_at is None else now - sent_at

    def tick(self, now: float) -> list[tuple[str, bool]]:
        """(node, up) for every node whose state changes now (call before sending)."""
        self.ticks.append(now)
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
