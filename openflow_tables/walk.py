"""An interpreter walk as a person reads it: pass by pass, table by table.

The layout follows ``ovs-appctl ofproto/trace`` (table number, the flow's match,
priority and cookie, its actions in ``ovs-ofctl`` syntax) so the two can be read
side by side; a cookie is named by the object it came from, and what the
actions did (outputs, groups, conntrack, packet-ins) follows them on ``->`` lines.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from openflow_tables.layout import cookie_owner, table_id
from openflow_tables.ofctl_render import ct_state_flags, render_actions, render_match_field

INDENT = "  "


def cookie_name(cookie: int) -> str:
    """``rule 3``, ``interface 4``, ``pipeline``; a cookie that is not ours in hex."""
    owner = cookie_owner(cookie)
    if owner is None:
        return f"cookie {cookie:#x}"
    kind, num = owner
    return kind if kind == "pipeline" and num == 0 else f"{kind} {num}"


def _pass_header(step: Any) -> str:
    meta = step.packet.meta if step.packet is not None else {}
    if step.recirc == 0:
        return f"pass 0: in_port {meta.get('in_port', '?')}"
    return f"pass {step.recirc}: ct_state {_flags(meta.get('ct_state', 0))}, " \
        f"ct_zone {meta.get('ct_zone', 0)}"


def _flags(state: int) -> str:
    """The ct_state flags that are set: ``+trk+est+rpl``."""
    return ct_state_flags(state, state) or "untracked"


def _event(event: tuple, port_names: Mapping[int, str]) -> str:
    kind = event[0]
    if kind in ("output", "output skipped: in_port"):
        name = port_names.get(event[1])
        port = f"port {event[1]}" + (f" ({name})" if name else "")
        return f"output {port}" if kind == "output" else f"no output to {port}: the in_port"
    if kind == "controller":
        return f"packet-in to the controller ({cookie_name(event[1])})"
    if kind == "group":
        pick = event[1]
        taken = ", ".join(str(n) for n in pick.taken) or "none"
        line = f"{pick.type} group {pick.group_id}: {pick.buckets} bucket(s), took {taken}"
        return line if pick.predicted else line + " (the switch hashes: any bucket may be taken)"
    if kind == "ct":
        _, zone, commit, state, resumes = event
        what = f"ct{' commit' if commit else ''} zone {zone}: {_flags(state)}"
        return what + (f", tracked copy resumes in pass {resumes}" if resumes is not None
                       else "") + "; this packet goes on untracked"
    return kind


def _flow_lines(step: Any, pad: str) -> list[str]:
    t = f"{table_id(step.table):2d}. {step.table}"
    f = step.flow
    if f is None:
        return [f"{pad}{t}: no match: drop"]
    match = ",".join(render_match_field(*m) for m in f.match) or "any"
    acts = [render_actions(f.actions)] if f.actions else []
    if f.goto:
        acts.append(f"goto_table:{table_id(f.goto)} ({f.goto})")
    return [f"{pad}{t}: {match}, priority {f.priority}, {cookie_name(f.cookie)}",
            f"{pad}    {','.join(acts) or 'drop'}"]


def describe_walk(steps: Iterable[Any], port_names: Mapping[int, str]) -> str:
    """The lines of a walk (``interpret.Step`` objects, in the order they ran)."""
    lines: list[str] = []
    current = None
    for step in steps:
        if step.recirc != current:
            current = step.recirc
            lines.append(_pass_header(step))
        pad = INDENT * (1 + step.depth)
        lines += _flow_lines(step, pad)
        lines += [f"{pad}    -> {_event(e, port_names)}" for e in step.events]
    return "\n".join(lines)
