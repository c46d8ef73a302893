"""OVN on the generated rule base: its own NB and SB databases in a temporary
directory, ovn-northd, and an ovn-controller that programs a userspace bridge
of the shared Open vSwitch.

Topology: one logical switch with a port per interface of the generated
router (uplinks, downlink, the service node's two ports), each bound to an
OVS port of the bridge by ``external_ids:iface-id``; uplink0 and the downlink
are the datapath benchmark's client and server.  A port group per applied_to
set of the pool; one ACL per rule (``translate.ovn_acl``).

Apply: every ACL in one NB transaction, then ``ovn-nbctl --wait=hv sync``
(northd has compiled, ovn-controller has installed).  One rule:
``ovn-nbctl --wait=hv acl-add``.  Rule tables: OVN's ``ls_in_acl`` stage,
found by name in ``ovn-sbctl lflow-list`` (logical ingress table n is
OpenFlow table 8 + n).  RSS: both ovsdb-servers, ovn-northd, ovn-controller.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

from benchmarks import common, datapath
from benchmarks.common import bridge
from benchmarks.peers import measure, translate
from benchmarks.peers.processes import Daemons, daemons
from benchmarks.workload import Edge, applied_to_pool, rules
from mininet_topos.lab import sh

BRIDGE, DPID = "bench3", 0xB3
SWITCH = "bench"
SCHEMAS = Path("/usr/share/ovn")
OVS_DB = "unix:/var/run/openvswitch/db.sock"
INGRESS_TABLE_BASE = 8          # OVN's OFTABLE_LOG_INGRESS_PIPELINE
WAIT_TIMEOUT_S = 1800
OVS_KEYS = ("ovn-remote", "ovn-encap-type", "ovn-encap-ip", "ovn-bridge",
            "ovn-bridge-datapath-type", "ovn-remote-probe-interval",
            "ovn-openflow-probe-interval")


class Ovn:
    """The OVN daemons of one run and the commands that talk to them."""

    def __init__(self, workdir: Path, procs: Daemons) -> None:
        self.workdir = workdir
        self.procs = procs

    def sock(self, db: str) -> str:
        return str(self.workdir / f"{db}.sock")   # as chassis_config is told

    def nbctl(self, *args: str, timeout: float = WAIT_TIMEOUT_S) -> str:
        return sh("ovn-nbctl", f"--db=unix:{self.sock('nb')}", f"--timeout={int(timeout)}",
                  *args, timeout=timeout + 5)

    def sbctl(self, *args: str) -> str:
        return sh("ovn-sbctl", f"--db=unix:{self.sock('sb')}", *args, timeout=WAIT_TIMEOUT_S)

    def start(self) -> None:
        """NB and SB ovsdb-servers, ovn-northd, then ovn-controller on BRIDGE."""
        for db, schema in (("nb", "ovn-nb.ovsschema"), ("sb", "ovn-sb.ovsschema")):
            sh("ovsdb-tool", "create", str(self.workdir / f"{db}.db"), str(SCHEMAS / schema))
            self.procs.start(f"ovsdb-{db}", [
                "ovsdb-server", str(self.workdir / f"{db}.db"), f"--remote=punix:{self.sock(db)}",
                f"--unixctl={self.workdir / f'{db}.ctl'}", "--no-chdir", "-vconsole:off",
                f"--log-file={self.workdir / f'{db}.log'}"])
        for db in ("nb", "sb"):
            common.wait_for(lambda db=db: Path(self.sock(db)).exists(), 30, f"{db} database")
        self.nbctl("init")
        self.procs.start("ovn-northd", [
            "ovn-northd", f"--ovnnb-db=unix:{self.sock('nb')}",
            f"--ovnsb-db=unix:{self.sock('sb')}", f"--unixctl={self.workdir / 'northd.ctl'}",
            "--no-chdir", "-vconsole:off", f"--log-file={self.workdir / 'northd.log'}"])
        self.procs.start("ovn-controller", [
            "ovn-controller", OVS_DB, "--no-chdir", "-vconsole:off",
            f"--log-file={self.workdir / 'controller.log'}"],
            env=os.environ | {"OVN_RUNDIR": str(self.workdir)})
        common.wait_for(lambda: self.procs.check() or self.sbctl(
            "--bare", "--columns=name", "list", "Chassis").strip(), 60, "OVN chassis")

    def transact(self, ops: list[dict]) -> list:
        """One OVSDB transaction on the NB database (JSON-RPC on its socket): the
        whole rule base at once, as a CMS would write it."""
        request = {"method": "transact", "params": ["OVN_Northbound", *ops], "id": 1}
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.sock("nb"))
            s.sendall(json.dumps(request).encode())
            reply = _read_reply(s, 1)
        errors = [r for r in reply["result"] if isinstance(r, dict) and "error" in r]
        if reply.get("error") or errors:
            raise RuntimeError(f"NB transaction failed: {reply.get('error') or errors[:3]}")
        return reply["result"]

    def acl_table(self) -> int:
        """The OpenFlow table of the ``ls_in_acl`` stage in this OVN's pipeline."""
        listing = self.sbctl("lflow-list", SWITCH)
        stage = re.search(r"table=(\d+) ?\(ls_in_acl\s*\)", listing)
        return INGRESS_TABLE_BASE + int(stage.group(1))


