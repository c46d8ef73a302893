"""Confirm a trace on the real switch with ``ovs-appctl ofproto/trace``.

A trace (``ryu_si.diagnose.trace``) is the interpreter's walk of a new connection's first
packet through the compiled pipeline.  Here the same packet is traced through the
flows the switch actually holds, and the two walks are compared: the tables
crossed, the rule the classify flow's cookie names, the policy flow's group, and
the OpenFlow output (none: dropped or sent to the controller).  The switch's trace
stops where a select group hashes in the datapath (``hash(...),recirc``): from
there on it says nothing, so the comparison ends at that table.  It works where
the controller runs beside the switch (the usual single-host setup); elsewhere the
answer says why it could not confirm.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from typing import NamedTuple

from openflow_tables import layout as L
from ryu_si.diagnose.trace import Confirmation, TraceResult

TIMEOUT_S = 10.0
# " 5. tcp,reg12=0x2/0x2,..., priority 100, cookie 0x5106000003000000"
_TABLE_LINE = re.compile(r"^\s*(\d+)\. .*priority (\d+), cookie (0x[0-9a-f]+)$")
_MISS_LINE = re.compile(r"^\s*(\d+)\. No match\.$")
_OUTPUT = re.compile(r"^\s+output:(\d+)$")
_SKIPPED = ">> skipping output to input port"
_DATAPATH = re.compile(r"^Datapath actions: (.*)$")
TABLE_NAMES = {t.id: t.name for t in L.TABLES}


class Visit(NamedTuple):
    """One flow the packet hit: its table and the object its cookie names."""

    table: str
    priority: int | None          # None: a table miss
    owner: tuple[str, int] | None


class Reading(NamedTuple):
    """What one ofproto/trace run says: flows hit, OpenFlow outputs, and the
    datapath actions of each pass (one per recirculation)."""

    visits: list[Visit]
    outputs: list[int]
    datapath_actions: list[str]


def read(text: str) -> Reading:
    """The flows, outputs and datapath actions in ofproto/trace's text output."""
    visits, outputs, actions = [], [], []
    for line in text.splitlines():
        if m := _TABLE_LINE.match(line):
            table, prio, cookie = int(m[1]), int(m[2]), int(m[3], 16)
            visits.append(Visit(TABLE_NAMES.get(table, str(table)), prio, L.cookie_owner(cookie)))
        elif m := _MISS_LINE.match(line):
            visits.append(Visit(TABLE_NAMES.get(int(m[1]), m[1]), None, None))
        elif m := _OUTPUT.match(line):
            outputs.append(int(m[1]))
        elif _SKIPPED in line and outputs:
            outputs.pop()
        elif m := _DATAPATH.match(line):
            actions.append(m[1])
    return Reading(visits, outputs, actions)


def classified_rule(reading: Reading) -> int | None:
    """The rule number of the last classify flow hit (the router's default rule is 0)."""
    for v in reversed(reading.visits):
        if v.table == "classify" and v.owner:
            return v.owner[1] if v.owner[0] == "rule" else 0
    return None


def policy_hit(reading: Reading) -> int | None:
    return next((v.owner[1] for v in reading.visits
                 if v.table == "policy" and v.owner and v.owner[0] == "policy"), None)


def stops_at_select(reading: Reading) -> bool:
    """The switch's trace ends where a select group hashes in the datapath."""
    final = reading.datapath_actions[-1] if reading.datapath_actions else ""
    return final.startswith("hash(")


