"""The interpreter confirmed by the switch: ``POST /trace`` runs the packet through the
interpreter on the compiled pipeline, and with ``confirm`` through the edge bridge's
flows with ``ovs-appctl ofproto/trace``, and compares the two walks: the tables
crossed, the rule the classify flow's cookie names, the policy group, the output port
or drop (up to a select group, where the switch's trace stops at its datapath hash).

A grid of packets (three interfaces, tcp/udp/icmp, ports that hit every kind of
rule: single port, port range, conjunction of prefix list x port list, drop, the
default rule) and seeded random packets (any interface of the router, addresses
that route, miss a neighbor or do not route at all) must agree.  A switch that lost
a rule's flows behind the controller's back must be caught.
"""
from __future__ import annotations

import itertools
import json
import random
import shlex
import subprocess
import sys

import pytest

from mininet_topos import lab as harness
from ryu_si.diagnose import ofproto_trace

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
# For the megaflow tests (no grid packet hits them): rules with a source and a
# destination prefix and no port on both uplinks, one of them around the server, and a
# port rule's /24 around another destination.
MEGAFLOW_RULES = (
    {"name": "pair-wide", "priority": 140, "action": "drop",
     "match": {"ip_proto": "tcp", "ipv4_src": "198.51.100.0/24", "ipv4_dst": "10.20.0.0/16"},
     "applied_to": ["uplink1"]},
    {"name": "pair-server", "priority": 140, "action": "drop",
     "match": {"ip_proto": "tcp", "ipv4_src": "192.0.2.0/24", "ipv4_dst": "10.10.0.0/24"},
     "applied_to": ["uplink2"]},
    {"name": "pair-other", "priority": 140, "action": "drop",
     "match": {"ip_proto": "tcp", "ipv4_src": "198.51.100.0/24", "ipv4_dst": "10.30.0.0/24"},
     "applied_to": ["uplink2"]},
    {"name": "port-near", "priority": 130, "action": "drop",
     "match": {"ip_proto": "udp", "ipv4_dst": "10.0.1.0/24", "tp_dst": 9999},
     "applied_to": ["uplink2"]},
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


CLIENTS6 = ("2001:db8:5100::10", "2001:db8:cb00::9")
SERVER6 = "2001:db8:10::10"
V6_RULE = {"name": "v6-conj", "priority": 160, "action": "drop",
           "match": {"ip_proto": "tcp", "ipv6_src": ["2001:db8:5100::/64", "2001:db8:cb00::/48"],
                     "tp_dst": [3050, 4000]}, "applied_to": ["uplink2"]}


def packets6() -> list[dict]:
    """The grid's IPv6 image: in at both uplinks toward the server, and back out."""
    out = []
    for iface, client, (proto, dport) in itertools.product(
            ("uplink1", "uplink2"), CLIENTS6,
            (("tcp", 80), ("tcp", 8080), ("tcp", 23), ("tcp", 3050), ("tcp", 5001),
             ("udp", 6050), ("udp", 53), ("icmpv6", None))):
        ports = {} if dport is None else {"tp_src": 40000, "tp_dst": dport}
        out.append({"interface": iface, "ip_proto": proto, "ipv6_src": client,
                    "ipv6_dst": SERVER6, **ports})
    out += [{"interface": "downlink1", "ip_proto": "tcp", "ipv6_src": SERVER6,
             "ipv6_dst": CLIENTS6[0], "tp_src": p, "tp_dst": 40000} for p in (80, 22)]
    return out


RANDOM_PACKETS, SEED = 50, 10
INTERFACES = ("uplink1", "uplink2", "downlink1", "biw-a", "biw-b")
ADDRESSES = (*CLIENTS, SERVER, "10.10.0.77", "10.0.1.1", "10.0.2.9", "192.0.2.1",
             "203.0.113.9", "198.51.100.99")
PORTS = (22, 23, 53, 80, 443, 3000, 3050, 3100, 4000, 5001, 6000, 6050, 6100, 8080)


def random_packets(n: int = RANDOM_PACKETS, seed: int = SEED) -> list[dict]:
    """Random 5-tuples on random interfaces (seeded: a failure names its packet); half
    of them from outside toward the server, where the rules are."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        proto = rng.choice(("tcp", "tcp", "tcp", "udp", "udp", "icmp", 47))
        src, dst = (rng.choice((*CLIENTS, "203.0.113.9")), SERVER) if k % 2 else \
            rng.sample(ADDRESSES, 2)
        p = {"interface": rng.choice(INTERFACES[:2] if k % 2 else INTERFACES),
             "ip_proto": proto, "ipv4_src": src, "ipv4_dst": dst}
        if proto in ("tcp", "udp"):
            p.update(tp_src=rng.choice((40000, rng.randint(1, 65535))),
                     tp_dst=rng.choice((*PORTS, rng.randint(1, 65535))))
        out.append(p)
    return out


@pytest.fixture(scope="module")
def traced(controller):
    for rule in (*EXTRA_RULES, *MEGAFLOW_RULES, V6_RULE):
        status, body = controller.rest("POST", "rules", rule)
        assert status == 201, body
    return controller


def confirm(ctl, body: dict) -> dict:
    status, result = ctl.rest("POST", "trace", {**body, "confirm": True})
    assert status == 200, result
    return result


def test_the_switch_walks_the_grid_as_the_interpreter_does(traced):
    results = [confirm(traced, p) for p in packets()]
    bad = [(p, r["confirmed"], r["walk"]) for p, r in zip(packets(), results)
           if not r["confirmed"]["agrees"]]
    assert bad == []
    rules = {r["rule"]["name"] for r in results if r["rule"]}
    assert {"web-inspect", "alt-web-uplink1", "no-telnet", "default", *(
        r["name"] for r in EXTRA_RULES)} <= rules
    outcomes = {r["outcome"] for r in results}
    assert outcomes == {"redirect", "allow", "drop"}
    assert all(r["confirmed"]["rule_num"] == r["rule"]["rule_num"] for r in results)
    print(f"trace: {len(results)} packets confirmed by ofproto/trace; rules {sorted(rules)}")


def test_the_switch_walks_the_ipv6_grid_as_the_interpreter_does(traced):
    """IPv6 packets: the family-less rules, an IPv6 conjunction, drops, the default rule,
    routed by IPv6 prefixes (the clients' numbered next hop, the server's own address)."""
    sent = packets6()
    results = [confirm(traced, p) for p in sent]
    bad = [(p, r["confirmed"], r["walk"]) for p, r in zip(sent, results)
           if not r["confirmed"]["agrees"]]
    assert bad == []
    rules = {r["rule"]["name"] for r in results if r["rule"]}
    assert {"web-inspect", "alt-web-uplink1", "no-telnet", "default", "v6-conj"} <= rules
    assert {r["outcome"] for r in results} == {"redirect", "allow", "drop"}
    print(f"trace: {len(results)} IPv6 packets confirmed by ofproto/trace")


def test_the_switch_walks_random_packets_as_the_interpreter_does(traced):
    sent = random_packets()
    results = [confirm(traced, p) for p in sent]
    bad = [(p, r["confirmed"], r["walk"]) for p, r in zip(sent, results)
           if not r["confirmed"]["agrees"]]
    assert bad == []
    # Walked whole by the switch: no select group hashing in the datapath, and no
    # transit lookup of the packet's own record (ofproto/trace runs no conntrack).
    whole = [r for r in results if not r["confirmed"]["datapath_actions"][-1].startswith("hash(")
             and ofproto_trace.record_blind_at(r["tables"]) is None]
    assert all(r["confirmed"]["tables"] == r["tables"] for r in whole)
    fates = {r["egress"] or ("controller" if r["tables"][-1] == "neighbor" else "drop")
             for r in results}
    print(f"trace: {len(results)} random packets (seed {SEED}) confirmed; {len(whole)} walked "
          f"whole by the switch; fates {sorted(fates)}")
    assert {"biw-a", "downlink1", "drop"} <= fates


def _megaflows(ctl, packet: dict) -> list[str]:
    """The megaflows the switch's trace of the packet installs (one per datapath pass)."""
    command = confirm(ctl, packet)["confirmed"]["command"]
    out = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30)
    return [line for line in out.stdout.splitlines() if line.startswith("Megaflow:")]


