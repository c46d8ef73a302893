"""Incremental updates over REST with 10,000 rules installed.

The operations take turns (add a rule, move a rule to another existing
applied_to set, delete the rule added before); each is one REST call.
Reported per kind: flow-mods the switch layer sent for it (``flow_mods_total``
in ``GET /si/v1/health``, read before and after), REST response time, and
REST-to-datapath latency two ways: "on switch", from sending the call until OVS
reports a change of a flow with the rule's cookie to a flow monitor (``ovs-ofctl
monitor``, started once the rule base is installed: OVS sends the event when it
changes its tables), and "visible", until ``ovs-ofctl dump-flows`` filtered on the
rule's cookie shows the new state (flows present; the same number of flows, some
with new content digests; no flows).  "visible" includes the last dump, which scans
every flow of the bridge for the cookie (tens of milliseconds at 10,000 rules).

    python -m benchmarks.incremental [--ops 200] [--rules 10000] [--ifaces 16]
"""
from __future__ import annotations

import argparse
import random
import re
import subprocess
import threading
import time
from collections.abc import Callable

from benchmarks import common
from benchmarks.workload import Edge, applied_to_pool, document, rule
from openflow_tables import layout as L

BRIDGE, DPID = "bench1", 0xB1
VISIBLE_TIMEOUT_S = 60.0
HEADER = ["operation", "ops", "flow-mods median", "flow-mods max", "REST median ms",
          "REST p99 ms", "on switch median ms", "on switch p99 ms", "visible median ms",
          "visible p99 ms", "visible max ms"]
EVENT_RE = re.compile(r"event=\w+ .*?cookie=0x([0-9a-f]+)")


