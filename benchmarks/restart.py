"""Restart gap: ovs-vswitchd killed (SIGKILL) with the pipeline installed, started
again, and timed until connections are serviced again.

The datapath benchmark's setup (datapath.py: bridge, bn-cli and bn-srv on veths,
generated router, static neighbours, ``bench-allow``), plus one rule ``bench-deny``
dropping TCP to the server's port DENY_PORT (priority above ``bench-allow``).  Once
the controller has installed the pipeline, two probes run in bn-cli, each starting a
TCP connect every PROBE_EVERY_S (CONNECT_TIMEOUT_S each, in threads, so a dropped
SYN does not slow the cadence): one to the allowed port, one to the denied port.
Then ovs-vswitchd is killed with SIGKILL (OVS's monitor does not restart a daemon
killed by SIGKILL; if it does, the row says so) and started again with ``ovs-ctl``.

From the kill, polled every POLL_S after ovs-ctl returns: ovs-ctl returned (the
daemon answers), the bridge answers OpenFlow, the controller logs the switch
connecting again, ``dump-aggregate`` shows as many flows as before, the controller's
resync ends; the first connection started after the kill succeeds (probe record).
Then one dump gives every flow's age, so the time the last flow landed (a lower
bound, the dump's duration the margin).  Fail-secure: the bridge's ``fail_mode``; the
allowed connections made while some flows certainly had not landed (a first install
onto an empty switch is not bundled: the pipeline fills flow by flow); any
connection to the denied port.

    python -m benchmarks.restart [--rules 50000] [--ifaces 64] [--runs 1]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import common, datapath, scale
from benchmarks.datapath import BRIDGE, CLI, CONN_PORT, DPID, PORTS, SRV
from benchmarks.workload import Edge
from mininet_topos.lab import sh

DENY_PORT = 5003
PROBE_EVERY_S = 0.05
CONNECT_TIMEOUT_S = 0.5
POLL_S = 0.1
GAP_TIMEOUT_S = 180.0
DURATION = re.compile(r"duration=([0-9.]+)s")
PIDFILE = Path("/var/run/openvswitch/ovs-vswitchd.pid")
OVS_CTL = ["/usr/share/openvswitch/scripts/ovs-ctl", "--no-ovsdb-server", "start"]


def config(edge: Edge, n_rules: int) -> dict:
    """The datapath benchmark's document plus the rule that denies DENY_PORT."""
    doc = datapath.config(edge, n_rules)
    doc["rules"].append({"name": "bench-deny", "priority": 2, "action": "drop",
                         "applied_to": ["uplink0"],
                         "match": {"ip_proto": "tcp", "ipv4_dst": "10.98.0.0/24",
                                   "tp_dst": DENY_PORT}})
    return doc


# ------------------------------------------------------------ probe (in bn-cli)

def probe(dst: str, port: int, out: str) -> None:
    """Start a connect every PROBE_EVERY_S, forever; one JSON line per attempt
    (start, end, ok) into ``out``, monotonic seconds (one clock for every namespace)."""
    lock = threading.Lock()
    linger = struct.pack("ii", 1, 0)
    with open(out, "w", buffering=1) as sink:
        def attempt(start: float) -> None:
            s = socket.socket()
            s.settimeout(CONNECT_TIMEOUT_S)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            try:
                s.connect((dst, port))
                ok = True
            except OSError:
                ok = False
            finally:
                s.close()
            with lock:
                sink.write(json.dumps([start, time.monotonic(), ok]) + "\n")

        while True:
            threading.Thread(target=attempt, args=(time.monotonic(),), daemon=True).start()
            time.sleep(PROBE_EVERY_S)


@contextmanager
def probing(port: int) -> Iterator[Path]:
    """A probe to the server's ``port`` running in bn-cli; its record file."""
    fd, name = tempfile.mkstemp(prefix="si-restart-")
    os.close(fd)
    out = Path(name)
    call = f"from benchmarks.restart import probe; probe({SRV.ip!r}, {port}, {str(out)!r})"
    try:
        with datapath.serving(CLI, sys.executable, "-c", call):
            yield out
    finally:
        out.unlink(missing_ok=True)


def attempts(path: Path) -> list[tuple[float, float, bool]]:
    """The probe's records (start, end, ok), by start time."""
    lines = path.read_text().splitlines()
    return sorted(tuple(json.loads(line)) for line in lines if line.endswith("]"))


