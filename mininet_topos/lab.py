"""Lab harness for the demo and the integration tests: the controller as a
subprocess, OVS inspection, steering connections over the two uplinks in
``ext``, and checked transfers.

Everything here works on a net returned by ``mininet_topos.edge.start_edge``.
OpenFlow counters lag (revalidator): call ``wait_counters()`` before reading
``n_packets`` after traffic.  The kernel seeds its ECMP hash per namespace, so
which source port takes which uplink changes from one net to the next: ask
``pick_sport()``, never hard-code a port.

Both IP versions: the steering helpers, ``ping`` and ``run_transfer`` take the
version from the destination address (``dst=edge.SRV_IP6`` for IPv6; the client
address then defaults to ``edge.CLI_IP6``), and ``proto="udp"`` steers or sends UDP.
Pinning (``move_connection``) and ``set_uplinks`` act on both versions at once.
"""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

try:  # conftest turns a failed import into a skip (or a failure under CI)
    from mininet_topos import edge
    EDGE_IMPORT_ERROR: str | None = None
except ImportError as exc:
    edge = None  # type: ignore[assignment]
    EDGE_IMPORT_ERROR = str(exc)

REPO = Path(__file__).resolve().parents[1]
TRAFFIC = REPO / "mininet_topos" / "traffic.py"
# Debian's interpreter runs traffic.py in the hosts: stdlib only, no venv needed.
HOST_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
COUNTER_LAG = 1.2       # seconds; OVS pushes datapath stats to OpenFlow rules ~1 s late
BRIDGE = "edge"
_USED_SPORTS: set[int] = set()


def free_port() -> int:
    """A TCP port nobody listens on right now (for OpenFlow / REST)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sh(*argv: str, check: bool = True, timeout: float = 30) -> str:
    """Run argv in the root namespace; raise with stderr on failure."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} -> rc {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def wait_counters() -> None:
    """Let OpenFlow flow counters catch up with the datapath."""
    time.sleep(COUNTER_LAG)


# ------------------------------------------------------------- controller

def ryu_manager() -> str:
    """The project's ryu-manager (venv), else the one beside this Python."""
    for candidate in (REPO / ".venv" / "bin" / "ryu-manager",
                      Path(sys.executable).parent / "ryu-manager"):
        if candidate.exists():
            return str(candidate)
    raise FileNotFoundError("ryu-manager not found; run make install")


