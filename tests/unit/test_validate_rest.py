"""Bad input through the REST layer (Ryu's WSGI routing, the handlers, the service):
a 4xx naming the field, nothing stored, nothing already stored lost."""
from __future__ import annotations

import dataclasses
import inspect
import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
import webob
import yaml
from ryu.app.wsgi import WSGIApplication

from openflow_tables import layout as L
from si_model import model as m
from ryu_si.api import rest
from ryu_si.control import service as service_module
from si_model import validate as v
from ryu_si.control.config import default_document
from ryu_si.api.metrics import Metrics
from ryu_si.api.openapi import BASE, routes_of
from ryu_si.api.rest import APP_KEY, SIFallbackController, SIRestController
from ryu_si.control.service import Service
from ryu_si.control.store import Store
from si_model.validate import ValidationError
from tests.unit.test_openapi import _example, _three_transports

GOOD_RULE = {"name": "ssh", "priority": 50, "action": "allow", "applied_to": ["uplink1"],
             "match": {"ip_proto": "tcp", "tp_dst": 22}}
BODY_METHODS = {"POST", "PUT", "PATCH"}


class Api:
    """Requests through the same WSGI application ryu-manager serves."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.wsgi = WSGIApplication()
        app = SimpleNamespace(service=service)
        app.metrics = Metrics(app)
        self.wsgi.register(SIRestController, {APP_KEY: app})
        self.wsgi.register(SIFallbackController, {APP_KEY: app})

    def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        raw = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        req = webob.Request.blank(f"{BASE}/{path}", method=method,
                                  body=raw.encode() if isinstance(raw, str) else raw or b"")
        resp = req.get_response(self.wsgi)
        return resp.status_int, json.loads(resp.body) if resp.body else None


@pytest.fixture
def api(service, monkeypatch) -> Api:
    monkeypatch.delenv("RYU_SI_TOKEN", raising=False)
    return Api(service)


def unchanged(api: Api, before: m.Model, stored: m.Model) -> bool:
    return api.service.model == before and api.service.store.load()[0] == stored


def refused(api: Api, method: str, path: str, body: Any) -> dict:
    """Send a bad request; it must change neither the model nor the store."""
    before, stored = api.service.model.copy(), api.service.store.load()[0]
    status, answer = api(method, path, body)
    assert 400 <= status < 500, (status, answer)
    assert answer["status"] == status
    assert unchanged(api, before, stored)
    return {"status": status, **answer}


# --- duplicated keys ------------------------------------------------------------------
def test_a_duplicated_action_is_refused_not_last_wins(api):
    body = ('{"name": "ssh", "priority": 50, "action": "redirect", "policy": "inspect", '
            '"applied_to": ["uplink1"], "action": "drop"}')
    err = refused(api, "POST", "rules", body)
    assert (err["status"], err["field"]) == (400, "action")
    assert 'duplicate key "action"' in err["error"]
    assert api.service.model.by_name("rules", "ssh") is None


def test_a_duplicated_key_deep_in_a_body_names_its_path(api):
    body = ('{"name": "ssh", "priority": 50, "action": "allow", "applied_to": ["uplink1"], '
            '"match": {"ip_proto": "tcp", "tp_dst": 22, "tp_dst": 23}}')
    err = refused(api, "POST", "rules", body)
    assert (err["status"], err["field"]) == (400, "match.tp_dst")
    assert 'duplicate key "tp_dst"' in err["error"]


def test_a_patch_with_a_duplicated_key_keeps_the_stored_rule(api):
    rule = m.to_dict(api.service.find("rules", "no-telnet"))
    err = refused(api, "PATCH", "rules/no-telnet",
                  '{"action": "allow", "priority": 7, "action": "drop"}')
    assert err["field"] == "action"
    assert m.to_dict(api.service.find("rules", "no-telnet")) == rule


def _document_text(fmt: str) -> str:
    doc = default_document()
    if fmt == "json":
        text, once, twice = json.dumps(doc), '"tp_dst": 23', '"tp_dst": 23, "tp_dst": 24'
    else:
        text, once = yaml.safe_dump(doc, sort_keys=False), "    tp_dst: 23\n"
        twice = once + "    tp_dst: 24\n"
    assert text.count(once) == 1
    return text.replace(once, twice)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_a_config_document_with_a_duplicated_key_is_refused_whole(api, fmt):
    api("POST", "rules", GOOD_RULE)
    text = _document_text(fmt)
    index = [r["name"] for r in default_document()["rules"]].index("no-telnet")
    err = refused(api, "PUT", "config", text)
    assert (err["status"], err["field"]) == (400, f"rules[{index}].match.tp_dst")
    assert api.service.model.by_name("rules", "ssh") is not None   # nothing stored is lost


def test_a_duplicated_key_in_a_list_of_objects_names_the_item(api):
    doc = json.dumps(default_document()).replace(
        '"name": "uplink2"', '"name": "uplink2", "name": "uplink3"')
    err = refused(api, "PUT", "config", doc)
    assert err["field"] == "interfaces[1].name"


def test_yaml_merge_keys_may_still_be_overridden(api):
    merged = ("rules:\n- &base {name: r1, priority: 10, action: allow, applied_to: [uplink1]}\n"
              "- {<<: *base, name: r2}\n")
    doc = yaml.safe_dump({k: x for k, x in default_document().items() if k != "rules"})
    status, answer = api("PUT", "config", doc + merged)
    assert status == 200, answer
    assert api.service.find("rules", "r2").priority == 10


def _fill(path: str, api: Api) -> str:
    """A concrete path for a route template: an existing object of the kind."""
    kind = path[len(BASE) + 1:].split("/")[0]
    if "{spi}" in path:
        spi = next(p.spi for ps in api.service.paths.values() for p in ps)
        return path.replace("{spi}", str(spi))
    if "{ref}" in path:
        return path.replace("{ref}", api.service.model.all(kind)[0].id)
    return path


def test_every_body_the_api_parses_refuses_duplicated_keys(tmp_path, monkeypatch):
    """Every route that takes a body, found from the routes really served (a new one is
    covered without editing this test)."""
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    svc.replace_config({**_three_transports(),
                        "service-planes": [{"name": "spare", "routers": ["edge"]}]})
    monkeypatch.delenv("RYU_SI_TOKEN", raising=False)
    api = Api(svc)
    routes = sorted((meth, path) for meth, path in routes_of(SIRestController)
                    if meth in BODY_METHODS)
    assert len(routes) >= 3 * len(m.KINDS)
    for method, template in routes:
        path = _fill(template, api)[len(BASE) + 1:]
        err = refused(api, method, path, '{"name": "a", "nested": {"k": 1, "k": 2}}')
        assert (err["status"], err["field"]) == (400, "nested.k"), (method, path, err)


# --- applied_to: [] -------------------------------------------------------------------
@pytest.mark.parametrize("extra", [{}, {"router": "edge"}])
def test_an_empty_applied_to_is_refused_on_post(api, extra):
    err = refused(api, "POST", "rules", {**GOOD_RULE, **extra, "applied_to": []})
    assert (err["status"], err["field"]) == (400, "applied_to")
    assert "non-empty list" in err["error"]


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_an_empty_applied_to_is_refused_on_update(api, method):
    err = refused(api, method, "rules/no-telnet", {"applied_to": []})
    assert (err["status"], err["field"]) == (400, "applied_to")
    assert api.service.find("rules", "no-telnet").applied_to


def test_an_empty_applied_to_is_refused_in_a_config_document(api):
    doc = default_document()
    doc["rules"][1]["applied_to"] = []
    err = refused(api, "PUT", "config", doc)
    assert (err["status"], err["field"]) == (400, "rules[1].applied_to")


def test_the_schema_says_applied_to_is_non_empty():
    assert v.SCHEMAS["rules"]["applied_to"][0].schema["minItems"] == 1


# --- capacity -------------------------------------------------------------------------
def _uplinks(count: int) -> list[dict]:
    return [{"name": f"u{n}", "router": "edge", "port": f"pu{n}", "role": "uplink",
             "ip": f"10.{100 + n // 200}.{n % 200}.1/24",
             "mac": f"02:00:00:{n // 256:02x}:{n % 256:02x}:77"} for n in range(count)]


def test_too_many_applied_to_sets_is_a_409_naming_the_limit(api):
    doc = default_document()
    doc["interfaces"] += _uplinks(8)
    sets = [[f"u{b}" for b in range(8) if n >> b & 1] for n in range(1, 256)]
    existing = len({frozenset(r["applied_to"]) for r in doc["rules"]})
    doc["rules"] += [{"name": f"r{n}", "priority": 10, "action": "allow", "applied_to": s}
                     for n, s in enumerate(sets[:L.APPLIED_TO_BITS - existing])]
    status, answer = api("PUT", "config", doc)
    assert status == 200, answer
    err = refused(api, "POST", "rules", {**GOOD_RULE, "applied_to": sets[-1]})
    assert (err["status"], err["field"]) == (409, "applied_to")
    assert f"limit is {L.APPLIED_TO_BITS}" in err["error"] and "applied_to sets" in err["error"]
    ok = api("POST", "rules", {**GOOD_RULE, "applied_to": sets[0]})   # an existing set
    assert ok[0] == 201, ok


def test_too_many_interface_classes_is_a_409_naming_the_limit(api):
    """Eight applied_to sets, but interfaces in 129 distinct combinations of them."""
    count = L.MAX_CLASSES + 1
    doc = default_document()
    doc["interfaces"] += _uplinks(count)
    doc["rules"] += [{"name": f"bit{b}", "priority": 10, "action": "allow",
                      "applied_to": [f"u{n}" for n in range(count) if n >> b & 1]}
                     for b in range(8)]
    err = refused(api, "PUT", "config", doc)
    assert (err["status"], err["field"]) == (409, "applied_to")
    assert f"limit is {L.MAX_CLASSES}" in err["error"]
    assert "interface classes" in err["error"]


def test_the_compilers_class_limit_is_a_409_through_rest(api, monkeypatch):
    """A limit only the trial compile finds still answers 409 naming the limit, and
    stores nothing."""
    monkeypatch.setattr(L, "MAX_CLASSES", 2)   # the compiler reads it, validate has its own
    doc = default_document()
    doc["interfaces"] += _uplinks(3)
    doc["rules"] += [{"name": "one", "priority": 10, "action": "allow", "applied_to": ["u1"]},
                     {"name": "two", "priority": 10, "action": "allow", "applied_to": ["u2"]}]
    err = refused(api, "PUT", "config", doc)
    assert err["status"] == 409
    assert "limit is 2 per router" in err["error"]


# --- nouns ----------------------------------------------------------------------------
def test_every_kind_has_a_singular_noun():
    assert set(v.NOUNS) == set(m.KINDS)
    assert v.noun("policies") == "policy" and v.noun("service-nodes") == "service node"


def test_messages_name_kinds_in_the_singular(api):
    err = refused(api, "POST", "rules", {**GOOD_RULE, "action": "redirect", "policy": "nope"})
    assert err["error"] == "unknown policy 'nope'"
    err = refused(api, "GET", "policies/nope", None)
    assert (err["status"], err["error"]) == (404, "no policy 'nope'")
    err = refused(api, "DELETE", "policies/inspect", None)
    assert err["status"] == 409 and err["error"].startswith("policy 'inspect' is still used "
                                                            "by rule ")
    err = refused(api, "POST", "policies", {"name": "inspect", "biw_nodes": ["fw1"]})
    assert err["error"] == "policy name 'inspect' is already used"


def test_no_message_cuts_a_kind_to_make_it_singular():
    """The bug class: ``kind[:-1]`` made 'policie' and 'service-node'."""
    for module in (rest, service_module, v):
        src = inspect.getsource(module)
        assert not re.search(r"(kind|other)\[:-1\]|rstrip\(.s.\)", src), module.__name__


def test_null_clears_an_optional_field_and_is_refused_on_a_required_one(service):
    """A redirect rule PATCHed to drop sheds its policy with "policy": null (null used to
    be ignored, so the change was refused); a required field cannot be nulled."""
    rule = service.update("rules", "web-inspect", {"action": "drop", "policy": None})
    assert (rule.action, rule.policy) == ("drop", None)
    with pytest.raises(ValidationError) as err:
        service.update("rules", "web-inspect", {"priority": None})
    assert err.value.field == "priority"
    assert service.find("rules", "web-inspect").priority == 100


@pytest.mark.parametrize("config", ["three_transports.yaml", "tenants.yaml"])
def test_nulling_any_optional_field_of_any_stored_object_is_a_4xx_or_a_stored_change(
        tmp_path, config):
    """The bug class: a field without a dataclass default (a route's name) was set to
    dataclasses.MISSING by ``null`` and the store failed to serialise it (a 500).  Every
    optional field of every object is nulled in turn: a refusal names the field, or the
    stored object round-trips through the store."""
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    svc.replace_config(_example(config))
    tried = 0
    for kind, schema in v.SCHEMAS.items():
        for obj in list(svc.model.all(kind)):
            for f, (_, required) in schema.items():
                if required:
                    continue
                tried += 1
                try:
                    stored = svc.update(kind, obj.id, {f: None})
                except ValidationError as err:
                    assert 400 <= err.status < 500 and err.field, (kind, f)
                    continue
                assert json.loads(json.dumps(m.fields_of(stored)))["id"] == obj.id
                assert getattr(stored, f) is not dataclasses.MISSING, (kind, f)
                reopened = Service(Store(str(tmp_path / "si.sqlite")))
                assert m.fields_of(reopened.model.get(kind, obj.id)) == m.fields_of(stored)
    assert tried > 100


@pytest.mark.parametrize("method,path,body,status,field", [
    # a field another transport reads would be stored and ignored
    ("PATCH", "service-nodes/fw1", {"port": "p9"}, 400, "port"),
    ("PATCH", "service-nodes/fw1", {"next_hop": "10.0.1.9"}, 400, "next_hop"),
    ("PATCH", "service-nodes/fw1", {"host": "h1"}, 400, "host"),
    ("PATCH", "service-nodes/fw1", {"nsh_aware": True}, 400, "nsh_aware"),
    # flow programming: drop_message acts on one in-band packet only
    ("POST", "flow-programming", {"ip_proto": "tcp", "ipv4_src": "198.51.100.1",
                                  "ipv4_dst": "10.10.0.10", "tp_src": 1, "tp_dst": 2,
                                  "action": "drop_message"}, 400, "action"),
    # chains have no failure policy of their own, and no round_robin
    ("POST", "chains", {"name": "c9", "profiles": ["a"], "failure_policy": "fail"}, 400,
     "failure_policy"),
    ("POST", "chains", {"name": "c9", "profiles": ["a"], "strategy": "round_robin"}, 400,
     "strategy"),
])
def test_accepted_but_ignored_fields_are_refused(api, method, path, body, status, field):
    before = api.service.model.copy().objects
    err = refused(api, method, path, body)
    assert (err["status"], err["field"]) == (status, field), err
    assert api.service.model.objects == before


def test_weights_on_a_chain_policy_and_two_router_hosts_are_refused(api):
    api("POST", "chains", {"name": "c9", "profiles": ["a"]})
    err = refused(api, "POST", "policies", {"name": "p9", "chain": "c9", "weights": {"fw1": 2}})
    assert (err["status"], err["field"]) == (400, "weights")
    api("PATCH", "routers/edge", {"host": "h1"})
    err = refused(api, "POST", "routers", {"name": "r9", "host": "h2", "dpid": 9})
    assert (err["status"], err["field"]) == (409, "host")


def test_nat_on_an_l3_node_needs_a_vti_that_does_not_classify(api):
    api("POST", "interfaces", {"name": "vti9", "router": "edge", "port": "vti9", "role": "vti",
                               "ip": "169.254.30.1/30", "mac": "02:00:00:00:d9:01"})
    err = refused(api, "POST", "service-nodes", {"name": "n9", "transport": "l3", "nat": True,
                                                 "interface": "vti9",
                                                 "next_hop": "169.254.30.2"})
    assert (err["status"], err["field"]) == (400, "nat")


# --- dual stack: one family per rule, next hops of their route's family ----------------
IPV6_BAD = [
    # (path, body, status, field)
    ("rules", {**GOOD_RULE, "match": {"ipv6_src": "198.51.100.0/24"}}, 400, "match.ipv6_src"),
    ("rules", {**GOOD_RULE, "match": {"ipv4_dst": "2001:db8::/64"}}, 400, "match.ipv4_dst"),
    ("rules", {**GOOD_RULE, "match": {"ipv4_src": "198.51.100.0/24",
                                      "ipv6_dst": "2001:db8:10::/64"}}, 400, "match.ipv6_dst"),
    ("rules", {**GOOD_RULE, "match": {"eth_type": "ipv6", "ipv4_src": "10.0.0.0/8"}}, 400,
     "match.ipv4_src"),
    ("rules", {**GOOD_RULE, "match": {"eth_type": "ipv4", "ip_proto": "icmpv6"}}, 400,
     "match.ip_proto"),
    ("rules", {**GOOD_RULE, "match": {"ip_proto": "icmp", "ipv6_src": "2001:db8::/32"}}, 400,
     "match.ipv6_src"),
    ("rules", {**GOOD_RULE, "match": {"eth_type": 0x86DE}}, 400, "match.eth_type"),
    ("rules", {**GOOD_RULE, "match": {"eth_type": {}}}, 400, "match.eth_type"),
    ("rules", {**GOOD_RULE, "match": {"eth_type": ["ipv6"]}}, 400, "match.eth_type"),
    ("rules", {**GOOD_RULE, "match": {"ipv6_dst": "2001:db8::1/64"}}, 400, "match.ipv6_dst"),
    ("routes", {"router": "edge", "prefix": "2001:db8:99::/64", "next_hop": "10.0.1.2",
                "interface": "uplink1"}, 400, "next_hop"),
    ("routes", {"router": "edge", "prefix": "192.0.2.0/24", "next_hop": "2001:db8:1::2",
                "interface": "uplink1"}, 400, "next_hop"),
    ("routes", {"router": "edge", "prefix": "192.0.2.0/24", "next_hop": "0.0.0.7",
                "interface": "uplink1"}, 400, "next_hop"),
    ("routes", {"router": "edge", "prefix": "2001:db8:99::/64", "next_hop": "2001:db8:d0::2",
                "interface": "biw-a"}, 400, "interface"),
    ("neighbors", {"ip": "ff02::1", "mac": "02:00:00:00:01:09", "interface": "uplink1"}, 400,
     "ip"),
    ("interfaces", {"name": "x6", "router": "edge", "port": "x6", "role": "downlink",
                    "ip": "10.99.0.1/24", "ipv6": "fe80::1/64", "mac": "02:00:00:00:99:01"},
     400, "ipv6"),
    ("interfaces", {"name": "x6", "router": "edge", "port": "x6", "role": "service",
                    "ipv6": "2001:db8:99::1/64", "mac": "02:00:00:00:99:01"}, 400, "ipv6"),
    ("interfaces", {"name": "x6", "router": "edge", "port": "x6", "role": "vti",
                    "ipv6": "2001:db8:99::1/64"}, 400, "mac"),
]


@pytest.mark.parametrize(("path", "body", "status", "field"), IPV6_BAD)
def test_ipv6_bad_input_is_a_4xx_naming_the_field_and_stores_nothing(api, path, body, status,
                                                                     field):
    before = api("GET", "config")[1]
    code, answer = api("POST", path, body)
    assert (code, answer["field"]) == (status, field), answer
    assert api("GET", "config")[1] == before


@pytest.mark.parametrize("match", [
    {"ipv6_src": ["2001:db8:5100::/64", "2001:db8:cb00::10"], "ip_proto": "tcp", "tp_dst": 22},
    {"eth_type": "ipv6", "ip_proto": "icmpv6"},
    {"eth_type": 0x86DD, "tp_dst": 53, "ip_proto": "udp"},
])
def test_ipv6_rules_are_stored_as_given(api, match):
    code, answer = api("POST", "rules", {**GOOD_RULE, "match": match})
    assert code == 201, answer
    stored = api("GET", f"rules/{answer['id']}")[1]["match"]
    assert v.match_family("match", stored) == 6
