"""Compile and install scale: R rules x P interfaces, compiled in-process and
installed into a real OVS bridge by the real controller.

Compile: ``Service.replace_config`` (validation, numbering, SQLite) and
``compile_pipeline`` timed apart; flows compared with naive replication (a
compiler that copies each rule's flows, and its applied_to entry, once per
interface it is applied to); classify-table subtables.
Install: ``ryu-manager ryu_si.app`` started with the document as RYU_SI_CONFIG;
the bridge is pointed at it once REST answers; timed until
``ovs-ofctl dump-aggregate`` shows every compiled flow (also timed from the switch
connecting: the target, 50,000 x 64 in < 10 s); then the controller's RSS.
Beside it, the time ``ovs-ofctl add-flows`` takes for the same flows: OVS's own share.
``--family`` picks the rule bases (workload.py): ``dual`` is R IPv4 + R IPv6 rules,
measured beside ``ipv4`` (R rules) when both are named.

    python -m benchmarks.scale [--rules 50000 --ifaces 64] [--family ipv4 dual]
                               [--no-install] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import common
from benchmarks.workload import FAMILIES, Edge, document
from mininet_topos.lab import ofctl, sh
from openflow_tables.analysis import mask_shape, subtables
from openflow_tables.compile import Pipeline, compile_pipeline
from openflow_tables.context import Context
from openflow_tables.layout import APPLIED_TO_REGS
from openflow_tables.ofctl_render import render_flow, render_group
from openflow_tables.stages.classify import rule_flows
from ryu_si.control.service import Service
from ryu_si.control.store import Store

FULL = {"rules": (100, 1_000, 10_000, 50_000), "ifaces": (4, 16, 64)}
CI = {"rules": (100, 1_000), "ifaces": (4, 16)}
BRIDGE, DPID = "bench0", 0xB0
TARGET = {"rules": 50_000, "ifaces": 64, "seconds": 10.0, "rss_mib": 1024.0}  # from connect
INSTALL_TIMEOUT_S = 900.0
MAX_CONNECTS = 3


@dataclass
class Compiled:
    family: str
    rules: int           # per family: a dual base holds twice as many
    ifaces: int
    doc: dict
    pipeline: Pipeline
    sets: int
    slices: int
    naive_rule_flows: int
    replace_s: float
    compile_s: float

    def total_rules(self) -> int:
        return len(self.doc["rules"])

    def rule_flows(self) -> int:
        """Flows that depend on rules: the classify and applied_to tables."""
        return len(self.pipeline.table("classify")) + len(self.pipeline.table("applied_to"))

    def row(self) -> list:
        naive, ours = self.naive_rule_flows, self.rule_flows()
        return [self.family, self.total_rules(), self.ifaces, self.sets, self.slices, ours, naive, naive / ours,
                len(self.pipeline.flows), subtables(self.pipeline.flows, "classify"),
                shapes_without_sets(self.pipeline), self.replace_s, self.compile_s]


def shapes_without_sets(pipe: Pipeline) -> int:
    """Classify subtables if the applied_to set codes took no mask of their own: each
    slice of the applied_to words is a register mask, which multiplies the header
    shapes (a bit per set multiplied them by the sets)."""
    return len({tuple(s for s in mask_shape(f) if s[0] not in APPLIED_TO_REGS)
                for f in pipe.table("classify")})


COMPILE_HEADER = ["family", "rules", "ifaces", "sets", "slices", "rule flows", "naive", "naive/ours",
                  "all flows", "subtables", "shapes w/o set codes", "replace_config s",
                  "compile s"]
INSTALL_HEADER = ["family", "rules", "ifaces", "flows", "ovs-ofctl s", "REST up s",
                  "connected s", "installed s", "after connect s", "flows/s after REST up", "RSS MiB", "connects",
                  "OF errors"]


def compile_once(n_rules: int, n_ifaces: int, family: str = "ipv4") -> tuple[Compiled, Edge]:
    """Load the generated document into a fresh service and compile it, timing both."""
    edge = Edge("b0", n_ifaces, DPID)
    doc = document(edge, n_rules, family=family)
    with tempfile.TemporaryDirectory(prefix="si-bench-") as tmp:
        svc = Service(Store(f"{tmp}/si.sqlite"))
        t0 = time.perf_counter()
        svc.replace_config(doc)
        t1 = time.perf_counter()
        ctx = context(svc, edge)
        pipe = compile_pipeline(ctx)
        t2 = time.perf_counter()
        svc.store.close()
    naive = sum(len(r.applied_to) * (len(rule_flows(r, ctx)) + 1) for r in ctx.rules())
    slices = len({c.slice() for c in svc.applied_to_codes.values()})
    return (Compiled(family, n_rules, n_ifaces, doc, pipe, len(svc.applied_to_codes), slices, naive,
                     t1 - t0, t2 - t1), edge)


def context(svc: Service, edge: Edge) -> Context:
    ports = {name: no for no, name in enumerate(edge.all_ports(), start=1)}
    return Context(svc.model, edge.dpid, ports, svc.applied_to_codes, svc.generations,
                   down_nodes=svc.down_nodes, paths=svc.paths)


def install_once(compiled: Compiled, edge: Edge, probe_ms: int | None) -> list:
    """Controller start -> REST -> switch connected -> every flow on the bridge.

    A controller that keeps losing its switch never gets there: after
    MAX_CONNECTS connections the row says so instead of a time.
    """
    expected = len(compiled.pipeline.flows)
    with (common.bridge(BRIDGE, edge.dpid, edge.all_ports()),
          common.controller(compiled.doc) as ctl):
        floor_s = ofctl_floor(compiled.pipeline)
        t0 = time.monotonic()
        ctl.start()
        rest_s = common.wait_for(lambda: _alive(ctl) and common.health(ctl) is not None,
                                 INSTALL_TIMEOUT_S, "controller REST")
        common.connect(BRIDGE, ctl.of_port, probe_ms)
        common.wait_for(lambda: _alive(ctl) and (common.health(ctl) or {}).get("switches"),
                        INSTALL_TIMEOUT_S, "switch connected")
        connected_s = time.monotonic() - t0
        common.wait_for(lambda: _alive(ctl) and (connects(ctl) > MAX_CONNECTS
                                                 or common.flow_count(BRIDGE) >= expected),
                        INSTALL_TIMEOUT_S, f"{expected} flows on {BRIDGE}", poll=0.5)
        installed_s = time.monotonic() - t0
        rss = common.rss_mib(ctl.proc.pid)
        sessions = connects(ctl)
        errors = sum(s["errors_total"] for s in (common.health(ctl) or {}).get("switches", []))
    done = sessions <= MAX_CONNECTS
    return [compiled.family, compiled.total_rules(), compiled.ifaces, expected, floor_s, rest_s,
            connected_s,
            installed_s if done else f"never ({sessions} connects in {installed_s:.0f} s)",
            installed_s - connected_s if done else "-",
            expected / (installed_s - rest_s) if done else "-", rss, sessions, errors]


def ofctl_floor(pipe: Pipeline) -> float:
    """Seconds ovs-ofctl takes to add the same groups and flows: what OVS alone costs.

    Left empty again for the controller, which must install everything itself.
    """
    with tempfile.TemporaryDirectory(prefix="si-bench-") as tmp:
        groups, flows = Path(tmp, "groups"), Path(tmp, "flows")
        groups.write_text("".join(render_group(g) + "\n" for g in pipe.groups))
        flows.write_text("".join(render_flow(f) + "\n" for f in pipe.flows))
        t0 = time.monotonic()
        ofctl("add-groups", BRIDGE, str(groups))
        sh("ovs-ofctl", "-O", "OpenFlow13", "add-flows", BRIDGE, str(flows),
           timeout=INSTALL_TIMEOUT_S)
        elapsed = time.monotonic() - t0
    ofctl("del-flows", BRIDGE)
    ofctl("del-groups", BRIDGE)
    return elapsed


def _alive(ctl) -> bool:
    if ctl.proc.poll() is not None:
        raise RuntimeError(f"controller exited\n{ctl.log_tail()}")
    return True


def connects(ctl) -> int:
    """Times the switch connected (the app logs each one): more than one is a lost session."""
    return ctl.log_path.read_text(errors="replace").count("switch_connected ")


def profile(n_rules: int, n_ifaces: int, family: str, top: int = 15) -> None:
    """cProfile of replace_config + compile: where the controller's start-up time goes."""
    prof = cProfile.Profile()
    prof.enable()
    compile_once(n_rules, n_ifaces, family)
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(top)


