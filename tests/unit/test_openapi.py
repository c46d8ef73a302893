"""The OpenAPI document: valid, complete, and in step with the routes really served."""
from __future__ import annotations

from importlib import resources
from types import SimpleNamespace

import pytest
import yaml
from jsonschema.exceptions import ValidationError as SchemaError
from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator
from openapi_schema_validator import validate as validate_instance
from openapi_spec_validator import validate as validate_spec
from ryu.app.wsgi import ControllerBase, route

from si_model import flowprog
from si_model import model as m
from si_model import validate as v
from ryu_si.app import ServiceInsertionApp
from ryu_si.control.config import default_document
from ryu_si.control.liveness import Liveness, NodeState
from ryu_si.api.openapi import BASE, METRICS_PATH, describe, document, routes_of
from ryu_si.api.rest import SIRestController
from ryu_si.control.service import Service
from ryu_si.control.store import Store
from ryu_si.diagnose.trace import FiveTuple, trace

# Documented per the spec, not served yet: empty this as rest.py grows, so that the
# document and the routes end up exactly equal.
NOT_YET_SERVED: set[tuple[str, str]] = set()


@pytest.fixture(scope="module")
def doc() -> dict:
    return document()


def operations(doc: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items()
            for method in item if method != "parameters"}


def test_the_document_is_valid_openapi(doc):
    validate_spec(doc)


def test_every_served_route_is_documented(doc):
    undocumented = routes_of(SIRestController) - operations(doc)
    assert not undocumented, f"document these routes in ryu_si/openapi.py: {undocumented}"


def test_everything_documented_is_served_or_announced(doc):
    assert operations(doc) - routes_of(SIRestController) <= NOT_YET_SERVED


@pytest.mark.parametrize("kind", list(m.KINDS))
def test_every_kind_and_field_is_described(doc, kind):
    name = m.KINDS[kind].__name__
    props = doc["components"]["schemas"][name]["properties"]
    assert set(v.SCHEMAS[kind]) <= set(props)
    assert set(props) == set(m.field_names(kind))      # every field an answer holds
    assert all(props[f]["readOnly"] for f in m.ASSIGNED_FIELDS.get(kind, ()))
    assert doc["components"]["schemas"][name]["required"] == [
        f for f, (_, required) in v.SCHEMAS[kind].items() if required]
    assert "required" not in doc["components"]["schemas"][f"{name}Update"]
    assert set(doc["paths"][f"{BASE}/{kind}"]) == {"get", "post"}
    assert set(doc["paths"][f"{BASE}/{kind}/{{ref}}"]) == {"parameters", "get", "put", "patch",
                                                           "delete"}


def test_checkers_made_by_factories_describe_their_arguments():
    assert describe(v.enum("up", "down")) == {"type": "string", "enum": ["up", "down"]}
    assert describe(v.integer(3, 7)) == {"type": "integer", "minimum": 3, "maximum": 7}
    with pytest.raises(LookupError):
        describe(lambda f, x: x)