def _read_reply(s: socket.socket, want_id: int) -> dict:
    decoder, buf = json.JSONDecoder(), ""
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            raise RuntimeError("NB database closed the connection")
        buf += chunk.decode()
        while buf.strip():
            try:
                msg, end = decoder.raw_decode(buf.lstrip())
            except json.JSONDecodeError:
                break
            buf = buf.lstrip()[end:]
            if msg.get("id") == want_id:
                return msg


def acl_ops(acls: list[translate.OvnAcl]) -> list[dict]:
    """Insert every ACL and add it to its port group's ``acls``."""
    ops, by_group = [], {}
    for k, acl in enumerate(acls):
        ops.append({"op": "insert", "table": "ACL", "uuid-name": f"acl{k}",
                    "row": {"priority": acl.priority, "direction": acl.direction,
                            "match": acl.match, "action": acl.action}})
        by_group.setdefault(acl.port_group, []).append(["named-uuid", f"acl{k}"])
    ops += [{"op": "mutate", "table": "Port_Group", "where": [["name", "==", group]],
             "mutations": [["acls", "insert", ["set", refs]]]}
            for group, refs in by_group.items()]
    return ops


# ------------------------------------------------------------------- setup

@contextmanager
def chassis_config(sb_sock: str) -> Iterator[None]:
    """The local Open vSwitch's ``external_ids`` that make ovn-controller use
    BRIDGE and our SB database; removed on exit.  Probes off: a benchmark that
    keeps northd or ovn-controller busy must not measure reconnections."""
    sh("ovs-vsctl", "set", "Open_vSwitch", ".",
       f'external_ids:ovn-remote="unix:{sb_sock}"', "external_ids:ovn-encap-type=geneve",
       "external_ids:ovn-encap-ip=127.0.0.1", f"external_ids:ovn-bridge={BRIDGE}",
       "external_ids:ovn-bridge-datapath-type=netdev",
       "external_ids:ovn-remote-probe-interval=0", "external_ids:ovn-openflow-probe-interval=0")
    try:
        yield
    finally:
        sh("ovs-vsctl", "remove", "Open_vSwitch", ".", "external_ids", *OVS_KEYS, check=False)


def ovn_bridge(internal_ports: list[str]) -> AbstractContextManager[str]:
    """A userspace bridge ovn-controller programs (it speaks OpenFlow 1.5); removed on exit."""
    return bridge(BRIDGE, DPID, internal_ports, protocols="OpenFlow13,OpenFlow15",
                  settings=("other-config:disable-in-band=true",))