# ------------------------------------------------------------------ the gap, pure

@dataclass
class Gap:
    """What was seen from the kill (monotonic ``kill``); times in seconds after it.

    ``landed``: for every flow on the bridge after the gap, the earliest time it can have
    been added (the dump's request time minus the flow's age: OVS reads its clock while
    it builds the reply, after the request was sent), so a flow that "landed" after a
    connection certainly was not there for it.  ``dump_s``: the dump's duration, the
    bound on how much later each one may really have landed.
    """

    kill: float
    expected_flows: int
    restarted_by_monitor: bool = False
    marks: dict[str, float] = field(default_factory=dict)    # event -> seconds
    landed: list[float] = field(default_factory=list)
    dump_s: float = 0.0

    def mark(self, event: str, now: float) -> None:
        self.marks.setdefault(event, now - self.kill)

    def last_landed(self) -> float:
        return max(self.landed, default=float("nan"))


def first_success(records: list[tuple[float, float, bool]], after: float) -> float | None:
    """End time of the first successful attempt started after ``after``."""
    return next((end for start, end, ok in records if ok and start > after), None)


def early_successes(records: list[tuple[float, float, bool]],
                    gap: Gap) -> list[tuple[float, int]]:
    """Connections made after the kill while some flows certainly were not back yet:
    (end, seconds after the kill; how many flows landed after it)."""
    out = []
    for start, end, ok in records:
        missing = sum(t > end - gap.kill for t in gap.landed)
        if ok and start > gap.kill and missing:
            out.append((end - gap.kill, missing))
    return out


# ----------------------------------------------------------------- OVS, live

def vswitchd_pid() -> int | None:
    """The running ovs-vswitchd's pid (from its pidfile), or None."""
    try:
        pid = int(PIDFILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _running(pid) else None


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its monitor."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@contextmanager
def vswitchd_restored() -> Iterator[None]:
    """Whatever happens in the block (SIGTERM too), ovs-vswitchd runs after it."""
    try:
        yield
    finally:
        if vswitchd_pid() is None:
            sh(*OVS_CTL, timeout=120)


def kill_and_restart(gap: Gap, old: int) -> None:
    """SIGKILL the daemon, wait for it to die, start it again unless OVS's monitor did."""
    os.kill(old, signal.SIGKILL)
    gap.kill = time.monotonic()
    common.wait_for(lambda: not _running(old), 10, "ovs-vswitchd dead", poll=0.005)
    gap.mark("dead", time.monotonic())
    # ovs-ctl takes a pid whose /proc entry is left (a zombie its monitor has not reaped
    # yet) for a running daemon and starts nothing: wait until the entry is gone.
    common.wait_for(lambda: not Path(f"/proc/{old}").exists(), 10, "ovs-vswitchd reaped",
                    poll=0.005)
    if vswitchd_pid() not in (None, old):
        gap.restarted_by_monitor = True
    else:
        sh(*OVS_CTL, timeout=120)
    if vswitchd_pid() in (None, old):
        raise RuntimeError("ovs-ctl returned and no new ovs-vswitchd runs")
    gap.mark("ovs-ctl returned", time.monotonic())


def watch(gap: Gap, ctl, connects_before: int, allow: Path) -> None:
    """Poll the bridge, the controller and the probe until a connection is serviced
    again with every flow back (or GAP_TIMEOUT_S)."""
    wall_kill = time.time() - (time.monotonic() - gap.kill)
    while time.monotonic() - gap.kill < GAP_TIMEOUT_S:
        now = time.monotonic()
        try:
            flows = common.flow_count(BRIDGE)
        except RuntimeError:
            flows = None
        if flows is not None:
            gap.mark("bridge answers OpenFlow", now)
            if flows >= gap.expected_flows:
                gap.mark("flow count back", now)
        if scale.connects(ctl) > connects_before:
            gap.mark("controller reconnected", now)
        if _last_resync(ctl) > wall_kill:
            gap.mark("controller resync done", now)
        if first_success(attempts(allow), gap.kill) is not None and "flow count back" in gap.marks:
            return
        time.sleep(POLL_S)
    raise TimeoutError(f"restart gap: not closed after {GAP_TIMEOUT_S:.0f}s: {gap.marks}\n"
                       f"{ctl.log_tail()}")


def read_landed(gap: Gap) -> None:
    """Every flow's earliest landing time from one dump (ages to the millisecond)."""
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.monotonic()
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", BRIDGE], stdout=out,
                       check=True, timeout=300)
        gap.dump_s = time.monotonic() - t0
        out.seek(0)
        gap.landed = [t0 - gap.kill - float(m.group(1)) for line in out
                      if (m := DURATION.search(line))]


