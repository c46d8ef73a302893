"""Helpers for the hardening tests: a small OVS lab bridge of our own, a controller
with extra environment, raw HTTP, the flow-set check and request generators.

The lab bridge ``hard0`` (userspace datapath, fail-secure, OpenFlow 1.3, dpid
0xa1) has two veth ports whose peers live in network namespaces (hosts ``a``
behind uplink ``h-up1`` and ``b`` behind downlink ``h-dn1``) and three internal
ports.  Nothing here touches another bridge, namespace or process.
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from mininet_topos import lab as harness
from openflow_tables import layout as L
from openflow_tables.compile import compile_pipeline
from si_model import model as m
from ryu_si.control.service import Service
from ryu_si.control.store import Store
from ryu_si.datapath.switch import final_cookie

BRIDGE = "hard0"
DPID = 0xA1
NETNS = {"a": "hd-a", "b": "hd-b"}
# A subnet the two hosts share on their links, which the router does not route:
# only a bridge forwarding on its own (not fail-secure, no controller) joins them.
SIDE_IP = {"a": "10.31.99.1", "b": "10.31.99.2"}


@dataclass(frozen=True)
class LabPort:
    """One bridge port; ``host`` names the namespace at the far end of its veth."""
    port: str
    iface: str                  # interface name in the config
    role: str
    router_ip: str | None
    router_mac: str
    host: str | None = None     # key of NETNS
    host_ip: str | None = None  # CIDR
    host_mac: str | None = None


PORTS = (
    LabPort("hd-up1", "h-up1", "uplink", "10.31.1.1/24", "02:00:00:31:01:01",
            "a", "10.31.1.2/24", "02:00:00:31:01:02"),
    LabPort("hd-up2", "h-up2", "uplink", "10.31.2.1/24", "02:00:00:31:02:01"),
    LabPort("hd-dn1", "h-dn1", "downlink", "10.31.10.1/24", "02:00:00:31:10:01",
            "b", "10.31.10.10/24", "02:00:00:31:10:0a"),
    LabPort("hd-bwa", "h-bwa", "service", None, "02:00:00:31:a0:01"),
    LabPort("hd-bwb", "h-bwb", "service", None, "02:00:00:31:b0:01"),
)
# The only applied_to sets the tests use.  The anchor rules hold them from the
# start with the lowest rule numbers, so the controller's sticky applied_to bits
# equal the ones a fresh Service computes from the store (the flow check needs that).
APPLIED_TO_SETS: tuple[tuple[str, ...], ...] = (("h-up1", "h-up2"), ("h-up1",), ("h-up2",))
ANCHOR_RULES: tuple[dict[str, Any], ...] = (
    {"name": "a0-both", "priority": 100, "action": "redirect", "policy": "inspect",
     "match": {"ip_proto": "tcp", "tp_dst": 80}, "applied_to": list(APPLIED_TO_SETS[0])},
    {"name": "a1-up1", "priority": 90, "action": "redirect", "policy": "inspect",
     "match": {"ip_proto": "tcp", "tp_dst": 8080}, "applied_to": list(APPLIED_TO_SETS[1])},
    {"name": "a2-up2", "priority": 200, "action": "drop",
     "match": {"ip_proto": "tcp", "tp_dst": 23}, "applied_to": list(APPLIED_TO_SETS[2])},
)


# ------------------------------------------------------------------ the lab

def sh(*argv: str, check: bool = True) -> str:
    return harness.sh(*argv, check=check)


def netns_run(host: str, *argv: str, check: bool = True) -> str:
    return sh("ip", "netns", "exec", NETNS[host], *argv, check=check)


def remove_lab() -> None:
    """Delete the bridge, veths and namespaces of this lab (idempotent)."""
    sh("ovs-vsctl", "--if-exists", "del-br", BRIDGE)
    for p in PORTS:
        if p.host and Path(f"/sys/class/net/{p.port}").exists():
            sh("ip", "link", "del", p.port, check=False)
    existing = sh("ip", "netns", "list")
    for ns in NETNS.values():
        if re.search(rf"^{re.escape(ns)}\b", existing, re.MULTILINE):
            sh("ip", "netns", "del", ns)


def create_lab(of_port: int) -> None:
    """The bridge, its ports and the two hosts, controller target 127.0.0.1:of_port."""
    remove_lab()
    sh("ovs-vsctl", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev",
       "fail_mode=secure", "protocols=OpenFlow13",
       f"other-config:datapath-id={DPID:016x}")
    for ns in NETNS.values():
        sh("ip", "netns", "add", ns)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
    for p in PORTS:
        if p.host is None:
            sh("ovs-vsctl", "add-port", BRIDGE, p.port, "--", "set", "interface", p.port,
               "type=internal")
            continue
        peer = f"{p.port}-h"
        sh("ip", "link", "add", p.port, "type", "veth", "peer", "name", peer)
        sh("sysctl", "-qw", f"net.ipv6.conf.{p.port}.disable_ipv6=1")
        sh("sysctl", "-qw", f"net.ipv4.conf.{p.port}.arp_ignore=8")   # the host stays out of it
        sh("ip", "link", "set", peer, "netns", NETNS[p.host])
        sh("ip", "link", "set", p.port, "up")
        sh("ethtool", "-K", p.port, "tx", "off")
        gateway = p.router_ip.split("/")[0]
        netns_run(p.host, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        netns_run(p.host, "ip", "link", "set", peer, "address", p.host_mac)
        netns_run(p.host, "ip", "addr", "add", p.host_ip, "dev", peer)
        netns_run(p.host, "ip", "addr", "add", f"{SIDE_IP[p.host]}/24", "dev", peer)
        netns_run(p.host, "ip", "link", "set", peer, "up")
        netns_run(p.host, "ethtool", "-K", peer, "tx", "off")
        netns_run(p.host, "ip", "route", "add", "default", "via", gateway)
        sh("ovs-vsctl", "add-port", BRIDGE, p.port)
    connect(of_port)


def connect(of_port: int) -> None:
    """Point the bridge at the controller; retry every second at most (fast reconnects)."""
    sh("ovs-vsctl", "--", "--id=@c", "create", "Controller", f'target="tcp:127.0.0.1:{of_port}"',
       "max_backoff=1000", "--", "set", "bridge", BRIDGE, "controller=@c")


def disconnect() -> None:
    sh("ovs-vsctl", "del-controller", BRIDGE)


def ping(src: str, dst_ip: str, count: int = 3) -> int:
    """Echo replies host ``src`` gets from ``dst_ip``."""
    out = netns_run(src, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", dst_ip,
                    check=False)
    got = re.search(r"(\d+) received", out)
    return int(got.group(1)) if got else 0


OVS_CTL = "/usr/share/openvswitch/scripts/ovs-ctl"
VSWITCHD_PIDFILE = Path("/var/run/openvswitch/ovs-vswitchd.pid")


def crash_and_restart_vswitchd() -> float:
    """SIGKILL ovs-vswitchd (a crash: no flows saved, its monitor does not restart it),
    then start it again from OVSDB; returns the seconds it was away.  The bridges come
    back empty, with the fail mode and controller OVSDB holds."""
    began = time.monotonic()
    pid = int(VSWITCHD_PIDFILE.read_text())
    os.kill(pid, signal.SIGKILL)
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() - began < 10, f"ovs-vswitchd {pid} did not die"
        time.sleep(0.02)
    sh(OVS_CTL, "--no-ovsdb-server", "start")
    sh("ovs-ofctl", "-O", "OpenFlow13", "show", BRIDGE)      # answers once the bridge is back
    return time.monotonic() - began


def background(host: str, *argv: str) -> subprocess.Popen:
    """A command in a lab host, in the background, text output."""
    return subprocess.Popen(["ip", "netns", "exec", NETNS[host], *argv], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def ping_stamps(output: str) -> list[float]:
    """Arrival times of the echo replies in ``ping -D`` output."""
    return [float(t) for t in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", output, re.M)]


def lab_config(extra_rules: list[dict[str, Any]] | tuple = ()) -> dict[str, Any]:
    """The lab's config document: router ``hard`` on dpid 0xa1, a bump-in-the-wire node,
    static neighbors for both hosts, the anchor rules and ``extra_rules``."""
    ifaces = [{"name": p.iface, "router": "hard", "port": p.port, "role": p.role,
               "mac": p.router_mac, **({"ip": p.router_ip} if p.router_ip else {})}
              for p in PORTS]
    neighbors = [{"name": f"host-{p.host}", "ip": p.host_ip.split("/")[0], "mac": p.host_mac,
                  "interface": p.iface} for p in PORTS if p.host]
    return {
        "routers": [{"name": "hard", "tier": "t0", "dpid": DPID}],
        "interfaces": ifaces,
        "routes": [{"name": "far", "router": "hard", "prefix": "198.51.100.0/24",
                    "next_hop": "10.31.1.2", "interface": "h-up1"}],
        "neighbors": neighbors,
        "service-nodes": [{"name": "fw1", "transport": "biw", "profile": "firewall",
                           "interface_a": "h-bwa", "interface_b": "h-bwb"}],
        "policies": [{"name": "inspect", "biw_nodes": ["fw1"], "failure_policy": "pass"}],
        "rules": [*ANCHOR_RULES, *extra_rules],
    }


def bulk_rules(prefix: str, count: int) -> list[dict[str, Any]]:
    """``count`` distinct allow/drop rules over the three applied_to sets."""
    return [{"name": f"{prefix}-{n:05d}", "priority": 1000 + n % 50000,
             "action": "drop" if n % 2 else "allow",
             "match": {"ip_proto": "udp" if n % 3 else "tcp", "tp_dst": 1024 + n % 60000},
             "applied_to": list(APPLIED_TO_SETS[n % len(APPLIED_TO_SETS)])}
            for n in range(count)]


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# ------------------------------------------------------------ the controller

class LabController(harness.Controller):
    """The harness controller with extra environment and, optionally, Ryu's
    default REST host (``wsapi_host=None`` leaves --wsapi-host out)."""

    def __init__(self, *, env: Mapping[str, str] | None = None,
                 wsapi_host: str | None = "127.0.0.1", **kw: Any) -> None:
        super().__init__(**kw)
        self.extra_env = {"RYU_SI_PROBE_INTERVAL": "0", **(env or {})}
        self.wsapi_host = wsapi_host

    def start(self) -> LabController:
        if self.proc and self.proc.poll() is None:
            raise RuntimeError(f"controller already running (pid {self.proc.pid})")
        env = dict(os.environ, RYU_SI_STORE=str(self.store), **self.extra_env)
        env.pop("RYU_SI_CONFIG", None)
        if self.config:
            env["RYU_SI_CONFIG"] = str(self.config)
        host = ["--wsapi-host", self.wsapi_host] if self.wsapi_host else []
        argv = [harness.ryu_manager(), "--ofp-listen-host", "127.0.0.1",
                "--ofp-tcp-listen-port", str(self.of_port), *host,
                "--wsapi-port", str(self.wsapi_port), self.app]
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=harness.REPO,
                                         start_new_session=True)
        return self

    def restart_from_store(self, timeout: float = 30.0) -> None:
        """Start again on the same store only (RYU_SI_CONFIG would be re-applied)."""
        self.config = None
        self.restart(timeout)
        wait_reconciled(self, timeout)

    def kill9(self) -> None:
        """SIGKILL by pid, no grace: a crash."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