def ovs_ports(edge: Edge) -> dict[str, str]:
    """Interface name -> OVS port: uplink0 and the downlink are the datapath hosts'."""
    names = [*edge.uplink_names(), "downlink", "svc-a", "svc-b"]
    ports = dict(zip(names, edge.all_ports()))
    return ports | {"uplink0": datapath.CLI.port, "downlink": datapath.SRV.port}


def build_topology(ovn: Ovn, edge: Edge, ports: dict[str, str]) -> None:
    """The logical switch, its ports bound to the bridge, a port group per pool set."""
    macs = {"uplink0": datapath.CLI.mac, "downlink": datapath.SRV.mac}
    cmds = [["ls-add", SWITCH]]
    for name in ports:
        cmds += [["lsp-add", SWITCH, name]]
        if name in macs:
            cmds += [["lsp-set-addresses", name, macs[name]]]
    names = edge.uplink_names()
    groups = {translate.port_group_name(s, names): s
              for sets in applied_to_pool(names).values() for s in sets}
    cmds += [["pg-add", group, *members] for group, members in groups.items()]
    ovn.nbctl(*[arg for cmd in cmds for arg in ("--", *cmd)][1:])
    for name, port in ports.items():
        sh("ovs-vsctl", "set", "Interface", port, f"external_ids:iface-id={name}")
    ovn.nbctl("--wait=hv", "sync")


# ---------------------------------------------------------------- measures

def apply_rules(ovn: Ovn, acls: list[translate.OvnAcl]) -> float:
    t0 = time.monotonic()
    ovn.transact(acl_ops(acls))
    ovn.nbctl("--wait=hv", "sync")
    return time.monotonic() - t0


def one_rule_latencies(ovn: Ovn, added: list[dict], names: list[str]) -> list[float]:
    samples = []
    for rule in added:
        acl = translate.ovn_acl(rule, names)
        args = [acl.port_group, acl.direction, str(acl.priority), acl.match]
        t0 = time.monotonic()
        ovn.nbctl("--wait=hv", "acl-add", *args, acl.action)
        samples.append(time.monotonic() - t0)
        ovn.nbctl("--wait=hv", "acl-del", *args)
    return samples


def run(n_rules: int, n_ifaces: int, adds: int, cold: int) -> measure.Result:
    if subprocess.run(["pgrep", "-x", "ovn-controller"], capture_output=True,
                      check=False).returncode == 0:
        raise RuntimeError("an ovn-controller already runs against this Open vSwitch "
                           "(stop the ovn-host service): two would fight over it")
    edge = Edge("b3", n_ifaces, DPID)
    ports = ovs_ports(edge)
    internal = [p for p in ports.values() if p not in (datapath.CLI.port, datapath.SRV.port)]
    names = edge.uplink_names()
    acls = [translate.ovn_acl(r, names) for r in rules(n_rules, names)]
    workdir = Path(tempfile.mkdtemp(prefix="si-peer-ovn-"))
    result = measure.Result("OVN")
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        stack.enter_context(ovn_bridge(internal))
        stack.enter_context(measure.hosts(BRIDGE))
        stack.enter_context(chassis_config(str(workdir / "sb.sock")))
        ovn = Ovn(workdir, stack.enter_context(daemons(workdir)))  # stopped before the
        ovn.start()                                               # chassis config goes
        build_topology(ovn, edge, ports)
        result.apply_s = apply_rules(ovn, acls)
        ovn.procs.check()
        table = ovn.acl_table()
        lines = measure.dump(BRIDGE, f"table={table}")
        result.flows = common.flow_count(BRIDGE)
        result.rule_flows, result.subtables = len(lines), measure.subtables(lines)
        result.rss_mib = measure.rss(ovn.procs.pids())
        datapath.peer_gateways(True)
        result.cold_rate, result.cold_failed = measure.cold_connections(cold)
        result.one_rule_s = one_rule_latencies(ovn, measure.added_rules(names, adds), names)
        ovn.procs.check()
    return result
