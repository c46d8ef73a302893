"""Tenants at scale: one t0 and N t1 routers with R rules each, beside one router holding
the same N x R rules on N interfaces of its own.

Both documents carry the same generated rules (``workload.rule``, one seed per tenant):
tenant k's rules are applied to its uplink (its link to the t0) in the first, to
interface k in the second.  Compile: ``Service.replace_config`` and ``compile_pipeline``
timed apart, flows in all and in the classify table, classify subtables.  Install:
``ryu-manager ryu_si.app`` started with the document, timed until its first full
reconcile of the bridge.  Change: one rule's priority edited over REST, timed until its
flows on the bridge carry the new content (median and worst of ``--changes``).
Flows must grow linearly with tenants: the last table gives flows per tenant.

    python -m benchmarks.tenants [--tenants 10 25 50 --rules 200] [--no-install]
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from typing import Any

from benchmarks import common
from benchmarks.workload import applied_to_pool, rule
from openflow_tables.analysis import subtables
from openflow_tables.compile import Pipeline, compile_pipeline
from openflow_tables.context import Context
from ryu_si.control.service import Service
from ryu_si.control.store import Store

FULL = {"tenants": (10, 25, 50), "rules": 200}
CI = {"tenants": (2, 5), "rules": 20}
BRIDGE, DPID = "bench2", 0xB2
UPLINKS = ("b2u0", "b2u1")
SERVICE = ("b2sa", "b2sb")
INSTALL_TIMEOUT_S = 900.0
VISIBLE_TIMEOUT_S = 60.0


def _mac(kind: int, k: int) -> str:
    return f"02:b2:{kind:02x}:00:{k // 256:02x}:{k % 256:02x}"


def _net(k: int) -> str:
    return f"172.{16 + k // 256}.{k % 256}"


def _router(name: str, tier: str = "t0", parent: str | None = None) -> dict[str, Any]:
    return {"name": name, "tier": tier, "dpid": DPID, **({"parent": parent} if parent else {})}


def _base(router: str) -> dict[str, list]:
    """The first router's uplinks and its bump-in-the-wire node, which every rule's
    redirects use (a t1 reaches its parent's biw nodes)."""
    return {
        "routers": [_router(router)],
        "interfaces": [
            *({"name": f"uplink{k}", "router": router, "port": port, "role": "uplink",
               "ip": f"10.97.{k}.1/24", "mac": _mac(1, k)} for k, port in enumerate(UPLINKS)),
            {"name": "svc-a", "router": router, "port": SERVICE[0], "role": "service",
             "mac": _mac(2, 0)},
            {"name": "svc-b", "router": router, "port": SERVICE[1], "role": "service",
             "mac": _mac(2, 1)}],
        "service-nodes": [{"name": "fw", "transport": "biw", "profile": "firewall",
                           "interface_a": "svc-a", "interface_b": "svc-b"}],
        "policies": [{"name": "inspect", "biw_nodes": ["fw"]}],
        "rules": [],
    }


def _rules(k: int, per: int, router: str, iface: str) -> list[dict[str, Any]]:
    """Tenant k's rules (the same whichever document), applied to ``iface``."""
    rnd = random.Random(1000 + k)
    pool = applied_to_pool([iface])
    return [rule(n, rnd, pool) | {"name": f"t{k}-g{n}", "router": router}
            for n in range(per)]


def tenants_document(n: int, per: int) -> dict[str, list]:
    doc = _base("t0")
    for k in range(n):
        t1 = f"tenant{k}"
        doc["routers"].append(_router(t1, "t1", "t0"))
        doc["interfaces"] += [
            {"name": f"t0-to-{k}", "router": "t0", "role": "router_link", "mac": _mac(3, k)},
            {"name": f"{t1}-up", "router": t1, "role": "router_link", "peer": f"t0-to-{k}",
             "mac": _mac(4, k)},
            {"name": f"{t1}-down", "router": t1, "port": f"b2t{k}", "role": "downlink",
             "ip": f"{_net(k)}.1/24", "mac": _mac(5, k)}]
        doc["rules"] += _rules(k, per, t1, f"{t1}-up")
    return doc


def single_document(n: int, per: int) -> dict[str, list]:
    doc = _base("one")
    for k in range(n):
        doc["interfaces"].append({"name": f"i{k}", "router": "one", "port": f"b2t{k}",
                                  "role": "uplink", "ip": f"{_net(k)}.1/24", "mac": _mac(5, k)})
        doc["rules"] += _rules(k, per, "one", f"i{k}")
    return doc


def ports(n: int) -> list[str]:
    return [*UPLINKS, *SERVICE, *(f"b2t{k}" for k in range(n))]


def compile_doc(doc: dict[str, list], n: int) -> tuple[Pipeline, float, float]:
    with tempfile.TemporaryDirectory(prefix="si-bench-") as tmp:
        svc = Service(Store(f"{tmp}/si.sqlite"))
        t0 = time.perf_counter()
        svc.replace_config(doc)
        t1 = time.perf_counter()
        numbers = {name: no for no, name in enumerate(ports(n), start=1)}
        pipe = compile_pipeline(Context(svc.model, DPID, numbers, svc.applied_to_codes,
                                        svc.generations, down_nodes=svc.down_nodes,
                                        paths=svc.paths))
        t2 = time.perf_counter()
        svc.store.close()
    return pipe, t1 - t0, t2 - t1


def install_and_change(doc: dict[str, list], n: int, rule_name: str, changes: int) -> list:
    """Seconds to a full reconcile; then ``changes`` priority edits of one rule: REST
    answer and flows visible (median, max, in ms)."""
    with common.bridge(BRIDGE, DPID, ports(n)), common.controller(doc) as ctl:
        t0 = time.monotonic()
        common.start_installed(ctl, BRIDGE, INSTALL_TIMEOUT_S)
        installed_s = time.monotonic() - t0
        flows = common.flow_count(BRIDGE)
        _, current = ctl.rest("GET", f"rules/{rule_name}")
        rest_ms, seen_ms = [], []
        for c in range(changes):
            before = common.rule_cookies(BRIDGE, current["rule_num"])
            t = time.monotonic()
            status, body = ctl.rest("PATCH", f"rules/{rule_name}",
                                    {"priority": current["priority"] + 1 + c}, timeout=120.0)
            rest_ms.append((time.monotonic() - t) * 1000)
            if status >= 300:
                raise RuntimeError(f"PATCH rules/{rule_name} -> {status}: {body}")
            common.wait_for(lambda: common.rule_cookies(BRIDGE, current["rule_num"]) != before,
                            VISIBLE_TIMEOUT_S, "change visible", poll=0.002)
            seen_ms.append((time.monotonic() - t) * 1000)
    return [installed_s, flows, common.median(rest_ms), common.median(seen_ms), max(seen_ms)]


COMPILE_HEADER = ["layout", "routers", "rules", "flows", "classify flows", "subtables",
                  "replace_config s", "compile s"]
INSTALL_HEADER = ["layout", "routers", "rules", "install s", "flows on bridge",
                  "change REST ms", "change visible ms", "visible max ms"]


def main(argv: list[str] | None = None) -> None:
    sizes = CI if common.small() else FULL
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tenants", type=int, nargs="+", default=sizes["tenants"])
    ap.add_argument("--rules", type=int, default=sizes["rules"], help="rules per tenant")
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--no-install", action="store_true", help="compile only (no OVS)")
    args = ap.parse_args(argv)
    compiles, installs, growth = [], [], []
    for n in args.tenants:
        total = n * args.rules
        layouts = (("t0 + t1s", n + 1, tenants_document(n, args.rules), f"t{n // 2}-g0"),
                   ("one router", 1, single_document(n, args.rules), f"t{n // 2}-g0"))
        for name, routers, doc, rule_name in layouts:
            pipe, replace_s, compile_s = compile_doc(doc, n)
            compiles.append([name, routers, total, len(pipe.flows),
                             len(pipe.table("classify")), subtables(list(pipe.flows), "classify"),
                             replace_s, compile_s])
            if name == "t0 + t1s":
                prev = growth[-1] if growth else [0, 0]
                growth.append([n, len(pipe.flows),
                               (len(pipe.flows) - prev[1]) / (n - prev[0])])
            if not args.no_install:
                common.wait_until_quiet()
                installs.append([name, routers, total,
                                 *install_and_change(doc, n, rule_name, args.changes)])
    print(common.table(f"compile ({common.scale_name()}, {args.rules} rules per tenant)",
                       COMPILE_HEADER, compiles))
    print(common.table("flows as tenants grow", ["tenants", "flows",
                                                  "flows per added tenant"], growth))
    if installs:
        print(common.table("install through ryu-manager into OVS, and one rule's change",
                           INSTALL_HEADER, installs))


if __name__ == "__main__":
    common.run_main(main)