class Controller:
    """``ryu-manager ryu_si.app`` as a subprocess with its own store and log,
    driven over REST on 127.0.0.1."""

    def __init__(self, of_port: int = 6653, wsapi_port: int = 8080,
                 workdir: str | Path | None = None, config: str | Path | None = None,
                 app: str = "ryu_si.app") -> None:
        self.of_port, self.wsapi_port, self.app = of_port, wsapi_port, app
        self._own_workdir = workdir is None  # a temp dir we made is ours to delete
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="ryu-si-"))
        self.store = self.workdir / "si.sqlite"
        self.log_path = self.workdir / "ryu-manager.log"
        self.config = Path(config) if config else None
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.wsapi_port}"

    def start(self) -> "Controller":
        """Start the process (the store survives restarts: same workdir)."""
        if self.proc and self.proc.poll() is None:
            raise RuntimeError(f"controller already running (pid {self.proc.pid})")
        env = dict(os.environ, RYU_SI_STORE=str(self.store))
        env.pop("RYU_SI_CONFIG", None)
        if self.config:
            env["RYU_SI_CONFIG"] = str(self.config)
        argv = [ryu_manager(), "--ofp-listen-host", "127.0.0.1",
                "--ofp-tcp-listen-port", str(self.of_port),
                "--wsapi-host", "127.0.0.1", "--wsapi-port", str(self.wsapi_port), self.app]
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=REPO,
                                         start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 30.0) -> dict:
        """Wait until REST answers and at least one switch is connected;
        return the health document."""
        deadline = time.monotonic() + timeout
        last: Any = "no answer"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(f"ryu-manager exited (rc {code})\n{self.log_tail()}")
            try:
                status, body = self.rest("GET", "health", timeout=2.0)
                last = (status, body)
                if status == 200 and isinstance(body, dict) and body.get("switches"):
                    return body
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                last = exc
            time.sleep(0.2)
        raise TimeoutError(f"controller not ready after {timeout}s (last: {last!r})\n"
                           f"{self.log_tail()}")

    def rest(self, method: str, path: str, body: Any = None,
             timeout: float = 10.0) -> tuple[int, Any]:
        """One REST call; ``path`` is relative to /si/v1 unless it starts with
        '/'.  ``body`` is sent as JSON, or as it is when it is bytes.  Returns
        (status, decoded JSON, or text, or None if empty)."""
        url = self.base_url + (path if path.startswith("/") else "/si/v1/" + path)
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method.upper(),
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, _decode(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, _decode(err.read())

    def restart(self, timeout: float = 30.0) -> dict:
        """Stop and start again with the same store; wait until ready."""
        self.stop()
        self.start()
        return self.wait_ready(timeout)

    def stop(self, grace: float = 5.0) -> int | None:
        """Terminate by pid, kill after grace seconds; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(grace)
        return self.proc.returncode

    def cleanup(self) -> None:
        """Stop, and delete the work dir if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "--- ryu-manager log tail ---\n" + "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> "Controller":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.cleanup()


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


# ------------------------------------------------------------ OVS state

def ofctl(*args: str) -> str:
    """ovs-ofctl speaking OpenFlow 1.3 (the bridge allows nothing else)."""
    return sh("ovs-ofctl", "-O", "OpenFlow13", *args)


def dump_flows(bridge: str = BRIDGE, table: str | int | None = None) -> list[str]:
    """Flow lines, with port and table NAMES (in_port=up1, output:down1)."""
    args = ["--names", "dump-flows", bridge]
    if table is not None:
        args.append(f"table={table}")
    return [line.strip() for line in ofctl(*args).splitlines()
            if line.strip().startswith("cookie=")]


def flow_packets(bridge: str, table: str | int, match: str) -> int:
    """Sum of n_packets over the flows of one table whose text contains
    ``match``; LookupError if none does (a typo must not read as 0)."""
    lines = [line for line in dump_flows(bridge, table) if match in line]
    if not lines:
        raise LookupError(f"no flow in table {table} of {bridge} contains {match!r}")
    return sum(int(re.search(r"n_packets=(\d+)", line).group(1)) for line in lines)


def datapath(bridge: str = BRIDGE) -> str:
    """Datapath holding the bridge (conntrack lives per datapath, not per bridge)."""
    kind = sh("ovs-vsctl", "get", "Bridge", bridge, "datapath_type").strip().strip('"')
    return "netdev@ovs-netdev" if kind == "netdev" else "system@ovs-system"


def conntrack(bridge: str = BRIDGE, zone: int | None = None) -> list[str]:
    """Conntrack entries of the bridge's datapath (optionally one zone)."""
    args = ["ovs-appctl", "dpctl/dump-conntrack", datapath(bridge)]
    if zone is not None:
        args.append(f"zone={zone}")
    return [line for line in sh(*args).splitlines() if line.strip()]


def flush_conntrack(zone: int | None = None) -> None:
    """Forget conntrack entries (one zone or all).  No datapath argument:
    OVS 3.1's flush-conntrack rejects one, and only ovs-netdev exists here.
    With no bridge at all there is no datapath, and nothing to forget."""
    if not sh("ovs-vsctl", "list-br").strip():
        return
    sh("ovs-appctl", "dpctl/flush-conntrack", *([f"zone={zone}"] if zone is not None else []))


# ------------------------------------------------------- ECMP steering

def _ext(net):
    return net["ext"]


def predict_uplink(net, sport: int, dport: int, dst: str | None = None,
                   src: str | None = None, proto: str = "tcp") -> str:
    """The uplink ('up1'/'up2') ext will use for cli->srv ``proto`` sport->dport
    (toward ``dst``, srv's IPv4 address by default; from cli's address of ``dst``'s
    version); see predict_uplinks."""
    return predict_uplinks(net, [sport], dport, dst, src, proto)[sport]


def predict_uplinks(net, sports: list[int], dport: int, dst: str | None = None,
                    src: str | None = None, proto: str = "tcp") -> dict[int, str]:
    """The uplink ext will use for each of these source ports, as ext itself decides
    (same L4 hash, ip rules included): IPv4 from the kernel's route lookup; IPv6 from
    probe packets ext routes and drops (edge.PROBE_RX: the IPv6 route lookup of
    `ip route get` hashes otherwise than forwarding)."""
    dst = dst or edge.SRV_IP
    if edge.family(dst) == 4:
        return {sport: _route_get(net, sport, dport, dst, src or edge.CLI_IP, proto)
                for sport in sports}
    return _probe(net, sports, dport, dst, src or edge.CLI_IP6, proto)


def _route_get(net, sport: int, dport: int, dst: str, src: str, proto: str) -> str:
    out = edge.run(_ext(net), "ip", "route", "get", dst, "from", src, "iif", "ext-cli",
                   "ipproto", proto, "sport", str(sport), "dport", str(dport))
    dev = re.search(r"\bdev (\S+)", out)
    if not dev or not dev.group(1).startswith("ext-"):
        raise RuntimeError(f"unexpected route lookup result: {out!r}")
    return dev.group(1)[len("ext-"):]


def _probe(net, sports: list[int], dport: int, dst: str, src: str, proto: str,
           timeout: float = 3.0) -> dict[int, str]:
    """Send one IPv6 probe per source port into ext and read where each one went."""
    ext = _ext(net)
    edge.run(ext, "nft", "flush", "set", "ip6", edge.PROBE_TABLE, "seen")
    edge.run(ext, HOST_PYTHON, str(TRAFFIC), "probe", "--iface", edge.PROBE_TX,
             "--dst-mac", edge.PROBE_RX_MAC, "--src", src, "--dst", dst, "--proto", proto,
             "--dport", str(dport), "--sports", *map(str, sports))
    deadline = time.monotonic() + timeout
    while True:       # the frames cross the veth asynchronously
        seen = _probes_seen(ext)
        if set(sports) <= set(seen) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    missing = set(sports) - set(seen)
    if missing or any(not seen[s].startswith("ext-") for s in sports):
        raise RuntimeError(f"probes to {dst} left ext by {seen}, missing {sorted(missing)}")
    return {sport: seen[sport][len("ext-"):] for sport in sports}


def _probes_seen(ext) -> dict[int, str]:
    """{source port: interface} of the probes ext recorded."""
    data = json.loads(edge.run(ext, "nft", "-j", "list", "set", "ip6", edge.PROBE_TABLE, "seen"))
    elems = next(item["set"].get("elem", []) for item in data["nftables"] if "set" in item)
    pairs = [e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e for e in elems]
    return {sport: intf for intf, sport in (pair["concat"] for pair in pairs)}


def pick_sport(net, dport: int, uplink: str, dst: str | None = None,
               proto: str = "tcp") -> int:
    """A client source port the ECMP hash sends to ``uplink`` (toward ``dst``, srv by
    default); never the same port twice in one test run, so no test meets another's
    TIME_WAIT state (the hosts keep these ports out of their ephemeral range for the
    same reason).  IPv6 asks about 32 ports at a time (one probe run)."""
    batch = 32 if edge.family(dst or edge.SRV_IP) == 6 else 1
    free = [sport for sport in edge.TEST_SPORTS if sport not in _USED_SPORTS]
    for first in range(0, len(free), batch):
        uplinks = predict_uplinks(net, free[first:first + batch], dport, dst, proto=proto)
        for sport, via in uplinks.items():
            if via == uplink:
                _USED_SPORTS.add(sport)
                return sport
    raise LookupError(f"no source port in {edge.TEST_SPORTS} hashes to {uplink}")


IP_VERSIONS = ("-4", "-6")


def move_connection(net, sport: int, uplink: str, proto: str = "tcp") -> None:
    """Pin cli's ``proto`` connections from ``sport`` to ``uplink`` (an ip rule in
    ext, for both IP versions), e.g. mid-stream, as an ECMP re-hash would."""
    unmove_connection(net, sport, proto)
    for version in IP_VERSIONS:
        edge.run(_ext(net), "ip", version, "rule", "add", "priority", "100", "ipproto", proto,
                 "sport", str(sport), "lookup", str(edge.UPLINK_TABLE[uplink]))


def unmove_connection(net, sport: int, proto: str = "tcp") -> None:
    """Give ``sport`` back to the ECMP hash (idempotent)."""
    for version in IP_VERSIONS:
        for _ in range(8):
            if not _has_rule(net, version, sport, proto):
                break
            edge.run(_ext(net), "ip", version, "rule", "del", "priority", "100",
                     "ipproto", proto, "sport", str(sport))
        else:
            raise RuntimeError(f"could not remove the pinning rule for sport {sport}")


def _has_rule(net, version: str, sport: int, proto: str) -> bool:
    out = edge.run(_ext(net), "ip", version, "rule", "show", "priority", "100")
    return re.search(rf"\bipproto {proto} sport {sport}\b", out) is not None


def unmove_all(net) -> None:
    """Remove every pinning rule (test teardown)."""
    for version in IP_VERSIONS:
        for _ in range(256):
            if not edge.run(_ext(net), "ip", version, "rule", "show", "priority", "100").strip():
                break
            edge.run(_ext(net), "ip", version, "rule", "del", "priority", "100")


def set_uplinks(net, *uplinks: str) -> None:
    """Make ext's routes to the servers (IPv6 too, when ext has it) use only these
    uplinks (moves every flow of a removed uplink at once)."""
    ext = _ext(net)
    prefixes = (edge.SERVER_NET, edge.SERVER_NET6) if ext.ip6 else (edge.SERVER_NET,)
    for prefix in prefixes:
        edge.run(ext, "ip", "route", "replace", prefix,
                 *edge.uplink_nexthops(uplinks, edge.family(prefix)))


# --------------------------------------------------------------- traffic

def wait_until(check, timeout: float = 5.0, step: float = 0.05):
    """``check()``'s first true value, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met after {timeout}s")


def decisions(dport: int, src: str | None = None, dst: str | None = None) -> dict[int, int]:
    """sport -> forward data of the router's record (ct_label bits 32..63), for the
    client's connections to ``dport`` (cli to srv by default, IPv4)."""
    src, dst = src or edge.CLI_IP, dst or edge.SRV_IP
    out = {}
    for line in conntrack():
        m = re.search(rf"src={src},dst={dst},sport=(\d+),dport={dport}\)", line)
        if m and "mark=" in line:
            out[int(m.group(1))] = int(re.search(r"labels=(0x[0-9a-f]+)", line).group(1), 16) \
                >> 32 & 0xFFFFFFFF
    return out


RX_TABLE = "rx"          # nftables counters in a receiving host, before any routing


def count_received(host, sport: int, dport: int, family: int = 4) -> str:
    """Count, in ``host``, the packets of one TCP connection (by its ports) as they
    arrive, before any routing; returns the counter's name (``received`` reads it)."""
    fam, name = ("ip6" if family == 6 else "ip"), f"c{sport}_{dport}"
    edge.run(host, "nft", "add", "table", fam, RX_TABLE)
    edge.run(host, "nft", "add", "chain", fam, RX_TABLE, "pre",
             "{ type filter hook prerouting priority -300 ; }")
    edge.run(host, "nft", "add", "counter", fam, RX_TABLE, name)
    edge.run(host, "nft", "add", "rule", fam, RX_TABLE, "pre", "tcp", "sport", str(sport),
             "tcp", "dport", str(dport), "counter", "name", name)
    return name


def received(host, name: str, family: int = 4) -> int:
    return edge.nft_counters(host, "ip6" if family == 6 else "ip", RX_TABLE)[name]


def received_around(host, counter: str, serviced, move, family: int = 4,
                    drain: float = 0.4) -> tuple[int, int, int]:
    """For a stream already started: (what ``serviced()`` says after 0.8 s, packets
    received up to ``move()`` plus a drain for those already past the router, packets
    received in the 1.5 s after that)."""
    time.sleep(0.8)
    before = serviced()
    move()
    time.sleep(drain)
    at_move = received(host, counter, family)
    time.sleep(1.5)
    return before, at_move, received(host, counter, family) - at_move


def ping(net, src: str, dst: str, count: int = 3, timeout: float = 2.0) -> int:
    """Echo replies received by ``src`` host pinging ``dst`` (an address of either
    IP version)."""
    out = edge.run(net[src], "ping", f"-{edge.family(dst)}", "-n", "-c", str(count),
                   "-i", "0.2", "-W", str(timeout), dst, check=False)
    got = re.search(r"(\d+) received", out)
    return int(got.group(1)) if got else 0


class Transfer:
    """A running traffic.py client/server pair."""

    def __init__(self, client: subprocess.Popen, server: subprocess.Popen,
                 sport: int, dport: int, planned: float) -> None:
        self.client, self.server = client, server
        self.sport, self.dport, self.planned = sport, dport, planned

    def wait(self, timeout: float | None = None) -> dict:
        """The client's JSON result plus returncode and the server's lines."""
        try:
            out, err = self.client.communicate(timeout=timeout or self.planned + 30)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.client.communicate()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        result = json.loads(lines[-1]) if lines else {"result": "error", "error": "no output"}
        result["returncode"] = self.client.returncode
        if err.strip():
            result["stderr"] = err.strip()
        result["server"] = self._server_lines()
        return result

    def _server_lines(self) -> list[dict]:
        try:
            out, _ = self.server.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.server.kill()
            out, _ = self.server.communicate()
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def kill(self) -> None:
        for proc in (self.client, self.server):
            if proc.poll() is None:
                proc.kill()


def run_transfer(net, sport: int, dport: int = 5001, *, chunks: int = 30,
                 chunk_bytes: int | None = None, interval: float = 0.1,
                 echo_bytes: int = 512, client: str = "cli", server: str = "srv",
                 dst: str | None = None, proto: str = "tcp") -> Transfer:
    """Start a one-shot server in ``server`` and, once it listens, a client in
    ``client`` in the background; ``.wait()`` returns the client's result.  The IP
    version is ``dst``'s (srv's IPv4 address by default); ``proto="udp"`` sends one
    datagram per chunk (chunk_bytes: traffic.py's default for the protocol)."""
    dst = dst or edge.SRV_IP
    udp = ["--udp"] if proto == "udp" else []
    bind = "::" if edge.family(dst) == 6 else "0.0.0.0"
    srv = net[server].popen([HOST_PYTHON, str(TRAFFIC), "server", "--port", str(dport),
                             "--bind", bind, "--once", "--echo-bytes", str(echo_bytes), *udp],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The server prints nothing more until its connection ends, so this
    # readline cannot swallow output that communicate() should see later.
    ready, _, _ = select.select([srv.stdout], [], [], 5.0)
    first = srv.stdout.readline() if ready else ""
    if '"listening"' not in first:
        srv.kill()
        _, err = srv.communicate()
        raise RuntimeError(f"traffic server did not start on {server}:{dport}: {first} {err}")
    sizes = ["--chunk-bytes", str(chunk_bytes)] if chunk_bytes else []
    cli = net[client].popen([HOST_PYTHON, str(TRAFFIC), "client", "--dst", dst,
                             "--port", str(dport), "--sport", str(sport), "--chunks", str(chunks),
                             *sizes, "--interval", str(interval), *udp],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return Transfer(cli, srv, sport, dport, planned=chunks * interval)
