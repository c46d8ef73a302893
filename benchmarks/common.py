"""What every benchmark shares: the size setting, our own OVS bridges and
namespaces (created and removed by name, prefix ``bn``/``bench``), the
controller as a subprocess, and the few statistics the reports print.

Bridges here are userspace (netdev) bridges like the product's; ports are OVS
internal ports when no traffic has to cross them (OpenFlow sees them by name,
no veth needed), veths into ``bn-`` namespaces when it does.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mininet_topos.lab import Controller, free_port, ofctl, sh
from openflow_tables import layout as L

LOCK_NAME = "ryu-si-bench.lock"
QUIET_WAIT_S = {"ci": 10, "full": 60}   # longest wait for a running test suite to end
CPU_HEAVY = ("pytest",)   # processes that would skew datapath figures
_WAITING = threading.Event()   # set while wait_until_quiet waits (not measuring)


def run_main(main: Callable[[], Any]) -> None:
    """Run a benchmark's main alone on this machine, so that SIGTERM still removes
    its bridges, namespaces and processes (the context managers' exits run)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with one_run_at_a_time():
        sys.exit(main())


@contextmanager
def one_run_at_a_time() -> Iterator[None]:
    """Two benchmark runs would delete each other's bridges and namespaces (same
    names): the second waits for the first."""
    with open(Path(tempfile.gettempdir()) / LOCK_NAME, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("waiting for another benchmark run to finish ...", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def small() -> bool:
    """SI_BENCH_SCALE=ci (or small): every benchmark at its small size, < 3 min in all."""
    return os.environ.get("SI_BENCH_SCALE", "full").lower() in ("ci", "small")


def scale_name() -> str:
    return "ci" if small() else "full"


# ------------------------------------------------------------------ reporting

def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    """A plain text table: the figures and their ratios side by side."""
    cells = [header] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join([f"== {title}", lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 20 samples is the largest: say so, don't interpolate)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def median(values: list[float]) -> float:
    return statistics.median(values)


# ----------------------------------------------------------------------- host

def wait_until_quiet(log=print) -> None:
    """Datapath figures on 2 cores mean nothing next to a test suite: wait for it to end."""
    limit = QUIET_WAIT_S[scale_name()]
    deadline = time.monotonic() + limit
    if _busy():
        log("waiting for a running test suite to finish ...")
    _WAITING.set()
    try:
        while _busy():
            if time.monotonic() > deadline:
                log(f"warning: {'/'.join(CPU_HEAVY)} still running after {limit}s; "
                    "measuring anyway")
                return
            time.sleep(2)
    finally:
        _WAITING.clear()


def _busy() -> bool:
    return any(subprocess.run(["pgrep", "-f", name], capture_output=True).returncode == 0
               for name in CPU_HEAVY)


@contextmanager
def contention(every_s: float = 2.0) -> Iterator[list[bool]]:
    """Sample, while the block measures, whether a test suite competes for the CPU.

    The list it yields fills with one boolean per sample (none while
    ``wait_until_quiet`` waits); the caller reports the busy share next to its
    figures, so a skewed run says so.
    """
    samples: list[bool] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every_s):
            if not _WAITING.is_set():
                samples.append(_busy())
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def rss_mib(pid: int) -> float:
    """Resident memory of a process (VmRSS), MiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


# ------------------------------------------------------------------------ OVS

@contextmanager
def bridge(name: str, dpid: int, internal_ports: list[str] = (),
           protocols: str = "OpenFlow13", settings: tuple[str, ...] = ()) -> Iterator[str]:
    """A fail-secure userspace bridge with internal ports (OpenFlow 1.3 unless told, and
    any other bridge ``settings``); removed on exit."""
    sh("ovs-vsctl", "--if-exists", "del-br", name)
    args = ["ovs-vsctl", "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
            "fail_mode=secure", f"protocols={protocols}",
            f"other-config:datapath-id={dpid:016x}", *settings]
    for port in internal_ports:
        args += ["--", "add-port", name, port, "--", "set", "interface", port, "type=internal"]
    sh(*args, timeout=120)
    try:
        yield name
    finally:
        sh("ovs-vsctl", "--if-exists", "del-br", name, check=False, timeout=120)


def connect(bridge_name: str, of_port: int | None, probe_ms: int | None = None) -> None:
    """Point the bridge at a controller on this host (None: no controller).

    ``probe_ms``: OVS's inactivity probe (0 turns it off; None keeps OVS's 5 s).
    """
    if of_port is None:
        sh("ovs-vsctl", "del-controller", bridge_name)
        return
    probe = [] if probe_ms is None else [
        "--", "set", "controller", bridge_name, f"inactivity_probe={probe_ms}"]
    sh("ovs-vsctl", "set-controller", bridge_name, f"tcp:127.0.0.1:{of_port}", *probe)


def flow_count(bridge_name: str, *filters: str) -> int:
    """Flows the bridge holds (optionally only those matching an ovs-ofctl filter)."""
    out = ofctl("dump-aggregate", bridge_name, *filters)
    return int(re.search(r"flow_count=(\d+)", out).group(1))


def datapath_lookups() -> tuple[int, int]:
    """(hit, missed) of the userspace datapath: a miss is an upcall to the classifier."""
    out = sh("ovs-appctl", "dpctl/show", "netdev@ovs-netdev")
    got = re.search(r"lookups: hit:(\d+) missed:(\d+)", out)
    return int(got.group(1)), int(got.group(2))


def rule_filter(rule_num: int) -> str:
    """ovs-ofctl filter for the flows of one rule, whatever their content digest."""
    mask = ~L.COOKIE_DIGEST_MASK & 0xFFFFFFFFFFFFFFFF
    return f"cookie=0x{L.cookie('rule', rule_num):x}/0x{mask:x}"


def rule_cookies(bridge_name: str, rule_num: int) -> set[int]:
    """Cookies (with digests) of the flows of one rule on the bridge: a change of the
    rule shows as a change of this set."""
    out = ofctl("dump-flows", bridge_name, rule_filter(rule_num))
    return {int(c, 16) for c in re.findall(r"cookie=0x([0-9a-f]+)", out)}


def packets(bridge_name: str, *filters: str, containing: str = "") -> int:
    """Sum of n_packets over the flows matching the filters whose text has ``containing``."""
    lines = ofctl("dump-flows", bridge_name, *filters).splitlines()
    return sum(int(re.search(r"n_packets=(\d+)", line).group(1))
               for line in lines if "n_packets=" in line and containing in line)


def controller_packets(bridge_name: str) -> int:
    """Packets that flows outputting to the controller have sent (packet-ins)."""
    return packets(bridge_name, containing="CONTROLLER")


# ------------------------------------------------------------------ controller

@contextmanager
def controller(doc: dict[str, Any]) -> Iterator[Controller]:
    """``ryu-manager ryu_si.app`` loading ``doc`` at start (RYU_SI_CONFIG), stopped on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="si-bench-"))
    config = workdir / "config.json"
    config.write_text(json.dumps(doc))
    ctl = Controller(of_port=free_port(), wsapi_port=free_port(), workdir=workdir,
                     config=config)
    try:
        yield ctl
    finally:
        ctl.stop()
        sh("rm", "-rf", str(workdir))


def health(ctl: Controller) -> dict[str, Any] | None:
    """The health document, or None while REST is not up yet."""
    try:
        status, body = ctl.rest("GET", "health", timeout=5.0)
    except OSError:
        return None
    return body if status == 200 else None


def wait_for(predicate, timeout: float, what: str, poll: float = 0.2) -> float:
    """Poll until ``predicate()`` is true; the time it took (monotonic seconds)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not reached after {timeout:.0f}s")
        time.sleep(poll)
    return time.monotonic() - start


def start_installed(ctl: Controller, bridge_name: str, timeout: float = 600.0) -> None:
    """Start the controller, point the bridge at it, return once its first full
    reconcile is done (the switch layer waits for a barrier before it says so)."""
    ctl.start()
    wait_for(lambda: health(ctl) is not None, timeout, "controller REST")
    connect(bridge_name, ctl.of_port)
    wait_for(lambda: ((health(ctl) or {}).get("switches") or [{}])[0].get("last_resync"),
             timeout, "pipeline installed")