def start_bare(workdir: Path, doc: dict[str, Any] | None, timeout: float = 30.0,
               env: Mapping[str, str] | None = None) -> LabController:
    """A controller on ``doc`` (None: no config file, the store alone) that no switch
    connects to, once REST answers."""
    config = None if doc is None else write_config(workdir / "doc.yaml", doc)
    ctl = LabController(of_port=harness.free_port(), wsapi_port=harness.free_port(),
                        workdir=workdir, config=config, env=env)
    ctl.start()
    wait_answering(ctl, timeout)
    return ctl


def wait_answering(ctl: LabController, timeout: float = 30.0) -> None:
    """Until REST answers /health; stop the controller and raise if it never does."""
    deadline = time.monotonic() + timeout
    while not _answers(ctl):
        if time.monotonic() > deadline or ctl.proc.poll() is not None:
            ctl.stop()
            raise RuntimeError(f"controller did not answer\n{ctl.log_tail()}")
        time.sleep(0.2)


def _answers(ctl: harness.Controller) -> bool:
    try:
        return call(ctl, "GET", "health", timeout=2).status == 200
    except OSError:
        return False


def switch_health(ctl: harness.Controller) -> dict[str, Any] | None:
    status, body = ctl.rest("GET", "health")
    if status != 200:
        return None
    return next((s for s in body["switches"] if s["dpid"] == DPID), None)


