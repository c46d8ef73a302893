"""Module fixtures for the tests that run the three-transport example: import both
names into a test module to replace conftest's edge network and default config."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from mininet_topos import lab as harness
from mininet_topos import service_plane as sp


@pytest.fixture(scope="module")
def controller_config() -> Path:
    return Path(str(resources.files("ryu_si").joinpath("examples/three_transports.yaml")))


@pytest.fixture(scope="module")
def edge_net(of_port: int):
    """The edge topology plus service plane, L3 node and remote network."""
    harness.flush_conntrack()
    net = sp.start_full(controller_port=of_port)
    try:
        yield net
    finally:
        sp.stop_full(net)


def split_rule(ctl, name: str, policy: str, match: dict) -> None:
    """A redirect of ``match`` at uplink1 only (``name``), and a drop of the same traffic
    at uplink2 (``name``-drop-up2): what moving a connection between them must honour."""
    for body in ({"name": name, "priority": 100, "action": "redirect", "policy": policy,
                  "match": match, "applied_to": ["uplink1"]},
                 {"name": f"{name}-drop-up2", "priority": 110, "action": "drop",
                  "match": match, "applied_to": ["uplink2"]}):
        status, answer = ctl.rest("POST", "rules", body)
        assert status == 201, (body, status, answer)
