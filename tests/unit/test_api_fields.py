"""Everything the API accepts does what it says: every writable field of every resource
changes the compiled flows.

The fields come from the OpenAPI document the controller serves (the request bodies of
every resource kind, nested objects such as a rule's ``match`` key by key; read-only,
assigned numbers skipped), so a new field is tested, or this test fails, without
editing it.  For each field the test starts from a rich valid configuration
(ryu_si/examples/three_transports.yaml, plus what the field needs to mean something:
a second node for a policy's weights, a node on the router's host for a chain's
``local`` strategy, ...), compiles every switch, changes that one field to another valid
value, has the controller check and apply the changed document, compiles again and
asserts the flows or groups of some switch differ.

A field that is accepted but changes nothing fails here.  ``EXCEPTIONS`` lists the few
that legitimately cannot change flows, with the reason; it is not a place for a field
that should do something and does not.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import uuid
import zlib
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest
from openapi_schema_validator import OAS30WriteValidator
from openapi_schema_validator import validate as validate_instance

from openflow_tables.compile import compile_pipeline
from openflow_tables.ofctl_render import render_flow, render_group
from ryu_si.api.openapi import BASE, JSON, document
from ryu_si.control.service import Service
from ryu_si.control.store import Store
from si_model import model as m
from si_model.document import parse_document
from si_model.validate import ValidationError

Doc = dict[str, list[dict[str, Any]]]
Schema = dict[str, Any]
DOCUMENT = document()
SCHEMAS = DOCUMENT["components"]["schemas"]


# --- the writable fields, from the document -------------------------------------------
def _resolve(s: Schema) -> Schema:
    while "$ref" in s:
        s = SCHEMAS[s["$ref"].rsplit("/", 1)[1]]
    return s


def _leaves(s: Schema, path: str) -> dict[str, Schema]:
    """``path -> schema`` of each writable leaf under ``s``: an object with declared
    properties (a rule's ``match``) is walked key by key, an object of free keys (a
    policy's ``weights``) is one field."""
    s = _resolve(s)
    if s.get("readOnly"):
        return {}
    nested = [a for a in [s, *s.get("anyOf", []), s.get("items") or {}]
              if isinstance(a, dict) and _resolve(a).get("properties")]
    if not nested:
        return {path: s}
    out: dict[str, Schema] = {}
    for obj in nested:
        for name, prop in _resolve(obj)["properties"].items():
            out |= _leaves(prop, f"{path}.{name}")
    return out


def writable_fields() -> dict[str, Schema]:
    """Every field a request may set, ``kind.field[.key]``: the bodies of POST, PUT and
    PATCH of each kind and each kind's items in a whole configuration (PUT /config)."""
    out: dict[str, Schema] = {}
    config = SCHEMAS["Config"]["properties"]
    for kind in m.KINDS:
        bodies = [op["requestBody"]["content"][JSON]["schema"]
                  for path in (f"{BASE}/{kind}", f"{BASE}/{kind}/{{ref}}")
                  for method, op in DOCUMENT["paths"][path].items()
                  if isinstance(op, dict) and "requestBody" in op]
        bodies.append(config[kind]["items"])
        for body in bodies:
            for path, s in _leaves(body, kind).items():
                if path.split(".")[1] not in m.ASSIGNED_FIELDS.get(kind, ()):
                    out.setdefault(path, s)
    return out


FIELDS = writable_fields()


def enum_values(s: Schema) -> list[Any]:
    return [x for x in s.get("enum", []) if x is not None]


# --- the fields that legitimately change no flow ----------------------------------------
# Keep this small and honest: a field that is accepted but does nothing is NOT an
# exception, it is a bug this test exists to find.
_IDENTITY = ("identity only: references are resolved to ids when a request is checked, and "
             "flows carry the assigned numbers (num, rule_num, ct_zone), never ids")
_NAME = ("a label: references by name are resolved to ids, and flows carry the assigned "
         "numbers.  (A fresh controller numbers new objects in name order, which is "
         "bookkeeping, not what the field says.)")
EXCEPTIONS: dict[str, str] = {
    "routers.id": _IDENTITY,
    "service-planes.id": _IDENTITY,
    "interfaces.id": _IDENTITY,
    "routes.id": _IDENTITY,
    "neighbors.id": _IDENTITY,
    "service-nodes.id": _IDENTITY,
    "chains.id": _IDENTITY,
    "policies.id": _IDENTITY,
    "rules.id": _IDENTITY,
    "routers.name": _NAME,
    "service-planes.name": _NAME,
    "interfaces.name": _NAME,
    "routes.name": _NAME,
    "neighbors.name": _NAME,
    "service-nodes.name": _NAME,
    "chains.name": _NAME,
    "policies.name": _NAME,
    "rules.name": _NAME,
    # Relations between routers (a t1 has a t0 parent, no loops, no orphans) that the
    # links must agree with: the datapath joins routers by their links (interfaces.peer,
    # whose change is tested), which are checked against these.
    "routers.tier": "checked relation: routers are joined in the datapath by their links",
    "routers.parent": "checked relation: routers are joined in the datapath by their links",
}


# --- the configuration, and the changes ---------------------------------------------------
def _id(kind: str, name: str) -> str:
    """Ids fixed by name: the two compilations compared must not differ by a random id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ryu-si/{kind}/{name}"))


@functools.cache
def _example() -> str:
    text = resources.files("ryu_si").joinpath("examples/three_transports.yaml").read_text()
    doc = parse_document(text)                       # the loader PUT /config uses
    for kind, items in doc.items():
        for o in items or []:
            o.setdefault("id", _id(kind, o["name"]))
    return json.dumps(doc)


def example() -> Doc:
    return json.loads(_example())


def find(doc: Doc, kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in doc.get(kind) or [] if o.get("name") == name]
    return obj


def add(doc: Doc, kind: str, **fields: Any) -> None:
    doc.setdefault(kind, []).append({"id": _id(kind, fields["name"]), **fields})


def setting(kind: str, name: str, **fields: Any) -> Callable[[Doc], None]:
    """A setup that sets fields of one object of the example."""
    return lambda doc: find(doc, kind, name).update(fields)


def steps(*setups: Callable[[Doc], None]) -> Callable[[Doc], None]:
    def run(doc: Doc) -> None:
        for s in setups:
            s(doc)
    return run


def second_router(doc: Doc) -> None:
    """Another t0 router on its own bridge, with an uplink (somewhere to move things)."""
    add(doc, "routers", name="x-edge2", tier="t0", dpid=3)
    add(doc, "interfaces", name="x-up", router="x-edge2", port="xup", role="uplink",
        ip="10.0.9.1/24", mac="02:00:00:00:09:01")


def tenant(doc: Doc) -> None:
    """A t1 under edge on the same bridge, its uplink linked to one of two t0 ends."""
    add(doc, "routers", name="x-t1", tier="t1", parent="edge", dpid=1)
    for k in (1, 2):
        add(doc, "interfaces", name=f"x-t0-link{k}", router="edge", role="router_link",
            mac=f"02:00:00:00:70:0{k}")
    add(doc, "interfaces", name="x-t1-link", router="x-t1", role="router_link",
        mac="02:00:00:00:71:01", peer="x-t0-link1")
    add(doc, "interfaces", name="x-t1-down", router="x-t1", port="xt1d", role="downlink",
        ip="10.20.0.1/24", mac="02:00:00:00:71:02")


def planes(doc: Doc) -> None:
    """Two named service planes of edge; a chain in the first, served by a node of its own
    (a node of the default plane serves no named one)."""
    for name in ("x-plane", "x-plane2"):
        add(doc, "service-planes", name=name, routers=["edge"])
    add(doc, "service-nodes", name="x-spare", transport="chain", profile="x-spare", host="h1",
        port="xsa", port_b="xsb", planes=["x-plane"])
    add(doc, "chains", name="x-chain", profiles=["x-spare"], plane="x-plane")


def no_chain_rules(doc: Doc) -> None:
    doc["rules"] = [r for r in doc["rules"] if r.get("policy") not in ("deep", "fw")]


def spare_node(doc: Doc) -> None:
    """A chain node in no policy, so that its transport can change (a node of each
    transport gets flows of its own)."""
    add(doc, "service-nodes", name="x-spare", transport="chain", profile="x-spare", host="h1",
        port="xsa", port_b="xsb")


def other_transport_fields(transport: str) -> dict[str, Any]:
    """A node's fields are its transport's (the others are refused): the chain fields go,
    the new transport's come."""
    new = ({"interface": "vti-l3", "next_hop": "169.254.10.2"} if transport == "l3"
           else {"interface_a": "biw-a", "interface_b": "biw-b"})
    return {"port": None, "port_b": None, "host": None, **new}


def third_service_interface(doc: Doc) -> None:
    add(doc, "interfaces", name="x-biw-c", router="edge", port="xbwc", role="service",
        mac="02:00:00:00:c0:01")


def second_biw_node(doc: Doc) -> None:
    add(doc, "service-nodes", name="x-fw", transport="biw", profile="firewall",
        interface_a="biw-a", interface_b="biw-b")


def second_l3_node(doc: Doc) -> None:
    add(doc, "service-nodes", name="x-l3", transport="l3", profile="nat",
        interface="vti-l3", next_hop="169.254.10.2")


def drop_rule(doc: Doc) -> None:
    add(doc, "rules", name="x-drop-telnet", priority=50, action="drop",
        match={"ip_proto": "tcp", "tp_dst": 23}, applied_to=["uplink1"])


# ``fw-only`` has two paths, one per firewall node: cn1 on h1, cn4 on h2.  With cn4 on the
# router's own host the ``local`` strategy keeps only cn4's path.
cn4_with_the_router = setting("service-nodes", "cn4", host="router")
fw_only_local = setting("chains", "fw-only", strategy="local")

ENUM = object()     # Change.value: each value of the field's enum but the baseline's


@dataclasses.dataclass(frozen=True)
class Change:
    """How to change one field: on the object ``name`` (of the path's kind), to ``value``.

    ``setup`` makes the baseline the field needs to mean something (applied to both
    configurations compared); ``also`` gives the fields that must change with it for the
    configuration to stay valid (a function of the new value), each said why."""

    name: str
    value: Any = ENUM
    setup: Callable[[Doc], None] | None = None
    also: Callable[[Any], dict[str, Any]] = lambda value: {}


CHANGES: dict[str, Change] = {
    # --- routers
    # The router's host: the chain's ``local`` strategy keeps the paths whose first node
    # runs there (cn4, on h2).
    "routers.host": Change("edge", "h2", setup=fw_only_local),
    "routers.dpid": Change("edge", 3),
    "routers.service_plane_dpid": Change("edge", 3),
    "routers.service_plane_port": Change("edge", "xrtr"),
    # --- service planes: only paths of a plane edge is attached to come back to it
    "service-planes.routers": Change("x-plane", [], setup=planes),
    # --- interfaces
    # Routes stay on edge: downlink1 carries only a neighbor.
    "interfaces.router": Change("downlink1", "x-edge2", setup=second_router),
    "interfaces.port": Change("uplink1", "xup1"),
    "interfaces.role": Change("downlink1", also=lambda v: {
        **({"port": None} if v == "router_link" else {}),
        **({"ipv6": None} if v in ("service", "router_link") else {})}),
    "interfaces.peer": Change("x-t1-link", "x-t0-link2", setup=tenant),
    "interfaces.ip": Change("downlink1", "10.10.0.254/24"),
    "interfaces.ipv6": Change("downlink1", "2001:db8:11::1/64"),
    "interfaces.mac": Change("downlink1", "02:00:00:00:10:fe"),
    "interfaces.classify": Change("downlink1", True),
    # Without a service plane no rule may redirect to a chain: those rules go.
    "interfaces.service_plane": Change("svc-plane", False, setup=no_chain_rules),
    # --- routes
    # A route's interface must be on its router: the two move together.
    "routes.router": Change("clients", "x-edge2", setup=second_router,
                            also=lambda v: {"interface": "x-up"}),
    "routes.prefix": Change("clients", "198.51.101.0/24"),
    # Out of uplink2, the next hop kept (the checks do not tie it to the interface's prefix).
    "routes.interface": Change("clients", "uplink2"),
    "routes.next_hop": Change("clients", "10.0.1.3"),
    # --- neighbors
    "neighbors.ip": Change("ext-up2", "10.0.2.3"),
    "neighbors.mac": Change("ext-up2", "02:00:00:00:02:03"),
    "neighbors.interface": Change("srv", "vti-remote"),
    # --- service nodes
    "service-nodes.transport": Change("x-spare", setup=spare_node, also=other_transport_fields),
    "service-nodes.profile": Change("cn4", "dpi"),
    # A node on the router's host is the only one the ``local`` strategy keeps.
    "service-nodes.host": Change("cn4", "router", setup=fw_only_local),
    "service-nodes.port": Change("cn1", "xc1a"),
    "service-nodes.port_b": Change("cn1", "xc1b"),
    # An NSH-aware node returns frames on its one port: port_b goes with the change.
    "service-nodes.nsh_aware": Change("cn1", True, also=lambda v: {"port_b": None}),
    "service-nodes.nat": Change("l3n", True),
    "service-nodes.interface": Change("l3n", "vti-remote"),
    # vti-l3 as a /29, so that another next hop is on it.
    "service-nodes.next_hop": Change("l3n", "169.254.10.3",
                                     setup=setting("interfaces", "vti-l3",
                                                   ip="169.254.10.1/29")),
    "service-nodes.interface_a": Change("fw1", "x-biw-c", setup=third_service_interface),
    "service-nodes.interface_b": Change("fw1", "x-biw-c", setup=third_service_interface),
    "service-nodes.admin_state": Change("fw1"),
    # Out of the chain's plane: the chain has no path left.
    "service-nodes.planes": Change("x-spare", ["x-plane2"], setup=planes),
    # --- chains
    "chains.profiles": Change("fw-only", ["ids"]),
    "chains.reverse_profiles": Change("fw-only", ["ids"]),
    "chains.strategy": Change("fw-only", setup=cn4_with_the_router),
    # Into another plane: its paths' SPIs carry that plane's number.
    "chains.plane": Change("x-chain", "x-plane2", setup=steps(
        planes, setting("service-nodes", "x-spare", planes=["x-plane", "x-plane2"]))),
    # --- policies
    "policies.chain": Change("deep", "fw-only"),
    "policies.l3_nodes": Change("l3-nat", ["l3n", "x-l3"], setup=second_l3_node),
    "policies.biw_nodes": Change("inspect", ["fw1", "x-fw"], setup=second_biw_node),
    "policies.weights": Change("inspect", {"fw1": 3}, setup=steps(
        second_biw_node, setting("policies", "inspect", biw_nodes=["fw1", "x-fw"]))),
    # The failure policy applies when no node is live.
    "policies.failure_policy": Change("inspect", setup=setting("service-nodes", "fw1",
                                                               admin_state="down")),
    # --- rules
    # A rule's applied_to must be on its router: the two move together.
    "rules.router": Change("x-drop-telnet", "x-edge2", setup=steps(second_router, drop_rule),
                           also=lambda v: {"applied_to": ["x-up"]}),
    "rules.priority": Change("web-inspect", 200),
    # Only a redirect has a policy.
    "rules.action": Change("web-inspect",
                           also=lambda v: {} if v == "redirect" else {"policy": None}),
    "rules.applied_to": Change("web-inspect", ["uplink1"]),
    "rules.policy": Change("web-inspect", "l3-nat"),
    "rules.enabled": Change("web-inspect", False),
    "rules.match.eth_src": Change("web-inspect", "02:00:00:00:01:02"),
    "rules.match.eth_dst": Change("web-inspect", ["02:00:00:00:01:02", "02:00:00:00:02:02"]),
    "rules.match.ip_proto": Change("web-inspect", "udp"),
    "rules.match.ipv4_src": Change("web-inspect", "198.51.100.0/24"),
    "rules.match.ipv4_dst": Change("web-inspect", "10.10.0.0/24"),
    # web-inspect names no family, so it holds for both: a family narrows it.
    "rules.match.eth_type": Change("web-inspect", "ipv6"),
    "rules.match.ipv6_src": Change("web-inspect", "2001:db8:5100::/64"),
    "rules.match.ipv6_dst": Change("web-inspect", ["2001:db8:10::/64", "2001:db8:20::10"]),
    "rules.match.tp_src": Change("web-inspect", 12345),
    "rules.match.tp_dst": Change("web-inspect", 8080),
}


def _set(obj: dict[str, Any], keys: list[str], value: Any) -> None:
    for k in keys[:-1]:
        obj = obj.setdefault(k, {})
    obj[keys[-1]] = value


def _current(obj: dict[str, Any], keys: list[str], kind: str) -> Any:
    """The value a field has in a document object (its model default when not given)."""
    for k in keys[:-1]:
        obj = obj.get(k) or {}
    if keys[-1] in obj:
        return obj[keys[-1]]
    default = m.KINDS[kind].__dataclass_fields__.get(keys[0])
    return default.default if default is not None and len(keys) == 1 else None


def baseline(path: str) -> Doc:
    doc = example()
    change = CHANGES[path]
    if change.setup:
        change.setup(doc)
    return doc


def changed(path: str, value: Any) -> Doc:
    kind, *keys = path.split(".")
    change = CHANGES[path]
    doc = baseline(path)
    obj = find(doc, kind, change.name)
    _set(obj, keys, value)
    obj.update(change.also(value))
    return doc


def alternatives(path: str) -> list[Any]:
    """The values the field is changed to: the change's, or each other enum value."""
    change = CHANGES[path]
    if change.value is not ENUM:
        return [change.value]
    kind, *keys = path.split(".")
    before = _current(find(baseline(path), kind, change.name), keys, kind)
    values = enum_values(FIELDS[path])
    assert values, f"{path}: not an enum, give Change a value"
    return [v for v in values if v != before]


@dataclasses.dataclass(frozen=True)
class Unusable:
    """A change that could not even be prepared (the example lost an object it names)."""
    error: str


def cases() -> list:
    out = []
    for path in FIELDS:
        if path in EXCEPTIONS:       # listed with the reason; checked to exist below
            continue
        if path not in CHANGES:
            out.append(pytest.param(path, None, id=path))     # fails: say how to change it
            continue
        try:
            values = alternatives(path)
        except Exception as e:      # reported by the case, not as an error of the module
            out.append(pytest.param(path, Unusable(f"{type(e).__name__}: {e}"), id=path))
            continue
        many = len(values) > 1 or CHANGES[path].value is ENUM
        out += [pytest.param(path, v, id=f"{path}={v}" if many else path) for v in values]
    return out


# --- compiling ------------------------------------------------------------------------------
def port_numbers(model: m.Model) -> dict[str, int]:
    """A number for every port the model names, from the name alone: a renamed port is
    another number, and adding a port renumbers no other.  Every switch gets them all."""
    names = {i.port for i in model.all("interfaces") if i.port}
    names |= {p for n in model.all("service-nodes") for p in (n.port, n.port_b) if p}
    names |= {r.service_plane_port for r in model.all("routers") if r.service_plane_port}
    ports = {p: zlib.crc32(p.encode()) % 0xFF00 + 1 for p in names}   # below OFPP_MAX
    assert len(set(ports.values())) == len(ports), f"two port names share a number: {ports}"
    return ports


@dataclasses.dataclass(frozen=True)
class Compiled:
    objects: dict[str, list[dict[str, Any]]]     # the model the controller made of it
    switches: dict[int, frozenset[str]]          # dpid -> its flows and groups, as ofctl text


@functools.cache
def _compile(text: str) -> Compiled:
    svc = Service(Store(":memory:"))
    svc.replace_config(json.loads(text))     # the checks and numbering PUT /config applies
    dpids = {d for r in svc.model.all("routers") for d in (r.dpid, r.service_plane_dpid) if d}
    ports, switches = port_numbers(svc.model), {}
    for dpid in sorted(dpids):
        pipe = compile_pipeline(svc.context(dpid, ports))
        switches[dpid] = frozenset(map(render_flow, pipe.flows)) | frozenset(
            map(render_group, pipe.groups))
    objects = {k: sorted((m.to_dict(o) for o in svc.model.all(k)), key=lambda o: o["id"])
               for k in m.KINDS}
    return Compiled(objects, switches)


def compile_document(doc: Doc) -> Compiled:
    return _compile(json.dumps(doc, sort_keys=True))


def _check_schema(doc: Doc) -> None:
    """The changed document is one the OpenAPI document accepts as a request."""
    root = {"components": DOCUMENT["components"], "$ref": "#/components/schemas/Config"}
    validate_instance(doc, root, cls=OAS30WriteValidator)


def _difference(a: Compiled, b: Compiled) -> int:
    return sum(len(a.switches.get(d, frozenset()) ^ b.switches.get(d, frozenset()))
               for d in a.switches.keys() | b.switches.keys())


# --- the tests --------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "value"), cases())
def test_every_accepted_field_changes_the_flows(path, value):
    known = path in CHANGES
    assert known, (
        f"{path}: the API accepts this field and this test does not know how to change "
        f"it: add a Change to CHANGES (or, if it legitimately cannot change flows, an entry "
        f"with the reason to EXCEPTIONS)")
    if isinstance(value, Unusable):
        pytest.fail(f"{path}: its Change no longer applies to the example: {value.error}")
    before_doc, after_doc = baseline(path), changed(path, value)
    assert after_doc != before_doc, f"{path}: the change leaves the document as it was"
    _check_schema(before_doc)
    _check_schema(after_doc)
    try:
        before = compile_document(before_doc)
    except ValidationError as e:
        pytest.fail(f"{path}: the controller refuses the baseline ({e.field}: {e.message}); "
                    f"its Change's setup no longer fits the example")
    try:
        after = compile_document(after_doc)
    except ValidationError as e:
        pytest.fail(f"{path} = {value!r}: the controller refuses the changed document "
                    f"({e.field}: {e.message}); pick another valid value")
    reached = after.objects != before.objects
    assert reached, f"{path} = {value!r}: the change did not reach the model"
    differing = _difference(before, after)      # flows and groups in one and not the other
    assert differing, (
        f"{path} = {value!r}: accepted, but the flows and groups of every switch are the "
        f"same as before: the compiler never reads it.  Make it do what it says or stop "
        f"accepting it; EXCEPTIONS is only for fields that cannot change flows by nature")


def test_the_example_compiles_for_both_bridges():
    compiled = compile_document(example())
    assert set(compiled.switches) == {1, 2}
    assert all(len(flows) > 20 for flows in compiled.switches.values())


def test_exceptions_name_fields_the_api_still_accepts():
    stale = set(EXCEPTIONS) - set(FIELDS)
    assert not stale, f"EXCEPTIONS lists fields the API no longer accepts: {sorted(stale)}"


def test_changes_name_fields_the_api_still_accepts():
    stale = set(CHANGES) - set(FIELDS)
    assert not stale, f"CHANGES lists fields the API no longer accepts: {sorted(stale)}"
    assert not set(CHANGES) & set(EXCEPTIONS)


def test_the_walk_finds_nested_and_free_form_fields():
    assert {"rules.match.tp_dst", "rules.match.ip_proto", "policies.weights",
            "chains.strategy"} <= set(FIELDS)
    assert "rules.match" not in FIELDS and "rules.rule_num" not in FIELDS
    assert not any(p.split(".")[1] in m.ASSIGNED_FIELDS.get(p.split(".")[0], ())
                   for p in FIELDS)