def wait_reconciled(ctl: harness.Controller, timeout: float = 30.0,
                    after: float = 0.0) -> dict[str, Any]:
    """The switch's health once the controller has reconciled it (after ``after``)."""
    deadline = time.monotonic() + timeout
    sw = None
    while time.monotonic() < deadline:
        sw = switch_health(ctl)
        if sw and sw["last_resync"] and sw["last_resync"] > after:
            return sw
        time.sleep(0.1)
    raise TimeoutError(f"switch {DPID:#x} not reconciled: {sw}\n{ctl.log_tail()}")


# ------------------------------------------------------------------- HTTP

@dataclass
class Reply:
    status: int
    headers: Message
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.raw)


def call(ctl: harness.Controller, method: str, path: str, body: Any = None,
         headers: Mapping[str, str] | None = None, timeout: float = 60.0) -> Reply:
    """One request; ``path`` is under /si/v1; ``body``: bytes as is, else JSON."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", ctl.wsapi_port, timeout=timeout)
    try:
        conn.request(method, "/si/v1/" + path, body=data,
                     headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return Reply(resp.status, resp.msg, resp.read())
    finally:
        conn.close()


# ---------------------------------------------------------- the flow check

def ofports(bridge: str = BRIDGE) -> dict[str, int]:
    """OVS port name -> OpenFlow port number, as the controller learns them."""
    names = sh("ovs-vsctl", "list-ifaces", bridge).split()
    return {n: int(sh("ovs-vsctl", "get", "Interface", n, "ofport")) for n in names}


def snapshot_store(store: Path, dest: Path) -> Path:
    """A consistent copy of a live (WAL) SQLite store."""
    src = sqlite3.connect(str(store))
    dst = sqlite3.connect(str(dest))
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return dest


def stored_service(store: Path, workdir: Path) -> Service:
    """A Service loaded from a copy of the store, as a restarted controller would load it."""
    return Service(Store(str(snapshot_store(store, workdir / "snapshot.sqlite"))))


def expected_flows(store: Path) -> tuple[Counter, set[int]]:
    """Flows and group ids the stored model compiles to for the lab bridge."""
    with tempfile.TemporaryDirectory() as tmp:
        svc = stored_service(store, Path(tmp))
        pipe = compile_pipeline(svc.context(DPID, ofports()))
        svc.store.close()
    return (Counter((L.table_id(f.table), f.priority, final_cookie(f)) for f in pipe.flows),
            {g.group_id for g in pipe.groups})


FLOW_LINE = re.compile(r"cookie=(0x[0-9a-f]+)")


def installed_flows(bridge: str = BRIDGE) -> Counter:
    """Our flows (cookie app tag 0x51) on the bridge, as (table, priority, cookie)."""
    out: Counter = Counter()
    for line in sh("ovs-ofctl", "-O", "OpenFlow13", "--no-names", "dump-flows",
                   bridge).splitlines():
        ck = FLOW_LINE.search(line)
        if not ck or int(ck.group(1), 16) >> L.COOKIE_APP_SHIFT != L.COOKIE_APP:
            continue
        table = re.search(r"\btable=(\d+)", line)
        prio = re.search(r"\bpriority=(\d+)", line)
        out[(int(table.group(1)) if table else 0, int(prio.group(1)) if prio else 32768,
             int(ck.group(1), 16))] += 1
    return out


def flow_count(bridge: str = BRIDGE) -> int:
    """All flows on the bridge (cheap: one aggregate request)."""
    out = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-aggregate", bridge)
    return int(re.search(r"flow_count=(\d+)", out).group(1))


def installed_groups(bridge: str = BRIDGE) -> set[int]:
    text = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-groups", bridge)
    return {int(g) for g in re.findall(r"group_id=(\d+)", text)}


def flow_difference(installed: Counter, expected: Counter) -> str:
    """Readable difference of two flow multisets ('' when equal)."""
    missing, extra = expected - installed, installed - expected
    if not missing and not extra:
        return ""

    def show(c: Counter) -> str:
        return ", ".join(f"t{t}/p{p}/{ck:#x}x{n}" for (t, p, ck), n in sorted(c.items())[:8])
    return (f"{sum(missing.values())} missing ({show(missing)}); "
            f"{sum(extra.values())} extra or duplicated ({show(extra)})")


def switch_matches_store(store: Path) -> str:
    """'' when the bridge holds exactly the flows and groups the store compiles to."""
    flows, groups = expected_flows(store)
    problem = flow_difference(installed_flows(), flows)
    if groups != installed_groups():
        problem += f" groups: want {sorted(groups)}, have {sorted(installed_groups())}"
    return problem


# ------------------------------------------------------------ listening

def listening(pid: int) -> list[str]:
    """Local addresses (host:port) of the TCP sockets process ``pid`` listens on."""
    out = sh("ss", "-ltnpH")
    return [line.split()[3] for line in out.splitlines() if f"pid={pid}," in line]


# ------------------------------------------------------------- fuzzing

def instruction_tuples(raw: bytes) -> frozenset[tuple[str, ...]]:
    """Both directions of the connection a flow-programming body names (empty if none).
    A second instruction for a pending connection wedges the controller (see the
    pinned test), so the fuzzer sends each connection once."""
    try:
        body = json.loads(raw)
        proto = {"tcp": 6, "udp": 17}.get(body["ip_proto"], body["ip_proto"])
        src, dst = (_address(body[k]) for k in ("ipv4_src", "ipv4_dst"))
        sport, dport = str(body["tp_src"]), str(body["tp_dst"])
    except Exception:  # noqa: BLE001 - not an instruction the controller would accept
        return frozenset()
    return frozenset({(str(proto), src, dst, sport, dport), (str(proto), dst, src, dport, sport)})


def _address(v: Any) -> str:
    try:
        return str(ipaddress.IPv4Address(v))
    except (ValueError, TypeError):
        return repr(v)


@dataclass
class Tally:
    """What the fuzzer sent and got back."""
    sent: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_operation: Counter = field(default_factory=Counter)   # (method, kind, status)
    known: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        return (f"{self.sent} requests; statuses {dict(sorted(self.by_status.items()))}; "
                f"known bugs {dict(self.known)}; "
                f"{len({op[:2] for op in self.by_operation})} operations")

    def per_operation(self) -> str:
        ops: dict[tuple[str, str], Counter] = {}
        for (method, kind, status), n in self.by_operation.items():
            ops.setdefault((method, kind), Counter())[status] += n
        return "\n".join(f"  {method} {kind}: {dict(sorted(c.items()))}"
                         for (method, kind), c in sorted(ops.items()))


# ------------------------------------------------------- request generators

@dataclass(frozen=True)
class Operation:
    """One operation of the OpenAPI document that takes a body."""
    method: str
    path: str                   # relative to /si/v1, with {ref} / {spi} left in
    schema: dict[str, Any]


def body_operations(doc: dict[str, Any]) -> list[Operation]:
    """Every operation with a request body, from the served OpenAPI document."""
    base = "/si/v1/"
    return [Operation(method.upper(), path[len(base):],
                      op["requestBody"]["content"]["application/json"]["schema"])
            for path, item in doc["paths"].items() for method, op in item.items()
            if isinstance(op, dict) and "requestBody" in op]


REFERENCE = re.compile(r"^([a-z-]+): id or name")


class Schemas:
    """JSON Schema (the OpenAPI subset the document uses) -> hypothesis strategies;
    reference fields draw from the names that exist, or anything."""

    def __init__(self, doc: dict[str, Any], names: Mapping[str, list[str]]) -> None:
        self.doc, self.names = doc, names

    def resolve(self, s: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in s:
            s = self.doc["components"]["schemas"][s["$ref"].rsplit("/", 1)[1]]
        return s

    def strategy(self, s: dict[str, Any]) -> st.SearchStrategy:
        s = self.resolve(s)
        base = self._base(s)
        return st.one_of(st.none(), base) if s.get("nullable") else base

    def _base(self, s: dict[str, Any]) -> st.SearchStrategy:
        if "anyOf" in s:
            return st.one_of([self.strategy(a) for a in s["anyOf"]])
        if "enum" in s:
            return st.sampled_from(s["enum"])
        kind = s.get("type")
        if kind == "object":
            return self._object(s)
        if kind == "array":
            return st.lists(self.strategy(s.get("items", {})), min_size=s.get("minItems", 0),
                            max_size=4)
        if kind == "string":
            return self._string(s)
        if kind == "integer":
            return st.integers(s.get("minimum"), s.get("maximum"))
        if kind == "number":
            return st.floats(allow_nan=False, allow_infinity=False)
        if kind == "boolean":
            return st.booleans()
        return json_values()

    def _object(self, s: dict[str, Any]) -> st.SearchStrategy:
        props = {k: v for k, v in s.get("properties", {}).items()
                 if not self.resolve(v).get("readOnly")}
        required = set(s.get("required", ()))
        if not props and "additionalProperties" in s:
            return st.dictionaries(st.text(max_size=8),
                                   self.strategy(s["additionalProperties"] or {}), max_size=3)
        return st.fixed_dictionaries(
            {k: self.strategy(v) for k, v in props.items() if k in required},
            optional={k: self.strategy(v) for k, v in props.items() if k not in required})

    def _string(self, s: dict[str, Any]) -> st.SearchStrategy:
        ref = REFERENCE.match(s.get("description", ""))
        fmt = s.get("format")
        if ref:
            known = self.names.get(ref.group(1), [])
            return st.one_of(*[st.sampled_from(known)] * 3, st.text(min_size=1)) if known \
                else st.text(min_size=1)
        if "pattern" in s:
            return st.from_regex(s["pattern"], fullmatch=True)
        if fmt == "ipv4":
            return st.ip_addresses(v=4).map(str)
        if fmt == "ipv4-prefix":
            return st.ip_addresses(network="10.0.0.0/8").map(lambda a: f"{a}/32") | \
                st.sampled_from(["10.0.0.0/8", "198.51.100.0/24", "0.0.0.0/0"])
        if fmt == "ipv4-interface":
            return st.builds(lambda a, n: f"{a}/{n}", st.ip_addresses(v=4),
                             st.integers(0, 32))
        if fmt == "uuid":
            return st.uuids().map(str)
        any_name = [n for names in self.names.values() for n in names]
        return st.one_of(st.sampled_from(any_name), st.text(min_size=s.get("minLength", 0))) \
            if any_name else st.text(min_size=s.get("minLength", 0))


def json_values() -> st.SearchStrategy:
    """Any JSON value, small: the wrong-type generator."""
    leaves = (st.none() | st.booleans() | st.integers() | st.integers(2 ** 63, 2 ** 80)
              | st.floats(allow_nan=True) | st.text(max_size=20)
              | st.sampled_from(["", "²", "٣", "1-", "-1", "0x10", "\x00", "a" * 65]))
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                        max_leaves=6)


HUGE = ("x" * 300_000, "é" * 50_000, "1" * 5000, "10.0.0.0/" + "8" * 4000)


@st.composite
def mutated(draw: st.DrawFn, body: Any) -> Any:
    """A schema-valid body with zero to two mutations: a missing or unknown field,
    a wrong type, a huge string, or a different value altogether."""
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        how = draw(st.sampled_from(["drop", "unknown", "wrong", "huge", "replace"]))
        if how == "replace" or not isinstance(body, dict):
            body = draw(json_values())
            continue
        keys = sorted(body)
        if how == "unknown":
            body = {**body, draw(st.text(min_size=1, max_size=12)): draw(json_values())}
        elif keys and how == "drop":
            key = draw(st.sampled_from(keys))
            body = {k: v for k, v in body.items() if k != key}
        elif keys:
            key = draw(st.sampled_from(keys))
            value = draw(json_values()) if how == "wrong" else draw(st.sampled_from(HUGE))
            body = {**body, key: value}
    return body


@st.composite
def encoded(draw: st.DrawFn, body: Any) -> bytes:
    """JSON text of ``body``, or now and then a broken version of it."""
    raw = json.dumps(body).encode()
    how = draw(st.sampled_from(["json"] * 8 + ["truncate", "garbage", "latin1", "empty"]))
    if how == "truncate" and len(raw) > 1:
        return raw[:draw(st.integers(1, len(raw) - 1))]
    if how == "garbage":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    if how == "latin1":
        return json.dumps(body, ensure_ascii=False).encode("latin-1", "replace") + b"\xff"
    if how == "empty":
        return b""
    return raw


@st.composite
def config_variants(draw: st.DrawFn, current: dict[str, Any], schemas: Schemas) -> Any:
    """PUT /config bodies: the current config with one mutation deep inside (mostly),
    or a document generated from the Config schema."""
    if draw(st.integers(0, 3)) == 0:
        return draw(schemas.strategy({"$ref": "#/components/schemas/Config"}))
    doc = json.loads(json.dumps(current))
    kinds = [k for k, v in doc.items() if v]
    if not kinds:
        return doc
    kind = draw(st.sampled_from(kinds))
    n = draw(st.integers(0, len(doc[kind]) - 1))
    doc[kind][n] = draw(mutated(doc[kind][n]))
    return doc


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes

    def __repr__(self) -> str:  # hypothesis prints failing examples: keep them short
        return f"Request({self.method} {self.path} {self.body[:300]!r}, {len(self.body)} bytes)"


@st.composite
def requests(draw: st.DrawFn, ops: list[Operation], schemas: Schemas,
             current: dict[str, Any]) -> Request:
    """One request to one body-taking operation of the document."""
    op = draw(st.sampled_from(ops))
    path = op.path
    if "{ref}" in path:
        kind = path.split("/")[0]
        known = st.sampled_from(schemas.names.get(kind) or ["none"])
        ref = draw(st.one_of(known, known, known,
                             st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True)))
        path = path.replace("{ref}", ref)
    if "{spi}" in path:
        path = path.replace("{spi}", str(draw(st.integers(0, 2 ** 30))))
    if op.path == "config":
        body = draw(config_variants(current, schemas))
    else:
        body = draw(mutated(draw(schemas.strategy(op.schema))))
    return Request(op.method, path, draw(encoded(body)))


HOSTILE = (b"", b"null", b"[]", b"{", b"{\"name\":", b"\xff\xfe\x00", b"\"str\"", b"1e999",
           b"NaN", b"{\"a\": 1, \"a\": 2}", b"[" * 50 + b"]" * 50,
           b"{\"name\": \"" + b"x" * 1_000_000 + b"\"}", b"\x00" * 64, b"---\n- a\n- b\n",
           b"key: [unclosed", b"? [a]\n: b\n",
           b"[" * 5000, b"{\"match\": " * 3000)   # the last two: the deep-nesting bug


def concrete_path(path: str, names: Mapping[str, list[str]]) -> str:
    """An operation's path with an existing object (or SPI 1) filled in."""
    kind = path.split("/")[0]
    return path.replace("{ref}", (names.get(kind) or ["missing"])[0]).replace("{spi}", "1")


def malformed_corpus(ops: list[Operation], names: Mapping[str, list[str]],
                     per_op: int = 6) -> list[tuple[str, str, bytes]]:
    """Hand-made hostile bodies, ``per_op`` to every body-taking operation, in rotation
    so that every body reaches several operations."""
    return [(op.method, concrete_path(op.path, names), HOSTILE[(n * per_op + k) % len(HOSTILE)])
            for n, op in enumerate(ops) for k in range(per_op)]
