"""What ``ryu-si apply`` shows while a change travels: pure text from /health answers.

The controller answers /health between the phases of a change and while it sends
flows (every 500 flow-mods), not during a long check or compile: a poll that gets no
answer shows the phase the last answer named, still running.
"""
from __future__ import annotations

BAR = 24


def _bar(done: int, total: int) -> str:
    full = BAR * done // total if total else BAR
    return "#" * full + "." * (BAR - full)


def status_line(health: dict | None, last_phase: str, elapsed: float) -> str:
    """One line: the phase, and for an install each switch's messages sent of all."""
    if health is None:
        return f"{last_phase:<10} {elapsed:6.1f} s  (controller busy)"
    phase = health.get("change", {}).get("phase", "idle")
    parts = [f"{phase:<10} {elapsed:6.1f} s"]
    for sw in health.get("switches", []):
        inst = sw.get("install", {})
        if inst.get("state") == "installing":
            parts.append(f"{sw['dpid']:016x} [{_bar(inst['sent'], inst['total'])}] "
                         f"{inst['sent']:,}/{inst['total']:,}")
    return "  ".join(parts)


def outcome_lines(health: dict, elapsed: float) -> tuple[list[str], bool]:
    """Per switch: it holds everything (the commit or barrier after the last message
    was answered), or not; and whether all do."""
    lines, ok = [], True
    for sw in health.get("switches", []):
        state = sw.get("install", {}).get("state")
        if state == "holds":
            lines.append(f"switch {sw['dpid']:016x} holds all {sw['flows']:,} flows and "
                         f"{sw['groups']:,} groups ({elapsed:.1f} s)")
        else:
            ok = False
            lines.append(f"switch {sw['dpid']:016x}: not confirmed (install {state}); "
                         f"see its errors in /health")
    if not health.get("switches"):
        lines.append("no switch connected: the change is stored, and is installed when one "
                     "connects")
    return lines, ok