def verdict(installs: list[list]) -> str:
    col = {name: INSTALL_HEADER.index(name) for name in INSTALL_HEADER}
    row = next((r for r in installs if r[col["family"]] == "ipv4"
                and r[col["rules"]] == TARGET["rules"] and r[col["ifaces"]] == TARGET["ifaces"]),
               None)
    if row is None:
        return "target (50,000 IPv4 rules x 64 interfaces): not measured at this size"
    installed, rss = row[col["after connect s"]], row[col["RSS MiB"]]
    ok_time = isinstance(installed, float) and installed < TARGET["seconds"]
    ok_rss = rss < TARGET["rss_mib"]
    shown = f"{installed:.1f} s" if isinstance(installed, float) else installed
    return (f"target 50,000 x 64 installed < {TARGET['seconds']:.0f} s after connecting: "
            f"{'MET' if ok_time else 'NOT MET'} ({shown}); RSS < 1 GiB: "
            f"{'MET' if ok_rss else 'NOT MET'} ({rss:.0f} MiB)")


def main(argv: list[str] | None = None) -> None:
    sizes = CI if common.small() else FULL
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rules", type=int, nargs="+", default=sizes["rules"])
    ap.add_argument("--ifaces", type=int, nargs="+", default=sizes["ifaces"])
    ap.add_argument("--family", nargs="+", choices=FAMILIES, default=["ipv4"],
                    help="rule bases: dual is R IPv4 + R IPv6 rules")
    ap.add_argument("--no-install", action="store_true", help="compile only (no OVS)")
    ap.add_argument("--profile", action="store_true", help="cProfile the compile, then stop")
    ap.add_argument("--probe-ms", type=int, default=None,
                    help="OVS inactivity probe for the controller (0: off; default: OVS's 5 s)")
    args = ap.parse_args(argv)
    if args.profile:
        profile(max(args.rules), max(args.ifaces), args.family[-1])
        return
    compiles, installs = [], []
    for n_ifaces in args.ifaces:
        for n_rules in args.rules:
            for family in args.family:
                compiled, edge = compile_once(n_rules, n_ifaces, family)
                compiles.append(compiled.row())
                if not args.no_install:
                    common.wait_until_quiet()
                    installs.append(install_once(compiled, edge, args.probe_ms))
    print(common.table(f"compile ({common.scale_name()})", COMPILE_HEADER, compiles))
    if installs:
        print(common.table("install through ryu-manager into OVS", INSTALL_HEADER, installs))
        print(verdict(installs))


if __name__ == "__main__":
    common.run_main(main)
