"""The model's trace confirmed by the switch: ``POST /trace`` with ``confirm`` runs
``ovs-appctl ofproto/trace`` on the edge bridge and compares rule, policy, output.

A grid of packets (three interfaces, tcp/udp/icmp, ports that hit every kind of
rule: single port, port range, conjunction of prefix list x port list, drop, the
default rule) must agree.  A switch that lost a rule's flows behind the
controller's back must be caught.
"""
from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest

from mininet_topos import lab as harness

pytestmark = pytest.mark.integration
CLIENTS = ("198.51.100.10", "198.51.100.200")       # inside / outside the /25 below
SERVER = "10.10.0.10"
EXTRA_RULES = (
    {"name": "conj-ssh-ish", "priority": 150, "action": "redirect", "policy": "inspect",
     "match": {"ip_proto": "tcp", "ipv4_src": ["198.51.100.0/25", "203.0.113.0/24"],
               "tp_dst": ["3000-3100", 4000]}, "applied_to": ["uplink1"]},
    {"name": "udp-range-drop", "priority": 120, "action": "drop",
     "match": {"ip_proto": "udp", "tp_dst": "6000-6100"}, "applied_to": ["uplink1", "uplink2"]},
)


def packets() -> list[dict]:
    """Entering on an uplink toward the server, and from the server back out."""
    out = []
    for iface, client, (proto, dport) in itertools.product(
            ("uplink1", "uplink2"), CLIENTS,
            (("tcp", 80), ("tcp", 8080), ("tcp", 23), ("tcp", 3050), ("tcp", 4000),
             ("tcp", 5001), ("udp", 6050), ("udp", 53), ("icmp", None))):
        ports = {} if dport is None else {"tp_src": 40000, "tp_dst": dport}
        out.append({"interface": iface, "ip_proto": proto, "ipv4_src": client,
                    "ipv4_dst": SERVER, **ports})
    out += [{"interface": "downlink1", "ip_proto": "tcp", "ipv4_src": SERVER,
             "ipv4_dst": c, "tp_src": p, "tp_dst": 40000} for c in CLIENTS for p in (80, 22)]
    return out


@pytest.fixture(scope="module")
def traced(controller):
    for rule in EXTRA_RULES:
        status, body = controller.rest("POST", "rules", rule)
        assert status == 201, body
    return controller


def confirm(ctl, body: dict) -> dict:
    status, result = ctl.rest("POST", "trace", {**body, "confirm": True})
    assert status == 200, result
    return result


def test_the_switch_confirms_every_model_trace(traced):
    results = [confirm(traced, p) for p in packets()]
    bad = [(p, r["confirmed"]) for p, r in zip(packets(), results)
           if not r["confirmed"]["agrees"]]
    assert bad == []
    rules = {r["rule"]["name"] for r in results if r["rule"]}
    assert {"web-inspect", "alt-web-uplink1", "no-telnet", "default", *(
        r["name"] for r in EXTRA_RULES)} <= rules
    outcomes = {r["outcome"] for r in results}
    assert outcomes == {"redirect", "allow", "drop"}
    assert all(r["confirmed"]["rule_num"] == r["rule"]["rule_num"] for r in results)
    print(f"trace: {len(results)} packets confirmed by ofproto/trace; rules {sorted(rules)}")


def test_the_cli_confirms_with_the_switch(traced):
    cmd = [sys.executable, "-m", "ryu_si.cli", "--url", traced.base_url, "trace",
           "--iface", "uplink1", "--src", CLIENTS[0], "--dst", SERVER, "--sport", "40000",
           "--dport", "3050", "--confirm"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "rule      conj-ssh-ish" in done.stdout
    assert "switch    agrees (rule_num" in done.stdout


def test_a_switch_that_lost_a_rule_is_caught(traced):
    """Last in the module: it leaves the switch without one rule's flows."""
    status, rule = traced.rest("GET", "rules/no-telnet")
    assert status == 200
    cookie = f"0x5106{rule['rule_num']:06x}000000/0xffffffffff000000"
    harness.sh("ovs-ofctl", "-O", "OpenFlow13", "del-flows", "edge",
               f"table=classify,cookie={cookie}")
    result = confirm(traced, {"interface": "uplink1", "ip_proto": "tcp",
                              "ipv4_src": CLIENTS[0], "ipv4_dst": SERVER, "tp_src": 40000,
                              "tp_dst": 23})
    got = result["confirmed"]
    assert not got["agrees"], json.dumps(got)
    assert f"rule: model {rule['rule_num']}, switch 0" in got["disagreements"]
    assert "outcome: model drop" in " ".join(got["disagreements"])