def compare(result: TraceResult, reading: Reading, ports: dict[str, int],
            egress_port: str | None) -> list[str]:
    """How the switch's walk differs from the interpreter's (empty: they agree).
    ``egress_port``: the OVS port name of the interpreter's egress (None: no output)."""
    out = []
    mine, theirs = result["tables"], [v.table for v in reading.visits]
    partial = stops_at_select(reading)
    blind = record_blind_at(mine)
    if blind is not None:                  # both walks are compared up to there only
        mine, theirs, partial = mine[:blind], theirs[:blind], True
    if theirs != (mine[:len(theirs)] if partial else mine):
        out.append(f"tables: interpreter {' > '.join(mine)}, switch {' > '.join(theirs)}")
    want_rule = result["rule"]["rule_num"] if result["rule"] else None
    got_rule = classified_rule(reading)
    if got_rule != want_rule:
        out.append(f"rule: interpreter {want_rule}, switch {got_rule}")
    if result["outcome"] == "redirect" and result["policy"] and \
            policy_hit(reading) != result["policy"]["num"]:
        out.append(f"policy: interpreter {result['policy']['num']}, switch {policy_hit(reading)}")
    if not partial:
        want = [] if egress_port is None else [ports.get(egress_port, -1)]
        if reading.outputs != want:
            out.append(f"output: interpreter {egress_port or 'none'}, switch OpenFlow ports "
                       f"{reading.outputs}")
    return out


def record_blind_at(tables: list[str]) -> int | None:
    """Where the switch's trace stops telling: the first conntrack result after the
    packet's own commit (a transit packet looked up again at its egress).  ofproto/trace
    runs no conntrack, so it never sees the mark and label of the record it committed;
    the interpreter does, as the datapath would."""
    if "commit" not in tables:
        return None
    after = tables.index("commit")
    return next((k for k in range(after, len(tables)) if tables[k] == "ct_result"), None)


# The interpreter walk's conntrack lines (openflow_tables.walk): "-> ct commit zone 1: +trk+new,"
_WALK_CT = re.compile(r"-> ct(?: commit)? zone \d+: ((?:\+[a-z]+)+)")


def ct_next(walk: list[str]) -> list[str]:
    """The ct_state each conntrack pass of the interpreter's walk saw, in order, as
    ``--ct-next`` takes it: the switch's trace resumes each pass the same way (it would
    call every pass new; a packet looked up again after its connection was committed,
    transit at its egress, is established)."""
    states = [m.group(1).lstrip("+").replace("+", ",") for line in walk
              if (m := _WALK_CT.search(line)) and "resumes in pass" in line]
    return states or ["trk,new"]


def run(bridge: str, flow: str, states: list[str]) -> str:
    """ofproto/trace of the packet, each conntrack pass resumed with its state."""
    ct_args = [arg for state in states for arg in ("--ct-next", state)]
    return subprocess.run(["ovs-appctl", "--timeout", str(int(TIMEOUT_S)), "ofproto/trace",
                           bridge, flow, *ct_args], capture_output=True,
                          text=True, check=True, timeout=TIMEOUT_S).stdout


def confirm(result: TraceResult, bridge: str | None, ports: dict[str, int],
            egress_port: str | None) -> Confirmation:
    """Trace the packet on ``bridge`` and compare; an error says why it could not."""
    flow = result["ofproto_trace_flow"]
    answer = Confirmation(bridge=bridge, command=None, tables=[], rule_num=None,
                          policy_num=None, output_port=None, datapath_actions=[],
                          agrees=False, disagreements=[], error=None)
    if bridge is None:
        return {**answer, "error": "the router's switch is not a bridge on this host"}
    if shutil.which("ovs-appctl") is None:
        return {**answer, "error": "ovs-appctl not found on the controller's host"}
    states = ct_next(result["walk"])
    answer["command"] = (f"ovs-appctl ofproto/trace {bridge} '{flow}' "
                         + " ".join(f"--ct-next {s}" for s in states))
    try:
        reading = read(run(bridge, flow, states))
    except (subprocess.SubprocessError, OSError) as e:
        stderr = getattr(e, "stderr", None) or str(e)
        return {**answer, "error": f"ofproto/trace failed: {stderr.strip()[:300]}"}
    names = {no: name for name, no in ports.items()}
    disagreements = compare(result, reading, ports, egress_port)
    return {**answer, "tables": [v.table for v in reading.visits],
            "rule_num": classified_rule(reading), "policy_num": policy_hit(reading),
            "output_port": next((names.get(p, str(p)) for p in reversed(reading.outputs)),
                                None),
            "datapath_actions": reading.datapath_actions,
            "agrees": not disagreements, "disagreements": disagreements}
