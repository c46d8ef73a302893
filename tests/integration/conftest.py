"""Fixtures for the integration tests: the edge network and the controller.

Without root or Open vSwitch these tests are skipped with the reason, except
under CI=true, where a missing prerequisite is a failure: CI must not go green
by testing nothing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mininet_topos import lab as harness


def pytest_configure(config) -> None:
    # Mininet 2.3 compares OVS versions with distutils; not ours to fix.
    config.addinivalue_line(
        "filterwarnings", "ignore:distutils Version classes are deprecated:DeprecationWarning")


def prerequisite_problem() -> str | None:
    """Why this machine cannot run the integration tests, or None."""
    if os.geteuid() != 0:
        return "integration tests need root (namespaces, veths, Open vSwitch)"
    if shutil.which("ovs-vsctl") is None:
        return "ovs-vsctl not found (install openvswitch-switch)"
    if subprocess.run(["ovs-vsctl", "--timeout=5", "show"],
                      capture_output=True).returncode:
        return "Open vSwitch is not running (make ovs-start)"
    if harness.edge is None:
        return f"mininet is not importable: {harness.EDGE_IMPORT_ERROR}"
    missing = [t for t in ("ip", "ethtool", "nft", "ovs-ofctl", "mnexec")
               if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    return None


@pytest.fixture(scope="session", autouse=True)
def integration_prerequisites() -> None:
    problem = prerequisite_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the integration prerequisites are missing: {problem}",
                    pytrace=False)
    pytest.skip(f"integration tests skipped: {problem}")


@pytest.fixture(scope="module")
def of_port() -> int:
    """OpenFlow port for this module's switch and controller: a free port,
    so a developer's controller on 6653 never grabs the test switch."""
    return harness.free_port()


@pytest.fixture(scope="module")
def edge_net(of_port: int):
    """A fresh edge network per test module.  start_edge() first removes what
    a crashed earlier run of this topology left (and only that)."""
    harness.flush_conntrack()   # a stale entry with a reused 5-tuple would read as +inv
    net = harness.edge.start_edge(controller_port=of_port)
    try:
        yield net
    finally:
        harness.edge.stop_edge(net)


@pytest.fixture(scope="module")
def controller_config() -> str | Path | None:
    """Config document for the controller; override in a test module."""
    return None


@pytest.fixture(scope="module")
def controller_app() -> str:
    """Ryu application the controller fixture runs; override in a test module."""
    return "ryu_si.app"


@pytest.fixture(scope="module")
def controller(edge_net, of_port: int, controller_config, controller_app, tmp_path_factory):
    """ryu-manager running the app, connected to this module's switch (its
    store and log live in a pytest temp dir, kept for post-mortems)."""
    ctl = harness.Controller(of_port=of_port, wsapi_port=harness.free_port(),
                             workdir=tmp_path_factory.mktemp("controller"),
                             config=controller_config, app=controller_app)
    ctl.start()
    try:
        ctl.wait_ready()
        yield ctl
    finally:
        ctl.stop()
