"""REST over the running controller: every resource round-trips; bad input is a 4xx
naming the field and leaves the store and the switch's flows exactly as they were."""
from __future__ import annotations

import re

import pytest

from mininet_topos import lab as harness

pytestmark = pytest.mark.integration


def flow_set() -> list[str]:
    """The switch's flows without counters and ages: what a rejected request must not change."""
    strip = re.compile(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*, ?")
    return sorted(strip.sub("", line) for line in harness.dump_flows())


REFERENCE_FIELDS = ("router", "interface", "interface_a", "interface_b", "policy",
                    "applied_to", "biw_nodes", "match")
CREATE = [
    ("routers", {"name": "edge2", "tier": "t0", "dpid": 99}),
    ("interfaces", {"name": "down9", "router": "edge", "port": "down9", "role": "downlink",
                    "ip": "10.99.0.1/24", "mac": "02:00:00:00:99:01"}),
    ("routes", {"name": "r99", "router": "edge", "prefix": "203.0.113.0/24",
                "next_hop": "10.0.2.2", "interface": "uplink2"}),
    ("neighbors", {"name": "n99", "ip": "10.0.2.99", "mac": "02:00:00:00:02:99",
                   "interface": "uplink2"}),
    ("service-nodes", {"name": "fw9", "transport": "biw", "profile": "ids",
                       "interface_a": "biw-a", "interface_b": "biw-b"}),
    ("chains", {"name": "c9", "profiles": ["firewall", "ids"]}),
    ("policies", {"name": "p9", "biw_nodes": ["fw9"], "failure_policy": "fail"}),
    ("rules", {"name": "r9", "priority": 9, "action": "redirect", "policy": "p9",
               "match": {"ip_proto": "udp", "tp_dst": ["53", "5000-5010"]},
               "applied_to": ["uplink2"]}),
]


def test_health_reports_the_switch(controller):
    status, body = controller.rest("GET", "health")
    assert status == 200
    assert [s["dpid"] for s in body["switches"]] == [1]


@pytest.mark.parametrize("kind,body", CREATE, ids=[k for k, _ in CREATE])
def test_resource_round_trip(controller, kind, body):
    status, created = controller.rest("POST", kind, body)
    assert status == 201, created
    for k, v in body.items():
        if k not in REFERENCE_FIELDS:
            assert created[k] == v, k
    status, got = controller.rest("GET", f"{kind}/{created['id']}")
    assert status == 200 and got == created
    assert created["id"] in [o["id"] for o in controller.rest("GET", kind)[1]]
    for name in (body["name"] + "-renamed", body["name"]):
        status, changed = controller.rest("PATCH", f"{kind}/{created['id']}", {"name": name})
        assert status == 200 and changed["name"] == name and changed["id"] == created["id"]


def test_resources_delete_in_reverse_order(controller):
    """Dependents were created after what they refer to, so delete backwards."""
    for kind, body in reversed(CREATE):
        status, _ = controller.rest("DELETE", f"{kind}/{body['name']}")
        assert status == 204, (kind, _)
        assert controller.rest("GET", f"{kind}/{body['name']}")[0] == 404


BAD = [
    ("POST", "rules", {"name": "b", "priority": 5, "action": "allow", "applied_to": ["uplink1"],
                       "match": {"ipv4_src": "10.0.0.0/33"}}, 400, "match.ipv4_src"),
    ("POST", "rules", {"name": "b", "priority": 5, "action": "allow", "applied_to": ["uplink1"],
                       "colour": 1}, 400, "colour"),
    ("POST", "rules", {"name": "b", "priority": 5, "action": "allow",
                       "applied_to": ["nope"]}, 422, "applied_to"),
    ("POST", "rules", {"name": "b", "priority": 65001, "action": "allow",
                       "applied_to": ["uplink1"]}, 400, "priority"),
    ("POST", "rules", {"name": "web-inspect", "priority": 5, "action": "allow",
                       "applied_to": ["uplink1"]}, 409, "name"),
    ("POST", "rules", {"name": "b", "priority": "5", "action": "allow",
                       "applied_to": ["uplink1"]}, 400, "priority"),
    ("POST", "rules", {"name": "b", "priority": 5, "action": "allow",
                       "applied_to": ["uplink1"], "enabled": "yes"}, 400, "enabled"),
    ("POST", "rules", {"name": "b", "priority": 5, "action": "redirect",
                       "applied_to": ["uplink1"]}, 400, "policy"),
    ("POST", "rules", {"name": "b", "priority": 5, "action": "allow",
                       "applied_to": ["biw-a"]}, 400, "applied_to"),
    ("DELETE", "policies/inspect", None, 409, "rules.policy"),
    ("POST", "rules", b"{not json", 400, "body"),
    ("POST", "rules", b'{"name": "b", "priority": 5, "action": "redirect", "policy": "inspect", '
                      b'"applied_to": ["uplink1"], "action": "drop"}', 400, "action"),
    ("PATCH", "rules/web-inspect", b'{"match": {"ip_proto": "tcp", "tp_dst": 80, "tp_dst": 81}}',
     400, "match.tp_dst"),
    ("PUT", "config", b"rules:\n- {name: z, priority: 1, action: allow, applied_to: [uplink1],"
                      b" priority: 2}\n", 400, "rules[0].priority"),
    ("POST", "rules", {"name": "b", "priority": 5, "action": "allow", "router": "edge",
                       "applied_to": []}, 400, "applied_to"),
    ("PATCH", "rules/web-inspect", {"applied_to": []}, 400, "applied_to"),
    ("POST", "interfaces", {"name": "x", "router": "edge", "port": "p", "role": "uplink",
                            "ip": "10.1.1.1", "mac": "02:00:00:00:99:02"}, 400, "ip"),
    ("POST", "routes", {"router": "edge", "prefix": "10.0.0.0/8", "interface": "uplink1",
                        "next_hop": "10.0.1.999"}, 400, "next_hop"),
    ("PATCH", "rules/web-inspect", {"rule_num": 77}, 400, "rule_num"),
    ("PUT", "config", {"rules": [{"name": "z"}], "bogus": []}, 400, "config.bogus"),
    ("PUT", "config", {"rules": [{"name": "z", "priority": 1, "action": "allow",
                                  "applied_to": ["uplink1"]}], "routers": "x"}, 400, "routers"),
]


@pytest.mark.parametrize("method,path,body,status,field", BAD,
                         ids=[f"{m} {p} {f}" for m, p, _, _, f in BAD])
def test_bad_input_is_rejected_and_changes_nothing(controller, method, path, body, status,
                                                   field):
    config_before = controller.rest("GET", "config")[1]
    flows_before = flow_set()
    got_status, got = controller.rest(method, path, body)
    assert got_status == status, got
    assert got["field"] == field and got["error"]
    assert controller.rest("GET", "config")[1] == config_before
    assert flow_set() == flows_before


def test_unknown_object_is_404(controller):
    status, body = controller.rest("GET", "rules/no-such-rule")
    assert status == 404 and body["field"] == "id"