def _source_bits(ctl, iface: str, dst: str, port: int) -> bool:
    megaflows = _megaflows(ctl, {"interface": iface, "ip_proto": "tcp", "ipv4_src": CLIENTS[0],
                                 "ipv4_dst": dst, "tp_src": 40000, "tp_dst": port})
    assert len(megaflows) >= 2, megaflows
    return any("nw_src" in m for m in megaflows)


def test_a_port_no_source_rule_names_costs_the_megaflow_no_source_bits(traced):
    """The port is checked in OVS's register stage, before the addresses: a connection
    to a port no rule with a source prefix names has one megaflow for every source, so
    new connections from new sources are not upcalls.  A port such a rule names
    (conj-ssh-ish: 3000-3100) needs the source bits, and they are there.  The server is
    inside pair-server's destination, so pair-wide (uplink1) is looked at: its /16
    cannot match, and dst_named's lookup un-wildcarded the destination bits that say
    so (to pair-server's /24), so OVS skips it without walking its source trie."""
    assert not _source_bits(traced, "uplink1", SERVER, 5001)
    assert _source_bits(traced, "uplink1", SERVER, 3050)


def test_a_destination_no_source_rule_names_costs_the_megaflow_no_source_bits(traced):
    """pair-other and pair-server (uplink2) cannot match 10.0.1.1, but port-near's /24
    holds it: a subtable of /24 destinations could match as far as the destination
    trie knows, and its source trie would be walked.  dst_named says the destination
    is in no destination prefix of theirs, so they are turned away in the register
    stage.  To the server (inside pair-server's /24) they are looked at."""
    assert not _source_bits(traced, "uplink2", "10.0.1.1", 5001)
    assert _source_bits(traced, "uplink2", SERVER, 5001)


def test_the_cli_confirms_with_the_switch(traced):
    cmd = [sys.executable, "-m", "ryu_si.api.cli", "--url", traced.base_url, "trace",
           "--iface", "uplink1", "--src", CLIENTS[0], "--dst", SERVER, "--sport", "40000",
           "--dport", "3050", "--confirm"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "rule      conj-ssh-ish" in done.stdout
    assert "switch    agrees (rule_num" in done.stdout


def test_an_arp_miss_asks_for_the_next_hop_routing_chose(traced, edge_net):
    """Without its static neighbor entry the server is resolved from the ARP miss's
    packet-in (the registers routing left: router, egress interface, next hop) and
    learned from its reply."""
    status, _ = traced.rest("DELETE", "neighbors/srv")
    assert status == 204
    assert harness.ping(edge_net, "cli", SERVER, count=5) >= 3
    log = traced.log_path.read_text()
    assert "neighbor_learned ip=10.10.0.10" in log and "interface=downlink1" in log
    assert "packet_in_ignored" not in log


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
    assert f"rule: interpreter {rule['rule_num']}, switch 0" in got["disagreements"]
    assert "output: interpreter none, switch OpenFlow ports [" in " ".join(
        got["disagreements"])