def test_changes_and_metrics_carry_the_optional_bearer_token_and_other_reads_do_not(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            changes = method not in ("get", "head") or path == METRICS_PATH
            assert ("security" in op) is changes, (method, path)
            assert ("401" in op["responses"]) is changes, (method, path)
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert doc["components"]["schemas"]["Error"]["properties"].keys() == {"error", "field",
                                                                          "status"}


def _check(doc: dict, instance, schema: str, cls=OAS30ReadValidator) -> None:
    """Validate against a component, resolving its $refs inside the document."""
    root = {"components": doc["components"], "$ref": f"#/components/schemas/{schema}"}
    validate_instance(instance, root, cls=cls)


def _example(name: str) -> dict:
    return yaml.safe_load(resources.files("ryu_si").joinpath(f"examples/{name}").read_text())


def _three_transports() -> dict:
    return _example("three_transports.yaml")


def _tenants() -> dict:
    return _example("tenants.yaml")


@pytest.mark.parametrize("config", [default_document, _three_transports, _tenants])
def test_what_the_service_answers_and_accepts_fits_the_schemas(doc, tmp_path, config):
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    _check(doc, config(), "Config", OAS30WriteValidator)
    svc.replace_config(config())
    answer = {k: [m.to_dict(o) for o in svc.model.all(k)] for k in m.KINDS}
    _check(doc, answer, "Config")
    with pytest.raises(SchemaError, match="read-only"):   # assigned numbers are not input
        _check(doc, answer, "Config", OAS30WriteValidator)


def test_bad_values_are_refused_by_both_the_checkers_and_the_schema(doc, service):
    rule = {"name": "r", "priority": 10, "action": "allow", "applied_to": ["uplink1"]}
    for bad in ({"priority": 0}, {"action": "explode"}, {"colour": "red"},
                {"match": {"ip_proto": 6, "tp_dst": ["1-2", "x"]}}, {"match": {"vlan": 3}},
                {"match": {"ipv4_src": []}}):
        with pytest.raises(SchemaError):
            _check(doc, {**rule, **bad}, "Rule", OAS30WriteValidator)
        with pytest.raises(v.ValidationError):
            v.build("rules", {**rule, **bad}, service.model)
    good = {**rule, "match": {"ip_proto": "tcp", "tp_dst": ["1-2", 443], "ipv4_src": "10.0.0.0/8"}}
    _check(doc, good, "Rule", OAS30WriteValidator)
    v.build("rules", good, service.model)


def test_trace_answers_and_service_path_views_fit_the_schemas(doc, tmp_path):
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    svc.replace_config(_three_transports())
    for iface in svc.model.all("interfaces"):
        for dport in (80, 5201, 5203, 9):
            _check(doc, trace(svc, iface.id,
                              FiveTuple(6, "198.51.100.7", "10.10.0.10", 1234, dport)),
                   "TraceResult")
    controller = SIRestController.__new__(SIRestController)
    controller.app = SimpleNamespace(service=svc)
    views = [controller._path_view(p) for ps in svc.paths.values() for p in ps]
    assert views
    for view in views:
        _check(doc, view, "ServicePath")
        assert view.keys() == doc["components"]["schemas"]["ServicePath"]["properties"].keys()


def test_health_liveness_and_flow_programming_answers_fit_the_schemas(doc, service):
    fw1 = service.find("service-nodes", "fw1").id
    liveness = Liveness(nodes={fw1: NodeState(fw1, last_reply=1.5)})
    app = SimpleNamespace(service=service, switches={}, started=0.0, liveness=liveness)
    _check(doc, ServiceInsertionApp.health(app), "Health")
    view = ServiceInsertionApp.liveness_view(app)
    _check(doc, view, "Liveness")
    node = doc["components"]["schemas"]["Liveness"]["properties"]["nodes"]
    assert view["nodes"]["fw1"].keys() == node["additionalProperties"]["properties"].keys()
    body = {"ip_proto": "tcp", "ipv4_src": "198.51.100.7", "ipv4_dst": "10.10.0.10",
            "tp_src": 40000, "tp_dst": 80, "action": "reroute", "spi": 7}
    _check(doc, body, "FlowProgrammingRequest", OAS30WriteValidator)
    instruction = flowprog.parse(body, 1, {"edge": service.find("routers", "edge").id}, {})
    _check(doc, instruction.to_dict(), "FlowProgrammingInstruction")
    request = doc["components"]["schemas"]["FlowProgrammingRequest"]["properties"]
    assert set(request) == set(flowprog.FIELDS)
    with pytest.raises(SchemaError):
        _check(doc, {**body, "ip_proto": "icmp"}, "FlowProgrammingRequest", OAS30WriteValidator)


class _Routes(ControllerBase):
    @route("x", "/a/{kind}/{ref}", methods=["GET", "PUT"], requirements={"kind": "b|c-d"})
    def one(self, req, **_):
        pass

    @route("x", "/n/{num}", methods=["DELETE"], requirements={"num": r"\d+"})
    def two(self, req, **_):
        pass

    @route("x", "/any")
    def three(self, req, **_):
        pass

    def not_a_route(self, req, **_):
        pass


def test_routes_of_reads_ryu_routing_info():
    assert routes_of(_Routes) == {("GET", "/a/b/{ref}"), ("PUT", "/a/b/{ref}"),
                                  ("GET", "/a/c-d/{ref}"), ("PUT", "/a/c-d/{ref}"),
                                  ("DELETE", "/n/{num}"), ("*", "/any")}