def _last_resync(ctl) -> float:
    """Wall-clock end of the controller's last resync of the switch (0: none yet)."""
    switches = (common.health(ctl) or {}).get("switches") or [{}]
    return switches[0].get("last_resync") or 0.0


def connects_once(port: int) -> bool:
    """One connection bn-cli -> bn-srv:port (the pipeline's verdict before the kill)."""
    call = (f"import socket; s = socket.socket(); s.settimeout(2); "
            f"s.connect(({SRV.ip!r}, {port}))")
    return CLI.run(sys.executable, "-c", call, stderr=subprocess.DEVNULL).wait(30) == 0


EVENTS = ("dead", "ovs-ctl returned", "bridge answers OpenFlow", "controller reconnected",
          "flow count back", "controller resync done")
HEADER = ["run", *(f"{e} s" for e in EVENTS), "last flow landed s", "serviced s",
          "allowed ok in gap", "ok while flows missing", "denied ok", "fail_mode"]


def run_once(n: int, ctl, expected: int) -> list:
    """One kill and restart, the probes running across it; the table's row."""
    with probing(CONN_PORT) as allow, probing(DENY_PORT) as deny:
        time.sleep(1.0)
        gap = Gap(kill=0.0, expected_flows=expected)
        connects = scale.connects(ctl)
        with vswitchd_restored():
            kill_and_restart(gap, vswitchd_pid())
        watch(gap, ctl, connects, allow)
        time.sleep(1.0)
        allowed, denied = attempts(allow), attempts(deny)
    read_landed(gap)
    served = first_success(allowed, gap.kill)
    early = early_successes(allowed, gap)
    in_gap = [r for r in allowed if gap.kill < r[0] and r[1] - gap.kill <= gap.last_landed()]
    return [n if not gap.restarted_by_monitor else f"{n} (monitor restarted it)",
            *(gap.marks.get(e, "-") for e in EVENTS),
            f"{gap.last_landed():.3f} (+{gap.dump_s:.2f})", served - gap.kill,
            f"{sum(ok for *_, ok in in_gap)}/{len(in_gap)}",
            ", ".join(f"{t:.2f} s, {c:,} flows landed later" for t, c in early) or "none",
            f"{sum(ok for *_, ok in denied)}/{len(denied)}",
            sh("ovs-vsctl", "get", "bridge", BRIDGE, "fail_mode").strip()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rules", type=int, default=10_000 if common.small() else 50_000)
    ap.add_argument("--ifaces", type=int, default=16 if common.small() else 64)
    ap.add_argument("--runs", type=int, default=1, help="kills, one after the other")
    args = ap.parse_args(argv)
    edge = Edge(PORTS.prefix, args.ifaces, DPID)
    internal = [p for p in edge.all_ports() if p not in (CLI.port, SRV.port)]
    common.wait_until_quiet()
    rows = []
    with ExitStack() as stack:
        stack.enter_context(common.bridge(BRIDGE, DPID, internal))
        for host in (CLI, SRV):
            stack.enter_context(datapath.attached(host))
        ctl = stack.enter_context(common.controller(config(edge, args.rules)))
        common.start_installed(ctl, BRIDGE)
        datapath.peer_gateways(False)
        expected = common.flow_count(BRIDGE)
        stack.enter_context(datapath.serving(SRV, *datapath.python(f"accept_loop({CONN_PORT})")))
        stack.enter_context(datapath.serving(SRV, *datapath.python(f"accept_loop({DENY_PORT})")))
        if not connects_once(CONN_PORT) or connects_once(DENY_PORT):
            raise RuntimeError("before the kill: the allowed port must connect, the denied "
                               "port must not")
        for n in range(1, args.runs + 1):
            rows.append(run_once(n, ctl, expected))
    print(common.table(f"restart gap, ovs-vswitchd killed (SIGKILL) and started by ovs-ctl, "
                       f"{args.rules:,} rules x {args.ifaces} interfaces ({expected:,} flows); "
                       f"seconds from the kill ({common.scale_name()})", HEADER, rows))


if __name__ == "__main__":
    common.run_main(main)
