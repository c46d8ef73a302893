"""Faucet on the generated rule base: Faucet from its own virtualenv
(``make bench-peers`` makes it), one datapath with a VLAN holding every
interface of the generated router, the rules as port ACLs
(``translate.faucet_acls``) on the uplinks.

Apply: from Faucet's start until its port ACL table holds every translated
entry on every uplink and the bridge's flow count has stopped changing (a cold
start).  Faucet answers no echo while it computes, and OVS drops a controller
after two unanswered 5 s probes; so once the connection is up the bridge's
``inactivity_probe`` is raised (OVS applies it only to a connection that is
up), or Faucet cold-starts forever at 10,000 rules.  One rule: the config file
rewritten with one more ACL (it carries a cookie), SIGHUP, until the rule's
flows are on the bridge; then removed the same way.  Rule table: ``port_acl``
(table 0).  RSS: the Faucet process.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks import common, datapath
from benchmarks.peers import measure, translate
from benchmarks.peers.processes import daemons, wait_listening
from benchmarks.workload import Edge, rules
from mininet_topos.lab import REPO, free_port, sh

VENV = REPO / "benchmarks" / "peers" / ".faucet-venv"
BRIDGE, DPID = "bench4", 0xB4
PORT_ACL_TABLE = 0
VLAN = {"bench": {"vid": 100}}
PROBE_MS = 3_600_000
ADDED_COOKIE = 0xC0DE
START_TIMEOUT_S = 1800
STABLE_POLLS = 4
POLL_S = 0.5


class Faucet:
    """One Faucet process, its config file, and the rule base it is given."""

    def __init__(self, workdir: Path, edge: Edge, base: list[dict]) -> None:
        self.workdir = workdir
        self.config = workdir / "faucet.yaml"
        self.of_port = free_port()
        self.edge = edge
        self.base = base
        self.pid = 0

    def ofports(self) -> dict[str, int]:
        names = [*self.edge.uplink_names(), "downlink", "svc-a", "svc-b"]
        ports = dict(zip(names, self.edge.all_ports())) | {
            "uplink0": datapath.CLI.port, "downlink": datapath.SRV.port}
        return {name: int(sh("ovs-vsctl", "get", "Interface", port, "ofport"))
                for name, port in ports.items()}

    def write(self, rule_base: list[dict], cookies: dict[str, int]) -> None:
        uplinks = set(self.edge.uplink_names())
        interfaces = {name: {"number": no, "native_vlan": "bench",
                             **({"acls_in": translate.faucet_acls_in(rule_base, name)}
                                if name in uplinks else {})}
                      for name, no in self.ofports().items()}
        doc = {"vlans": VLAN, "acls": translate.faucet_acls(rule_base, "svc-a", cookies),
               "dps": {"bench": {"dp_id": DPID, "hardware": "Open vSwitch",
                                 "interfaces": interfaces}}}
        tmp = self.config.with_suffix(".new")
        tmp.write_text(json.dumps(doc))   # YAML is a superset of JSON
        tmp.replace(self.config)

    def expected_acl_flows(self, rule_base: list[dict]) -> int:
        acls = translate.faucet_acls(rule_base, "svc-a")
        return sum(len(acls[name]) for iface in self.edge.uplink_names()
                   for name in translate.faucet_acls_in(rule_base, iface))

    def env(self) -> dict[str, str]:
        return os.environ | {   # faucet execs osken-manager from PATH: the venv's
            "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '')}",
            "FAUCET_CONFIG": str(self.config), "FAUCET_LOG": str(self.workdir / "faucet.log"),
            "FAUCET_EXCEPTION_LOG": str(self.workdir / "faucet_exception.log"),
            "FAUCET_PROMETHEUS_PORT": str(free_port()), "FAUCET_PROMETHEUS_ADDR": "127.0.0.1"}

    def argv(self) -> list[str]:
        return [str(VENV / "bin" / "faucet"), f"--ryu-ofp-tcp-listen-port={self.of_port}",
                "--ryu-ofp-listen-host=127.0.0.1"]


def controller_up(bridge: str) -> bool:
    out = sh("ovs-vsctl", "--bare", "--columns=is_connected", "find", "Controller",
             f"target=\"tcp:127.0.0.1:{_target_port(bridge)}\"")
    return out.strip() == "true"


def _target_port(bridge: str) -> str:
    return sh("ovs-vsctl", "get-controller", bridge).strip().rsplit(":", 1)[-1]


def wait_settled(at_least: int, alive) -> float:
    """Until the port ACL table holds ``at_least`` flows and the bridge's count has not
    changed for STABLE_POLLS polls; the monotonic time of the last change."""
    last, changed, same = -1, time.monotonic(), 0
    deadline = changed + START_TIMEOUT_S
    while same < STABLE_POLLS or common.flow_count(BRIDGE, f"table={PORT_ACL_TABLE}") < at_least:
        alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"Faucet: {at_least} port ACL flows not reached")
        count = common.flow_count(BRIDGE)
        if count != last:
            last, changed, same = count, time.monotonic(), 0
        else:
            same += 1
        time.sleep(POLL_S)
    return changed


def cookie_flows() -> int:
    return common.flow_count(BRIDGE, f"table={PORT_ACL_TABLE},cookie={ADDED_COOKIE:#x}/-1")


def one_rule_latencies(faucet: Faucet, added: list[dict], alive) -> list[float]:
    """Each added rule: config rewritten, SIGHUP, until all its flows are on the bridge."""
    samples = []
    for rule in added:
        want = len(translate.faucet_entries(rule, "svc-a")) * len(rule["applied_to"])
        faucet.write([*faucet.base, rule], {rule["name"]: ADDED_COOKIE})
        t0 = time.monotonic()
        os.kill(faucet.pid, signal.SIGHUP)
        common.wait_for(lambda w=want: alive() or cookie_flows() >= w, START_TIMEOUT_S,
                        "added rule's flows", poll=0.05)
        samples.append(time.monotonic() - t0)
        faucet.write(faucet.base, {})
        os.kill(faucet.pid, signal.SIGHUP)
        common.wait_for(lambda: alive() or cookie_flows() == 0, START_TIMEOUT_S,
                        "added rule removed", poll=0.05)
        wait_settled(faucet.expected_acl_flows(faucet.base), alive)
    return samples


def run(n_rules: int, n_ifaces: int, adds: int, cold: int) -> measure.Result:
    if not (VENV / "bin" / "faucet").exists():
        raise RuntimeError(f"no Faucet in {VENV}: run `make bench-peers` once")
    edge = Edge("b4", n_ifaces, DPID)
    internal = [p for p in edge.all_ports() if p not in (datapath.CLI.port, datapath.SRV.port)]
    workdir = Path(tempfile.mkdtemp(prefix="si-peer-faucet-"))
    faucet = Faucet(workdir, edge, rules(n_rules, edge.uplink_names()))
    result = measure.Result("Faucet")
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        stack.enter_context(common.bridge(BRIDGE, DPID, internal))
        stack.enter_context(measure.hosts(BRIDGE))
        for port in internal:   # Faucet programs a port's ACLs only once it is up
            sh("ip", "link", "set", port, "up")
        procs = stack.enter_context(daemons(workdir))
        faucet.write(faucet.base, {})
        t0 = time.monotonic()
        faucet.pid = procs.start("faucet", faucet.argv(), env=faucet.env())
        wait_listening(faucet.of_port, 120)
        common.connect(BRIDGE, faucet.of_port)
        common.wait_for(lambda: procs.check() or controller_up(BRIDGE), 120, "Faucet connected",
                        poll=0.05)
        sh("ovs-vsctl", "set", "Controller", BRIDGE, f"inactivity_probe={PROBE_MS}")
        settled = wait_settled(faucet.expected_acl_flows(faucet.base), procs.check)
        result.start_s = settled - t0
        acl = measure.dump(BRIDGE, f"table={PORT_ACL_TABLE}")
        result.flows = common.flow_count(BRIDGE)
        result.rule_flows, result.subtables = len(acl), measure.subtables(acl)
        result.rss_mib = measure.rss(procs.pids())
        datapath.peer_gateways(True)
        result.cold_rate, result.cold_failed = measure.cold_connections(cold)
        result.one_rule_s = one_rule_latencies(
            faucet, measure.added_rules(edge.uplink_names(), adds), procs.check)
        common.connect(BRIDGE, None)
    return result