class Monitor:
    """``ovs-ofctl monitor``: when OVS reported a change of a flow of each cookie (the
    updates come on its standard error)."""

    def __init__(self, bridge: str) -> None:
        self.events: list[tuple[float, int]] = []       # (monotonic time, cookie)
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", "ovs-ofctl", "-O", "OpenFlow13", "monitor", bridge,
             "watch:!initial"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.registered = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.registered.wait(30):    # a change made before that would go unseen
            self.stop()
            raise RuntimeError(f"ovs-ofctl monitor {bridge}: no reply to its request in 30 s")

    def _read(self) -> None:
        for line in self.proc.stdout:
            if "FLOW_MONITOR reply" in line:
                self.registered.set()
            got = EVENT_RE.search(line)
            if got:
                self.events.append((time.monotonic(), int(got.group(1), 16)))

    def first(self, rule_num: int, since: float) -> float | None:
        """When OVS first reported a change of one of the rule's flows after ``since``."""
        owner = L.cookie("rule", rule_num)
        return next((t for t, c in list(self.events)
                     if t >= since and c & ~L.COOKIE_DIGEST_MASK == owner), None)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Bench:
    """One controller with the rule base installed, and the operations timed against it."""

    def __init__(self, ctl, edge: Edge, seed: int, monitor: Monitor,
                 bridge: str = BRIDGE) -> None:
        self.ctl = ctl
        self.bridge = bridge
        self.monitor = monitor
        self.rnd = random.Random(seed)
        self.pool = applied_to_pool(edge.uplink_names())
        self.samples: dict[str, list[tuple[int, float, float, float]]] = {
            "add": [], "change": [], "delete": []}

    def _timed(self, kind: str, call: tuple, visible: Callable[[object], bool],
               rule_num: Callable[[object], int]) -> object:
        """One REST call; ``visible(answer)`` says when the datapath shows its effect,
        ``rule_num(answer)`` whose flows it changes."""
        mods0 = self.flow_mods()
        t0 = time.monotonic()
        status, body = self.ctl.rest(*call, timeout=120.0)
        rest_s = time.monotonic() - t0
        if status >= 300:
            raise RuntimeError(f"{call[0]} {call[1]} -> {status}: {body}")
        common.wait_for(lambda: visible(body), VISIBLE_TIMEOUT_S, f"{kind} visible",
                        poll=0.002)
        seen_s = time.monotonic() - t0
        common.wait_for(lambda: self.monitor.first(rule_num(body), t0) is not None,
                        VISIBLE_TIMEOUT_S, f"{kind} reported by the flow monitor", poll=0.002)
        on_switch_s = self.monitor.first(rule_num(body), t0) - t0
        self.samples[kind].append((self.flow_mods() - mods0, rest_s, on_switch_s, seen_s))
        return body

    def rule_cookies(self, rule_num: int) -> set[int]:
        return common.rule_cookies(self.bridge, rule_num)

    def flow_mods(self) -> int:
        """Flow-mods sent so far (``flow_mods_total``): a push with nothing to send,
        e.g. after a liveness event, resets ``flow_mods_last`` but not the total."""
        return sum(s["flow_mods_total"] for s in common.health(self.ctl)["switches"])

    def add(self, n: int) -> dict:
        body = rule(n, self.rnd, self.pool) | {"name": f"inc{n}"}
        return self._timed("add", ("POST", "rules", body),
                           lambda created: bool(self.rule_cookies(created["rule_num"])),
                           lambda created: created["rule_num"])

    def change(self, name: str) -> None:
        """Move a rule to another applied_to set that other rules already use."""
        _, current = self.ctl.rest("GET", f"rules/{name}")
        names = {i["id"]: i["name"] for i in self.ctl.rest("GET", "interfaces")[1]}
        now = sorted(names[i] for i in current["applied_to"])
        target = self.rnd.choice([s for sets in self.pool.values() for s in sets
                                  if sorted(s) != now])
        before = self.rule_cookies(current["rule_num"])

        def moved(_answer: object) -> bool:
            """Flows that carry the set bit were replaced; a conjunction's other
            clauses do not carry it and stay as they are."""
            after = self.rule_cookies(current["rule_num"])
            return after != before and len(after) == len(before)
        self._timed("change", ("PATCH", f"rules/{name}", {"applied_to": target}), moved,
                    lambda _answer: current["rule_num"])

    def delete(self, created: dict) -> None:
        self._timed("delete", ("DELETE", f"rules/{created['name']}"),
                    lambda _answer: not self.rule_cookies(created["rule_num"]),
                    lambda _answer: created["rule_num"])

    def rows(self) -> list[list]:
        out = []
        for kind, samples in self.samples.items():
            mods = [s[0] for s in samples]
            rest, on_switch, seen = ([s[k] * 1000 for s in samples] for k in (1, 2, 3))
            out.append([kind, len(samples), common.median(mods), max(mods), common.median(rest),
                        common.percentile(rest, 99), common.median(on_switch),
                        common.percentile(on_switch, 99), common.median(seen),
                        common.percentile(seen, 99), max(seen)])
        return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops", type=int, default=20 if common.small() else 200,
                    help="operations in all, taking turns: add, change, delete")
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--ifaces", type=int, default=16)
    args = ap.parse_args(argv)
    edge = Edge("b1", args.ifaces, DPID)
    doc = document(edge, args.rules)
    common.wait_until_quiet()
    with common.bridge(BRIDGE, DPID, edge.all_ports()), common.controller(doc) as ctl:
        common.start_installed(ctl, BRIDGE)
        monitor = Monitor(BRIDGE)
        try:
            bench = Bench(ctl, edge, seed=2, monitor=monitor)
            for n in range(args.ops):   # add, change, delete, add, ...
                if n % 3 == 0:
                    created = bench.add(n // 3)
                elif n % 3 == 1:
                    bench.change(f"g{bench.rnd.randrange(args.rules)}")
                else:
                    bench.delete(created)
        finally:
            monitor.stop()
        flows = common.flow_count(BRIDGE)
    print(common.table(f"incremental REST updates, {args.rules:,} rules x {args.ifaces} "
                       f"interfaces, {flows:,} flows installed ({common.scale_name()})",
                       HEADER, bench.rows()))


if __name__ == "__main__":
    common.run_main(main)
