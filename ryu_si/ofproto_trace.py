"""Confirm a model trace on the real switch with ``ovs-appctl ofproto/trace``.

The model trace (``ryu_si.trace``) says which rule a new connection hits and
what happens to it.  Here the same packet is traced through the flows the
switch actually holds, and the two answers are compared: the rule the classify
table picked (read off the flow's cookie), the policy table's group for a
redirect, and for an allowed packet the output port.  It works where the
controller runs beside the switch (the usual single-host setup); elsewhere the
answer says why it could not confirm.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from typing import NamedTuple

from openflow_tables import layout as L
from ryu_si.trace import Confirmation, TraceResult

TIMEOUT_S = 10.0
# " 5. tcp,reg12=0x2/0x2,..., priority 100, cookie 0x5106000003000000"
_TABLE_LINE = re.compile(r"^\s*(\d+)\. .*priority (\d+), cookie (0x[0-9a-f]+)$")
_OUTPUT = re.compile(r"^\s+output:(\d+)$")
_DATAPATH = re.compile(r"^Datapath actions: (.*)$")
TABLE_NAMES = {t.id: t.name for t in L.TABLES}


class Visit(NamedTuple):
    """One flow the packet hit: its table and the object its cookie names."""

    table: str
    priority: int
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
        elif m := _OUTPUT.match(line):
            outputs.append(int(m[1]))
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


def compare(result: TraceResult, reading: Reading, ports: dict[str, int],
            egress_port: str | None) -> list[str]:
    """How the switch's answer differs from the model's (empty: they agree)."""
    out = []
    want_rule = result["rule"]["rule_num"] if result["rule"] else None
    got_rule = classified_rule(reading)
    if got_rule != want_rule:
        out.append(f"rule: model {want_rule}, switch {got_rule}")
    final = reading.datapath_actions[-1] if reading.datapath_actions else None
    if result["outcome"] == "drop" and final != "drop":
        out.append(f"outcome: model drop, switch datapath actions {final!r}")
    if result["outcome"] == "redirect" and result["policy"] and \
            policy_hit(reading) != result["policy"]["num"]:
        out.append(f"policy: model {result['policy']['num']}, switch {policy_hit(reading)}")
    if result["outcome"] == "allow" and result["route"]:
        want = ports.get(egress_port or "")
        if want is None or want not in reading.outputs:
            out.append(f"output: model {egress_port}, switch OpenFlow ports {reading.outputs}")
    return out


def run(bridge: str, flow: str) -> str:
    """ofproto/trace of a new connection: every conntrack pass sees ct_state new."""
    return subprocess.run(["ovs-appctl", "--timeout", str(int(TIMEOUT_S)), "ofproto/trace",
                           bridge, flow, "--ct-next", "trk,new"], capture_output=True,
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
    answer["command"] = f"ovs-appctl ofproto/trace {bridge} '{flow}' --ct-next trk,new"
    try:
        reading = read(run(bridge, flow))
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
