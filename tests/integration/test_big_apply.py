"""A whole-config PUT of a big rule base to a running controller whose switch is
connected with OVS's default inactivity probe (5 s idle, then 5 s for the echo reply):
the check and compile take longer than that, beside the controller's green threads, so
the switch stays connected and /health keeps answering, with the objects it replaces
until the change is stored.  Real OVS; the benchmarks' generated rule base."""
from __future__ import annotations

import threading
import time

import pytest

from benchmarks import common, datapath, scale
from benchmarks.workload import Edge
from openflow_tables import layout as L

pytestmark = pytest.mark.integration
RULES, IFACES = 30_000, 64
BRIDGE = "si-bigput"
MAX_GAP_S = 3.0          # the longest /health may go unanswered during the change


@pytest.fixture(scope="module")
def edge() -> Edge:
    return Edge(datapath.PORTS.prefix, IFACES, datapath.DPID)


@pytest.fixture(scope="module")
def controller(edge):
    """The controller holding the topology and no generated rule, its switch connected
    with OVS's default probe."""
    internal = [p for p in edge.all_ports() if p not in (datapath.CLI.port, datapath.SRV.port)]
    with common.bridge(BRIDGE, datapath.DPID, internal), \
            common.controller(datapath.config(edge, 0)) as ctl:
        common.start_installed(ctl, BRIDGE)
        yield ctl


def health_answers(ctl, stop: threading.Event) -> list[tuple[float, dict]]:
    """/health while the change runs: (when answered, the document)."""
    answers = []
    while not stop.is_set():
        body = common.health(ctl)
        if body is not None:
            answers.append((time.monotonic(), body))
        time.sleep(0.1)
    return answers


def test_a_big_put_keeps_the_switch_connected_and_health_answering(controller, edge):
    stop, answers = threading.Event(), []
    poller = threading.Thread(target=lambda: answers.extend(health_answers(controller, stop)))
    poller.start()
    started = time.monotonic()
    try:
        status, body = controller.rest("PUT", "config", datapath.config(edge, RULES),
                                       timeout=300.0)
    finally:
        took = time.monotonic() - started
        stop.set()
        poller.join()
    print(f"PUT /config of {RULES:,} rules x {IFACES} interfaces: {took:.1f} s, "
          f"{len(answers)} /health answers")
    assert status == 200, body
    assert scale.connects(controller) == 1
    assert "switch_disconnected" not in controller.log_path.read_text(errors="replace")
    times = [started] + [t for t, _ in answers if t < started + took] + [started + took]
    assert max(b - a for a, b in zip(times, times[1:])) < MAX_GAP_S
    checking = [h for _, h in answers if h["change"]["phase"] in ("validating", "compiling")]
    assert checking and all(h["objects"]["rules"] == 1 for h in checking)   # the old model
    assert common.flow_count(BRIDGE, f"table={L.table_id('classify')}") >= RULES
